//! The inbox on Redis Streams (feature `redis`).
//!
//! `mod.rs` holds [`RedisInbox`] and its [`InboxBackend`] implementation; `scripts.rs` the
//! Lua scripts (`lua/*.lua`) and the keys they are given; `record.rs` how a delivery is stored
//! in its hash; `completion.rs` the fenced [`RedisCompletion`].

mod completion;
mod record;
mod scripts;
mod wake;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Script};

use super::backend::{Accepted, Claim, Finish, InboxBackend, InboxFuture, Lease, Replay, Stats};
use super::delivery::{Delivery, DeliveryState, Record};
use super::error::{corrupt, timed, InboxError};
use super::options::InboxOptions;
use super::query::{Cursor, Filter, Page};
use crate::idempotency::{IdempotencyKey, Token, MAX_DURATION};

pub use self::completion::RedisCompletion;
use self::record::decode;
use self::scripts::{Keys, Scripts, GROUP};
use self::wake::Wake;
use self::writer::{Accepts, Row, Writer};

/// How many done deliveries one `prune` script removes; `prune` runs it until fewer are left.
const PRUNE_BATCH: usize = 500;
/// How many deliveries one `search` script examines at most (its scan budget): a filter on
/// event or id over a large state is read in bounded steps.
const SEARCH_SCAN: usize = 1_000;
/// How many `search` scripts one [`InboxBackend::search`] runs at most to fill its page: it
/// examines at most `SEARCH_SCAN * SEARCH_CALLS` deliveries.
const SEARCH_CALLS: usize = 10;
/// How many due retries one claim moves back onto the stream at most.
const PROMOTE_BATCH: usize = 1000;
/// A consumer with nothing pending and idle this long (or for the window, when shorter) is
/// removed from the group by `prune`: a process that ended (a live one is added again by its
/// next read).
const IDLE_CONSUMER: Duration = Duration::from_secs(60 * 60);

/// The inbox backend on Redis Streams (feature `redis`): for several replicas sharing one
/// Redis, with no SQL database of their own.
///
/// # How it works
///
/// - **Accept** is one script: when the key (the delivery's [`IdempotencyKey`], which names
///   the endpoint) has no hash yet and the depth allows it, it stores the delivery in a hash
///   and appends an entry to the stream with `XADD`; otherwise it answers the stored state (a
///   duplicate) or full. The `2xx` follows the script's answer. Accepts are group-committed
///   (see below): one script call stores the accepts that arrived while the previous call was
///   in flight.
/// - **Claim** is one script over the consumer group `workers`: the stream's next entries are
///   read with `XREADGROUP` under this process's consumer name (`hostname-pid-random`, unique
///   per [`connect`](Self::connect), so a process never mistakes another's pending entries for
///   its own); entries whose lease ran out are taken over from whichever consumer held them
///   with `XCLAIM`. Each claim writes a fresh fencing [`Token`] into the hash.
/// - **Done** acknowledges the entry (`XACK`) and deletes it from the stream (`XDEL`): the
///   stream holds only waiting deliveries. The hash (the key) is kept for the dedup window,
///   then removed by [`prune`](InboxBackend::prune) (the workers run it every hour).
/// - **Retry** takes the entry off the stream and schedules the key in a sorted set scored by
///   its due time (Streams have no delayed redelivery); every claim first moves the due ones
///   back onto the stream with a new entry.
/// - **Dead letter** moves the delivery to a second stream, `dead-letters` (one entry per dead
///   delivery, with its error); **replay** deletes that entry and appends the delivery to the
///   main stream again, its attempts reset.
/// - Sorted sets index the deliveries by state (scored by acceptance, for `list`, `search` and
///   `stats`), the pending ones attempted already apart (`state:retrying`, a subset of
///   `state:pending` kept by every script that changes a state, so that `stats` counts
///   [`Stats::retrying`] with a `ZCARD`, never a scan), and the done ones by completion (for
///   `prune`).
/// - **Search** ([`search`](InboxBackend::search)) walks the indexes the filter's status
///   allows, merged in the admin order: acceptance in whole ms, then the key in hex (the
///   sorted sets' own order for equal scores, byte by byte: the [`Cursor`] order), starting
///   after the cursor with a binary search among the deliveries of its millisecond. Each
///   script examines at most 1,000 deliveries and a search runs at most 10, so a filter on
///   event or id that matches few of many may answer a short page with a `next`.
/// - **History**: every outcome (done, by the worker or a [`RedisCompletion`]; retried; dead;
///   released) and every replay appends an entry to the delivery's `history` field (a JSON
///   array, oldest first, the last [`HISTORY_LIMIT`](super::HISTORY_LIMIT) kept), in the same
///   script; a history that does not read is shown empty ([`Record::history`]).
///
/// Every script reads the time from Redis (`TIME`), so every replica shares one clock, and every
/// call fails with [`InboxError::Timeout`] after the configured timeout. Needs Redis 6.2 or
/// later.
///
/// Claims follow the stream's order, merged with expired leases by due time: a retry re-enters
/// the stream when it is due (a new entry), so it waits behind deliveries accepted before that
/// moment and not yet claimed. Deliveries are not processed in order in any case.
///
/// # Batches
///
/// [`finish`](InboxBackend::finish) (the workers' completer: done, retry, dead letter and
/// release, mixed) and [`renew_all`](InboxBackend::renew_all) (every running lease) are one
/// script each, whatever the batch's size: each lease is checked and recorded exactly as its
/// single call would, one after another in the script, and each answers whether it was still
/// the owner's, in order. Redis does not roll a script back, so each outcome runs in a
/// protected call: a delivery whose stored data is odd (a damaged hash) fails alone and is
/// answered `false` (refused: the caller reads it again, as after any refusal), and the others
/// of the batch are recorded and answered as usual; one damaged delivery never fails the
/// renewal of every running lease.
///
/// # Group-committed accepts
///
/// One writer task per inbox (started by [`connect`](Self::connect), shared by the clones)
/// takes the deliveries that arrived while its previous script call was in flight, up to 256
/// deliveries or 4 MiB, and stores them with one call of the accept script; each accept is
/// answered only after that call returned. With `appendfsync always` Redis writes and fsyncs a
/// script's effects before it answers, so a `2xx` still means the delivery is on disk. Within
/// a call:
///
/// - a key sent twice (a sender's quick retry) is stored once, and the later ones are answered
///   as duplicates of the pending delivery;
/// - the depth limit is exact: each new delivery counts against it for the ones after it, and
///   a delivery past the limit is answered [`InboxError::Full`] and not stored;
/// - every delivery's state is read before anything is written, so a read that fails (a
///   delivery's key holding another type) fails the call with nothing stored; a failed call
///   answers each of its deliveries [`InboxError::Backend`] (the layer answers `503`). A call
///   whose answer was lost (the connection cut after Redis ran it) may have stored its
///   deliveries, as with any call: the sender's retry is then a duplicate.
///
/// Each accept keeps its own timeout ([`InboxOptions::with_timeout`]): one that timed out while
/// its call was in flight may still be stored (its retry is then a duplicate); one that timed
/// out before the writer took it is not written. Several processes each have their own
/// writer; Redis runs their calls one at a time.
///
/// # Wake-ups
///
/// [`wait_for_work`](InboxBackend::wait_for_work) resolves at once when this process accepts
/// a delivery (or replays or releases one: a [`tokio::sync::Notify`] shared by the handle and
/// its clones), and within a round trip when any process appends to the stream: it reads the
/// consumer group's position (`last-delivered-id`, one small script) and blocks in
/// `XREAD BLOCK <timeout> STREAMS <stream> <position>` on a connection of its own (a blocked
/// connection answers nothing else; a few are kept for the next waits). Every client blocked
/// on a stream is woken by an `XADD`, so every waiting replica wakes, not one of them; and
/// since an entry no claim took yet lies after the group's position, an accept made between
/// a claim that found nothing and the wait answers the wait at once: none is missed. A plain
/// `XREAD` changes nothing (unlike `XREADGROUP`, it delivers no entry to a consumer): a
/// process that dies while it waits leaves nothing behind, and the claim script stays the
/// only place where deliveries are taken. A wait whose connection fails (Redis restarting)
/// connects again after a short pause, until its timeout.
///
/// What is not appended to the stream is found by the workers' poll, when the wait times out
/// (`Workers::with_poll_interval`): a retry coming due (it re-enters the stream when a claim
/// finds it due), and a lease that ran out (taken over by a claim).
///
/// # Where Streams alone do not keep the contract, and what this backend does instead
///
/// - **Per-claim leases and renewal**: `XAUTOCLAIM` takes over entries idle longer than one
///   `min-idle-time` for everyone, while [`InboxBackend::claim`] gives each claim its own lease
///   and [`InboxBackend::renew`] extends one. The lease's end is kept in a sorted set; a claim
///   takes over exactly the entries whose lease ended, oldest first, with `XCLAIM` (the same
///   ownership transfer `XAUTOCLAIM` makes). A renewal also `XCLAIM`s the entry to its own
///   consumer, so `XPENDING`'s idle times stay meaningful to an operator.
/// - **Fencing**: a consumer name identifies a process, not a claim; the token of each claim is
///   stored in the delivery's hash and every outcome checks it in the same script.
/// - **Attempts**: the entry's delivery count cannot be lowered (a release does not count) nor
///   reset (a replay does); the hash keeps its own counter, which the workers compare with their
///   maximum attempts.
///
/// # Durability: what Redis's persistence settings mean
///
/// An accept is acknowledged once Redis ran the script, which says nothing about the disk by
/// itself:
///
/// - `appendonly yes` with `appendfsync always`: Redis writes and fsyncs the script's effects
///   to the append-only file before it answers, so an acknowledged delivery survives Redis being
///   killed and the machine losing power. This is the setting to use for an inbox (accepts cost
///   one fsync each, grouped across concurrent clients).
/// - `appendfsync everysec` (Redis's default when AOF is on): up to about a second of
///   acknowledged deliveries is lost if the machine loses power or the OS crashes (not if only
///   the Redis process is killed: the data is in the OS's page cache).
/// - RDB snapshots only (`save ...`, AOF off): everything since the last snapshot is lost when
///   Redis stops unexpectedly, minutes of acknowledged deliveries. Not an inbox.
/// - Replication is asynchronous: a failover to a replica may lose the last acknowledged
///   deliveries unless `WAIT`-style guarantees are configured; a Redis with `maxmemory-policy`
///   other than `noeviction` may evict deliveries.
///
/// # Trimming
///
/// Done entries are deleted from the stream as they complete (so the stream's length is the
/// number of waiting deliveries, not the history); the key's hash is kept for the dedup window
/// ([`DEFAULT_DEDUP_WINDOW`](super::DEFAULT_DEDUP_WINDOW), 7 days) to answer duplicates, then
/// pruned. The hash keeps the body too (a done delivery can be replayed explicitly), so size
/// Redis's memory for a window's worth of deliveries, and keep `maxmemory-policy noeviction`. Dead deliveries stay (in the dead-letter stream and their hash) until replayed or
/// purged. `prune` also removes from the group the consumers with nothing pending that have been
/// idle for an hour (or the window, when shorter): processes that ended.
///
/// Do not trim the stream yourself (`XTRIM`, `MAXLEN`, `XDEL`): it holds only waiting
/// deliveries. If entries are removed anyway, running deliveries are unaffected (the hash, not
/// the entry, records who holds them), and the next `prune` appends the pending ones that lost
/// their entry again (it first compares the stream's length with the waiting count, so this
/// costs nothing otherwise).
///
/// # Keys
///
/// All under one hash tag, `{<prefix>inbox}:` (prefix of [`InboxOptions::with_prefix`],
/// default `tower_webhook_`): `stream`, `dead-letters` (streams), `delayed`, `leases`,
/// `state:pending|running|done|dead`, `state:retrying` (since 0.2, built at the first
/// [`connect`](Self::connect) for an inbox from before; processes of an older version do not
/// keep it, so do not run both at once), `finished` (sorted sets of keys in hex),
/// `retrying-indexed` (a string: `state:retrying` is built), and `d:<key in hex>` (one hash
/// per delivery: the delivery's fields, its state, attempts, last error, owner and stream
/// entry, and its `history`). Two inboxes with different prefixes share a Redis without
/// seeing each other's deliveries. The scripts reach each delivery's hash by name (not through
/// `KEYS`) and the connection is not a cluster client, so the inbox needs a standalone Redis,
/// not a Redis Cluster (the hash tag already keeps every key in one slot). With Sentinel, give
/// the primary's address: the connection does not follow a failover.
///
/// ```no_run
/// use tower_webhook::inbox::{InboxBackend, InboxOptions, RedisInbox};
///
/// # async fn run() -> Result<(), tower_webhook::inbox::InboxError> {
/// let inbox = RedisInbox::connect("redis://127.0.0.1:6379/", InboxOptions::new()).await?;
/// println!("{} deliveries waiting", inbox.stats().await?.depth());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisInbox {
    client: Client,
    connection: ConnectionManager,
    options: InboxOptions,
    keys: Arc<Keys>,
    consumer: Arc<str>,
    scripts: Arc<Scripts>,
    wake: Arc<Wake>,
    /// The group commit's writer, shared by the clones.
    writer: Writer,
}

impl fmt::Debug for RedisInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisInbox")
            .field("options", &self.options)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The inbox's key names.
impl RedisInbox {
    /// Connects to the Redis server at `url` (`redis://host:port/db`, or `rediss://` with the
    /// `redis` crate's TLS features) and creates the consumer group if it is missing. The
    /// connection reconnects by itself when Redis comes back after a restart.
    ///
    /// # Errors
    /// [`InboxError::Backend`] when the URL is invalid or Redis cannot be reached now;
    /// [`InboxError::Timeout`] past the options' timeout.
    pub async fn connect(url: &str, options: InboxOptions) -> Result<Self, InboxError> {
        let client = Client::open(url).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout()))
            .set_response_timeout(Some(options.timeout()))
            .set_number_of_retries(1);
        let connection = timed(options.timeout(), async {
            ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map_err(backend)
        })
        .await?;
        let keys = Arc::new(Keys::new(options.prefix()));
        let scripts = Arc::new(Scripts::new());
        let wake = Wake::new();
        let accepts = Accepts {
            connection: connection.clone(),
            keys: Arc::clone(&keys),
            script: scripts.accept.clone(),
            max_depth: options.max_depth().to_string(),
        };
        let woken = Arc::clone(&wake);
        // Two batches in flight: Redis runs scripts one at a time, each reading the depth and
        // the states as the one before left them, so the next batch can be on its way while
        // the previous one syncs.
        let writer = Writer::start(accepts, 2, options.timeout(), move || woken.notify());
        let inbox = Self {
            client,
            connection,
            keys,
            options,
            consumer: consumer_name().into(),
            scripts,
            wake,
            writer,
        };
        inbox.create_group().await?;
        inbox.index_retries().await?;
        Ok(inbox)
    }

    /// Builds the index of retries (`state:retrying`) of an inbox written by a version without
    /// it, in batches (`lua/index.lua`); one short script when it is built already.
    async fn index_retries(&self) -> Result<(), InboxError> {
        let batch = PRUNE_BATCH.to_string();
        let (mut score, mut key) = (String::new(), String::new());
        loop {
            let (complete, next_score, next_key): (i64, String, String) = self
                .run(
                    &self.scripts.index,
                    &[score.as_bytes(), key.as_bytes(), batch.as_bytes()],
                )
                .await?;
            if complete == 1 {
                return Ok(());
            }
            (score, key) = (next_score, next_key);
        }
    }

    async fn create_group(&self) -> Result<(), InboxError> {
        let mut command = redis::cmd("XGROUP");
        command
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        let mut connection = self.connection.clone();
        let created: Result<(), redis::RedisError> = timed(self.options.timeout(), async {
            Ok(command.query_async(&mut connection).await)
        })
        .await?;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(backend(error)),
            _ => Ok(()),
        }
    }

    /// The options the inbox was opened with.
    #[must_use]
    pub fn options(&self) -> &InboxOptions {
        &self.options
    }

    /// This process's consumer name in the group (`hostname-pid-random`), as `XPENDING` and
    /// `XINFO CONSUMERS` show it.
    #[must_use]
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The Redis key of the stream of waiting deliveries (for `XINFO`, `XPENDING`, ...).
    #[must_use]
    pub fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// The Redis key of the dead-letter stream.
    #[must_use]
    pub fn dead_letter_key(&self) -> &str {
        &self.keys.dead_letters
    }

    /// The Redis key of the hash that stores the delivery under `key`: the fence that
    /// [`begin_complete`](Self::begin_complete) watches.
    #[must_use]
    pub fn delivery_key(&self, key: &IdempotencyKey) -> String {
        format!("{}{}", self.keys.hash, key.to_hex())
    }

    /// Starts a fenced completion of the leased delivery: on a connection of its own, it
    /// `WATCH`es the delivery's hash and checks that `lease` is still the owner's. Queue the
    /// handler's own Redis commands on the [`RedisCompletion`] (it dereferences to a
    /// [`redis::Pipeline`] in transaction mode), then [`RedisCompletion::commit`]: the commands
    /// and the completion run in one `MULTI`/`EXEC`, and only if nobody took the delivery over
    /// meanwhile (the hash changes on every claim), so either both happen or neither does.
    /// `None` when the lease is no longer the owner's (nothing was changed).
    ///
    /// The effects must live in the same Redis (and, with a Sentinel or a proxy, on the same
    /// server) as the inbox. The `WATCH` needs a connection of its own: each completion opens
    /// one, closed when it is committed or dropped; keep it short.
    ///
    /// In a handler, call it through
    /// [`Attempt::begin_complete`](super::Attempt::begin_complete), so that the worker follows
    /// it: the delivery is then done only if the completion commits (`Ok(true)`); a completion
    /// dropped without [`RedisCompletion::commit`] (an early return, a `?`), or whose commit did
    /// not run or failed, is a **failed attempt**, retried after the backoff, even when the
    /// handler answers `2xx`. While it is open the worker goes on renewing the lease and does
    /// not stop the handler when the lease runs out (the handler timeout does).
    ///
    /// ```no_run
    /// use tower_webhook::inbox::{Lease, RedisInbox};
    ///
    /// # async fn handle(inbox: &RedisInbox, lease: &Lease) -> Result<(), tower_webhook::inbox::InboxError> {
    /// if let Some(mut completion) = inbox.begin_complete(lease).await? {
    ///     completion.hincr("orders:count", "ord_1", 1).ignore();
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
    ) -> Result<Option<RedisCompletion>, InboxError> {
        timed(self.options.timeout(), async {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.options.timeout()))
                .set_response_timeout(Some(self.options.timeout()));
            let mut connection = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(backend)?;
            let hash = self.delivery_key(lease.key());
            let () = redis::cmd("WATCH")
                .arg(&hash)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            let (state, owner): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&hash)
                .arg("state")
                .arg("owner")
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            if state.as_deref() != Some("running") || owner != Some(lease.token().to_hex()) {
                return Ok(None);
            }
            let mut pipeline = redis::pipe();
            pipeline.atomic();
            Ok(Some(RedisCompletion {
                connection,
                pipeline,
                completion: self.eval(scripts::complete_source(), &lease_args(lease)),
                timeout: self.options.timeout(),
                tracked: None,
            }))
        })
        .await
    }

    /// `EVAL` of the script `source` with the inbox's keys and `args` after the hash prefix
    /// and group: in a transaction, where `EVALSHA` could fail with `NOSCRIPT` after the other
    /// commands ran.
    fn eval(&self, source: String, args: &[Vec<u8>]) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command.arg(source).arg(self.keys.all().len());
        for key in self.keys.all() {
            command.arg(key);
        }
        command.arg(&self.keys.hash).arg(GROUP);
        for arg in args {
            command.arg(arg.as_slice());
        }
        command
    }

    /// Runs `script` with the inbox's keys, the hash prefix, the group and `args`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        args: &[&[u8]],
    ) -> Result<T, InboxError> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.all() {
            invocation.key(key);
        }
        invocation.arg(&self.keys.hash).arg(GROUP);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        timed(self.options.timeout(), async {
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(backend)
        })
        .await
    }

    /// Appends again the pending deliveries whose stream entries were removed by hand (see
    /// `lua/repair.lua`); the first call costs a few counts when nothing was removed.
    async fn repair(&self) -> Result<(), InboxError> {
        let batch = PRUNE_BATCH.to_string();
        let (mut start, mut check, mut total) = (0_i64, "check", 0_u64);
        while start >= 0 {
            let first = start.to_string();
            let (next, fixed): (i64, u64) = self
                .run(
                    &self.scripts.repair,
                    &[first.as_bytes(), batch.as_bytes(), check.as_bytes()],
                )
                .await?;
            (start, check, total) = (next, "", total + fixed);
        }
        if total > 0 {
            crate::observe::warn!(
                appended = total,
                stream = %self.keys.stream,
                "inbox: pending deliveries had lost their stream entries (trimmed by hand?), appended again"
            );
        }
        Ok(())
    }

    /// Wakes this process's waits ([`InboxBackend::wait_for_work`]): a delivery is due now.
    fn wake_local(&self) {
        self.wake.notify();
    }

    async fn owner_call(&self, script: &Script, lease: &Lease) -> Result<bool, InboxError> {
        let [key, token] = lease_args(lease);
        let answer: i64 = self.run(script, &[&key, &token]).await?;
        Ok(answer == 1)
    }
}

impl InboxBackend for RedisInbox {
    /// Through the group commit's writer: one script call for the accepts that arrived while
    /// the previous one was in flight (see "Group-committed accepts" in the type's docs).
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted> {
        Box::pin(timed(self.options.timeout(), async move {
            self.writer.accept(Row::new(delivery)?).await
        }))
    }

    fn claim(&self, lease: Duration, limit: usize) -> InboxFuture<'_, Vec<Claim>> {
        Box::pin(async move {
            let token = Token::random();
            let hex = token.to_hex();
            let lease_ms = millis(lease).to_string();
            let limit_text = limit.min(1_000_000).to_string();
            let promote = PROMOTE_BATCH.to_string();
            let rows: Vec<Vec<Vec<u8>>> = self
                .run(
                    &self.scripts.claim,
                    &[
                        self.consumer.as_bytes(),
                        hex.as_bytes(),
                        lease_ms.as_bytes(),
                        limit_text.as_bytes(),
                        promote.as_bytes(),
                    ],
                )
                .await?;
            // A delivery that cannot be read is skipped, not the whole claim: failing it would
            // hold back the deliveries claimed with it, lease after lease (they are taken again
            // together). It keeps its lease, and `get` or `list` show the error.
            let mut claims = Vec::with_capacity(rows.len());
            for row in rows {
                match decode(row) {
                    Ok(record) => {
                        let lease = Lease::new(*record.delivery.key(), token, record.attempts);
                        claims.push(Claim::new(record, lease));
                    }
                    Err(error) => crate::observe::warn!(
                        %error,
                        "inbox: a claimed delivery cannot be read; skipped (purge it)"
                    ),
                }
            }
            Ok(claims)
        })
    }

    fn renew<'a>(&'a self, lease: &'a Lease, duration: Duration) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let key = lease.key().to_hex();
            let token = lease.token().to_hex();
            let duration = millis(duration).to_string();
            let answer: i64 = self
                .run(
                    &self.scripts.renew,
                    &[
                        key.as_bytes(),
                        token.as_bytes(),
                        self.consumer.as_bytes(),
                        duration.as_bytes(),
                    ],
                )
                .await?;
            Ok(answer == 1)
        })
    }

    fn complete<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        Box::pin(self.owner_call(&self.scripts.complete, lease))
    }

    fn retry<'a>(
        &'a self,
        lease: &'a Lease,
        delay: Duration,
        error: &'a str,
    ) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let key = lease.key().to_hex();
            let token = lease.token().to_hex();
            let delay = millis(delay).to_string();
            let answer: i64 = self
                .run(
                    &self.scripts.retry,
                    &[
                        key.as_bytes(),
                        token.as_bytes(),
                        delay.as_bytes(),
                        error.as_bytes(),
                    ],
                )
                .await?;
            Ok(answer == 1)
        })
    }

    fn dead_letter<'a>(&'a self, lease: &'a Lease, error: &'a str) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let key = lease.key().to_hex();
            let token = lease.token().to_hex();
            let answer: i64 = self
                .run(
                    &self.scripts.dead_letter,
                    &[key.as_bytes(), token.as_bytes(), error.as_bytes()],
                )
                .await?;
            Ok(answer == 1)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let released = self.owner_call(&self.scripts.release, lease).await?;
            if released {
                self.wake_local();
            }
            Ok(released)
        })
    }

    fn list(&self, state: DeliveryState, limit: usize) -> InboxFuture<'_, Vec<Record>> {
        Box::pin(async move {
            let limit = limit.min(1_000_000_000).to_string();
            let rows: Vec<Vec<Vec<u8>>> = self
                .run(
                    &self.scripts.list,
                    &[state.as_str().as_bytes(), limit.as_bytes()],
                )
                .await?;
            rows.into_iter().map(decode).collect()
        })
    }

    /// In the store (`lua/search.lua`), in bounded steps: each script examines at most 1,000
    /// deliveries of the state indexes the filter allows (merged in the admin order:
    /// acceptance in ms, then key), and one search runs at most 10 of them. A filter on event
    /// or id that matches few of many deliveries may therefore answer a page that is **short
    /// yet has a [`next`](Page::next)**: the position after the last delivery examined; ask
    /// again from there.
    fn search<'a>(&'a self, filter: &'a Filter) -> InboxFuture<'a, Page> {
        Box::pin(async move {
            let limit = filter.limit_or_default();
            let status = filter.status.map_or("any", |status| status.as_str());
            let event = filter.event.as_ref().map(|event| format!("={event}"));
            let id = filter.id.as_ref().map(|id| format!("={id}"));
            let (event, id) = (event.unwrap_or_default(), id.unwrap_or_default());
            let budget = SEARCH_SCAN.to_string();
            let mut start = start_position(filter);
            let mut records = Vec::new();
            for _ in 0..SEARCH_CALLS {
                let (score, key) = match &start {
                    Some((ms, key)) => (ms.to_string(), key.clone().unwrap_or_default()),
                    None => (String::new(), String::new()),
                };
                let wanted = (limit - records.len()).to_string();
                let (more, last_score, last_key, rows): (i64, String, String, Vec<Vec<Vec<u8>>>) =
                    self.run(
                        &self.scripts.search,
                        &[
                            status.as_bytes(),
                            score.as_bytes(),
                            key.as_bytes(),
                            event.as_bytes(),
                            id.as_bytes(),
                            wanted.as_bytes(),
                            budget.as_bytes(),
                        ],
                    )
                    .await?;
                for row in rows {
                    records.push(decode(row)?);
                }
                if records.len() >= limit {
                    return Ok(Page::new(records, limit));
                }
                if more == 0 || last_key.is_empty() {
                    return Ok(Page {
                        records,
                        next: None,
                    });
                }
                let ms: i64 = last_score
                    .parse()
                    .map_err(|_| corrupt("a search position's score does not parse"))?;
                start = Some((i128::from(ms), Some(last_key)));
            }
            // The budget ran out: the position after the last one examined.
            let next = match start {
                Some((ms, Some(hex))) => Some(Cursor {
                    accepted_at: from_ms_i128(ms)?,
                    key: IdempotencyKey::from_hex(&hex)
                        .ok_or_else(|| corrupt("an index holds a key that is not 64 hex digits"))?,
                }),
                _ => None,
            };
            Ok(Page { records, next })
        })
    }

    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, Option<Record>> {
        Box::pin(async move {
            let hex = key.to_hex();
            // `{ false }` reaches Redis as an empty array.
            let rows: Vec<Vec<Vec<u8>>> = self.run(&self.scripts.get, &[hex.as_bytes()]).await?;
            rows.into_iter().next().map(decode).transpose()
        })
    }

    fn replay<'a>(&'a self, key: &'a IdempotencyKey, from: Replay) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let hex = key.to_hex();
            let from = match from {
                Replay::Dead => "dead",
                Replay::DeadOrDone => "dead-or-done",
            };
            let answer: i64 = self
                .run(&self.scripts.replay, &[hex.as_bytes(), from.as_bytes()])
                .await?;
            if answer == 1 {
                self.wake_local();
            }
            Ok(answer == 1)
        })
    }

    fn purge<'a>(&'a self, key: &'a IdempotencyKey) -> InboxFuture<'a, bool> {
        Box::pin(async move {
            let hex = key.to_hex();
            let answer: i64 = self.run(&self.scripts.purge, &[hex.as_bytes()]).await?;
            Ok(answer == 1)
        })
    }

    fn prune(&self, window: Duration) -> InboxFuture<'_, u64> {
        Box::pin(async move {
            let idle = millis(window.min(IDLE_CONSUMER)).to_string();
            let window = millis(window).to_string();
            let batch = PRUNE_BATCH.to_string();
            self.repair().await?;
            let mut total = 0_u64;
            loop {
                // Each script is timed by `run`, not the whole prune.
                let removed: Result<u64, _> = self
                    .run(
                        &self.scripts.prune,
                        &[window.as_bytes(), batch.as_bytes(), idle.as_bytes()],
                    )
                    .await;
                let removed = match removed {
                    Ok(removed) => removed,
                    Err(error) if total == 0 => return Err(error),
                    Err(error) => {
                        crate::observe::warn!(
                            %error,
                            removed = total,
                            "inbox prune stopped early; the next prune goes on"
                        );
                        return Ok(total);
                    }
                };
                total += removed;
                if removed < PRUNE_BATCH as u64 {
                    return Ok(total);
                }
            }
        })
    }

    fn stats(&self) -> InboxFuture<'_, Stats> {
        Box::pin(async move {
            let (pending, running, done, dead, oldest, retrying): (u64, u64, u64, u64, i64, u64) =
                self.run(&self.scripts.stats, &[]).await?;
            Ok(Stats {
                pending,
                // The index of retries is kept by the scripts; never more than pending.
                retrying: retrying.min(pending),
                running,
                done,
                dead,
                oldest_waiting: u64::try_from(oldest).ok().map(Duration::from_millis),
                ..Stats::default()
            })
        })
    }

    /// One script for the whole batch (`lua/finish.lua`), each outcome fenced by its lease as
    /// its single call is.
    fn finish<'a>(&'a self, outcomes: &'a [(Lease, Finish)]) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            if outcomes.is_empty() {
                return Ok(Vec::new());
            }
            let mut args: Vec<Vec<u8>> = Vec::with_capacity(outcomes.len() * 5);
            for (lease, finish) in outcomes {
                let [key, token] = lease_args(lease);
                let (what, delay, error): (&str, String, &str) = match finish {
                    Finish::Done => ("done", String::new(), ""),
                    Finish::Retry { delay, error } => ("retry", millis(*delay).to_string(), error),
                    Finish::Dead { error } => ("dead", String::new(), error),
                    Finish::Release => ("release", String::new(), ""),
                };
                args.extend([
                    what.as_bytes().to_vec(),
                    key,
                    token,
                    delay.into_bytes(),
                    error.as_bytes().to_vec(),
                ]);
            }
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let answers: Vec<i64> = self.run(&self.scripts.finish, &args).await?;
            let owned = owner_answers(answers, outcomes.len())?;
            // A release makes its delivery due now: wake this process's waiting producers
            // (other processes wake on the stream entry it appended).
            let released = outcomes
                .iter()
                .zip(&owned)
                .any(|((_, finish), owned)| *owned && matches!(finish, Finish::Release));
            if released {
                self.wake_local();
            }
            Ok(owned)
        })
    }

    /// An accept, replay or release in this process (at once), a delivery appended to the
    /// stream by any process (a blocking `XREAD`), or the timeout; see "Wake-ups" in the
    /// type's docs.
    fn wait_for_work(&self, timeout: Duration) -> InboxFuture<'_, ()> {
        Box::pin(async move {
            self.wait(timeout).await;
            Ok(())
        })
    }

    /// One script for every lease (`lua/renew_all.lua`).
    fn renew_all<'a>(
        &'a self,
        leases: &'a [Lease],
        duration: Duration,
    ) -> InboxFuture<'a, Vec<bool>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(Vec::new());
            }
            let duration = millis(duration).to_string();
            let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + leases.len() * 2);
            args.push(self.consumer.as_bytes().to_vec());
            args.push(duration.into_bytes());
            for lease in leases {
                args.extend(lease_args(lease));
            }
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let answers: Vec<i64> = self.run(&self.scripts.renew_all, &args).await?;
            owner_answers(answers, leases.len())
        })
    }
}

/// A batch script's answers (1 recorded, 0 not the owner's, -1 failed on odd stored data) as
/// `Vec<bool>`: a failed one is refused (`false`: the caller reads that delivery again, as
/// after any refusal) and logged, never the whole batch (the others were recorded); a count
/// that does not match fails the call.
fn owner_answers(answers: Vec<i64>, expected: usize) -> Result<Vec<bool>, InboxError> {
    if answers.len() != expected {
        return Err(corrupt(
            "a batch script answered for a different number of leases",
        ));
    }
    let odd = answers.iter().filter(|answer| **answer < 0).count();
    if odd > 0 {
        crate::observe::warn!(
            odd,
            batch = expected,
            "inbox: a delivery's stored data could not be updated; refused (read it with get, \
             or purge it), the batch's others were recorded"
        );
    }
    Ok(answers.into_iter().map(|answer| answer == 1).collect())
}

/// `hostname-pid-random`: unique per process (and per inbox opened in it), so that entries a
/// dead process held are told apart from a live one's.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = Token::random().to_hex();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        random.get(..8).unwrap_or(&random)
    )
}

/// Where a search starts in the state indexes (scored by acceptance in whole ms, members the
/// keys in hex): a score, and a key at that score to start after (`None`: its first member).
/// The later of [`Filter::since`] (at or after) and [`Filter::after`] (strictly after the
/// cursor, whose time may hold a fraction of a ms); `None` for the start.
fn start_position(filter: &Filter) -> Option<(i128, Option<String>)> {
    const NANOS: i128 = 1_000_000;
    let ceil_ms = |nanos: i128| nanos.div_euclid(NANOS) + i128::from(nanos.rem_euclid(NANOS) != 0);
    let since = filter
        .since
        .map(|since| (ceil_ms(since.unix_timestamp_nanos()), None));
    let after = filter.after.map(|cursor| {
        let nanos = cursor.accepted_at.unix_timestamp_nanos();
        if nanos.rem_euclid(NANOS) == 0 {
            (nanos / NANOS, Some(cursor.key.to_hex()))
        } else {
            // Every delivery of the ms it falls in is before it, every one of the next after.
            (ceil_ms(nanos), None)
        }
    });
    match (since, after) {
        (Some(since), Some(after)) => Some(if since.0 > after.0 { since } else { after }),
        (since, after) => since.or(after),
    }
}

/// A time in whole ms since the epoch.
fn from_ms_i128(ms: i128) -> Result<time::OffsetDateTime, InboxError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).map_err(super::error::backend)
}

fn lease_args(lease: &Lease) -> [Vec<u8>; 2] {
    [
        lease.key().to_hex().into_bytes(),
        lease.token().to_hex().into_bytes(),
    ]
}

/// A duration in whole milliseconds (rounded up), at most 100 years.
fn millis(duration: Duration) -> u64 {
    let ms = duration.min(MAX_DURATION).as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A Redis error: a response timeout is a timeout.
fn backend(error: redis::RedisError) -> InboxError {
    if error.is_timeout() {
        InboxError::Timeout
    } else {
        InboxError::Backend(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_differ_within_one_process() {
        let (a, b) = (consumer_name(), consumer_name());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }
}
