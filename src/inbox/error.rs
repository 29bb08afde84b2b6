//! [`InboxError`], and the one copy of the helpers every backend maps its failures with.

#[cfg(doc)]
use super::InboxOptions;

/// An inbox could not answer. The layer answers `503` with `Retry-After` to an accept that
/// failed, so the sender retries; a worker tries again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The backend (the database, ...) failed or could not be reached, or holds a row it cannot
    /// read.
    #[error("inbox backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The backend did not answer within the configured timeout. The call may still take
    /// effect: an accept that timed out may have stored the delivery (its retry is then a
    /// duplicate, and the delivery is processed once).
    #[error("inbox timed out")]
    Timeout,
    /// The inbox holds as many waiting deliveries as it may ([`InboxOptions::with_max_depth`]):
    /// backpressure, the delivery was not stored (never dropped after an acknowledgement).
    #[error("inbox is full")]
    Full,
}

/// `future`, or [`InboxError::Timeout`] after `timeout`.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) async fn timed<T>(
    timeout: std::time::Duration,
    future: impl std::future::Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or(Err(InboxError::Timeout))
}

/// Any error of the backend's, as [`InboxError::Backend`].
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn backend(error: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Backend(Box::new(error))
}

/// A stored value the backend cannot read, as [`InboxError::Backend`] saying what is wrong.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn corrupt(message: &'static str) -> InboxError {
    InboxError::Backend(message.into())
}
