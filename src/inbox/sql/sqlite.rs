use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::Sqlite;

use super::dialect::{sealed, Dialect};
use super::wake::Wakeups;
use super::writer::{Row, Target};
use super::{error_text, millis, sql, Completion, SqlInbox, Statements, TimeParam};
use crate::inbox::backend::{Accepted, Finish, InboxFuture, Lease};
use crate::inbox::delivery::{HistoryKind, HISTORY_LIMIT};
use crate::inbox::error::{backend, timed, InboxError};
use crate::inbox::options::InboxOptions;
#[cfg(doc)]
use crate::inbox::{InboxBackend, Record};

/// How many connections the pool opens at most: `SQLite` writes one transaction at a time, and
/// readers do not block the writer in WAL mode.
const MAX_CONNECTIONS: u32 = 4;

/// Now, in milliseconds since the Unix epoch, from `SQLite`'s clock (the process's: one file on
/// one machine).
const NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// The columns a [`RawRecord`] is read from.
const COLUMNS: &str = "key, state, attempts, last_error, accepted_at * 1000 AS accepted_us, \
    due_at AS due_ms, finished_at AS finished_ms, path, headers, body, scheme, event_id, event, \
    action, delivery, scope, tenant, signed_at, version, history";

/// Times in queries: milliseconds since the Unix epoch, as stored.
const TIME: TimeParam = TimeParam {
    unit_ns: 1_000_000,
    before: "",
    after: "",
};

/// The schema, one migration per version (`sql/sqlite/*.sql`): `{p}` is the prefix. Applied in order, each once, in
/// one `BEGIN IMMEDIATE` transaction, and recorded in `{p}schema_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("sqlite/1_deliveries.sql"),
    include_str!("sqlite/2_depth.sql"),
    include_str!("sqlite/3_history.sql"),
];

/// The `SQLite` inbox backend (feature `sqlite`): one file, in WAL mode, for one machine.
///
/// Every commit is synced to disk before it is acknowledged (`synchronous = FULL`), so an
/// accepted delivery survives the process being killed and the machine losing power. Several
/// processes on one machine may share the file (`SQLite` serializes writers; claims are single
/// `UPDATE ... RETURNING` statements). For several machines, use `PostgresInbox`.
///
/// The depth limit holds for all of them together, exactly: each accept reads a counter kept in
/// the file (see Schema). [`prune`](InboxBackend::prune) removes done deliveries 1,000 at a
/// time, each batch its own transaction followed by a pause as long, so that accepts and claims
/// waiting for the write lock get it between two batches rather than after the whole backlog.
///
/// [`search`](InboxBackend::search) is one query, on the index on `(state, accepted_at)` when
/// a status is given. Each delivery keeps its history ([`Record::history`]).
///
/// The workers record their outcomes in batches ([`finish`](InboxBackend::finish): every
/// outcome's update in one `BEGIN IMMEDIATE` transaction, so one synced commit per batch, each
/// still fenced by its lease's token) and renew all their leases with one statement
/// ([`renew_all`](InboxBackend::renew_all)).
///
/// **Wake-ups.** A worker with nothing to claim waits in
/// [`wait_for_work`](InboxBackend::wait_for_work) until an accept through this inbox (or a
/// clone of it: give the layer and the workers clones of one inbox) commits a new delivery, or
/// a replay makes one due: the worker claims it at once instead of at its next poll. Retries
/// coming due, and deliveries accepted by another process sharing the file (or another
/// `SqliteInbox` opened on it, rather than a clone), are found by the workers' fallback poll.
/// # Group commit
///
/// Accepts are group-committed: one writer task per inbox (started when it opens, shared by
/// its clones, ended when the last one is dropped) takes the deliveries that arrived while its
/// previous commit was syncing, up to 256 deliveries or 4 MiB of bodies and headers, inserts
/// them in one `BEGIN IMMEDIATE` transaction, and answers each accept only after that
/// transaction committed: a burst shares one sync per batch instead of one per delivery, and an
/// [`Accepted`] (the layer's `2xx`) still means the delivery is on disk. In a batch:
///
/// - a key already stored, or sent twice within the batch, is answered
///   [`Accepted::Duplicate`] (the second one in the batch: pending);
/// - the depth limit is exact: each insert reads the depth counter, which the batch's own
///   earlier inserts have already moved, and a delivery past the limit is answered
///   [`InboxError::Full`] and not inserted;
/// - a failure of the transaction (its write lock not taken within the busy timeout, a
///   statement failing, the commit failing) fails the whole batch: each of its deliveries is
///   answered [`InboxError::Backend`] (the layer answers `503`) and none is stored (a failed
///   `COMMIT` may still have taken effect, as with any commit whose answer was lost: the
///   sender's retry is then a duplicate).
///
/// Each accept keeps its own timeout ([`InboxOptions::with_timeout`]): one that timed out
/// while its batch was committing may still be stored (its retry is then a duplicate); one
/// that timed out before the writer took it is not written. Several processes on one file each
/// have their own writer, and `SQLite`'s busy timeout serializes their transactions.
/// [`accept_commits`](Self::accept_commits) counts this inbox's transactions.
///
/// Leases, backoffs and due times are read from the wall clock (`SQLite`'s `now`, the
/// machine's), while a worker times its handler with a monotonic clock. A step of the wall
/// clock moves every lease's end: stepped forward by more than two thirds of the lease (a
/// tenth while renewals fail), it can let a second worker claim a delivery whose handler
/// still runs (the first one's outcome is then refused, but both ran); stepped back, due
/// deliveries wait that much longer. Keep the clock
/// synchronized by slewing (NTP, chrony), not stepping, while the workers run.
///
/// # Schema
///
/// Created or migrated when the inbox opens, under the prefix of [`InboxOptions::with_prefix`]
/// (default `tower_webhook_`), so it can share the application's database:
///
/// - `{prefix}deliveries`: one row per idempotency key (`key`, a 32-byte `BLOB`, primary key);
///   `state` (`pending`, `running`, `done`, `dead`); `attempts`; `due_at` (pending: when due;
///   running: when the lease ends; done or dead: when it got there); `owner` (the lease's token
///   while running); `last_error`; `accepted_at`, `finished_at`; the stored delivery: `path`,
///   `headers` (JSON `[[name, value], ...]`), `body`, and the facts `scheme`, `event_id`,
///   `event`, `action`, `delivery`, `scope`, `tenant`, `signed_at` (RFC 3339), `version`;
///   `history` (JSON text: an array of `{"attempt", "kind", "error", "at"}`, oldest first,
///   the last 20; appended by the statement that records each outcome or replay).
///   Times are milliseconds since the Unix epoch. A file of schema version 2 gets `history`
///   when it opens, `[]` for the deliveries stored before.
/// - `{prefix}depth`: one row, `n` the number of waiting (pending or running) deliveries, which
///   the depth limit reads; kept by the triggers `{prefix}depth_insert`, `{prefix}depth_update`
///   and `{prefix}depth_delete` on `{prefix}deliveries`, in the transaction of each change. A
///   file created before it (schema version 1) gets it when it opens, counted from the waiting
///   deliveries.
/// - `{prefix}schema_version`: the versions applied.
///
/// ```no_run
/// use tower_webhook::inbox::{InboxBackend, InboxOptions, SqliteInbox};
///
/// # async fn run() -> Result<(), tower_webhook::inbox::InboxError> {
/// let inbox = SqliteInbox::open("webhooks.db", InboxOptions::new()).await?;
/// println!("{} deliveries waiting", inbox.stats().await?.depth());
/// # Ok(())
/// # }
/// ```
pub type SqliteInbox = SqlInbox<SqliteDialect>;

/// [`SqliteInbox`]'s [`Dialect`]: `SQLite`, and what the inbox keeps beside its pool.
#[derive(Clone)]
pub struct SqliteDialect {
    /// The producers waiting for work on this inbox (shared by its clones).
    wake: Arc<Wakeups>,
}

impl sealed::Sealed for SqliteDialect {}

impl fmt::Debug for SqliteDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDialect").finish_non_exhaustive()
    }
}

impl SqlInbox<SqliteDialect> {
    /// Opens (creating it when missing) the database file at `path`, in WAL mode with
    /// `synchronous = FULL`, and creates or migrates the schema.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the file cannot be opened or the schema not created.
    pub async fn open(path: impl AsRef<Path>, options: InboxOptions) -> Result<Self, InboxError> {
        let connect = SqliteConnectOptions::new().filename(path);
        Self::open_with(connect, options).await
    }

    /// As [`open`](Self::open), from a URL: `sqlite://PATH` (or `sqlite:PATH`), with `sqlx`'s
    /// URL parameters.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the URL is invalid, or as [`open`](Self::open).
    pub async fn connect(url: &str, options: InboxOptions) -> Result<Self, InboxError> {
        let connect = SqliteConnectOptions::from_str(url).map_err(sql)?;
        Self::open_with(connect, options).await
    }

    async fn open_with(
        connect: SqliteConnectOptions,
        options: InboxOptions,
    ) -> Result<Self, InboxError> {
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.timeout());
        let pool = timed(options.timeout(), async {
            SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(options.timeout())
                .connect_with(connect)
                .await
                .map_err(sql)
        })
        .await?;
        Self::from_pool(pool, options).await
    }

    /// An inbox in a pool you configured yourself (keep WAL mode, and `synchronous = FULL`
    /// unless losing the last acknowledged deliveries on power loss is acceptable to you);
    /// creates or migrates the schema.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the schema cannot be created.
    pub async fn from_pool(pool: SqlitePool, options: InboxOptions) -> Result<Self, InboxError> {
        timed(options.timeout(), migrate(&pool, options.prefix())).await?;
        let sql = statements(options.prefix());
        let wake = Arc::<Wakeups>::default();
        let woken = Arc::clone(&wake);
        Ok(Self::assemble(
            pool,
            options,
            sql,
            SqliteDialect { wake },
            move || woken.wake(),
        ))
    }

    /// Starts a transaction (`BEGIN IMMEDIATE`) in which the leased delivery is already marked
    /// done: write the handler's effects to it, then [`Completion::commit`]. `None` when the
    /// lease is no longer the owner's (nothing was changed).
    ///
    /// In a handler, call it through [`Attempt::begin_complete`](crate::inbox::Attempt), so that the
    /// worker follows it: the delivery is then done only if the completion commits; a
    /// completion dropped without [`Completion::commit`] (an early return, a `?`), rolled back,
    /// or whose commit failed is a **failed attempt**, retried after the backoff, even when the
    /// handler answers `2xx` (its writes were rolled back). While it is open it holds the
    /// database's write lock: no other worker can claim the delivery, the worker sends no
    /// renewal and does not stop the handler when the lease runs out (the handler timeout
    /// does), and every other writer waits: accepts, claims, and the lease renewals of the
    /// other deliveries running meanwhile, in every process. Keep it short, well under the
    /// inbox's timeout and half the lease: a renewal that waits past the timeout fails, and
    /// another delivery's handler whose lease runs out meanwhile is stopped and retried (the
    /// attempt counted), as if its lease were lost.
    ///
    /// ```no_run
    /// use tower_webhook::inbox::{Lease, SqliteInbox};
    ///
    /// # async fn handle(inbox: &SqliteInbox, lease: &Lease) -> Result<(), tower_webhook::inbox::InboxError> {
    /// if let Some(mut completion) = inbox.begin_complete(lease).await? {
    ///     sqlx::query("INSERT INTO orders (id) VALUES ($1)")
    ///         .bind("ord_1")
    ///         .execute(&mut *completion)
    ///         .await
    ///         .map_err(|error| tower_webhook::inbox::InboxError::Backend(error.into()))?;
    ///     completion.commit().await?; // the order and the completion, together
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`InboxError::Backend`] or [`InboxError::Timeout`].
    pub async fn begin_complete(
        &self,
        lease: &Lease,
    ) -> Result<Option<Completion<Sqlite>>, InboxError> {
        timed(self.options.timeout(), async {
            let transaction = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(sql)?;
            self.complete_in(transaction, lease).await
        })
        .await
    }
}

impl Dialect for SqliteDialect {
    type Database = Sqlite;

    const NAME: &'static str = "SqliteInbox";

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Each delivery's insert, in one `BEGIN IMMEDIATE` transaction (one commit, one sync, for
    /// the batch). A statement that fails fails the batch: `SQLite` rolls a whole transaction
    /// back on some errors (a full disk, an I/O error), after which the remaining inserts would
    /// run (and commit) on their own.
    fn write_accepts<'a>(
        target: &'a Target<Self>,
        rows: &'a [Row],
    ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
        Box::pin(async move {
            let mut transaction = target
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(sql)?;
            let mut answers = Vec::with_capacity(rows.len());
            for row in rows {
                answers.push(insert(target, &mut transaction, row).await?);
            }
            transaction.commit().await.map_err(sql)?;
            Ok(answers)
        })
    }

    fn due(inbox: &SqliteInbox) {
        inbox.parts.wake.wake();
    }

    fn wait_for_work(inbox: &SqliteInbox, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(inbox.parts.wake.wait(timeout))
    }

    /// Each outcome's statement, in one `BEGIN IMMEDIATE` transaction (one commit, one sync,
    /// for the batch); `SQLite` runs them in process, so they cost little beside it.
    fn finish_batch<'a>(
        inbox: &'a SqliteInbox,
        outcomes: &'a [(Lease, Finish)],
    ) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut transaction = inbox
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(sql)?;
            let mut owned = Vec::with_capacity(outcomes.len());
            for (lease, finish) in outcomes {
                let query = match finish {
                    Finish::Done => sqlx::query(&inbox.sql.complete),
                    Finish::Retry { .. } => sqlx::query(&inbox.sql.retry),
                    Finish::Dead { .. } => sqlx::query(&inbox.sql.dead_letter),
                    Finish::Release => sqlx::query(&inbox.sql.release),
                }
                .bind(lease.key().as_bytes().as_slice())
                .bind(lease.token().to_hex());
                let query = match finish {
                    Finish::Retry { delay, error } => query
                        .bind(millis(*delay))
                        .bind(error_text(error).into_owned()),
                    Finish::Dead { error } => query.bind(error_text(error).into_owned()),
                    Finish::Done | Finish::Release => query,
                };
                let done = query.execute(&mut *transaction).await.map_err(sql)?;
                owned.push(done.rows_affected() > 0);
            }
            transaction.commit().await.map_err(sql)?;
            Ok(owned)
        })
    }

    /// One statement for the batch, the leases passed as a JSON array of `[key in hex,
    /// owner]`.
    fn renew_batch<'a>(
        inbox: &'a SqliteInbox,
        leases: &'a [Lease],
        duration_ms: i64,
    ) -> InboxFuture<'a, Vec<(Vec<u8>, String)>> {
        Box::pin(async move {
            let pairs: Vec<(String, String)> = leases
                .iter()
                .map(|lease| (lease.key().to_hex(), lease.token().to_hex()))
                .collect();
            let pairs = serde_json::to_string(&pairs).map_err(super::backend)?;
            sqlx::query_as(&inbox.sql.renew_all)
                .bind(pairs)
                .bind(duration_ms)
                .fetch_all(&inbox.pool)
                .await
                .map_err(sql)
        })
    }
}

/// Creates the tables, or brings them to the latest version.
async fn migrate(pool: &SqlitePool, prefix: &str) -> Result<(), InboxError> {
    let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await.map_err(sql)?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS {prefix}schema_version (version INTEGER NOT NULL)"
    ))
    .execute(&mut *transaction)
    .await
    .map_err(sql)?;
    let current: Option<i64> =
        sqlx::query_scalar(&format!("SELECT max(version) FROM {prefix}schema_version"))
            .fetch_one(&mut *transaction)
            .await
            .map_err(sql)?;
    let current = usize::try_from(current.unwrap_or(0)).unwrap_or(usize::MAX);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        sqlx::raw_sql(&migration.replace("{p}", prefix))
            .execute(&mut *transaction)
            .await
            .map_err(sql)?;
        sqlx::query(&format!(
            "INSERT INTO {prefix}schema_version (version) VALUES ($1)"
        ))
        .bind(i64::try_from(index + 1).unwrap_or(i64::MAX))
        .execute(&mut *transaction)
        .await
        .map_err(sql)?;
    }
    transaction.commit().await.map_err(sql)
}

/// One delivery's insert, in the batch's transaction. The depth limit is exact: the insert
/// reads the counter that the schema's triggers keep, and the batch's own earlier inserts have
/// already moved it in this transaction; a conflict's state is read in the same transaction
/// (holding the write lock), so no purge can remove it in between.
async fn insert(
    target: &Target<SqliteDialect>,
    transaction: &mut sqlx::Transaction<'static, Sqlite>,
    row: &Row,
) -> Result<Result<Accepted, InboxError>, InboxError> {
    let inserted = sqlx::query(&target.sql.accept)
        .bind(row.key.as_slice())
        .bind(row.path.as_str())
        .bind(row.headers.as_str())
        .bind(row.body.as_ref())
        .bind(row.scheme.as_str())
        .bind(row.event_id.as_str())
        .bind(row.event.as_deref())
        .bind(row.action.as_deref())
        .bind(row.delivery.as_deref())
        .bind(row.scope.as_deref())
        .bind(row.tenant.as_deref())
        .bind(row.signed_at.as_deref())
        .bind(row.version.as_deref())
        .bind(target.max_depth)
        .execute(&mut **transaction)
        .await
        .map_err(sql)?;
    if inserted.rows_affected() > 0 {
        return Ok(Ok(Accepted::New));
    }
    let (state, _depth): (Option<String>, i64) = sqlx::query_as(&target.sql.state_of)
        .bind(row.key.as_slice())
        .fetch_one(&mut **transaction)
        .await
        .map_err(sql)?;
    Ok(match state {
        // A key stored earlier, or earlier in this batch (then pending).
        Some(state) => state.parse().map(Accepted::Duplicate).map_err(backend),
        None => Err(InboxError::Full),
    })
}

/// The statements, with the table's name in them.
fn statements(prefix: &str) -> Statements {
    let t = format!("{prefix}deliveries");
    let depth = format!("{prefix}depth");
    let owned = "key = $1 AND owner = $2 AND state = 'running'";
    Statements {
        accept: format!(
            "INSERT INTO {t} (key, state, attempts, due_at, accepted_at, path, headers, body, \
             scheme, event_id, event, action, delivery, scope, tenant, signed_at, version) \
             SELECT $1, 'pending', 0, {NOW}, {NOW}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13 \
             WHERE (SELECT n FROM {depth} WHERE id = 0) < $14 \
             ON CONFLICT (key) DO NOTHING"
        ),
        state_of: format!(
            "SELECT (SELECT state FROM {t} WHERE key = $1), \
             (SELECT n FROM {depth} WHERE id = 0)"
        ),
        claim: format!(
            "UPDATE {t} SET state = 'running', owner = $1, attempts = attempts + 1, \
             due_at = {NOW} + $2 \
             WHERE key IN (SELECT key FROM {t} WHERE state IN ('pending', 'running') \
             AND due_at <= {NOW} ORDER BY due_at LIMIT $3) \
             RETURNING {COLUMNS}"
        ),
        renew: format!("UPDATE {t} SET due_at = {NOW} + $3 WHERE {owned}"),
        renew_all: format!(
            "UPDATE {t} SET due_at = {NOW} + $2 WHERE state = 'running' AND (key, owner) IN \
             (SELECT unhex(value ->> 0), value ->> 1 FROM json_each($1)) \
             RETURNING key, owner"
        ),
        complete: format!(
            "UPDATE {t} SET state = 'done', owner = NULL, due_at = {NOW}, \
             finished_at = {NOW}, {} WHERE {owned}",
            history_with(HistoryKind::Done, "NULL")
        ),
        completed: format!("SELECT 1 FROM {t} WHERE key = $1 AND state = 'done'"),
        retry: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = {NOW} + $3, \
             last_error = $4, {} WHERE {owned}",
            history_with(HistoryKind::Retried, "$4")
        ),
        dead_letter: format!(
            "UPDATE {t} SET state = 'dead', owner = NULL, due_at = {NOW}, \
             finished_at = {NOW}, last_error = $3, {} WHERE {owned}",
            history_with(HistoryKind::Dead, "$3")
        ),
        release: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = {NOW}, \
             attempts = max(attempts - 1, 0), {} WHERE {owned}",
            history_with(HistoryKind::Released, "NULL")
        ),
        list: format!(
            "SELECT {COLUMNS} FROM {t} WHERE state = $1 ORDER BY accepted_at, key LIMIT $2"
        ),
        get: format!("SELECT {COLUMNS} FROM {t} WHERE key = $1"),
        time: TIME,
        search: format!("SELECT {COLUMNS} FROM {t}"),
        replay_dead: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = {NOW}, attempts = 0, \
             finished_at = NULL, {} WHERE key = $1 AND state = 'dead'",
            history_with(HistoryKind::Replayed, "NULL")
        ),
        replay_dead_or_done: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = {NOW}, attempts = 0, \
             finished_at = NULL, {} WHERE key = $1 AND state IN ('dead', 'done')",
            history_with(HistoryKind::Replayed, "NULL")
        ),
        purge: format!("DELETE FROM {t} WHERE key = $1"),
        prune: format!(
            "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} \
             WHERE state = 'done' AND finished_at < {NOW} - $1 LIMIT $2)"
        ),
        #[cfg(feature = "postgres")]
        finish: String::new(),
        stats: format!(
            "SELECT \
             (SELECT count(*) FROM {t} WHERE state = 'pending'), \
             (SELECT count(*) FROM {t} WHERE state = 'running'), \
             (SELECT count(*) FROM {t} WHERE state = 'done'), \
             (SELECT count(*) FROM {t} WHERE state = 'dead'), \
             (SELECT {NOW} - min(accepted_at) FROM {t} \
              WHERE state IN ('pending', 'running')), \
             (SELECT count(*) FROM {t} WHERE state = 'pending' AND attempts > 0)"
        ),
    }
}

/// `history = ` the history with an entry of `kind` appended, in the statement that records
/// it: the attempt the row's `attempts` before the statement (the lease's attempt; for a
/// replay, the attempts it resets), `error` an SQL expression (a parameter, or `NULL`), the
/// time now; only the last [`HISTORY_LIMIT`] entries kept. A stored history that is not a JSON
/// array (written by hand) starts again from this entry rather than fail the outcome.
fn history_with(kind: HistoryKind, error: &str) -> String {
    let kind = kind.as_str();
    let stored = "coalesce(CASE WHEN json_valid(history) THEN \
        CASE json_type(history) WHEN 'array' THEN history END END, '[]')";
    let appended = format!(
        "json_insert({stored}, '$[#]', json_object('attempt', attempts, 'kind', '{kind}', \
         'error', {error}, 'at', {NOW}))"
    );
    // `key`, `value` and `type` are `json_each`'s columns: the entries' positions, the
    // entries, and their JSON types. Only an object or an array is JSON text to keep as JSON;
    // any other value (a string written by hand) is kept as the value it is (`json('x')`
    // would fail the statement, and the delivery's every outcome with it).
    format!(
        "history = (SELECT json_group_array(CASE WHEN type IN ('object', 'array') \
         THEN json(value) ELSE value END) FROM json_each({appended}) \
         WHERE key >= json_array_length({appended}) - {HISTORY_LIMIT})"
    )
}
