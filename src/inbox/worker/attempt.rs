//! The attempt a worker runs, as its handler sees it ([`Attempt`]), and how the executor follows
//! the handler's own completion (`begin_complete`): open, committed, or dropped.

use std::fmt;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::super::backend::Lease;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use super::super::error::InboxError;

/// A completion begun (`Attempt::begin_complete`) and dropped without a commit: the attempt's
/// error.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
const DROPPED: &str =
    "completion dropped without commit: the handler's writes in it were rolled back";

/// The attempt an inbox worker is running, in the request's extensions of every delivery it
/// hands to the service: which attempt it is, its [`Lease`], and the backend, so a handler can
/// record its outcome itself.
///
/// `begin_complete` (on `Attempt<SqliteInbox>`, `Attempt<PostgresInbox>` and
/// `Attempt<RedisInbox>`) marks the delivery done in a transaction the handler writes its
/// effects to: both commit together, or neither. What the handler may rely on:
///
/// - **Committed** (`commit` returned `Ok`; on Redis `Ok(true)`): the delivery is done with its
///   effects, whatever the handler answers or does after; the handler runs to its end (bounded
///   by the handler timeout, not by the lease), and the attempt is reported
///   [`Outcome::Done`](super::Outcome::Done).
/// - **Not committed**: dropped without `commit` (an early return, a `?`), rolled back, a
///   commit that failed or was refused (Postgres: a statement failed in the transaction, even
///   one whose error the handler ignored, aborts it, and `commit` then returns an error rather
///   than report the `ROLLBACK` it would be answered as committed): the effects were not
///   written, so the attempt **failed**, even when the handler answers `2xx`. It is retried after
///   the backoff (dead-lettered after the last attempt), with the reason as its last error, and
///   a warning is logged. Once a completion was begun, the worker never marks the delivery done
///   by itself.
/// - **Long completions**: while a completion is open the lease does not stop the handler (the
///   handler timeout does). On `SQLite` and Postgres the completion holds the delivery (its
///   row lock on Postgres, the write lock on `SQLite`), so no other worker can claim it, and
///   no renewal is sent to wait on it; on Redis the lease is still renewed, and a completion
///   whose delivery was taken over all the same (renewals failing) is refused at commit. Keep
///   completions short all the same: on `SQLite` the write lock holds up every other writer
///   (accepts wait, and are answered `503` past the inbox's timeout), the other running
///   deliveries' lease renewals included: a completion held past the inbox's timeout or about
///   half the lease makes their handlers lose their leases (stopped, retried).
/// - **A commit whose answer was lost** (an error that leaves the result unknown): the attempt
///   counts as failed; recording it is then refused if the commit took effect, and the worker
///   reads the delivery again and reports it done.
///
/// An axum handler takes it as `Extension<Attempt<SqliteInbox>>` (with the backend type the
/// workers were started with); it is absent in inline mode. A completion begun through the
/// backend's own `begin_complete` (with [`lease`](Self::lease)) is not followed by the worker:
/// a `2xx` then makes the worker mark the delivery done unless the completion committed.
pub struct Attempt<B> {
    pub(super) backend: Arc<B>,
    pub(super) lease: Lease,
    pub(super) max_attempts: u32,
    pub(super) progress: Arc<watch::Sender<Progress>>,
}

impl<B> Clone for Attempt<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            lease: self.lease.clone(),
            max_attempts: self.max_attempts,
            progress: Arc::clone(&self.progress),
        }
    }
}

impl<B> fmt::Debug for Attempt<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<B> Attempt<B> {
    /// Which attempt this is: 1 for the first.
    #[must_use]
    pub fn number(&self) -> u32 {
        self.lease.attempt()
    }

    /// Whether this is the last attempt: if it fails, the delivery is dead-lettered.
    #[must_use]
    pub fn is_last(&self) -> bool {
        self.lease.attempt() >= self.max_attempts
    }

    /// The lease the worker holds on the delivery (its key is the delivery's).
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The backend the delivery is stored in.
    #[must_use]
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs `begin` (the backend's `begin_complete` for this attempt's lease) as this attempt's
    /// completion, which holds the delivery as `fence` says; `track` hands the completion its
    /// [`Tracked`]. A completion not begun (`None`, an error) leaves the attempt failed unless
    /// another one commits.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    pub(crate) async fn begin<C>(
        &self,
        fence: Fence,
        begin: impl Future<Output = Result<Option<C>, InboxError>>,
        track: impl FnOnce(C, Tracked) -> C,
    ) -> Result<Option<C>, InboxError> {
        // Open before it is begun: the delivery is locked as soon as it is marked done.
        self.progress.send_modify(|progress| {
            progress.open += 1;
            progress.fence = fence;
        });
        let tracked = Tracked {
            progress: Arc::clone(&self.progress),
            ended: false,
        };
        match begin.await {
            Ok(Some(completion)) => Ok(Some(track(completion, tracked))),
            Ok(None) => {
                tracked.abandoned(
                    "completion not begun: the delivery was no longer this attempt's".to_owned(),
                );
                Ok(None)
            }
            Err(error) => {
                tracked.abandoned(format!("completion not begun: {error}"));
                Err(error)
            }
        }
    }
}

/// What an attempt's handler did with its own completion, shared by its [`Attempt`] (and the
/// completions begun through it) and the worker running it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Completions begun and not ended (normally 0 or 1).
    pub(super) open: u32,
    /// How the last completion begun holds the delivery.
    pub(super) fence: Fence,
    /// A completion committed: the delivery is done.
    pub(super) committed: bool,
    /// Why the last completion that ended was not committed.
    pub(super) abandoned: Option<String>,
}

/// How an open completion holds its delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "redis", any(feature = "sqlite", feature = "postgres"))),
    allow(dead_code)
)] // each backend uses its own
pub(crate) enum Fence {
    /// It locks the delivery (Postgres: its row; `SQLite`: the database's write lock): no
    /// other claim can take it, and a renewal would wait on the lock.
    #[default]
    Lock,
    /// It watches the delivery (Redis `WATCH`): renewals go on, and a takeover makes the commit
    /// fail.
    Watch,
}

/// One completion an attempt began, as its worker follows it: open until committed or
/// abandoned; dropped, it was abandoned ("completion dropped without commit").
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[derive(Debug)]
pub(crate) struct Tracked {
    progress: Arc<watch::Sender<Progress>>,
    ended: bool,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl Tracked {
    /// The completion committed: the delivery is done.
    pub(crate) fn committed(mut self) {
        self.end(None);
    }

    /// The completion ended without a commit, for this reason.
    pub(crate) fn abandoned(mut self, why: String) {
        self.end(Some(why));
    }

    fn end(&mut self, abandoned: Option<String>) {
        self.ended = true;
        self.progress.send_modify(|progress| {
            progress.open = progress.open.saturating_sub(1);
            match abandoned {
                None => progress.committed = true,
                Some(why) => progress.abandoned = Some(why),
            }
        });
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ended {
            self.end(Some(DROPPED.to_owned()));
        }
    }
}

#[cfg(feature = "sqlite")]
impl Attempt<crate::inbox::SqliteInbox> {
    /// [`SqliteInbox::begin_complete`](crate::inbox::SqliteInbox::begin_complete) for this
    /// attempt's lease, followed by the worker: the delivery is done only if the completion
    /// commits (see [`Attempt`]).
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<crate::inbox::Completion<sqlx::Sqlite>>, InboxError> {
        self.begin(
            Fence::Lock,
            self.backend.begin_complete(&self.lease),
            crate::inbox::Completion::tracked,
        )
        .await
    }
}

#[cfg(feature = "postgres")]
impl Attempt<crate::inbox::PostgresInbox> {
    /// [`PostgresInbox::begin_complete`](crate::inbox::PostgresInbox::begin_complete) for this
    /// attempt's lease, followed by the worker: the delivery is done only if the completion
    /// commits (see [`Attempt`]).
    ///
    /// # Errors
    /// As `begin_complete`.
    pub async fn begin_complete(
        &self,
    ) -> Result<Option<crate::inbox::Completion<sqlx::Postgres>>, InboxError> {
        self.begin(
            Fence::Lock,
            self.backend.begin_complete(&self.lease),
            crate::inbox::Completion::tracked,
        )
        .await
    }
}
