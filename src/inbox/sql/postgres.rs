use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult};
use sqlx::Postgres;

use super::dialect::{sealed, Dialect};
use super::pg_notify::PgWakeups;
use super::writer::{Row, Target};
use super::{error_text, millis, sql, Completion, SqlInbox, Statements, TimeParam};
use crate::inbox::backend::{Accepted, Finish, InboxFuture, Lease};
use crate::inbox::delivery::{DeliveryState, HistoryKind, HISTORY_LIMIT};
use crate::inbox::error::{backend, timed, InboxError};
use crate::inbox::options::InboxOptions;
#[cfg(doc)]
use crate::inbox::{InboxBackend, Record};

/// How many connections [`PostgresInbox::connect`] opens at most.
const MAX_CONNECTIONS: u32 = 10;

/// The columns a [`RawRecord`] is read from (the table is aliased `d`; times as milliseconds
/// since the Unix epoch, the time accepted as stored, in microseconds).
const COLUMNS: &str = "d.key, d.state, d.attempts, d.last_error, \
    (extract(epoch FROM d.accepted_at) * 1000000)::bigint AS accepted_us, \
    (extract(epoch FROM d.due_at) * 1000)::bigint AS due_ms, \
    (extract(epoch FROM d.finished_at) * 1000)::bigint AS finished_ms, \
    d.path, d.headers, d.body, d.scheme, d.event_id, d.event, d.action, d.delivery, d.scope, \
    d.tenant, d.signed_at, d.version, d.history::text AS history";

/// Times in queries: microseconds since the Unix epoch (`timestamptz`'s precision, so a cursor
/// read back from a row is exact), made a `timestamptz` (exact below the year 2255).
const TIME: TimeParam = TimeParam {
    unit_ns: 1_000,
    before: "(timestamptz 'epoch' + ",
    after: "::bigint * interval '1 microsecond')",
};

/// Now, in milliseconds since the Unix epoch (a history entry's time).
const NOW_MS: &str = "(extract(epoch FROM now()) * 1000)::bigint";

/// The schema, one migration per version (`sql/postgres/*.sql`): `{p}` is the prefix. Applied in order, each once, in
/// one transaction holding an advisory lock (replicas starting together migrate once), and
/// recorded in `{p}schema_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("postgres/1_deliveries.sql"),
    include_str!("postgres/2_depth.sql"),
    include_str!("postgres/3_history.sql"),
];

/// A duration parameter (whole milliseconds, `bigint`) as an interval.
const MS: &str = "::float8 * interval '1 millisecond'";

/// The Postgres inbox backend (feature `postgres`): one database shared by every replica.
///
/// - Accepts are group-committed, as on [`SqliteInbox`](super::SqliteInbox): one writer task
///   per inbox (started when it connects, shared by its clones, ended with the last one) takes
///   the deliveries that arrived while its previous batch was committing, up to 256 deliveries
///   or 4 MiB, inserts them with one statement over arrays (its own transaction: one round
///   trip and one WAL flush for the batch, where single accepts each wait for their own, on
///   one of the pool's connections), and answers each only after that commit (with
///   `synchronous_commit = on`, the default, a `2xx` means the batch is in the flushed WAL). A
///   duplicate within a batch is answered [`Accepted::Duplicate`] (pending); the depth limit is
///   exact within a batch (the first deliveries of new keys, in order, within the room left);
///   a statement that fails answers each delivery of its batch [`InboxError::Backend`] (`503`),
///   none stored. Each accept keeps its own timeout ([`InboxOptions::with_timeout`]): one that
///   timed out while its batch's statement ran may still be stored (its retry is then a
///   duplicate); one that timed out before the writer took it is not written.
///   [`accept_commits`](Self::accept_commits) counts this inbox's batches.
/// - Claims are one statement: the due rows are selected `FOR UPDATE SKIP LOCKED` (two
///   claimers never wait for each other nor take the same row) and marked running with the
///   claim's token and the lease's end, in the row.
/// - Every time (due, lease end, accepted, finished) is the database's `now()`, so replicas
///   whose clocks disagree still agree on leases and backoffs.
/// - The depth limit is checked by the accepting statement against a counter the schema keeps
///   in step with the deliveries (triggers, in the same transaction as each change): exact
///   whatever the number of replicas, and the same cost at any depth. Batches of accepts
///   running at the same moment (in several replicas) may pass it by the number of their
///   deliveries (each sees the depth as committed when it starts). The counter is 64 rows, summed by each accept: a transaction that changes the
///   depth (an accept, a completion, ...) takes a row no other one holds, so they do not wait
///   for each other (a handler's open [`Completion`] holds one until it ends). A transaction
///   left open for long anywhere in the database (a report, an idle session in a transaction)
///   keeps the counter's old row versions from being cleaned up until it ends, and accepts
///   slow down meanwhile: keep transactions short.
/// - The workers record their outcomes in batches ([`finish`](InboxBackend::finish): one
///   statement, so one transaction and one commit, for the batch, each outcome still fenced by
///   its lease's token and state) and renew all their leases with one statement
///   ([`renew_all`](InboxBackend::renew_all)), which skips rather than waits for a row another
///   transaction holds (a handler's open [`Completion`]): such a lease is answered as still
///   the owner's when the row says so (no claim can take a locked row either), and renewed by a
///   later call.
/// - **Wake-ups.** A worker with nothing to claim waits in
///   [`wait_for_work`](InboxBackend::wait_for_work) until a delivery may be due: an accept (or
///   a replay) through this inbox or a clone of it wakes it at once, and one in another process
///   or replica through `LISTEN`/`NOTIFY` on the channel `{prefix}wake` (`tower_webhook_wake`
///   by default; channels are per database, so inboxes with the same prefix in two schemas
///   wake each other spuriously, which is harmless). An accept sends its `NOTIFY` after its
///   commit, at most one per 5 ms per process, the last of a burst always sent (a `NOTIFY` in
///   the accept's transaction would serialize the commits of every accepting replica). The
///   listener holds a connection of its own (opened with the pool's options, not taken from
///   the pool), started by the first wait; when it fails it connects again (the workers poll
///   meanwhile) and wakes the workers once listening again, so nothing accepted meanwhile waits
///   for the poll. Retries coming due are found by the workers' fallback poll.
/// - [`search`](InboxBackend::search) is one query, on the index on `(state, accepted_at)`
///   when a status is given; its cursor keeps the microseconds `accepted_at` is stored with.
///   Each delivery keeps its history ([`Record::history`]).
/// - [`prune`](InboxBackend::prune) removes done deliveries 1,000 at a time, each batch its own
///   transaction, skipping rows another transaction holds (left for the next prune).
/// - `text` columns cannot hold a NUL byte. The layer never stores one in an event id or an
///   optional fact (an id with control characters is refused, `400 invalid_event_id`, and such
///   facts are dropped), and a failed attempt's error has its NUL bytes replaced by U+FFFD. A
///   tenant id your [`SecretResolver`](crate::SecretResolver) returns must not hold one: that
///   tenant's accepts would fail ([`InboxError::Backend`], answered `503 inbox_unavailable`,
///   logged) each time the sender retries (each alone: a delivery holding a NUL byte is left
///   out of its batch's statement, and the other deliveries of the batch are stored).
///
/// No TLS is compiled in by this crate: to reach a server over TLS, enable one of `sqlx`'s TLS
/// features in your own `Cargo.toml` (Cargo unifies them) and pass `sslmode` in the URL.
///
/// # Schema
///
/// Created or migrated when the inbox connects, in the connection's current schema
/// (`search_path`), under the prefix of [`InboxOptions::with_prefix`] (default
/// `tower_webhook_`):
///
/// - `{prefix}deliveries`: one row per idempotency key (`key`, a 32-byte `bytea`, primary
///   key); `state` (`pending`, `running`, `done`, `dead`); `attempts`; `due_at` (pending: when
///   due; running: when the lease ends; done or dead: when it got there); `owner` (the lease's
///   token while running); `last_error`; `accepted_at`, `finished_at` (`timestamptz`); the
///   stored delivery: `path`, `headers` (JSON `[[name, value], ...]`), `body`, and the facts
///   `scheme`, `event_id`, `event`, `action`, `delivery`, `scope`, `tenant`, `signed_at`
///   (RFC 3339), `version`; `history` (`jsonb`: an array of `{"attempt", "kind", "error",
///   "at"}`, `at` in milliseconds since the Unix epoch, oldest first, the last 20; appended by
///   the statement that records each outcome or replay). A database of schema version 2 gets
///   `history` when an inbox connects (`[]` for the deliveries stored before; no table
///   rewrite).
/// - `{prefix}depth`: the depth, the sum of `n` over its 64 rows (`shard`), kept by the
///   triggers `{prefix}depth_insert`, `{prefix}depth_update`, `{prefix}depth_delete` and
///   `{prefix}depth_truncate` on `{prefix}deliveries` (functions `{prefix}depth_change` and
///   `{prefix}depth_reset`). A database created before it (schema version 1) gets it when an
///   inbox connects, counted from the waiting deliveries while writes to the deliveries wait.
/// - `{prefix}schema_version`: the versions applied.
///
/// ```no_run
/// use tower_webhook::inbox::{InboxBackend, InboxOptions, PostgresInbox};
///
/// # async fn run() -> Result<(), tower_webhook::inbox::InboxError> {
/// let inbox = PostgresInbox::connect("postgres://app@db/app", InboxOptions::new()).await?;
/// println!("{} deliveries waiting", inbox.stats().await?.depth());
/// # Ok(())
/// # }
/// ```
pub type PostgresInbox = SqlInbox<PostgresDialect>;

/// [`PostgresInbox`]'s [`Dialect`]: `PostgreSQL`, and what the inbox keeps beside its pool.
#[derive(Clone)]
pub struct PostgresDialect {
    /// The producers waiting for work, here and (`LISTEN`/`NOTIFY`) in other processes.
    wake: Arc<PgWakeups>,
}

impl sealed::Sealed for PostgresDialect {}

impl fmt::Debug for PostgresDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDialect").finish_non_exhaustive()
    }
}

impl SqlInbox<PostgresDialect> {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`), with a
    /// pool of up to 10 connections, and creates or migrates the schema. Once connected, the
    /// pool reconnects by itself when the server comes back after an outage (calls fail with
    /// [`InboxError`] meanwhile).
    ///
    /// # Errors
    /// [`InboxError::Backend`] or [`InboxError::Timeout`] when the server cannot be reached or
    /// the schema not created.
    pub async fn connect(url: &str, options: InboxOptions) -> Result<Self, InboxError> {
        let pool = timed(options.timeout(), async {
            PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(options.timeout())
                .connect(url)
                .await
                .map_err(sql)
        })
        .await?;
        Self::from_pool(pool, options).await
    }

    /// An inbox in a pool you configured yourself; creates or migrates the schema.
    ///
    /// # Errors
    /// [`InboxError::Backend`] or [`InboxError::Timeout`] when the schema cannot be created.
    pub async fn from_pool(pool: PgPool, options: InboxOptions) -> Result<Self, InboxError> {
        timed(options.timeout(), migrate(&pool, options.prefix())).await?;
        let sql = statements(options.prefix());
        let wake = Arc::new(PgWakeups::new(pool.clone(), options.prefix()));
        let woken = Arc::clone(&wake);
        Ok(Self::assemble(
            pool,
            options,
            sql,
            PostgresDialect { wake },
            move || woken.due(),
        ))
    }

    /// Starts a transaction in which the leased delivery is already marked done (its row
    /// locked): write the handler's effects to it, then [`Completion::commit`]. `None` when the
    /// lease is no longer the owner's (nothing was changed).
    ///
    /// In a handler, call it through [`Attempt::begin_complete`](crate::inbox::Attempt), so that the
    /// worker follows it: the delivery is then done only if the completion commits; a
    /// completion dropped without [`Completion::commit`] (an early return, a `?`), rolled back,
    /// or whose commit failed is a **failed attempt**, retried after the backoff, even when the
    /// handler answers `2xx` (its writes were rolled back). A statement that fails in the
    /// transaction aborts it, even when its error is ignored: `commit` then returns an error
    /// (nothing was committed). While it is open the row lock keeps every other claim off the
    /// delivery (claims skip locked rows), and the worker sends no renewal and does not stop
    /// the handler when the lease runs out (the handler timeout does).
    ///
    /// ```no_run
    /// use tower_webhook::inbox::{Lease, PostgresInbox};
    ///
    /// # async fn handle(inbox: &PostgresInbox, lease: &Lease) -> Result<(), tower_webhook::inbox::InboxError> {
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
    ) -> Result<Option<Completion<Postgres>>, InboxError> {
        timed(self.options.timeout(), async {
            let transaction = self.pool.begin().await.map_err(sql)?;
            self.complete_in(transaction, lease).await
        })
        .await
    }
}

impl Dialect for PostgresDialect {
    type Database = Postgres;

    const NAME: &'static str = "PostgresInbox";

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// One statement for the batch (so one transaction, one round trip and one WAL flush),
    /// the rows passed as arrays: it reads which keys are stored and the depth, inserts the
    /// first delivery of each new key while there is room, and answers each row; a key that
    /// another transaction inserted meanwhile (a replica's accept) has its state read after.
    ///
    /// A row with a NUL byte in a `text` value (which `PostgreSQL` refuses, failing the whole
    /// statement) is answered its own error and left out of the statement, so that it does not
    /// fail the others of its batch.
    fn write_accepts<'a>(
        target: &'a Target<Self>,
        rows: &'a [Row],
    ) -> InboxFuture<'a, Vec<Result<Accepted, InboxError>>> {
        Box::pin(async move {
            let storable: Vec<&Row> = rows.iter().filter(|row| !holds_nul(row)).collect();
            let mut written = if storable.is_empty() {
                Vec::new()
            } else {
                write_storable(target, &storable).await?
            }
            .into_iter();
            Ok(rows
                .iter()
                .map(|row| {
                    if holds_nul(row) {
                        Err(InboxError::Backend(
                            "a text value of the delivery holds a NUL byte, which PostgreSQL \
                             cannot store"
                                .into(),
                        ))
                    } else {
                        written.next().unwrap_or_else(|| {
                            Err(InboxError::Backend("accept: an answer is missing".into()))
                        })
                    }
                })
                .collect())
        })
    }

    /// Wakes the producers waiting here at once, and the other processes' through a debounced
    /// `NOTIFY`.
    fn due(inbox: &PostgresInbox) {
        inbox.parts.wake.due();
    }

    fn wait_for_work(inbox: &PostgresInbox, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(inbox.parts.wake.wait(timeout))
    }

    /// `finish`: one statement (so one transaction) for the batch, the outcomes passed as
    /// arrays; each lease is recorded once (the same lease again in the batch is refused, as
    /// its single call after the first would be).
    fn finish_batch<'a>(
        inbox: &'a PostgresInbox,
        outcomes: &'a [(Lease, Finish)],
    ) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            let mut sent = std::collections::HashSet::with_capacity(outcomes.len());
            // The position in the batch of each outcome sent.
            let mut positions = Vec::with_capacity(outcomes.len());
            let (mut keys, mut owners, mut kinds, mut delays, mut errors) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (position, (lease, finish)) in outcomes.iter().enumerate() {
                if !sent.insert((lease.key(), lease.token())) {
                    continue;
                }
                positions.push(position);
                keys.push(lease.key().as_bytes().to_vec());
                owners.push(lease.token().to_hex());
                let (kind, delay, error) = match finish {
                    Finish::Done => ("done", 0, None),
                    Finish::Retry { delay, error } => ("retry", millis(*delay), Some(error)),
                    Finish::Dead { error } => ("dead", 0, Some(error)),
                    Finish::Release => ("release", 0, None),
                };
                kinds.push(kind);
                delays.push(delay);
                errors.push(error.map(|error| error_text(error).into_owned()));
            }
            let recorded: Vec<i64> = sqlx::query_scalar(&inbox.sql.finish)
                .bind(keys)
                .bind(owners)
                .bind(kinds)
                .bind(delays)
                .bind(errors)
                .fetch_all(&inbox.pool)
                .await
                .map_err(sql)?;
            let mut owned = vec![false; outcomes.len()];
            for index in recorded {
                // `WITH ORDINALITY` counts from 1.
                let position = usize::try_from(index - 1)
                    .ok()
                    .and_then(|index| positions.get(index));
                match position {
                    Some(&position) => owned[position] = true,
                    None => return Err(InboxError::Backend("finish: an unknown outcome".into())),
                }
            }
            Ok(owned)
        })
    }

    /// `renew_all`: one statement for the batch; returns the (key, owner) pairs renewed, and
    /// those still the owners' whose rows another transaction holds (skipped, not waited for).
    fn renew_batch<'a>(
        inbox: &'a PostgresInbox,
        leases: &'a [Lease],
        duration_ms: i64,
    ) -> InboxFuture<'a, Vec<(Vec<u8>, String)>> {
        Box::pin(async move {
            let keys: Vec<Vec<u8>> = leases
                .iter()
                .map(|lease| lease.key().as_bytes().to_vec())
                .collect();
            let owners: Vec<String> = leases.iter().map(|lease| lease.token().to_hex()).collect();
            sqlx::query_as(&inbox.sql.renew_all)
                .bind(keys)
                .bind(owners)
                .bind(duration_ms)
                .fetch_all(&inbox.pool)
                .await
                .map_err(sql)
        })
    }
}

/// Whether a `text` value of `row` holds a NUL byte (which `PostgreSQL` cannot store: the
/// statement would fail, and with it the whole batch).
fn holds_nul(row: &Row) -> bool {
    [
        Some(row.path.as_str()),
        Some(row.headers.as_str()),
        Some(row.scheme.as_str()),
        Some(row.event_id.as_str()),
        row.event.as_deref(),
        row.action.as_deref(),
        row.delivery.as_deref(),
        row.scope.as_deref(),
        row.tenant.as_deref(),
        row.signed_at.as_deref(),
        row.version.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|text| text.contains('\0'))
}

/// [`write_accepts`](Dialect::write_accepts)'s statement for the rows it can store: each
/// row's answer, in order.
async fn write_storable(
    target: &Target<PostgresDialect>,
    rows: &[&Row],
) -> Result<Vec<Result<Accepted, InboxError>>, InboxError> {
    let column = |get: fn(&Row) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|row| get(row)).collect()
    };
    let answers: Vec<(Option<String>, bool, bool, bool)> = sqlx::query_as(&target.sql.accept)
        .bind(
            rows.iter()
                .map(|row| row.key.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(column(|row| Some(&row.path)))
        .bind(column(|row| Some(&row.headers)))
        .bind(rows.iter().map(|row| row.body.as_ref()).collect::<Vec<_>>())
        .bind(column(|row| Some(&row.scheme)))
        .bind(column(|row| Some(&row.event_id)))
        .bind(column(|row| row.event.as_deref()))
        .bind(column(|row| row.action.as_deref()))
        .bind(column(|row| row.delivery.as_deref()))
        .bind(column(|row| row.scope.as_deref()))
        .bind(column(|row| row.tenant.as_deref()))
        .bind(column(|row| row.signed_at.as_deref()))
        .bind(column(|row| row.version.as_deref()))
        .bind(target.max_depth)
        .fetch_all(&target.pool)
        .await
        .map_err(sql)?;
    if answers.len() != rows.len() {
        return Err(InboxError::Backend(
            "accept: the batch's statement answered another number of rows".into(),
        ));
    }
    // The answer of each key's first delivery in the batch, for the later ones (`None`:
    // full).
    let mut firsts: HashMap<[u8; 32], Option<Accepted>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (row, (stored, first, inserted, room)) in rows.iter().zip(answers) {
        let answer = match stored {
            // Stored before the batch.
            Some(state) => state.parse().map(Accepted::Duplicate).map_err(backend),
            None if first && inserted => Ok(Accepted::New),
            None if first && !room => Err(InboxError::Full),
            // Room, and yet not inserted: another transaction inserted the key
            // meanwhile (committed now: the insert waited for it).
            None if first => state_of(target, &row.key).await?,
            // Sent twice within the batch: as its first delivery was answered.
            None => match firsts.get(&row.key) {
                Some(Some(Accepted::New)) => Ok(Accepted::Duplicate(DeliveryState::Pending)),
                Some(Some(duplicate)) => Ok(*duplicate),
                Some(None) => Err(InboxError::Full),
                None => Err(InboxError::Backend(
                    "the first delivery of this key in the batch failed".into(),
                )),
            },
        };
        if first {
            match &answer {
                Ok(accepted) => drop(firsts.insert(row.key, Some(*accepted))),
                Err(InboxError::Full) => drop(firsts.insert(row.key, None)),
                Err(_) => {}
            }
        }
        out.push(answer);
    }
    Ok(out)
}

/// The state of a key another transaction inserted while a batch was accepted: a duplicate,
/// or (removed again since, by a purge or a prune) an error, which the sender's retry finds
/// new.
async fn state_of(
    target: &Target<PostgresDialect>,
    key: &[u8; 32],
) -> Result<Result<Accepted, InboxError>, InboxError> {
    let (state, _depth): (Option<String>, i64) = sqlx::query_as(&target.sql.state_of)
        .bind(key.as_slice())
        .fetch_one(&target.pool)
        .await
        .map_err(sql)?;
    Ok(match state {
        Some(state) => state.parse().map(Accepted::Duplicate).map_err(backend),
        None => Err(InboxError::Backend(
            "the delivery's key was stored and removed again while it was accepted".into(),
        )),
    })
}

/// Creates the tables, or brings them to the latest version, under an advisory lock.
async fn migrate(pool: &PgPool, prefix: &str) -> Result<(), InboxError> {
    let mut transaction = pool.begin().await.map_err(sql)?;
    // `CREATE TABLE IF NOT EXISTS` on an existing table sends a NOTICE, which sqlx would log at
    // every open; this transaction's statements send none.
    sqlx::raw_sql("SET LOCAL client_min_messages = warning")
        .execute(&mut *transaction)
        .await
        .map_err(sql)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("tower-webhook inbox {prefix}"))
        .execute(&mut *transaction)
        .await
        .map_err(sql)?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS {prefix}schema_version (version bigint NOT NULL)"
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
    // The triggers' functions name the schema they were created in, whatever the search path
    // of the session that changes a delivery.
    let schema: Option<String> = sqlx::query_scalar("SELECT quote_ident(current_schema())")
        .fetch_one(&mut *transaction)
        .await
        .map_err(sql)?;
    let schema = schema.ok_or_else(|| InboxError::Backend("no current schema".into()))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let migration = migration.replace("{p}", prefix).replace("{s}", &schema);
        sqlx::raw_sql(&migration)
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

/// The statements, with the table's name in them.
fn statements(prefix: &str) -> Statements {
    let t = format!("{prefix}deliveries");
    let depth = format!("{prefix}depth");
    let owned = format!(
        "key = $1 AND owner = $2 AND {}",
        by_key("state = 'running'")
    );
    Statements {
        accept: accept(&t, &depth),
        state_of: format!(
            "SELECT (SELECT state FROM {t} WHERE key = $1), \
             (SELECT sum(n) FROM {depth})::bigint"
        ),
        claim: format!(
            "WITH due AS (SELECT key FROM {t} WHERE state IN ('pending', 'running') \
             AND due_at <= now() ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE {t} AS d SET state = 'running', owner = $1, attempts = d.attempts + 1, \
             due_at = now() + $2{MS} \
             FROM due WHERE d.key = due.key \
             RETURNING {COLUMNS}"
        ),
        renew: format!("UPDATE {t} SET due_at = now() + $3{MS} WHERE {owned}"),
        renew_all: renew_all(&t),
        complete: format!(
            "UPDATE {t} SET state = 'done', owner = NULL, due_at = now(), \
             finished_at = now(), history = {} WHERE {owned}",
            history_with("history", "attempts", &quoted(HistoryKind::Done), "NULL")
        ),
        completed: format!(
            "SELECT 1 FROM {t} WHERE key = $1 AND {}",
            by_key("state = 'done'")
        ),
        finish: finish(&t),
        retry: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = now() + $3{MS}, \
             last_error = $4, history = {} WHERE {owned}",
            history_with("history", "attempts", &quoted(HistoryKind::Retried), "$4")
        ),
        dead_letter: format!(
            "UPDATE {t} SET state = 'dead', owner = NULL, due_at = now(), \
             finished_at = now(), last_error = $3, history = {} WHERE {owned}",
            history_with("history", "attempts", &quoted(HistoryKind::Dead), "$3")
        ),
        release: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = now(), \
             attempts = greatest(attempts - 1, 0), history = {} WHERE {owned}",
            history_with(
                "history",
                "attempts",
                &quoted(HistoryKind::Released),
                "NULL"
            )
        ),
        list: format!(
            "SELECT {COLUMNS} FROM {t} AS d WHERE d.state = $1 \
             ORDER BY d.accepted_at, d.key LIMIT $2"
        ),
        get: format!("SELECT {COLUMNS} FROM {t} AS d WHERE d.key = $1"),
        time: TIME,
        search: format!("SELECT {COLUMNS} FROM {t} AS d"),
        replay_dead: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = now(), attempts = 0, \
             finished_at = NULL, history = {} WHERE key = $1 AND {}",
            history_with(
                "history",
                "attempts",
                &quoted(HistoryKind::Replayed),
                "NULL"
            ),
            by_key("state = 'dead'")
        ),
        replay_dead_or_done: format!(
            "UPDATE {t} SET state = 'pending', owner = NULL, due_at = now(), attempts = 0, \
             finished_at = NULL, history = {} WHERE key = $1 AND {}",
            history_with(
                "history",
                "attempts",
                &quoted(HistoryKind::Replayed),
                "NULL"
            ),
            by_key("state IN ('dead', 'done')")
        ),
        purge: format!("DELETE FROM {t} WHERE key = $1"),
        // The rows are locked by the selection, so their `ctid` holds until the delete (a
        // few times faster than looking each key up again).
        prune: format!(
            "WITH old AS (SELECT ctid FROM {t} \
             WHERE state = 'done' AND finished_at < now() - $1{MS} \
             ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             DELETE FROM {t} AS d USING old WHERE d.ctid = old.ctid"
        ),
        stats: format!(
            "SELECT \
             (SELECT count(*) FROM {t} WHERE state = 'pending'), \
             (SELECT count(*) FROM {t} WHERE state = 'running'), \
             (SELECT count(*) FROM {t} WHERE state = 'done'), \
             (SELECT count(*) FROM {t} WHERE state = 'dead'), \
             (SELECT (extract(epoch FROM now() - min(accepted_at)) * 1000)::bigint FROM {t} \
              WHERE state IN ('pending', 'running')), \
             (SELECT count(*) FROM {t} WHERE state = 'pending' AND attempts > 0)"
        ),
    }
}

/// The group commit's statement on table `t` and depth counter `depth`: a batch of
/// deliveries as arrays (`$1` to `$13`, a column each, in the order of the rows), the depth
/// limit `$14`. One row per delivery, in order: the state of its key when stored before the
/// batch; whether it is its key's first delivery in the batch; whether its key was inserted by
/// the batch; whether its key's first delivery had room under the limit.
///
/// The limit is exact for the batch: the first delivery of each new key is numbered in order,
/// and only those within the room (the limit less the depth, read once) are inserted; a key
/// another transaction inserts meanwhile is skipped (`ON CONFLICT`), never counted twice. The
/// statement is its own transaction: its commit is the batch's.
fn accept(t: &str, depth: &str) -> String {
    format!(
        "WITH input AS (SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], \
         $4::bytea[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY AS i(key, path, \
         headers, body, scheme, event_id, event, action, delivery, scope, tenant, signed_at, \
         version, ord)), \
         stored AS (SELECT d.key, d.state FROM {t} AS d \
         WHERE d.key IN (SELECT key FROM input)), \
         firsts AS (SELECT DISTINCT ON (key) ord FROM input ORDER BY key, ord), \
         fresh AS (SELECT i.*, row_number() OVER (ORDER BY i.ord) AS n FROM input AS i \
         WHERE i.ord IN (SELECT ord FROM firsts) AND i.key NOT IN (SELECT key FROM stored)), \
         room AS (SELECT $14::bigint - coalesce((SELECT sum(n) FROM {depth}), 0) AS n), \
         inserted AS (INSERT INTO {t} (key, state, attempts, due_at, accepted_at, path, \
         headers, body, scheme, event_id, event, action, delivery, scope, tenant, signed_at, \
         version) \
         SELECT key, 'pending', 0, now(), now(), path, headers, body, scheme, event_id, event, \
         action, delivery, scope, tenant, signed_at, version FROM fresh \
         WHERE fresh.n <= (SELECT n FROM room) ORDER BY fresh.ord \
         ON CONFLICT (key) DO NOTHING RETURNING key) \
         SELECT s.state, i.ord IN (SELECT ord FROM firsts) AS first, \
         i.key IN (SELECT key FROM inserted) AS inserted, \
         coalesce((SELECT f.n <= (SELECT n FROM room) FROM fresh AS f WHERE f.key = i.key), \
         false) AS room \
         FROM input AS i LEFT JOIN stored AS s ON s.key = i.key ORDER BY i.ord"
    )
}

/// `condition` (on the state of a row the statement finds by its key), written so that the
/// planner cannot choose an index for it: the key's primary key lookup is then the only plan.
/// Otherwise, with statistics taken while the inbox was idle (no pending or running row), a
/// `state = 'running'` makes the planner believe the partial `due` index empty, and scan all
/// of it (every running delivery) for each outcome, until the table is analyzed again.
fn by_key(condition: &str) -> String {
    format!("({condition}) IS TRUE")
}

/// `renew_all`'s statement on table `t`.
///
/// The rows of the batch are locked without waiting: a row another transaction holds
/// (a handler's open completion) is skipped, and its lease counts as still the
/// owner's when the row, as last committed, says so (no claim can take a locked row:
/// claims skip them too). A lease whose row was locked and is no longer the owner's
/// is refused.
fn renew_all(t: &str) -> String {
    format!(
        "WITH o AS (SELECT * FROM unnest($1::bytea[], $2::text[]) AS o(key, owner)), \
         locked AS (SELECT d.key FROM {t} AS d WHERE d.key IN (SELECT key FROM o) \
         FOR UPDATE SKIP LOCKED), \
         renewed AS (UPDATE {t} AS d SET due_at = now() + $3{MS} FROM o \
         WHERE d.key = o.key AND d.owner = o.owner AND {running} \
         AND d.key IN (SELECT key FROM locked) RETURNING d.key, d.owner) \
         SELECT o.key, o.owner FROM o \
         WHERE (o.key, o.owner) IN (SELECT key, owner FROM renewed) \
         OR (o.key NOT IN (SELECT key FROM locked) AND EXISTS (SELECT 1 FROM {t} AS d \
         WHERE d.key = o.key AND d.owner = o.owner AND {running}))",
        running = by_key("d.state = 'running'")
    )
}

/// `history` (the SQL expression of the stored history) with an entry appended: `kind` (an
/// SQL expression of a [`HistoryKind`]'s name), the attempt
/// `attempts` (the row's before the statement: the lease's attempt; for a replay, the attempts
/// it resets), `error` (an SQL expression: a parameter, or `NULL`), the time now; only the last
/// [`HISTORY_LIMIT`] entries kept. A stored history that is not an array (written by hand)
/// starts again from this entry rather than fail the outcome.
fn history_with(history: &str, attempts: &str, kind: &str, error: &str) -> String {
    let first = HISTORY_LIMIT - 1;
    format!(
        "jsonb_path_query_array(CASE jsonb_typeof({history}) WHEN 'array' THEN {history} \
         ELSE '[]'::jsonb END || jsonb_build_array(jsonb_build_object('attempt', {attempts}, \
         'kind', {kind}, 'error', {error}::text, 'at', {NOW_MS})), '$[last - {first} to last]')"
    )
}

/// `kind`'s name as an SQL literal.
fn quoted(kind: HistoryKind) -> String {
    format!("'{}'", kind.as_str())
}

/// `finish`'s statement on table `t`.
///
/// Each kind as its single statement sets the row (`complete`, `retry`,
/// `dead_letter`, `release`), its history entry included.
fn finish(t: &str) -> String {
    let kind = format!(
        "CASE o.kind WHEN 'done' THEN '{}' WHEN 'retry' THEN '{}' WHEN 'dead' THEN '{}' \
         ELSE '{}' END",
        HistoryKind::Done.as_str(),
        HistoryKind::Retried.as_str(),
        HistoryKind::Dead.as_str(),
        HistoryKind::Released.as_str(),
    );
    let history = history_with("d.history", "d.attempts", &kind, "o.error");
    format!(
        "UPDATE {t} AS d SET \
         state = CASE o.kind WHEN 'done' THEN 'done' WHEN 'dead' THEN 'dead' \
         ELSE 'pending' END, \
         owner = NULL, \
         due_at = CASE o.kind WHEN 'retry' THEN now() + o.delay{MS} ELSE now() END, \
         finished_at = CASE WHEN o.kind IN ('done', 'dead') THEN now() \
         ELSE d.finished_at END, \
         last_error = CASE WHEN o.kind IN ('retry', 'dead') THEN o.error \
         ELSE d.last_error END, \
         attempts = CASE o.kind WHEN 'release' THEN greatest(d.attempts - 1, 0) \
         ELSE d.attempts END, \
         history = {history} \
         FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
         WITH ORDINALITY AS o(key, owner, kind, delay, error, i) \
         WHERE d.key = o.key AND d.owner = o.owner AND {} \
         RETURNING o.i",
        by_key("d.state = 'running'")
    )
}
