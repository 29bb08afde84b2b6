//! The tower middleware: [`WebhookLayer`] configures it, [`WebhookService`] runs it.
//!
//! For each request, in order, without calling the inner service when a step fails:
//!
//! 1. the signature header is read (`401 missing_signature` / `401 malformed_signature`);
//! 2. a `Content-Length` over the body limit is refused before reading (`413`), and so is a
//!    `Content-Encoding` other than `identity` (`415`);
//! 3. the body is read, hashed as it streams in and cut at the limit (`413`), within the body
//!    read timeout (`408`);
//! 4. the HMAC-SHA256 of exactly those bytes is compared, in constant time, with every
//!    configured secret (`401 signature_mismatch`);
//! 5. only then the envelope is parsed and checked, and the id and event headers must agree with
//!    it (`400`);
//! 6. the idempotency guard reserves the event (`200` duplicate, `409` in flight, `503` store
//!    unavailable);
//! 7. the inner service is called with the same bytes as its body and a [`WebhookMeta`] in its
//!    extensions; a `2xx` answer completes the reservation, anything else releases it.
//!
//! [`WebhookMeta`]: crate::WebhookMeta

mod body;
mod builder;
mod future;
mod service;

pub use self::body::ResponseBody;
pub use self::builder::{
    WebhookLayer, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_RESOLVER_RETRY_AFTER,
    DEFAULT_RESOLVER_TIMEOUT,
};
pub use self::future::ResponseFuture;
#[cfg(feature = "axum")]
pub(crate) use self::service::VerifiedBody;
pub use self::service::WebhookService;
