//! A handler's fenced completion: its own Redis commands and the completion in one
//! `MULTI`/`EXEC` on a connection that `WATCH`es the delivery.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{backend, RedisInbox};
use crate::inbox::error::{timed, InboxError};
use crate::inbox::worker::{Attempt, Fence, Tracked};

/// A completion in progress: the handler's commands, queued in a `MULTI`/`EXEC` transaction
/// that also marks the delivery done, on a connection that `WATCH`es the delivery. From
/// [`RedisInbox::begin_complete`] (or [`Attempt::begin_complete`]).
///
/// It dereferences to the [`redis::Pipeline`]: queue commands with its methods
/// (`completion.hincr(...)`, `completion.add_command(...)`), then [`commit`](Self::commit).
/// Dropping it sends nothing (the connection closes, and with it the `WATCH`); begun through
/// an [`Attempt`], the attempt then counts as failed (retried after the backoff) whatever the
/// handler answers, and so does a commit that did not run (`Ok(false)`) or failed.
///
/// Nothing is locked while it is open: the worker goes on renewing the lease (a renewal does
/// not touch the watched hash), and does not stop the handler when the lease runs out (the
/// handler timeout bounds it); if another worker took the delivery over all the same, the
/// commit is refused.
pub struct RedisCompletion {
    pub(super) connection: MultiplexedConnection,
    pub(super) pipeline: redis::Pipeline,
    pub(super) completion: redis::Cmd,
    pub(super) timeout: Duration,
    /// The attempt that began it, when begun through one.
    pub(super) tracked: Option<Tracked>,
}

impl fmt::Debug for RedisCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCompletion").finish_non_exhaustive()
    }
}

impl RedisCompletion {
    /// The transaction's pipeline.
    pub fn pipeline(&mut self) -> &mut redis::Pipeline {
        &mut self.pipeline
    }

    /// Runs the queued commands and the completion in one `MULTI`/`EXEC`. `true` when they
    /// ran; `false` when the delivery changed since [`RedisInbox::begin_complete`] (another
    /// worker took it over after the lease ran out, or it was purged): then nothing ran.
    ///
    /// Redis does not roll a transaction back: a queued command that fails when it runs (a
    /// wrong type, say) fails alone, and the others, the completion included, still apply;
    /// `commit` then returns an error. Queue only commands that cannot fail that way.
    ///
    /// # Errors
    /// [`InboxError::Backend`] or [`InboxError::Timeout`]: whether the transaction ran is then
    /// unknown (if it did not, the delivery is processed again after its lease).
    pub async fn commit(self) -> Result<bool, InboxError> {
        let Self {
            mut connection,
            mut pipeline,
            completion,
            timeout,
            tracked,
        } = self;
        pipeline.add_command(completion);
        let committed = timed(timeout, async move {
            let ran: Option<redis::Value> = pipeline
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            let Some(redis::Value::Array(results)) = ran else {
                return Ok(false);
            };
            match results.last() {
                Some(redis::Value::Int(1)) => Ok(true),
                Some(redis::Value::ServerError(error)) => {
                    Err(InboxError::Backend(format!("{error:?}").into()))
                }
                _ => Ok(false),
            }
        })
        .await;
        if let Some(tracked) = tracked {
            match &committed {
                Ok(true) => tracked.committed(),
                Ok(false) => tracked.abandoned(
                    "completion refused: the delivery changed since it was begun (taken over \
                     or purged); nothing ran"
                        .to_owned(),
                ),
                Err(error) => tracked.abandoned(format!("completion commit failed: {error}")),
            }
        }
        committed
    }

    /// This completion, followed by the attempt that began it.
    fn tracked(mut self, tracked: Tracked) -> Self {
        self.tracked = Some(tracked);
        self
    }
}

impl Deref for RedisCompletion {
    type Target = redis::Pipeline;

    fn deref(&self) -> &Self::Target {
        &self.pipeline
    }
}

impl DerefMut for RedisCompletion {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.pipeline
    }
}

impl Attempt<RedisInbox> {
    /// [`RedisInbox::begin_complete`] for this attempt's lease, followed by the worker: the
    /// delivery is done only if the completion commits (see [`Attempt`]).
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(&self) -> Result<Option<RedisCompletion>, InboxError> {
        self.begin(
            Fence::Watch,
            self.backend().begin_complete(self.lease()),
            RedisCompletion::tracked,
        )
        .await
    }
}
