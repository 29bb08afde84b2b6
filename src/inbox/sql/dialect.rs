//! What tells the two SQL backends apart, behind [`SqlInbox`]'s one implementation: the
//! database `sqlx` speaks to, and the few steps each does its own way (`SQLite` writes a batch
//! of accepts, or of outcomes, statement by statement in one `BEGIN IMMEDIATE` transaction;
//! `PostgreSQL` writes each batch in one statement over arrays and wakes other processes with
//! `NOTIFY`).

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::writer::{Row, Target};
use super::SqlInbox;
use crate::inbox::backend::{Accepted, Finish, InboxFuture, Lease};
use crate::inbox::error::InboxError;

/// A SQL database the inbox runs on: [`SqliteDialect`](super::SqliteDialect) or
/// [`PostgresDialect`](super::PostgresDialect). Sealed: the inbox's statements are written for
/// these two. A value of it holds what the backend keeps beside its pool (the wake-ups, the
/// `LISTEN` connection).
pub trait Dialect: sealed::Sealed + Clone + Send + Sync + Sized + 'static {
    /// The `sqlx` database.
    type Database: sqlx::Database;

    /// The backend's name, for `Debug` (`SqliteInbox`, `PostgresInbox`).
    const NAME: &'static str;

    /// How many rows a statement changed.
    #[doc(hidden)]
    fn rows_affected(result: &<Self::Database as sqlx::Database>::QueryResult) -> u64;

    /// The group commit's write: the non-empty batch `rows` in one transaction, committed
    /// before it returns, each row's answer in order (new; a duplicate, of a delivery stored
    /// before or earlier in the batch, with its state; full, the depth limit checked exactly
    /// for the batch), or the error that failed the whole batch (nothing of it committed, or,
    /// for an error of the commit itself, unknown).
    #[doc(hidden)]
    fn write_accepts<'a>(
        target: &'a Target<Self>,
        rows: &'a [Row],
    ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>>;

    /// A delivery was committed as due (an accept, a replay): wakes the producers waiting.
    #[doc(hidden)]
    fn due(inbox: &SqlInbox<Self>);

    /// Waits until a delivery may be due, or `timeout`.
    #[doc(hidden)]
    fn wait_for_work(inbox: &SqlInbox<Self>, timeout: Duration) -> BoxFuture<'_, ()>;

    /// `finish` of a non-empty batch, in one transaction.
    #[doc(hidden)]
    fn finish_batch<'a>(
        inbox: &'a SqlInbox<Self>,
        outcomes: &'a [(Lease, Finish)],
    ) -> InboxFuture<'a, Vec<bool>>;

    /// `renew_all` of a non-empty batch: the (key, owner) pairs renewed, or still the owners'.
    #[doc(hidden)]
    fn renew_batch<'a>(
        inbox: &'a SqlInbox<Self>,
        leases: &'a [Lease],
        duration_ms: i64,
    ) -> InboxFuture<'a, Vec<(Vec<u8>, String)>>;
}

pub(super) mod sealed {
    /// Keeps [`Dialect`](super::Dialect) to this crate's two databases.
    pub trait Sealed {}
}
