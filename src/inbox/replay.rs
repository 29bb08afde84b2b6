//! Replaying a delivery as the admin tools do: through the backend, counted in the metrics.

use crate::idempotency::IdempotencyKey;

use super::backend::{InboxBackend, Replay};
use super::error::InboxError;

/// Replays the delivery stored under `key` as [`InboxBackend::replay`] does (a dead one, or with
/// [`Replay::DeadOrDone`] a done one, made pending and due now, its attempts reset), and, when
/// it did, counts it in `webhook_inbox_replayed_total{inbox}` (feature `metrics`; see
/// [`observe`](crate::observe)). Returns whether it did.
///
/// The admin tools replay through it, so that replays show in the metrics of the process that
/// made them; `inbox` is the inbox's name, the one its [`Workers`](super::Workers) and layer
/// were given ([`DEFAULT_INBOX_NAME`](crate::observe::DEFAULT_INBOX_NAME) unless named): a
/// name the application chose, never a value that comes with requests. A replay made by
/// calling the backend directly is not counted.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn run(inbox: tower_webhook::inbox::SqliteInbox, key: tower_webhook::idempotency::IdempotencyKey)
/// # -> Result<(), tower_webhook::inbox::InboxError> {
/// use tower_webhook::inbox::{self, Replay};
/// use tower_webhook::observe::DEFAULT_INBOX_NAME;
///
/// if inbox::replay(&inbox, &key, Replay::Dead, DEFAULT_INBOX_NAME).await? {
///     println!("replayed: due now");
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`InboxBackend::replay`].
pub async fn replay<B: InboxBackend + ?Sized>(
    backend: &B,
    key: &IdempotencyKey,
    from: Replay,
    inbox: &str,
) -> Result<bool, InboxError> {
    let replayed = backend.replay(key, from).await?;
    if replayed {
        crate::observe::inbox_replayed(inbox);
    }
    Ok(replayed)
}
