//! Accept signed webhooks in an axum/tower service, safely.
//!
//! `tower-webhook` is the receiving side of signed webhooks: Sotion by default, and sota.io,
//! GitHub, Standard Webhooks (Svix, Clerk, Resend; `v1a` too), Stripe, Slack, Shopify,
//! WooCommerce, Discord, Twilio, SendGrid, Square, Zoom, Meta, Paddle, Linear, Twitch and
//! Microsoft Graph by naming a [`Scheme`], or any other sender described with
//! [`Scheme::builder`]:
//!
//! - [`WebhookLayer`], a tower layer that buffers the raw body (bounded), verifies its
//!   signature (HMAC-SHA256 in constant time against every configured secret; Ed25519, ECDSA
//!   P-256 and HMAC-SHA1 behind features), reads the event from the body as its sender sent it
//!   (JSON, or a form: [`scheme::BodyForm`]), checks that the event and id headers agree with
//!   the signed envelope, answers the senders' endpoint handshakes itself, and only then calls
//!   your handler; each refusal says why to the operator ([`error::Reason`]), never to the
//!   sender;
//! - an idempotency guard ([`idempotency`]) that runs each event's handler once, and never loses
//!   an event whose handler failed (in memory by default, Redis for several replicas);
//! - typed events: [`SotionEvent`], a variant per documented Sotion event type with its typed
//!   `data` and one for any other type, and [`FromEvent`] to do the same for any sender; what
//!   the types do not model is kept, never refused, in a [`RawObject`] (any valid JSON, as sent);
//! - extractors for axum handlers: `extract::Event<T>` (a [`FromEvent`] type such as
//!   [`SotionEvent`]), [`WebhookMeta`] and `extract::Verified<T>` (any scheme), and
//!   [`Envelope<T>`] (Sotion's envelope with `data` as one type `T`);
//! - `EventRouter`, a handler per event name (`member.created`, GitHub's `issues.opened`),
//!   mounted as one route's handler, that acknowledges the events nobody handles;
//! - secret rotation ([`Secrets`]), per-tenant secrets ([`SecretResolver`]), replay windows with
//!   an injectable [`Clock`], and the pure core ([`verify`]) usable without tower.
//!
//! # Quick start
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_webhook::extract::Event;
//! use tower_webhook::{Scheme, SotionEvent, WebhookLayer, WebhookMeta};
//!
//! async fn on_event(meta: WebhookMeta, Event(event): Event<SotionEvent>) -> &'static str {
//!     match event {
//!         SotionEvent::MemberCreated(member) => {
//!             println!("welcome {:?} (event {})", member.email, meta.id());
//!         }
//!         other => println!("ignoring {}", other.name()), // unknown types are acknowledged too
//!     }
//!     "ok"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = WebhookLayer::new(Scheme::sotion(), "whsec_from_your_sotion_dashboard")?;
//! let app = Router::new().route("/webhooks", post(on_event).layer(layer));
//!
//! // An unsigned request never reaches the handler.
//! let forged = http::Request::post("/webhooks")
//!     .header("x-webhook-id", "evt_1")
//!     .body(axum::body::Body::from(r#"{"id":"evt_1"}"#))?;
//! let response = app.oneshot(forged).await?;
//! assert_eq!(response.status(), 401);
//! # Ok(())
//! # }
//! ```
//!
//! # Answers
//!
//! Every refusal is a small JSON body, `{"error": "<code>", "message": "<text>"}`, with the
//! status of its [`RejectionKind`]; the [`Rejection`] also rides in the response's extensions.
//! See the [`layer`] module for the order of the checks.
//!
//! # Features
//!
//! Optional integrations are Cargo features, in the manner of tower-http. Crate counts are the
//! library's own build on Linux (normal and build dependencies, this crate included): 74 with the
//! default features, 61 with `default-features = false`.
//!
//! | feature | default | brings | turning it off |
//! | --- | --- | --- | --- |
//! | `axum` | yes | the axum extractors: [`Envelope<T>`] and [`WebhookMeta`] as handler arguments, and the `extract` module (`Verified<T>`, the rejections); the `EventRouter` (a handler per event name) and `PathParams` (route parameters for a [`SecretResolver`]), through `axum` (without its default features) | saves 7 crates (`axum`, `axum-core`, `matchit`, `mime`, `percent-encoding`, `sync_wrapper`, `tower`); the layer still serves any tower stack, and handlers find [`WebhookMeta`] in the request's extensions |
//! | `tracing` | yes | a `webhook` span per delivery, one event for its outcome, and warnings and errors for what goes wrong (a store or resolver failing, a sender's unusable field) ([`observe`]); nothing happens until the application installs a subscriber | saves 3 crates (`tracing`, `tracing-core`, `once_cell`); the layer then says nothing, and its answers still carry each refusal's [`Rejection`] |
//! | `metrics` | yes | the counters and the duration histogram ([`observe`]) through the `metrics` facade; next to no cost until the application installs a recorder | saves 3 crates (`metrics`, `rapidhash`, `rustversion`) |
//! | `redis` | no | `idempotency::RedisStore`, the idempotency store shared by several replicas, and `inbox::RedisInbox`, the durable inbox on Redis Streams | it is off by default: turning it on adds 46 crates (the `redis` client and its runtime) |
//! | `testing` | no | the `testing` module: helpers that build correctly signed requests for your tests | adds no crate |
//! | `sqlite` | no | `inbox::SqliteInbox`, the durable inbox's embedded backend (a file, WAL), through `sqlx` | off by default: adds 71 crates (sqlx and a bundled SQLite) |
//! | `postgres` | no | `inbox::PostgresInbox`, the durable inbox's backend shared by replicas | off by default: adds 76 crates (88 with `sqlite`) |
//! | `ed25519` | no | Ed25519 signatures: [`Scheme::discord`] and [`Scheme::standard_webhooks_v1a`], through `ed25519-dalek` | off by default: adds 9 crates |
//! | `p256` | no | ECDSA P-256 signatures: [`Scheme::sendgrid`], through `p256` | off by default: adds 17 crates |
//! | `sha1` | no | HMAC-SHA1: [`Scheme::twilio`], through `sha1` | off by default: adds 1 crate |
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod asymmetric;
mod clock;
mod diagnose;
pub mod envelope;
pub mod error;
mod event;
#[cfg(feature = "axum")]
pub mod extract;
pub mod idempotency;
pub mod inbox;
pub mod layer;
mod meta;
pub mod observe;
#[cfg(feature = "axum")]
mod path_params;
mod raw_object;
#[cfg(feature = "axum")]
mod router;
#[cfg(feature = "testing")]
mod sample;
pub mod scheme;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;
mod whole_message;

pub use self::clock::{Clock, SystemClock};
pub use self::envelope::{Envelope, EventType, SotionEvent};
pub use self::error::{ConfigError, Rejection, RejectionKind, StorageError};
pub use self::event::FromEvent;
pub use self::idempotency::{Idempotency, IdempotencyStore, MemoryStore};
pub use self::layer::{WebhookLayer, WebhookService};
pub use self::meta::WebhookMeta;
#[cfg(feature = "axum")]
pub use self::path_params::PathParams;
pub use self::raw_object::RawObject;
#[cfg(feature = "axum")]
pub use self::router::EventRouter;
pub use self::scheme::Scheme;
pub use self::secret::{ResolveError, ResolveFuture, Secret, SecretResolver, Secrets, Tenant};
pub use time;

/// The README's examples, compiled as doctests (they use the `redis`, `sqlite`, `postgres` and
/// `testing` features:
/// `scripts/test` builds with every feature).
#[cfg(all(
    doctest,
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "testing"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
