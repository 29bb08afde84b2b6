//! The tower middleware: [`WebhookLayer`] configures it (built by [`WebhookLayerBuilder`], which
//! refuses a configuration that cannot work), [`WebhookService`] runs it.
//!
//! For each request, in order, without calling the inner service when a step fails:
//!
//! 1. the signature header is read (`401 missing_signature` / `401 malformed_signature`);
//! 2. a `Content-Encoding` other than `identity` is refused (`415`), then a `Content-Length`
//!    over the body limit (`413`), before reading the body;
//! 3. the body is read, hashed as it streams in and cut at the limit (`413`), within the body
//!    read timeout (`408`);
//! 4. the HMAC-SHA256 of exactly those bytes is compared, in constant time, with every
//!    configured secret (`401 signature_mismatch`);
//! 5. only then the body is read in the form its `Content-Type` names, among those the scheme
//!    reads (JSON, forms: `415 unsupported_media_type` otherwise), and for Sotion the envelope is
//!    parsed and checked, and the id and event headers must agree with it (`400`);
//! 6. the idempotency guard reserves the event (`200` duplicate, `409` in flight, `503` store
//!    unavailable);
//! 7. the inner service is made ready, then called with the same bytes as its body and a
//!    [`WebhookMeta`] in its extensions; a `2xx` answer completes the reservation, anything else
//!    (or an error making it ready) releases it.
//!
//! Each refusal is answered with its code and a fixed message; why it happened, for the
//! operator, is its [`Reason`](crate::error::Reason): in the refusal's log line and in the
//! [`Rejection`](crate::Rejection) in the response's extensions, never in the answer.
//!
//! An endpoint handshake is answered by the layer itself and goes no further: an unsigned one
//! (Meta's `hub.challenge` `GET`, Microsoft Graph's `validationToken`) before step 1, a signed
//! one (Slack, Discord, Zoom, Twitch) right after step 4 (see the scheme's docs).
//!
//! In inbox mode ([`WebhookLayerBuilder::with_inbox`]), steps 6 and 7 are replaced: the
//! delivery is stored in the inbox and answered `200` once committed (a key stored already:
//! the duplicate answer; the inbox failing or full: `503` with `Retry-After`), and the inbox's
//! workers call the service later. A request from the workers (verified when it was stored)
//! passes through the layer to the inner service unchanged, so the workers may be given the
//! whole application, this layer included.
//!
//! # Readiness
//!
//! [`WebhookService`] is always ready: the inner service is made ready by each request's
//! future, after step 6, so a request that is still being read or that is refused never holds
//! the inner service's capacity (a concurrency-limit permit, a buffer slot). A limit placed
//! between this layer and the handler bounds verified deliveries only; forged or stalled
//! requests are bounded by the body limit and the body read timeout.
//!
//! # When an event counts as handled
//!
//! The reservation is completed when the inner service answers a `2xx` **head**, not when its
//! response body has been sent. The handler's `2xx` is its verdict that the event was handled
//! (an axum handler builds its response after its work). If the response body then fails to
//! stream, that is a transport failure: the sender retries and is answered as a duplicate, which
//! is right since the work was done. Completing at the end of the body instead would run the
//! handler a second time in that case. A handler that streams a body whose failure should make
//! the sender's retry run it again must do that work before answering.
//!
//! # Cancellation
//!
//! When the response future is dropped before the inner service answered (the client went
//! away, a timeout layer fired), the handler's future is dropped first, then the reservation is
//! released: a retry never starts while the cancelled handler's destructors still run. Outside
//! a Tokio runtime (or while one shuts down) a store doing I/O cannot be reached: the release is
//! then skipped and logged, and the event's lease frees it.
//!
//! [`WebhookMeta`]: crate::WebhookMeta

mod body;
mod builder;
mod config;
mod future;
mod inbox;
// tower-http's layout: `layer.rs`, `service.rs`, `future.rs`.
#[allow(clippy::module_inception)]
mod layer;
mod public_url;
mod read;
mod service;

pub(crate) use self::body::LayerBody;
pub use self::body::ResponseBody;
pub use self::builder::WebhookLayerBuilder;
pub use self::future::ResponseFuture;
pub use self::layer::WebhookLayer;
// Read by the extractors and the router (axum), written by `testing::verified_request` and the
// inbox's workers.
pub(crate) use self::service::VerifiedBody;
// Marks the inbox workers' requests, which the layer lets through.
pub(crate) use self::inbox::FromInbox;
pub use self::service::WebhookService;
