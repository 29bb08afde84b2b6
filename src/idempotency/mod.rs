//! Deduplicating deliveries by event id, without ever losing an event whose handler failed.
//!
//! Senders deliver at least once: they retry on timeouts and errors, for days. The layer
//! therefore remembers each event it handled, in an [`IdempotencyStore`], keyed by the scheme,
//! the endpoint (see [`WebhookLayerBuilder::with_endpoint`](crate::layer::WebhookLayerBuilder::with_endpoint)), the
//! tenant, the signed scope (Sotion's `siteId`) and the signed event id ([`IdempotencyKey`];
//! a scheme whose id is unsigned, such as GitHub's, is keyed by its signed bytes instead):
//!
//! | the store says | the layer answers |
//! | --- | --- |
//! | new (a reservation is taken) | calls the handler; a `2xx` completes the key, anything else releases it |
//! | done | `200` with `X-Webhook-Duplicate: true`, handler not called |
//! | in flight | `409 in_flight` with `Retry-After`, handler not called |
//! | unreachable | `503 store_unavailable` with `Retry-After`, handler not called |
//!
//! A handler that answers non-`2xx`, returns an error, panics, or whose response future is
//! dropped (the client went away, a timeout layer fired) releases its reservation, so the
//! sender's retry is processed. Only authenticated deliveries ever reach the store.
//!
//! [`MemoryStore`] (the default) serves one process; `RedisStore` (feature `redis`) serves
//! several replicas.

mod completed;
#[cfg(feature = "testing")]
pub(crate) mod conformance;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub use self::memory::{MemoryStore, DEFAULT_CAPACITY, DEFAULT_MAX_IN_FLIGHT};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::store::{
    IdempotencyKey, IdempotencyStore, Reservation, StoreError, StoreFuture, Token,
};
use crate::error::ConfigError;
use crate::layer::LayerBody;
use crate::meta::WebhookMeta;

/// How long a completed event is remembered by default: 7 days, longer than the senders' retry
/// windows (Stripe about 3 days, Standard Webhooks' schedule about 75 hours).
const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long a reservation holds by default before another delivery may take it over.
const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// The longest lease or TTL accepted: 100 years (36,500 days). Every store represents it: Redis
/// counts `PX` in milliseconds, in a signed 64-bit number, from now (it refuses an expiry past
/// that), and 100 years is about 3.2 × 10¹² ms; the memory store counts milliseconds too.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 24 * 60 * 60);
/// The default `Retry-After` of a `409 in_flight` answer.
const DEFAULT_IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The default `Retry-After` of a `503 store_unavailable` answer.
const DEFAULT_UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The header set on the answer to a duplicate delivery.
const DUPLICATE_HEADER: http::HeaderName = http::HeaderName::from_static("x-webhook-duplicate");

/// What the layer answers to a delivery of an event that was already handled.
///
/// Implemented for closures `Fn(&WebhookMeta) -> R` where `R` is a `Response<Full<Bytes>>`
/// or, with feature `axum`, anything that implements axum's `IntoResponse`
/// (`(StatusCode::ACCEPTED, "seen")`). The layer adds the `X-Webhook-Duplicate: true` header
/// and a [`Duplicate`] extension to whatever it returns.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use http::StatusCode;
/// use tower_webhook::idempotency::Idempotency;
/// use tower_webhook::WebhookMeta;
///
/// let idempotency = Idempotency::default()
///     .on_duplicate(|_meta: &WebhookMeta| (StatusCode::ACCEPTED, "seen"));
/// # let _ = idempotency;
/// # }
/// ```
pub trait OnDuplicate: Send + Sync + 'static {
    /// The response to a duplicate of the event described by `meta`.
    fn on_duplicate(&self, meta: &WebhookMeta) -> DuplicateResponse;
}

impl<F, R> OnDuplicate for F
where
    F: Fn(&WebhookMeta) -> R + Send + Sync + 'static,
    R: Into<DuplicateResponse>,
{
    fn on_duplicate(&self, meta: &WebhookMeta) -> DuplicateResponse {
        self(meta).into()
    }
}

/// The answer to a duplicate delivery, made with `.into()` from a `Response<Full<Bytes>>` or,
/// with feature `axum`, from anything that implements axum's `IntoResponse`.
pub struct DuplicateResponse(Response<LayerBody>);

impl fmt::Debug for DuplicateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuplicateResponse")
            .field("status", &self.0.status())
            .finish_non_exhaustive()
    }
}

impl DuplicateResponse {
    fn full(response: Response<Full<Bytes>>) -> Self {
        Self(response.map(LayerBody::full))
    }
}

#[cfg(not(feature = "axum"))]
impl From<Response<Full<Bytes>>> for DuplicateResponse {
    fn from(response: Response<Full<Bytes>>) -> Self {
        Self::full(response)
    }
}

#[cfg(feature = "axum")]
impl<T: axum_core::response::IntoResponse> From<T> for DuplicateResponse {
    fn from(response: T) -> Self {
        Self(response.into_response().map(LayerBody::axum))
    }
}

/// The default answer to a duplicate: `200` with `{"status":"duplicate"}`, so the sender stops
/// retrying.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcknowledgeDuplicate;

impl OnDuplicate for AcknowledgeDuplicate {
    fn on_duplicate(&self, _meta: &WebhookMeta) -> DuplicateResponse {
        let mut response =
            Response::new(Full::new(Bytes::from_static(br#"{"status":"duplicate"}"#)));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        DuplicateResponse::full(response)
    }
}

/// Marks, in the response's extensions, an answer to a duplicate delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// The idempotency guard's configuration: a store and its timings.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::idempotency::{Idempotency, MemoryStore};
///
/// let idempotency = Idempotency::new(MemoryStore::default())
///     .with_lease(Duration::from_secs(60))?
///     .with_ttl(Duration::from_secs(3 * 24 * 3600))?;
/// # let _ = idempotency;
/// # Ok::<(), tower_webhook::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Idempotency {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) lease: Duration,
    pub(crate) ttl: Duration,
    pub(crate) in_flight_retry_after: Duration,
    pub(crate) unavailable_retry_after: Duration,
    pub(crate) fail_open: bool,
    pub(crate) on_duplicate: Arc<dyn OnDuplicate>,
}

impl Default for Idempotency {
    fn default() -> Self {
        Self::new(MemoryStore::default())
    }
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("in_flight_retry_after", &self.in_flight_retry_after)
            .field("unavailable_retry_after", &self.unavailable_retry_after)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// The guard over `store`, with the default timings.
    #[must_use]
    pub fn new(store: impl IdempotencyStore) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// The guard over a store shared with other code (or other layers). Layers sharing a
    /// store share keys only when they are the same endpoint: the same verifying secret, or
    /// the same [`with_endpoint`](crate::layer::WebhookLayerBuilder::with_endpoint) name.
    #[must_use]
    pub fn from_shared(store: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            store,
            lease: DEFAULT_LEASE,
            ttl: DEFAULT_TTL,
            in_flight_retry_after: DEFAULT_IN_FLIGHT_RETRY_AFTER,
            unavailable_retry_after: DEFAULT_UNAVAILABLE_RETRY_AFTER,
            fail_open: false,
            on_duplicate: Arc::new(AcknowledgeDuplicate),
        }
    }

    /// How long a reservation holds (default 5 minutes). It must be longer than your handler
    /// ever runs: once it expires, another delivery of the same event may be processed while the
    /// first is still running. It only matters when a process dies mid-handler (a shared store
    /// then frees the event after the lease); otherwise reservations are released or completed
    /// as soon as the handler ends. The lease starts when the delivery is reserved, before the
    /// inner service is made ready: time spent waiting behind a concurrency limit or a buffer
    /// inside the layer counts too. Stores count it in milliseconds (Redis rounds a shorter
    /// remainder up to 1 ms).
    ///
    /// # Errors
    /// [`ConfigError::InvalidDuration`] when `lease` is zero (a reservation that holds for no
    /// time lets every concurrent delivery run the handler) or longer than [`MAX_DURATION`].
    pub fn with_lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        self.lease = checked(lease, "Idempotency::with_lease")?;
        Ok(self)
    }

    /// How long a completed event is remembered (default 7 days). Keep it longer than the
    /// sender's retry window. Stores count it in milliseconds (Redis rounds a shorter remainder
    /// up to 1 ms).
    ///
    /// # Errors
    /// [`ConfigError::InvalidDuration`] when `ttl` is zero (nothing would be remembered: every
    /// retry would run the handler again) or longer than [`MAX_DURATION`].
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self, ConfigError> {
        self.ttl = checked(ttl, "Idempotency::with_ttl")?;
        Ok(self)
    }

    /// The `Retry-After` of a `409 in_flight` answer (default 10 s). Sent in whole seconds,
    /// rounded up; a duration over about 68 years is sent as that (see
    /// [`Rejection::with_retry_after`](crate::Rejection::with_retry_after)).
    #[must_use]
    pub fn with_in_flight_retry_after(mut self, after: Duration) -> Self {
        self.in_flight_retry_after = after;
        self
    }

    /// The `Retry-After` of a `503 store_unavailable` answer (default 30 s). Sent in whole
    /// seconds, rounded up; a duration over about 68 years is sent as that (see
    /// [`Rejection::with_retry_after`](crate::Rejection::with_retry_after)).
    #[must_use]
    pub fn with_unavailable_retry_after(mut self, after: Duration) -> Self {
        self.unavailable_retry_after = after;
        self
    }

    /// **Risky.** When the store cannot be reached, call the handler anyway, without a
    /// reservation, instead of answering `503`.
    ///
    /// Only an unreachable store is bypassed (a backend error, a timeout). A store that refuses
    /// a reservation because it is full ([`StoreError::Full`]: the memory store at its in-flight
    /// limit, protecting the process's memory) is no outage: the layer still answers
    /// `503 store_unavailable` with `Retry-After`, and the handler is not called.
    ///
    /// # Warning
    /// While the store is down, duplicates are no longer detected: a retried or concurrently
    /// repeated event runs its handler again. Only turn this on if your handlers are idempotent
    /// themselves and availability matters more to you than exactly-once processing. By default
    /// the layer fails closed (`503` with `Retry-After`, so the sender retries later and nothing
    /// is lost).
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// What to answer to a duplicate (default [`AcknowledgeDuplicate`]: `200`): an
    /// [`OnDuplicate`], such as a closure `|meta: &WebhookMeta| ...` returning a
    /// `Response<Full<Bytes>>` or, with feature `axum`, anything that implements axum's
    /// `IntoResponse` (`(StatusCode::ACCEPTED, "seen")`).
    #[must_use]
    pub fn on_duplicate(mut self, on_duplicate: impl OnDuplicate) -> Self {
        self.on_duplicate = Arc::new(on_duplicate);
        self
    }

    pub(crate) fn duplicate_response(&self, meta: &WebhookMeta) -> Response<LayerBody> {
        duplicate_response(&*self.on_duplicate, meta)
    }
}

/// `on_duplicate`'s answer to a duplicate of the event `meta` describes, marked as one (the
/// `x-webhook-duplicate` header, the `Duplicate` extension).
pub(crate) fn duplicate_response(
    on_duplicate: &dyn OnDuplicate,
    meta: &WebhookMeta,
) -> Response<LayerBody> {
    let DuplicateResponse(mut response) = on_duplicate.on_duplicate(meta);
    response
        .headers_mut()
        .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    response.extensions_mut().insert(Duplicate);
    response
}

/// A reservation the layer holds while the handler runs: the response future completes it
/// after a `2xx`, releases it otherwise, and releases it when dropped while still holding it
/// (the handler panicked, or the client went away).
#[derive(Debug)]
pub(crate) struct Reserved {
    key: IdempotencyKey,
    token: Token,
}

impl Reserved {
    pub(crate) fn new(key: IdempotencyKey, token: Token) -> Self {
        Self { key, token }
    }

    /// Completes the reservation (`succeeded`) or releases it. The store's future is polled
    /// once here (a store that answers at once is done then); if it is not finished, it is
    /// moved, as it is, onto a task of its own, so that dropping the response future cannot
    /// leave a handled event unrecorded (its retry would then run again). The task's handle is
    /// returned for the caller to wait on.
    pub(crate) fn finish(
        self,
        store: &Arc<dyn IdempotencyStore>,
        succeeded: bool,
        ttl: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Self { key, token } = self;
        let store = Arc::clone(store);
        if !succeeded {
            return run_detached(release(store, key, token), &key, "release");
        }
        let call = Box::pin(async move {
            let call = store.complete(&key, &token, ttl);
            if let Some(result) = settle(call, &key, "complete").await {
                completed(&key, result);
            }
        });
        run_detached(call, &key, "complete")
    }

    /// Releases the reservation of a delivery whose response future was dropped, as
    /// [`finish`](Self::finish) does. Runs inside `Drop`, so it never panics: a store's future
    /// that is not ready at once is polled only on a Tokio runtime; without one, the failure is
    /// logged and the reservation's lease frees the event.
    pub(crate) fn abandon(self, store: &Arc<dyn IdempotencyStore>) {
        let key = self.key;
        // The task, if one is needed, runs on its own; a runtime shutting down drops it
        // unpolled (the lease then frees the event).
        let release = release(Arc::clone(store), self.key, self.token);
        drop(run_detached(release, &key, "release"));
    }
}

/// The current Tokio runtime, or `None` (logged) when there is none to finish a store call on.
fn runtime(key: &IdempotencyKey, operation: &'static str) -> Option<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    if runtime.is_none() {
        crate::observe::store_error(operation);
        crate::observe::error!(
            key = %key.to_hex(),
            "no Tokio runtime to finish an idempotency store call on; \
             the event is retried once its lease runs out"
        );
    }
    runtime
}

/// The answer of a store call: at once if the store knew it, else awaited, but only on a Tokio
/// runtime (a store's timers and sockets need one, and polling them elsewhere could panic).
/// Without one, `None` (logged), and the unfinished future is dropped.
async fn settle<T>(
    call: StoreFuture<'_, T>,
    key: &IdempotencyKey,
    operation: &'static str,
) -> Option<Result<T, StoreError>> {
    if !call.is_ready() {
        runtime(key, operation)?;
    }
    Some(call.await)
}

/// `duration` if it is a lease or TTL every store represents: more than zero, at most
/// [`MAX_DURATION`].
pub(crate) fn checked(duration: Duration, option: &'static str) -> Result<Duration, ConfigError> {
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(ConfigError::InvalidDuration { option });
    }
    Ok(duration)
}

/// Reports the answer to `complete`.
fn completed(key: &IdempotencyKey, result: Result<bool, StoreError>) {
    match result {
        Ok(true) => {}
        Ok(false) => crate::observe::warn!(
            key = %key.to_hex(),
            "the reservation's lease ran out before the handler finished and another \
             delivery took the event over; the event may be processed twice: raise the lease"
        ),
        Err(error) => {
            crate::observe::store_error("complete");
            crate::observe::error!(
                key = %key.to_hex(),
                %error,
                "could not record a handled event; a retry may process it again"
            );
        }
    }
}

/// Reports the answer to `release`.
fn released(key: &IdempotencyKey, result: Result<bool, StoreError>) {
    if let Err(error) = result {
        crate::observe::store_error("release");
        crate::observe::error!(
            key = %key.to_hex(),
            %error,
            "could not release a reservation; the event is retried once its lease runs out"
        );
    }
}

type Detached = Pin<Box<dyn Future<Output = ()> + Send>>;

fn release(store: Arc<dyn IdempotencyStore>, key: IdempotencyKey, token: Token) -> Detached {
    Box::pin(async move {
        if let Some(result) = settle(store.release(&key, &token), &key, "release").await {
            released(&key, result);
        }
    })
}

/// Runs `work` (a store call) to its end even if the caller goes away: polls it once (a store
/// that answers at once finishes right there) and, if it is not done, moves it onto a task of
/// the current runtime. `work` goes pending only after [`settle`] found a runtime.
fn run_detached(
    mut work: Detached,
    key: &IdempotencyKey,
    operation: &'static str,
) -> Option<tokio::task::JoinHandle<()>> {
    let waker = futures_util::task::noop_waker();
    if work
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        return None;
    }
    // A store whose future is pending without needing Tokio, called outside a runtime: it
    // cannot be finished here (logged by `runtime`).
    Some(runtime(key, operation)?.spawn(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_lease_or_ttl_of_zero_or_past_the_maximum() {
        let too_long = MAX_DURATION + Duration::from_millis(1);
        for wrong in [Duration::ZERO, too_long, Duration::MAX] {
            assert!(matches!(
                Idempotency::default().with_lease(wrong),
                Err(ConfigError::InvalidDuration {
                    option: "Idempotency::with_lease"
                })
            ));
            assert!(matches!(
                Idempotency::default().with_ttl(wrong),
                Err(ConfigError::InvalidDuration {
                    option: "Idempotency::with_ttl"
                })
            ));
        }
    }

    #[test]
    fn accepts_a_lease_or_ttl_up_to_the_maximum() {
        for right in [
            Duration::from_nanos(1),
            Duration::from_secs(60),
            MAX_DURATION,
        ] {
            let idempotency = Idempotency::default()
                .with_lease(right)
                .and_then(|idempotency| idempotency.with_ttl(right));
            let idempotency = idempotency
                .ok()
                .map(|idempotency| (idempotency.lease, idempotency.ttl));
            assert_eq!(idempotency, Some((right, right)));
        }
    }
}
