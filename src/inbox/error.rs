//! [`InboxError`], and the one copy of the helpers every backend (the inboxes', the Redis
//! store's) maps its failures with.

#[cfg(doc)]
use super::InboxOptions;
use crate::error::StorageError;

/// An inbox could not answer: the [`StorageError`] that stores report too. The layer answers
/// `503` with `Retry-After` to an accept that failed (`inbox_full` when the inbox is
/// [`Full`](StorageError::Full), past [`InboxOptions::with_max_depth`]; `inbox_unavailable`
/// otherwise), so the sender retries; a worker tries again later.
pub type InboxError = StorageError;

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
