//! How a sender signs its deliveries: which headers, which bytes, which encoding, and where the
//! event id, type and timestamp come from.
//!
//! A [`Scheme`] is a value handed to the [`WebhookLayer`](crate::WebhookLayer): presets name
//! the common senders ([`Scheme::sotion`], the default, [`Scheme::sota`], [`Scheme::github`],
//! [`Scheme::standard_webhooks`], [`Scheme::stripe`], [`Scheme::slack`]); [`Scheme::builder`]
//! describes any other without writing crypto code. The service only asks the scheme to read
//! the headers before the body and to describe the body once its signature verified.

mod format;
mod headers;
mod read;
mod source;
mod spec;

pub(crate) use self::format::Candidates;
pub(crate) use self::format::DIGEST_LEN;
pub use self::format::{Encoding, SignatureFormat};
pub(crate) use self::headers::Headers;
pub(crate) use self::read::{Described, Prepared};
pub use self::source::{Part, SecretFormat, Source, TimestampFormat, Tolerance};
pub use self::spec::{
    Outgoing, Scheme, SchemeBuilder, DEFAULT_TOLERANCE, SHA256_PREFIX, SOTION_DELIVERY,
    SOTION_EVENT, SOTION_ID, SOTION_SIGNATURE,
};
