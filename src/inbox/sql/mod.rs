//! The SQL backends: [`SqlInbox`], the one implementation of [`InboxBackend`] over a
//! [`Dialect`] ([`SqliteInbox`], [`PostgresInbox`]), and what it reads and writes: how a row
//! becomes a [`Record`], how headers and history are written, how a [`Filter`] becomes a query,
//! and the transaction a handler completes its delivery in.

mod dialect;
#[cfg(feature = "postgres")]
mod pg_notify;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod wake;
mod writer;

pub use self::dialect::Dialect;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresDialect, PostgresInbox};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteDialect, SqliteInbox};

use std::fmt::Write as _;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use sqlx::Row;

use crate::idempotency::{IdempotencyKey, Token, MAX_DURATION};
use crate::inbox::backend::{
    Accepted, Claim, Finish, InboxBackend, InboxFuture, Lease, Replay, Stats,
};
use crate::inbox::delivery::{
    Delivery, DeliveryState, Facts, HistoryEntry, HistoryKind, Record, Status, HISTORY_LIMIT,
};
use crate::inbox::error::{backend, corrupt, timed, InboxError};
use crate::inbox::options::InboxOptions;
use crate::inbox::query::{Filter, Page};
use crate::inbox::worker::Tracked;

use self::writer::{Target, Writer};

/// A delivery's row as both SQL backends select it (times in milliseconds since the Unix
/// epoch, but the time accepted in microseconds: the admin order's cursor is read back from it
/// exactly as stored, milliseconds on `SQLite`, microseconds on Postgres).
pub(super) struct RawRecord {
    pub(super) key: Vec<u8>,
    pub(super) state: String,
    pub(super) attempts: i64,
    pub(super) last_error: Option<String>,
    pub(super) accepted_us: i64,
    pub(super) due_ms: i64,
    pub(super) finished_ms: Option<i64>,
    pub(super) path: String,
    pub(super) headers: String,
    pub(super) body: Vec<u8>,
    pub(super) scheme: String,
    pub(super) event_id: String,
    pub(super) event: Option<String>,
    pub(super) action: Option<String>,
    pub(super) delivery: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) signed_at: Option<String>,
    pub(super) version: Option<String>,
    /// The history as stored (a JSON array); `None` when it could not be read as text.
    pub(super) history: Option<String>,
}

impl RawRecord {
    pub(super) fn into_record(self) -> Result<Record, InboxError> {
        let key: [u8; 32] = self
            .key
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("a key is not 32 bytes"))?;
        let state = self.state.parse::<DeliveryState>().map_err(backend)?;
        let timestamp = self
            .signed_at
            .map(|text| OffsetDateTime::parse(&text, &Rfc3339))
            .transpose()
            .map_err(backend)?;
        let facts = Facts {
            scheme: self.scheme,
            id: self.event_id,
            event: self.event,
            action: self.action,
            delivery: self.delivery,
            scope: self.scope,
            tenant: self.tenant,
            timestamp,
            version: self.version,
        };
        Ok(Record {
            delivery: Delivery {
                key: IdempotencyKey::from_bytes(key),
                facts,
                path: self.path,
                headers: decode_headers(&self.headers)?,
                body: Bytes::from(self.body),
            },
            state,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            last_error: self.last_error,
            accepted_at: from_us(self.accepted_us)?,
            due_at: from_ms(self.due_ms)?,
            finished_at: self.finished_ms.map(from_ms).transpose()?,
            history: self
                .history
                .as_deref()
                .map(decode_history)
                .unwrap_or_default(),
        })
    }
}

/// The signed timestamp as stored: RFC 3339 text.
pub(super) fn signed_at(facts: &Facts) -> Result<Option<String>, InboxError> {
    facts
        .timestamp
        .map(|timestamp| timestamp.format(&Rfc3339))
        .transpose()
        .map_err(backend)
}

/// Headers as stored: a JSON array of `[name, value]` pairs, the value a string when it is
/// UTF-8 and an array of byte values otherwise.
pub(super) fn encode_headers(headers: &[(HeaderName, HeaderValue)]) -> String {
    let pairs: Vec<serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(text) => serde_json::Value::from(text),
                Err(_) => serde_json::Value::from(value.as_bytes()),
            };
            serde_json::Value::Array(vec![name.as_str().into(), value])
        })
        .collect();
    serde_json::Value::Array(pairs).to_string()
}

fn decode_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, InboxError> {
    let pairs: Vec<(String, serde_json::Value)> = serde_json::from_str(text).map_err(backend)?;
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(backend)?;
            let value = match value {
                serde_json::Value::String(text) => HeaderValue::from_str(&text).map_err(backend)?,
                other => {
                    let bytes: Vec<u8> = serde_json::from_value(other).map_err(backend)?;
                    HeaderValue::from_bytes(&bytes).map_err(backend)?
                }
            };
            Ok((name, value))
        })
        .collect()
}

/// Milliseconds since the Unix epoch as a time.
fn from_ms(ms: i64) -> Result<OffsetDateTime, InboxError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(backend)
}

/// Microseconds since the Unix epoch as a time.
fn from_us(us: i64) -> Result<OffsetDateTime, InboxError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(backend)
}

/// A history as stored: a JSON array of `{"attempt", "kind", "error", "at"}` objects (`at` in
/// milliseconds since the Unix epoch), oldest first. What cannot be read (not JSON, not an
/// array, an entry of an unknown kind or without its fields) is left out rather than make the
/// delivery unreadable: a history is for the operators, the delivery's state is in its columns.
pub(super) fn decode_history(text: &str) -> Vec<HistoryEntry> {
    // Each entry read on its own: one that does not (a number out of a double's range) is
    // left out alone.
    let Ok(entries) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) else {
        return Vec::new();
    };
    let mut history: Vec<HistoryEntry> = entries
        .iter()
        .filter_map(|entry| serde_json::from_str::<serde_json::Value>(entry.get()).ok())
        .filter_map(|entry| {
            let attempt = u32::try_from(entry.get("attempt")?.as_u64()?).ok()?;
            let kind = HistoryKind::from_name(entry.get("kind")?.as_str()?)?;
            let at = from_ms(entry.get("at")?.as_i64()?).ok()?;
            let mut read = HistoryEntry::new(attempt, kind, at);
            read.error = entry
                .get("error")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            Some(read)
        })
        .collect();
    let extra = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..extra);
    history
}

/// How a backend writes times in its queries: as integers of `unit_ns` nanoseconds (`SQLite`:
/// milliseconds; Postgres: microseconds), each parameter wrapped in `before` and `after` to
/// make it the column's type.
pub(super) struct TimeParam {
    pub(super) unit_ns: i128,
    pub(super) before: &'static str,
    pub(super) after: &'static str,
}

/// The `WHERE` clause of a [`Filter`] (the page's size apart), as a backend writes it: text and
/// parameters, pushed in order onto the query being built.
pub(super) enum Part {
    /// SQL text.
    Sql(&'static str),
    /// A text parameter.
    Text(String),
    /// A key parameter (32 bytes).
    Key(Vec<u8>),
    /// A time parameter, in the backend's unit (to be wrapped as [`TimeParam`] says).
    Time(i64),
}

/// The conditions of `filter` on a deliveries table whose times are written as `time` says:
/// the status (a pending one told apart by its attempts), the event type, the event id, the
/// time accepted (`since`), and the position after the cursor (`(accepted_at, key) > cursor`,
/// written so that the index on `(state, accepted_at)` bounds the scan). A time between two of
/// the backend's units is rounded so that no row is skipped or repeated: `since` up, and a
/// cursor between two units means every row of the unit it is in comes before it.
pub(super) fn filter_parts(filter: &Filter, time: &TimeParam) -> Vec<Part> {
    fn and(parts: &mut Vec<Part>) {
        parts.push(Part::Sql(if parts.is_empty() {
            " WHERE "
        } else {
            " AND "
        }));
    }
    let mut parts = Vec::new();
    if let Some(status) = filter.status {
        and(&mut parts);
        parts.push(Part::Sql("state = "));
        parts.push(Part::Text(status.state().as_str().to_owned()));
        match status {
            Status::Waiting => parts.push(Part::Sql(" AND attempts = 0")),
            Status::Retrying => parts.push(Part::Sql(" AND attempts > 0")),
            _ => {}
        }
    }
    if let Some(event) = &filter.event {
        and(&mut parts);
        parts.push(Part::Sql("event = "));
        parts.push(Part::Text(event.clone()));
    }
    if let Some(id) = &filter.id {
        and(&mut parts);
        parts.push(Part::Sql("event_id = "));
        parts.push(Part::Text(id.clone()));
    }
    if let Some(since) = filter.since {
        let (units, exact) = in_units(since, time.unit_ns);
        and(&mut parts);
        parts.push(Part::Sql("accepted_at >= "));
        parts.push(Part::Time(if exact {
            units
        } else {
            units.saturating_add(1)
        }));
    }
    if let Some(after) = &filter.after {
        let (units, exact) = in_units(after.accepted_at, time.unit_ns);
        and(&mut parts);
        if exact {
            parts.push(Part::Sql("accepted_at >= "));
            parts.push(Part::Time(units));
            parts.push(Part::Sql(" AND (accepted_at > "));
            parts.push(Part::Time(units));
            parts.push(Part::Sql(" OR key > "));
            parts.push(Part::Key(after.key.as_bytes().to_vec()));
            parts.push(Part::Sql(")"));
        } else {
            parts.push(Part::Sql("accepted_at > "));
            parts.push(Part::Time(units));
        }
    }
    parts
}

/// `at` in whole units of `unit_ns` nanoseconds since the Unix epoch, rounded down, and whether
/// that was exact (bounded to what SQL takes).
fn in_units(at: OffsetDateTime, unit_ns: i128) -> (i64, bool) {
    let nanos = at.unix_timestamp_nanos();
    let units = nanos.div_euclid(unit_ns);
    let exact = nanos.rem_euclid(unit_ns) == 0;
    match i64::try_from(units) {
        Ok(units) => (units, exact),
        Err(_) if units < 0 => (i64::MIN, false),
        Err(_) => (i64::MAX, true),
    }
}

/// A duration in whole milliseconds (rounded up), at most 100 years, for SQL arithmetic.
pub(super) fn millis(duration: Duration) -> i64 {
    let ms = duration.min(MAX_DURATION).as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A failed attempt's error as stored: a NUL byte (a handler's answer may hold one; a Postgres
/// `text` column refuses it, and the outcome would be lost) becomes U+FFFD.
pub(super) fn error_text(error: &str) -> std::borrow::Cow<'_, str> {
    if error.contains('\0') {
        std::borrow::Cow::Owned(error.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(error)
    }
}

/// How many done deliveries one `prune` statement removes at most (each batch is its own short
/// transaction, so that a large backlog never holds the database for long).
pub(super) const PRUNE_BATCH: usize = 1000;

/// A `LIMIT` as SQL takes it.
pub(super) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A `sqlx` error: waiting too long for a pooled connection is a timeout.
pub(super) fn sql(error: sqlx::Error) -> InboxError {
    match error {
        sqlx::Error::PoolTimedOut => InboxError::Timeout,
        other => backend(other),
    }
}

/// A delivery marked done inside a database transaction that the handler writes its own effects
/// to: the effects and the completion commit together, or neither does (the inbox pattern).
/// From `SqliteInbox::begin_complete` or `PostgresInbox::begin_complete` (through
/// [`Attempt::begin_complete`](crate::inbox::Attempt) in a handler, so that the worker follows it).
///
/// It dereferences to the transaction's connection, so queries run on it with
/// `.execute(&mut *completion)`, as on a `sqlx::Transaction`. [`commit`](Self::commit) makes
/// both durable, and says so only when both were committed; dropping it (or
/// [`rollback`](Self::rollback)) undoes both, and the delivery stays running, still its
/// owner's: begun through an `Attempt`, the attempt then counts as failed (retried after the
/// backoff) whatever the handler answers.
///
/// The delivery's row is written (and so locked) from the start, and the transaction holds a
/// pooled connection. While it is open, no other worker can claim the delivery (Postgres's
/// claims skip locked rows; `SQLite`'s wait for the write lock), and the worker neither renews
/// the lease (a renewal would wait on the lock) nor stops the handler when the lease runs out:
/// the handler timeout bounds it. Keep it short all the same: on `SQLite` it holds the whole
/// database's write lock until it ends, so accepts, claims and the other running deliveries'
/// lease renewals wait for it (up to the inbox's timeout, after which an accept is answered
/// `503` and a renewal fails: another handler whose lease runs out meanwhile is stopped and
/// retried).
pub struct Completion<DB: sqlx::Database> {
    transaction: sqlx::Transaction<'static, DB>,
    timeout: Duration,
    /// Reads, in the transaction, whether the delivery is still marked done in it.
    check: Check<DB>,
    /// The attempt that began it, when begun through one.
    tracked: Option<Tracked>,
}

/// A [`Completion`]'s check before its commit: whether the delivery is marked done in the
/// transaction, read on its connection.
pub(super) type Check<DB> = Box<
    dyn for<'c> FnOnce(
            &'c mut <DB as sqlx::Database>::Connection,
        ) -> BoxFuture<'c, Result<bool, sqlx::Error>>
        + Send,
>;

/// `check` as a [`Check`] (which its type needs to be inferred).
pub(super) fn check<DB, F>(check: F) -> Check<DB>
where
    DB: sqlx::Database,
    F: for<'c> FnOnce(&'c mut DB::Connection) -> BoxFuture<'c, Result<bool, sqlx::Error>>
        + Send
        + 'static,
{
    Box::new(check)
}

impl<DB: sqlx::Database> std::fmt::Debug for Completion<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl<DB: sqlx::Database> Completion<DB> {
    pub(super) fn new(
        transaction: sqlx::Transaction<'static, DB>,
        timeout: Duration,
        check: Check<DB>,
    ) -> Self {
        Self {
            transaction,
            timeout,
            check,
            tracked: None,
        }
    }

    /// This completion, followed by the attempt that began it.
    pub(crate) fn tracked(mut self, tracked: Tracked) -> Self {
        self.tracked = Some(tracked);
        self
    }

    /// The transaction itself.
    pub fn transaction(&mut self) -> &mut sqlx::Transaction<'static, DB> {
        &mut self.transaction
    }

    /// Commits the handler's writes and the completion together, once it has read, in the
    /// transaction, that the delivery is still marked done in it.
    ///
    /// That read is what tells a transaction that can no longer commit: Postgres aborts a
    /// transaction in which a statement failed (even one whose error the handler ignored, such
    /// as an insert of a duplicate) and answers its `COMMIT` with `ROLLBACK`, which `sqlx` does
    /// not report as an error; `SQLite` rolls the whole transaction back on some errors. Such a
    /// completion is rolled back and `commit` returns an error: nothing in it was committed.
    ///
    /// On `SQLite`, an error that rolls the whole transaction back (`INSERT OR ROLLBACK`, a
    /// `RAISE(ROLLBACK)` in a trigger, a full disk) ends it at once: a statement run on the
    /// completion after that is no longer in it, and `SQLite` commits it on its own. Stop at
    /// the first error of such statements rather than ignore it.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the transaction was aborted or rolled back (nothing
    /// committed); [`InboxError::Backend`] or [`InboxError::Timeout`] when the commit itself
    /// failed: whether it took effect is then unknown, as with any database commit whose
    /// answer was lost (if it did not, the delivery is processed again; if it did, the delivery
    /// is done).
    pub async fn commit(mut self) -> Result<(), InboxError> {
        let tracked = self.tracked.take();
        let Self {
            mut transaction,
            timeout,
            check,
            ..
        } = self;
        let committed = timed(timeout, async move {
            match check(&mut transaction).await {
                Ok(true) => transaction.commit().await.map_err(sql),
                Ok(false) => {
                    let _ = transaction.rollback().await;
                    Err(InboxError::Backend(
                        "the completion's transaction was rolled back (the delivery is no \
                         longer marked done in it): nothing was committed"
                            .into(),
                    ))
                }
                Err(error) => {
                    let _ = transaction.rollback().await;
                    Err(InboxError::Backend(
                        format!(
                            "the completion's transaction cannot commit (a statement failed in \
                             it?): nothing was committed: {error}"
                        )
                        .into(),
                    ))
                }
            }
        })
        .await;
        if let Some(tracked) = tracked {
            match &committed {
                Ok(()) => tracked.committed(),
                Err(error) => tracked.abandoned(format!("completion commit failed: {error}")),
            }
        }
        committed
    }

    /// Undoes the handler's writes and the completion (begun through an `Attempt`, the attempt
    /// then counts as failed).
    ///
    /// # Errors
    /// [`InboxError::Backend`] or [`InboxError::Timeout`] (the database then undoes the
    /// transaction when the connection closes).
    pub async fn rollback(mut self) -> Result<(), InboxError> {
        if let Some(tracked) = self.tracked.take() {
            tracked.abandoned(
                "completion rolled back: the handler's writes in it were undone".to_owned(),
            );
        }
        let transaction = self.transaction;
        timed(self.timeout, async move {
            transaction.rollback().await.map_err(sql)
        })
        .await
    }
}

impl<DB: sqlx::Database> Deref for Completion<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.transaction
    }
}

impl<DB: sqlx::Database> DerefMut for Completion<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.transaction
    }
}

/// A durable inbox in a SQL database: the one implementation of [`InboxBackend`] that
/// [`SqliteInbox`] and [`PostgresInbox`] are instances of, over their [`Dialect`]. Open one
/// through those names; see them for the schema and the guarantees.
pub struct SqlInbox<D: Dialect> {
    pool: sqlx::Pool<D::Database>,
    options: InboxOptions,
    sql: Arc<Statements>,
    /// The group commit's writer, shared by the clones.
    writer: Writer<D>,
    /// What the backend keeps beside its pool (shared by the clones).
    parts: D,
}

impl<D: Dialect> Clone for SqlInbox<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            options: self.options.clone(),
            sql: Arc::clone(&self.sql),
            writer: self.writer.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<D: Dialect> SqlInbox<D> {
    /// The inbox on `pool` (its schema in place), its accept writer started on the current
    /// Tokio runtime; `wake` wakes the producers after a batch of accepts committed.
    fn assemble(
        pool: sqlx::Pool<D::Database>,
        options: InboxOptions,
        sql: Statements,
        parts: D,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let sql = Arc::new(sql);
        let target: Target<D> = Target {
            pool: pool.clone(),
            sql: Arc::clone(&sql),
            max_depth: i64::try_from(options.max_depth()).unwrap_or(i64::MAX),
        };
        let writer = Writer::start(target, 1, options.timeout(), wake);
        Self {
            pool,
            options,
            sql,
            writer,
            parts,
        }
    }

    /// How many transactions this inbox's accept writer has committed since the inbox opened
    /// (shared by its clones; other processes' writers not counted): the deliveries accepted
    /// divided by it is the group commit's average batch.
    #[must_use]
    pub fn accept_commits(&self) -> u64 {
        self.writer.commits()
    }
}

impl<D: Dialect> std::fmt::Debug for SqlInbox<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(D::NAME)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The statements of a SQL backend, written once per inbox for its dialect and prefix.
pub(super) struct Statements {
    pub(super) accept: String,
    /// The state of the delivery `$1`, and the depth.
    pub(super) state_of: String,
    pub(super) claim: String,
    pub(super) renew: String,
    /// `renew` of many leases.
    pub(super) renew_all: String,
    pub(super) complete: String,
    /// Whether the delivery (`$1`) is done, read in a completion's transaction before it
    /// commits.
    pub(super) completed: String,
    pub(super) retry: String,
    pub(super) dead_letter: String,
    pub(super) release: String,
    /// The outcomes of many leases in one statement (`SQLite` runs the single statements in
    /// one transaction instead).
    #[cfg(feature = "postgres")]
    pub(super) finish: String,
    pub(super) list: String,
    pub(super) get: String,
    /// The start of `search`'s query: the conditions, the order and the limit follow.
    pub(super) search: String,
    /// How the deliveries' times are written in queries.
    pub(super) time: TimeParam,
    pub(super) replay_dead: String,
    pub(super) replay_dead_or_done: String,
    pub(super) purge: String,
    pub(super) prune: String,
    pub(super) stats: String,
}

/// A count as SQL returns it.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl<D: Dialect> SqlInbox<D>
where
    for<'c> &'c mut <D::Database as sqlx::Database>::Connection:
        sqlx::Executor<'c, Database = D::Database>,
    for<'q> <D::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Database>,
    for<'q> &'q [u8]: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> &'q str: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> String: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'q> Option<String>: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'q> i64: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, D::Database>,
    for<'q> Vec<u8>: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    String: sqlx::Type<D::Database>,
    Option<String>: sqlx::Type<D::Database>,
    i64: sqlx::Type<D::Database>,
    Option<i64>: sqlx::Type<D::Database>,
    Vec<u8>: sqlx::Type<D::Database>,
    for<'n> &'n str: sqlx::ColumnIndex<<D::Database as sqlx::Database>::Row>,
    usize: sqlx::ColumnIndex<<D::Database as sqlx::Database>::Row>,
{
    /// The connection pool, for the handler's own queries.
    #[must_use]
    pub fn pool(&self) -> &sqlx::Pool<D::Database> {
        &self.pool
    }

    /// The options the inbox was opened with.
    #[must_use]
    pub fn options(&self) -> &InboxOptions {
        &self.options
    }

    /// `begin_complete` in `transaction`, just begun.
    async fn complete_in(
        &self,
        mut transaction: sqlx::Transaction<'static, D::Database>,
        lease: &Lease,
    ) -> Result<Option<Completion<D::Database>>, InboxError> {
        let done = sqlx::query(&self.sql.complete)
            .bind(lease.key().as_bytes().as_slice())
            .bind(lease.token().to_hex())
            .execute(&mut *transaction)
            .await
            .map_err(sql)?;
        if D::rows_affected(&done) == 0 {
            transaction.rollback().await.map_err(sql)?;
            return Ok(None);
        }
        let statements = Arc::clone(&self.sql);
        let key = *lease.key();
        let check = check::<D::Database, _>(move |connection| {
            Box::pin(async move {
                let done = sqlx::query(&statements.completed)
                    .bind(key.as_bytes().as_slice())
                    .fetch_optional(connection)
                    .await?;
                Ok(done.is_some())
            })
        });
        Ok(Some(Completion::new(
            transaction,
            self.options.timeout(),
            check,
        )))
    }

    /// A statement changing the delivery only if `lease` is still its owner's.
    async fn owner_update(&self, statement: &str, lease: &Lease) -> Result<bool, InboxError> {
        let done = sqlx::query(statement)
            .bind(lease.key().as_bytes().as_slice())
            .bind(lease.token().to_hex())
            .execute(&self.pool)
            .await
            .map_err(sql)?;
        Ok(D::rows_affected(&done) > 0)
    }

    /// Dead-letters a row the claim under `token` took and could not read: error
    /// `unreadable row: <why>`. When that fails too, the row keeps its lease (claimed
    /// again, and dead-lettered then, once it runs out).
    async fn dead_letter_unreadable(
        &self,
        row: &<D::Database as sqlx::Database>::Row,
        token: &Token,
        error: &InboxError,
    ) {
        let reason = format!("unreadable row: {error}");
        let dead = match row.try_get::<Vec<u8>, _>("key") {
            Ok(key) => sqlx::query(&self.sql.dead_letter)
                .bind(key.as_slice())
                .bind(token.to_hex())
                .bind(error_text(&reason).into_owned())
                .execute(&self.pool)
                .await
                .map_err(sql),
            Err(key_error) => Err(sql(key_error)),
        };
        match dead {
            Ok(_) => crate::observe::error!(
                %error,
                "inbox: a claimed delivery cannot be read; dead-lettered (purge it)"
            ),
            Err(dead_error) => crate::observe::error!(
                %error,
                %dead_error,
                "inbox: a claimed delivery cannot be read, nor dead-lettered; it is \
                 claimed again when its lease runs out"
            ),
        }
    }

    fn raw(row: &<D::Database as sqlx::Database>::Row) -> Result<RawRecord, sqlx::Error> {
        Ok(RawRecord {
            key: row.try_get("key")?,
            state: row.try_get("state")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            accepted_us: row.try_get("accepted_us")?,
            due_ms: row.try_get("due_ms")?,
            finished_ms: row.try_get("finished_ms")?,
            path: row.try_get("path")?,
            headers: row.try_get("headers")?,
            body: row.try_get("body")?,
            scheme: row.try_get("scheme")?,
            event_id: row.try_get("event_id")?,
            event: row.try_get("event")?,
            action: row.try_get("action")?,
            delivery: row.try_get("delivery")?,
            scope: row.try_get("scope")?,
            tenant: row.try_get("tenant")?,
            signed_at: row.try_get("signed_at")?,
            version: row.try_get("version")?,
            // A history that cannot be read is left out, not the delivery.
            history: row.try_get("history").ok().flatten(),
        })
    }

    fn record(row: &<D::Database as sqlx::Database>::Row) -> Result<Record, InboxError> {
        Self::raw(row).map_err(sql)?.into_record()
    }
}

impl<D: Dialect> InboxBackend for SqlInbox<D>
where
    for<'c> &'c mut <D::Database as sqlx::Database>::Connection:
        sqlx::Executor<'c, Database = D::Database>,
    for<'q> <D::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Database>,
    for<'q> &'q [u8]: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> &'q str: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D::Database> + sqlx::Type<D::Database>,
    for<'q> String: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'q> Option<String>: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'q> i64: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, D::Database>,
    for<'q> Vec<u8>: sqlx::Encode<'q, D::Database> + sqlx::Decode<'q, D::Database>,
    String: sqlx::Type<D::Database>,
    Option<String>: sqlx::Type<D::Database>,
    i64: sqlx::Type<D::Database>,
    Option<i64>: sqlx::Type<D::Database>,
    Vec<u8>: sqlx::Type<D::Database>,
    for<'n> &'n str: sqlx::ColumnIndex<<D::Database as sqlx::Database>::Row>,
    usize: sqlx::ColumnIndex<<D::Database as sqlx::Database>::Row>,
{
    /// Through the group commit's writer, which wakes the waiting producers after its commit.
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted> {
        Box::pin(timed(self.options.timeout(), async move {
            self.writer.accept(writer::Row::new(delivery)?).await
        }))
    }

    fn claim(&self, lease: Duration, max: usize) -> InboxFuture<'_, Vec<Claim>> {
        Box::pin(timed(self.options.timeout(), async move {
            let token = Token::random();
            let rows = sqlx::query(&self.sql.claim)
                .bind(token.to_hex())
                .bind(millis(lease))
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
                .map_err(sql)?;
            // A row that cannot be read is not returned, and does not fail the claim
            // (that would hold back the deliveries claimed with it, lease after lease):
            // it is dead-lettered, its error `unreadable row: ...`, so that it leaves
            // the depth and an operator sees it (`stats().dead`), rather than be
            // claimed again at each lease's end for ever.
            let mut claims = Vec::with_capacity(rows.len());
            for row in &rows {
                match Self::record(row) {
                    Ok(record) => {
                        let lease = Lease::new(*record.delivery.key(), token, record.attempts);
                        claims.push(Claim { record, lease });
                    }
                    Err(error) => self.dead_letter_unreadable(row, &token, &error).await,
                }
            }
            Ok(claims)
        }))
    }

    fn renew<'a>(&'a self, lease: &'a Lease, duration: Duration) -> InboxFuture<'a, bool> {
        Box::pin(timed(self.options.timeout(), async move {
            let done = sqlx::query(&self.sql.renew)
                .bind(lease.key().as_bytes().as_slice())
                .bind(lease.token().to_hex())
                .bind(millis(duration))
                .execute(&self.pool)
                .await
                .map_err(sql)?;
            Ok(D::rows_affected(&done) > 0)
        }))
    }

    fn complete<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        Box::pin(timed(
            self.options.timeout(),
            self.owner_update(&self.sql.complete, lease),
        ))
    }

    fn retry<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
        error: &'a str,
    ) -> InboxFuture<'a, bool> {
        Box::pin(timed(self.options.timeout(), async move {
            let done = sqlx::query(&self.sql.retry)
                .bind(lease.key().as_bytes().as_slice())
                .bind(lease.token().to_hex())
                .bind(millis(delay))
                .bind(error_text(error).as_ref())
                .execute(&self.pool)
                .await
                .map_err(sql)?;
            Ok(D::rows_affected(&done) > 0)
        }))
    }

    fn dead_letter<'a>(&'a self, lease: &'a Lease, error: &'a str) -> InboxFuture<'a, bool> {
        Box::pin(timed(self.options.timeout(), async move {
            let done = sqlx::query(&self.sql.dead_letter)
                .bind(lease.key().as_bytes().as_slice())
                .bind(lease.token().to_hex())
                .bind(error_text(error).as_ref())
                .execute(&self.pool)
                .await
                .map_err(sql)?;
            Ok(D::rows_affected(&done) > 0)
        }))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        Box::pin(timed(
            self.options.timeout(),
            self.owner_update(&self.sql.release, lease),
        ))
    }

    fn list(&self, state: DeliveryState, max: usize) -> InboxFuture<'_, Vec<Record>> {
        Box::pin(timed(self.options.timeout(), async move {
            let rows = sqlx::query(&self.sql.list)
                .bind(state.as_str())
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
                .map_err(sql)?;
            rows.iter().map(Self::record).collect()
        }))
    }

    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, Option<Record>> {
        Box::pin(timed(self.options.timeout(), async move {
            let row = sqlx::query(&self.sql.get)
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err(sql)?;
            row.as_ref().map(Self::record).transpose()
        }))
    }

    fn replay<'a>(&'a self, key: &'a IdempotencyKey, from: Replay) -> InboxFuture<'a, bool> {
        Box::pin(timed(self.options.timeout(), async move {
            let statement = match from {
                Replay::Dead => &self.sql.replay_dead,
                Replay::DeadOrDone => &self.sql.replay_dead_or_done,
            };
            let done = sqlx::query(statement)
                .bind(key.as_bytes().as_slice())
                .execute(&self.pool)
                .await
                .map_err(sql)?;
            let replayed = D::rows_affected(&done) > 0;
            if replayed {
                D::due(self);
            }
            Ok(replayed)
        }))
    }

    fn purge<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, bool> {
        Box::pin(timed(self.options.timeout(), async move {
            let done = sqlx::query(&self.sql.purge)
                .bind(key.as_bytes().as_slice())
                .execute(&self.pool)
                .await
                .map_err(sql)?;
            Ok(D::rows_affected(&done) > 0)
        }))
    }

    fn prune(&self, window: Duration) -> InboxFuture<'_, u64> {
        Box::pin(async move {
            let mut removed = 0;
            loop {
                let started = std::time::Instant::now();
                let batch = timed(self.options.timeout(), async {
                    sqlx::query(&self.sql.prune)
                        .bind(millis(window))
                        .bind(limit(PRUNE_BATCH))
                        .execute(&self.pool)
                        .await
                        .map_err(sql)
                })
                .await;
                let batch = match batch {
                    Ok(done) => D::rows_affected(&done),
                    Err(error) if removed == 0 => return Err(error),
                    Err(error) => {
                        crate::observe::warn!(
                            %error,
                            removed,
                            "inbox prune stopped early; the next prune goes on"
                        );
                        return Ok(removed);
                    }
                };
                removed += batch;
                if batch < PRUNE_BATCH as u64 {
                    return Ok(removed);
                }
                // As long again for the others: on SQLite, writers waiting for the
                // database's one write lock get it between two batches.
                tokio::time::sleep(started.elapsed()).await;
            }
        })
    }

    fn stats(&self) -> InboxFuture<'_, Stats> {
        Box::pin(timed(self.options.timeout(), async move {
            let row = sqlx::query(&self.sql.stats)
                .fetch_one(&self.pool)
                .await
                .map_err(sql)?;
            let get = |index: usize| row.try_get::<i64, _>(index).map_err(sql);
            let oldest: Option<i64> = row.try_get(4).map_err(sql)?;
            Ok(Stats {
                pending: count(get(0)?),
                running: count(get(1)?),
                done: count(get(2)?),
                dead: count(get(3)?),
                retrying: count(get(5)?),
                oldest_waiting: oldest
                    .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            })
        }))
    }

    fn search<'a>(&'a self, filter: &'a Filter) -> InboxFuture<'a, Page> {
        Box::pin(timed(self.options.timeout(), async move {
            let max = filter.limit_or_default();
            let time = &self.sql.time;
            // The statement's text with numbered parameters (`$1`, ...: both databases read
            // them), and the parameters in order.
            let mut text = self.sql.search.clone();
            let mut params = Vec::new();
            for part in filter_parts(filter, time) {
                match part {
                    Part::Sql(sql) => text.push_str(sql),
                    Part::Time(_) => {
                        params.push(part);
                        let _ = write!(text, "{}${}{}", time.before, params.len(), time.after);
                    }
                    Part::Text(_) | Part::Key(_) => {
                        params.push(part);
                        let _ = write!(text, "${}", params.len());
                    }
                }
            }
            let _ = write!(
                text,
                " ORDER BY accepted_at, key LIMIT ${}",
                params.len() + 1
            );
            let mut query = sqlx::query(&text);
            for param in params {
                query = match param {
                    Part::Sql(_) => query,
                    Part::Text(text) => query.bind(text),
                    Part::Key(key) => query.bind(key),
                    Part::Time(number) => query.bind(number),
                };
            }
            let rows = query
                .bind(limit(max))
                .fetch_all(&self.pool)
                .await
                .map_err(sql)?;
            let records = rows
                .iter()
                .map(Self::record)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::new(records, max))
        }))
    }

    fn finish<'a>(&'a self, outcomes: &'a [(Lease, Finish)]) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(timed(self.options.timeout(), async move {
            if outcomes.is_empty() {
                return Ok(Vec::new());
            }
            D::finish_batch(self, outcomes).await
        }))
    }

    fn renew_all<'a>(
        &'a self,
        leases: &'a [Lease],
        duration: Duration,
    ) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(timed(self.options.timeout(), async move {
            if leases.is_empty() {
                return Ok(Vec::new());
            }
            // The (key, owner) pairs renewed, or still the owners' and left alone.
            let owned: std::collections::HashSet<(Vec<u8>, String)> =
                D::renew_batch(self, leases, millis(duration))
                    .await?
                    .into_iter()
                    .collect();
            Ok(leases
                .iter()
                .map(|lease| {
                    let pair = (lease.key().as_bytes().to_vec(), lease.token().to_hex());
                    owned.contains(&pair)
                })
                .collect())
        }))
    }

    fn wait_for_work(&self, timeout: Duration) -> InboxFuture<'_, ()> {
        Box::pin(async move {
            D::wait_for_work(self, timeout).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_even_when_not_utf8() {
        let headers = vec![
            (
                HeaderName::from_static("x-webhook-id"),
                HeaderValue::from_static("evt_1"),
            ),
            (
                HeaderName::from_static("x-odd"),
                HeaderValue::from_bytes(b"caf\xe9").unwrap_or(HeaderValue::from_static("")),
            ),
        ];
        let decoded = decode_headers(&encode_headers(&headers)).ok();
        assert_eq!(decoded, Some(headers));
    }

    #[test]
    fn an_error_s_nul_bytes_are_replaced_and_the_rest_kept() {
        assert_eq!(error_text("a\0b"), "a\u{fffd}b");
        assert!(matches!(error_text("ok"), std::borrow::Cow::Borrowed("ok")));
    }

    #[test]
    fn a_history_keeps_the_entries_it_can_read_and_the_last_twenty() {
        let text = r#"[{"attempt":1,"kind":"retried","error":"boom","at":1000},
            {"attempt":2,"kind":"exploded","at":1000}, 5, {"kind":"done"},
            {"attempt":2,"kind":"dead","error":null,"at":2000}]"#;
        let history = decode_history(text);
        let read: Vec<_> = history
            .iter()
            .map(|entry| (entry.attempt, entry.kind, entry.error.as_deref()))
            .collect();
        assert_eq!(
            read,
            [
                (1, HistoryKind::Retried, Some("boom")),
                (2, HistoryKind::Dead, None)
            ]
        );
        // An entry whose number is out of a double's range (written by hand; SQLite's `json()`
        // writes it `9.0e+999`) is left out alone, not with the whole history.
        let history = decode_history(
            r#"[{"attempt":1e400,"kind":"done","at":0},
            {"attempt":1,"kind":"retried","error":"boom","at":9.0e+999},
            {"attempt":2,"kind":"retried","error":"bang","at":1000}]"#,
        );
        let read: Vec<_> = history
            .iter()
            .map(|entry| (entry.attempt, entry.error.as_deref()))
            .collect();
        assert_eq!(read, [(2, Some("bang"))]);
        assert!(decode_history("not json").is_empty());
        assert!(decode_history(r#"{"attempt":1}"#).is_empty());
        let many: Vec<String> = (1..=25)
            .map(|n| format!(r#"{{"attempt":{n},"kind":"released","at":0}}"#))
            .collect();
        let history = decode_history(&format!("[{}]", many.join(",")));
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0].attempt, 6);
    }

    #[test]
    fn times_between_two_stored_units_round_so_that_no_row_is_skipped_or_repeated() {
        let ms = TimeParam {
            unit_ns: 1_000_000,
            before: "",
            after: "",
        };
        let times = |filter: &Filter| -> Vec<String> {
            filter_parts(filter, &ms)
                .into_iter()
                .map(|part| match part {
                    Part::Sql(text) => text.to_owned(),
                    Part::Time(units) => units.to_string(),
                    Part::Text(text) => format!("'{text}'"),
                    Part::Key(_) => "k".to_owned(),
                })
                .collect()
        };
        let at = |nanos: i128| {
            OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        let key = IdempotencyKey::new("s", "", "e");
        // Since: rounded up.
        assert_eq!(
            times(&Filter::new().since(at(5_000_000))).concat(),
            " WHERE accepted_at >= 5"
        );
        assert_eq!(
            times(&Filter::new().since(at(5_000_001))).concat(),
            " WHERE accepted_at >= 6"
        );
        // A cursor on a unit: then by key; between two: after the unit it is in.
        let after = |nanos| crate::inbox::query::Cursor {
            accepted_at: at(nanos),
            key,
        };
        assert_eq!(
            times(&Filter::new().after(after(5_000_000))).concat(),
            " WHERE accepted_at >= 5 AND (accepted_at > 5 OR key > k)"
        );
        assert_eq!(
            times(&Filter::new().after(after(5_999_999))).concat(),
            " WHERE accepted_at > 5"
        );
        assert_eq!(
            times(&Filter::new().after(after(-1))).concat(),
            " WHERE accepted_at > -1"
        );
        assert_eq!(
            times(&Filter::new().status(Status::Retrying).event("e")).concat(),
            " WHERE state = 'pending' AND attempts > 0 AND event = 'e'"
        );
    }

    #[test]
    fn durations_are_whole_milliseconds_rounded_up_and_bounded() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert!(millis(Duration::MAX) < i64::MAX / 2);
    }
}
