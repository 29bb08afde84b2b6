//! What tells the two SQL backends apart, behind [`SqlInbox`]'s one implementation: the
//! database `sqlx` speaks to, and the few steps each does its own way (`SQLite` accepts through
//! its group commit's writer and records a batch of outcomes statement by statement in one
//! `BEGIN IMMEDIATE` transaction; `PostgreSQL` records them in one statement over arrays and
//! wakes other processes with `NOTIFY`).

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::SqlInbox;
use crate::inbox::backend::{Accepted, Finish, InboxFuture, Lease};
use crate::inbox::delivery::Delivery;

/// A SQL database the inbox runs on: [`SqliteDialect`](super::SqliteDialect) or
/// [`PostgresDialect`](super::PostgresDialect). Sealed: the inbox's statements are written for
/// these two. A value of it holds what the backend keeps beside its pool (the group commit's
/// writer, the `LISTEN` connection).
pub trait Dialect: sealed::Sealed + Clone + Send + Sync + Sized + 'static {
    /// The `sqlx` database.
    type Database: sqlx::Database;

    /// The backend's name, for `Debug` (`SqliteInbox`, `PostgresInbox`).
    const NAME: &'static str;

    /// How many rows a statement changed.
    #[doc(hidden)]
    fn rows_affected(result: &<Self::Database as sqlx::Database>::QueryResult) -> u64;

    /// The accept, when the backend has its own way (`SQLite`'s group commit); `None`: one
    /// transaction per accept.
    #[doc(hidden)]
    fn grouped_accept<'a>(
        inbox: &'a SqlInbox<Self>,
        delivery: &'a Delivery,
    ) -> Option<InboxFuture<'a, Accepted>>;

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
