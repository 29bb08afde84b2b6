//! The durable inbox: store each verified delivery once, answer `2xx` as soon as it is
//! committed, and process it later with leases, retries and dead letters.
//!
//! - the layer's inbox mode,
//!   [`WebhookLayerBuilder::with_inbox`](crate::layer::WebhookLayerBuilder::with_inbox): one line
//!   turns a route from handling each delivery inline into storing it once verified and
//!   answering `200` as soon as it is committed;
//! - [`Workers`]: per process (any number of processes), a producer that claims due deliveries
//!   in batches with a lease for up to `N` executors, which hand each to the same service the
//!   route serves inline (an [`EventRouter`](crate::EventRouter) with its state), and a
//!   completer that records their outcomes in batches; with retries (exponential backoff with
//!   jitter), dead letters, lease renewal and a graceful shutdown; an [`Attempt`] in the
//!   request's extensions tells the handler which attempt runs, and lets it complete the
//!   delivery in its own transaction;
//! - the [`InboxBackend`] trait and its written contract, what a stored delivery is
//!   ([`Delivery`], [`Facts`], [`Record`]), and two backends:
//!
//! | backend | feature | for |
//! | --- | --- | --- |
//! | `SqliteInbox` | `sqlite` | one machine: a file in WAL mode, no server |
//! | `PostgresInbox` | `postgres` | several replicas: `FOR UPDATE SKIP LOCKED` claims, leases in the row, the database's clock |
//! | `RedisInbox` | `redis` | several replicas sharing a Redis and no SQL database: a stream and a consumer group, Redis's clock, `appendfsync always` for durability |
//!
//! The handler runs at least once per delivery, and exactly once for effects written in the
//! completion's transaction; deliveries are not processed in order.
//!
//! The SQL backends keep their own schema, created or migrated when they open, under a table-name prefix
//! ([`InboxOptions::with_prefix`], default [`DEFAULT_PREFIX`]) so that it can live in the
//! application's own database (the Redis backend puts the prefix in its key names); each
//! backend lets a handler mark its delivery done inside a transaction that it also writes its
//! effects to (`begin_complete`; on Redis a `WATCH`ed `MULTI`/`EXEC`): the effects and the
//! completion commit together, or neither does. Begun through [`Attempt`], the worker follows
//! it: only its commit marks the delivery done, a completion not committed is a failed attempt
//! whatever the handler answers, and neither an open completion nor work after the commit is
//! stopped by the lease (see [`Attempt`] for what a handler may rely on).
//!
//! With feature `testing`, [`inbox::conformance::check_inbox`](crate::inbox::conformance::check_inbox) checks a
//! backend against the contract; this crate runs it against each of its backends.
//!
//! # Lifecycle of a delivery
//!
//! ```text
//! accept ─► pending ─claim─► running ─complete──► done ─(dedup window)─► pruned
//!              ▲                │ │ └─dead_letter─► dead ─replay─► pending
//!              │                │ └─retry(delay)─► pending, due later
//!              └──release / lease expired──┘
//! ```
//!
//! # What is stored, and what never is
//!
//! What verification produced: the raw body, the verified facts of
//! [`WebhookMeta`](crate::WebhookMeta) ([`Facts`]), the 32-byte
//! [`IdempotencyKey`](crate::idempotency::IdempotencyKey), the request's path (never its query
//! string, which some senders' URLs use for a token), and the headers the scheme read. Never a
//! secret: [`Delivery::new`] drops every header that carries credentials (`Authorization`,
//! `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and any name containing `token`, `secret`,
//! `password`, `api-key` or `apikey`; see [`is_never_stored`]), whatever it is given.

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod backend;
mod delivery;
pub(crate) mod error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod group_commit;
mod options;
mod query;
#[cfg(feature = "redis")]
mod redis;
mod replay;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod view;
mod worker;

#[cfg(feature = "testing")]
pub mod conformance;

pub use self::backend::{
    Accepted, Claim, Finish, InboxBackend, InboxFuture, Lease, Replay, Stats, DEFAULT_DEDUP_WINDOW,
    DEFAULT_SEARCH_SCAN,
};
pub use self::delivery::{
    is_never_stored, Delivery, DeliveryState, Facts, HistoryEntry, HistoryKind, Record, Status,
    UnknownState, HISTORY_LIMIT,
};
pub use self::error::InboxError;
pub use self::options::{InboxOptions, DEFAULT_MAX_DEPTH, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
pub use self::query::{Cursor, Filter, InvalidCursor, Page, MAX_PAGE};
#[cfg(feature = "redis")]
pub use self::redis::{RedisCompletion, RedisInbox};
pub use self::replay::replay;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use self::sql::{Completion, Dialect, SqlInbox};
#[cfg(feature = "postgres")]
pub use self::sql::{PostgresDialect, PostgresInbox};
#[cfg(feature = "sqlite")]
pub use self::sql::{SqliteDialect, SqliteInbox};
pub use self::view::{DeliveryDetail, DeliveryRow, HistoryRow, StatsView};
pub use self::worker::{Attempt, Outcome, Workers, WorkersHandle};
/// The `sqlx` the SQL backends are built on (features `sqlite`, `postgres`): the version a
/// handler's queries in a [`Completion`] must use.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;
