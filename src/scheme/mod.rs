//! How a sender signs its deliveries: which headers, which bytes, which encoding, and where the
//! event id, type and timestamp come from.
//!
//! A [`Scheme`] is a value handed to the [`WebhookLayer`](crate::WebhookLayer): presets name
//! the common senders ([`Scheme::sotion`], [`Scheme::sota`], [`Scheme::github`],
//! [`Scheme::standard_webhooks`], [`Scheme::stripe`], [`Scheme::slack`], and those the
//! [`Scheme`] table lists); [`Scheme::builder`] describes any other without writing crypto
//! code. The service only asks the scheme to read
//! the headers before the body and to describe the body once its signature verified.
//!
//! Files: `spec.rs` holds the [`Scheme`] type and its accessors, `presets.rs` the named
//! senders, `builder.rs` [`SchemeBuilder`], `sign.rs` signing ([`Scheme::sign`], [`Outgoing`]),
//! `source.rs` where facts are read from, `format.rs` the signature header's shape, `body.rs`
//! the body forms a sender uses ([`BodyForm`]: JSON, forms) and how the event is read from
//! each, `algorithm.rs` the function signatures are made with, `headers.rs` / `read.rs` what
//! the layer asks of a scheme per request, `handshake.rs` the endpoint handshakes the layer
//! answers, `twilio.rs` Twilio's signing rule and `query.rs` the query parameters the
//! handshakes and Twilio read.
//!
//! # Bodies
//!
//! The signature is checked over the raw bytes; then the event is read from the body in the
//! form its `Content-Type` names, among the forms the scheme lists
//! ([`Scheme::body_forms`], [`SchemeBuilder::with_body_forms`]): JSON for every preset, and
//! forms too for GitHub (its `form` content type, the default of its REST API, sends
//! `payload=<JSON>`), Slack (interactivity's `payload=`, slash commands' parameters) and Twilio
//! (its parameters). The extractors and the event router read the event's JSON whichever form
//! carried it; the raw bytes stay the request's body. A form the scheme does not list is
//! refused with `415 unsupported_media_type`, never acknowledged unread.

mod algorithm;
mod body;
mod builder;
mod format;
mod handshake;
mod headers;
mod presets;
mod query;
mod read;
mod sign;
mod source;
mod spec;
mod twilio;

pub use self::algorithm::Algorithm;
pub use self::body::BodyForm;
pub use self::builder::SchemeBuilder;
pub(crate) use self::format::Candidates;
pub(crate) use self::format::DIGEST_LEN;
pub use self::format::{Encoding, SignatureFormat};
pub(crate) use self::headers::Headers;
pub(crate) use self::read::{Described, Prepared};
pub use self::sign::Outgoing;
pub use self::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
pub use self::spec::Scheme;
pub(crate) use self::spec::{Rule, SHA256_PREFIX};
pub(crate) use self::twilio::messages as twilio_messages;
