//! The inbox on Redis Streams (feature `redis`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::backend::{
    Accepted, Claim, InboxBackend, InboxError, InboxFuture, InboxOptions, Lease, Replay, Stats,
};
use super::delivery::{Delivery, DeliveryState, Facts, Record};
use super::worker::{Attempt, Fence, Tracked};
use crate::idempotency::{IdempotencyKey, Token, MAX_DURATION};

/// The consumer group every process reads the stream through.
const GROUP: &str = "workers";
/// How many done deliveries one `prune` script removes; `prune` runs it until fewer are left.
const PRUNE_BATCH: usize = 500;
/// How many due retries one claim moves back onto the stream at most.
const PROMOTE_BATCH: usize = 1000;
/// A consumer with nothing pending and idle this long (or for the window, when shorter) is
/// removed from the group by `prune`: a process that ended (a live one is added again by its
/// next read).
const IDLE_CONSUMER: Duration = Duration::from_secs(60 * 60);

/// What every script starts with: the keys (the same list for all, see [`Keys::all`]), the
/// hash prefix and group in `ARGV[1]`, `ARGV[2]`, and Redis's clock in milliseconds.
const PRELUDE: &str = r"
local stream, delayed, leases = KEYS[1], KEYS[2], KEYS[3]
local sets = { pending = KEYS[4], running = KEYS[5], done = KEYS[6], dead = KEYS[7] }
local finished, deadletters = KEYS[8], KEYS[9]
local hprefix, group = ARGV[1], ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function ms(n) return string.format('%.0f', n) end
-- Moves delivery k from the index of one state to another's (scored by acceptance).
local function move(k, h, from, to)
  redis.call('ZREM', sets[from], k)
  redis.call('ZADD', sets[to], redis.call('HGET', h, 'accepted'), k)
end
-- Whether `token` holds delivery h: its last claim's token, and still running.
local function owned(h, token)
  local v = redis.call('HMGET', h, 'state', 'owner')
  return v[1] == 'running' and v[2] == token
end
-- Takes the delivery's entry off the stream: acknowledged, and deleted (trimmed).
local function unstream(h)
  local sid = redis.call('HGET', h, 'sid')
  if sid then
    redis.call('XACK', stream, group, sid)
    redis.call('XDEL', stream, sid)
    redis.call('HDEL', h, 'sid')
  end
end
-- Appends delivery k to the stream: due now.
local function enstream(k, h)
  local id = redis.call('XADD', stream, '*', 'k', k)
  redis.call('HSET', h, 'sid', id)
end
-- The stored fields of delivery k, and when its lease ends when running.
local function view(k)
  local h = hprefix .. k
  local all = redis.call('HGETALL', h)
  if #all == 0 then return false end
  local lease = redis.call('ZSCORE', leases, k)
  if lease then
    table.insert(all, 'lease_end')
    table.insert(all, lease)
  end
  return all
end
";

/// `ARGV[3]` key (hex), `ARGV[4]` depth limit, `ARGV[5..]` the delivery's fields. Answers
/// `new`, `full`, or the stored state.
const ACCEPT: &str = r"
local k = ARGV[3]
local h = hprefix .. k
local state = redis.call('HGET', h, 'state')
if state then return state end
if redis.call('ZCARD', sets.pending) + redis.call('ZCARD', sets.running) >= tonumber(ARGV[4]) then
  return 'full'
end
redis.call('HSET', h, 'state', 'pending', 'attempts', 0, 'accepted', ms(now), 'due', ms(now),
  unpack(ARGV, 5))
redis.call('ZADD', sets.pending, ms(now), k)
enstream(k, h)
return 'new'
";

/// `ARGV[3]` consumer, `ARGV[4]` token, `ARGV[5]` lease (ms), `ARGV[6]` limit. Moves due
/// retries back onto the stream, then takes up to `limit` deliveries, the one due first first:
/// expired leases (by when they ended, `XCLAIM`ed to this consumer) and the stream's next
/// entries (`XREADGROUP`). Answers each claimed delivery's fields.
const CLAIM: &str = r"
local consumer, token, lease, limit = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
for _, k in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', ms(now), 'LIMIT', 0, tonumber(ARGV[7]))) do
  redis.call('ZREM', delayed, k)
  enstream(k, hprefix .. k)
end
if limit <= 0 then return {} end
-- Each delivery is taken in a protected call, its lease written first: Redis does not roll a
-- script back, so an odd delivery (a field that is not a number, ...) that fails half-way must
-- not abort the script after `XREADGROUP` moved the entries after it to this consumer (they
-- would stay pending, out of every claim's reach). The odd one keeps its lease: taken again
-- (and skipped again) when it runs out, never lost, never blocking the others.
local out = {}
local function keep(ok, fields)
  if ok and type(fields) == 'table' then table.insert(out, fields) end
end
-- An expired lease, taken over.
local function retake(k)
  local h = hprefix .. k
  redis.call('ZADD', leases, ms(now + lease), k)
  local sid = redis.call('HGET', h, 'sid')
  if sid then redis.call('XCLAIM', stream, group, consumer, 0, sid, 'JUSTID') end
  redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'owner', token)
  return view(k)
end
-- Entry `id` of delivery k, just read from the stream.
local function take(id, k)
  local h = hprefix .. k
  local v = redis.call('HMGET', h, 'state', 'sid')
  if v[1] == 'pending' and v[2] == id then
    redis.call('ZADD', leases, ms(now + lease), k)
    redis.call('HINCRBY', h, 'attempts', 1)
    redis.call('HSET', h, 'state', 'running', 'owner', token)
    move(k, h, 'pending', 'running')
    return view(k)
  end
  -- Left behind by a purge: nothing to run.
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  return false
end
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', ms(now), 'WITHSCORES', 'LIMIT', 0, limit)
-- The group's position, to peek at the entries not delivered yet.
local last = nil
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    local name, id = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then id = g[i + 1] end
    end
    if name == group then last = id end
  end
end
if not last then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  last = '0-0'
end
local peek = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', limit)
local ei, si, from_stream = 1, 1, 0
while #out + from_stream < limit do
  local e, s = expired[2 * ei - 1], peek[si]
  if not e and not s then break end
  local use_expired = e ~= nil
  if e and s then
    local due = redis.pcall('HGET', hprefix .. s[2][2], 'due')
    use_expired = tonumber(expired[2 * ei]) <= (tonumber(due) or 0)
  end
  if use_expired then
    keep(pcall(retake, e))
    ei = ei + 1
  else
    from_stream = from_stream + 1
    si = si + 1
  end
end
if from_stream > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', from_stream,
    'STREAMS', stream, '>')
  if read and read[1] then
    for _, entry in ipairs(read[1][2]) do
      keep(pcall(take, entry[1], entry[2][2]))
    end
  end
end
return out
";

/// `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` consumer, `ARGV[6]` duration (ms).
const RENEW: &str = r"
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
redis.call('ZADD', leases, ms(now + tonumber(ARGV[6])), k)
local sid = redis.call('HGET', h, 'sid')
if sid then redis.call('XCLAIM', stream, group, ARGV[5], 0, sid, 'JUSTID') end
return 1
";

/// `ARGV[3]` key, `ARGV[4]` token.
const COMPLETE: &str = r"
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'done', 'finished', ms(now))
redis.call('ZREM', leases, k)
move(k, h, 'running', 'done')
redis.call('ZADD', finished, ms(now), k)
return 1
";

/// `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` delay (ms), `ARGV[6]` error.
const RETRY: &str = r"
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
local due = ms(now + tonumber(ARGV[5]))
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'pending', 'due', due, 'error', ARGV[6])
redis.call('ZREM', leases, k)
move(k, h, 'running', 'pending')
redis.call('ZADD', delayed, due, k)
return 1
";

/// `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` error.
const DEAD_LETTER: &str = r"
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
local id = redis.call('XADD', deadletters, '*', 'k', k, 'error', ARGV[5])
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'dead', 'finished', ms(now), 'error', ARGV[5], 'dsid', id)
redis.call('ZREM', leases, k)
move(k, h, 'running', 'dead')
return 1
";

/// `ARGV[3]` key, `ARGV[4]` token.
const RELEASE: &str = r"
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
local attempts = tonumber(redis.call('HGET', h, 'attempts')) - 1
if attempts < 0 then attempts = 0 end
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'pending', 'due', ms(now), 'attempts', attempts)
redis.call('ZREM', leases, k)
move(k, h, 'running', 'pending')
enstream(k, h)
return 1
";

/// `ARGV[3]` key, `ARGV[4]` `dead` or `dead-or-done`.
const REPLAY: &str = r"
local k = ARGV[3]
local h = hprefix .. k
local state = redis.call('HGET', h, 'state')
if not (state == 'dead' or (state == 'done' and ARGV[4] == 'dead-or-done')) then return 0 end
local dsid = redis.call('HGET', h, 'dsid')
if dsid then redis.call('XDEL', deadletters, dsid) end
redis.call('HDEL', h, 'dsid', 'finished')
redis.call('ZREM', finished, k)
redis.call('HSET', h, 'state', 'pending', 'due', ms(now), 'attempts', 0)
move(k, h, state, 'pending')
enstream(k, h)
return 1
";

/// `ARGV[3]` key.
const PURGE: &str = r"
local k = ARGV[3]
local h = hprefix .. k
if redis.call('EXISTS', h) == 0 then return 0 end
unstream(h)
local dsid = redis.call('HGET', h, 'dsid')
if dsid then redis.call('XDEL', deadletters, dsid) end
for _, set in ipairs({ delayed, leases, finished, sets.pending, sets.running, sets.done, sets.dead }) do
  redis.call('ZREM', set, k)
end
redis.call('DEL', h)
return 1
";

/// `ARGV[3]` window (ms), `ARGV[4]` batch, `ARGV[5]` idle consumer age (ms). Answers how many
/// done deliveries it removed.
const PRUNE: &str = r"
local cutoff = now - tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', finished, '-inf', '(' .. ms(cutoff), 'LIMIT', 0, tonumber(ARGV[4]))
for _, k in ipairs(old) do
  local h = hprefix .. k
  redis.call('ZREM', finished, k)
  if redis.call('HGET', h, 'state') == 'done' then
    redis.call('ZREM', sets.done, k)
    redis.call('DEL', h)
  end
end
local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
if type(consumers) == 'table' and not consumers.err then
  for _, c in ipairs(consumers) do
    local name, pending, idle = nil, nil, nil
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1] end
      if c[i] == 'pending' then pending = c[i + 1] end
      if c[i] == 'idle' then idle = c[i + 1] end
    end
    if name and pending == 0 and idle and idle > tonumber(ARGV[5]) then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
  end
end
return #old
";

/// `ARGV[3]` start (an index in the pending deliveries), `ARGV[4]` batch, `ARGV[5]` `check`
/// on the first call. Appends again the pending deliveries that have neither an entry in the
/// stream that the group has not read yet nor a place in the retry schedule: entries removed
/// by an operator (`XTRIM`, a `MAXLEN`, `XDEL`). Answers `{ next start or -1, how many }`;
/// with `check`, answers `{ -1, 0 }` at once when the stream and the schedule hold at least
/// as many entries as deliveries wait (always so unless entries were removed).
const REPAIR: &str = r"
local start, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] == 'check' then
  local waiting = redis.call('ZCARD', sets.pending) + redis.call('ZCARD', sets.running)
  if redis.call('XLEN', stream) + redis.call('ZCARD', delayed) >= waiting then return { -1, 0 } end
end
local keys = redis.call('ZRANGE', sets.pending, start, start + batch - 1)
local fixed = 0
for _, k in ipairs(keys) do
  local h = hprefix .. k
  if redis.call('HGET', h, 'state') == 'pending' and not redis.call('ZSCORE', delayed, k) then
    local sid = redis.call('HGET', h, 'sid')
    local read = sid and redis.pcall('XPENDING', stream, group, sid, sid, 1)
    if not sid or #redis.call('XRANGE', stream, sid, sid) == 0
        or (type(read) == 'table' and not read.err and #read > 0) then
      unstream(h)
      enstream(k, h)
      fixed = fixed + 1
    end
  end
end
if #keys < batch then return { -1, fixed } end
return { start + batch, fixed }
";

/// `ARGV[3]` key (hex).
const GET: &str = r"
local fields = view(ARGV[3])
if fields then return { fields } end
return {}
";

/// `ARGV[3]` state, `ARGV[4]` limit.
const LIST: &str = r"
local limit = tonumber(ARGV[4])
if limit <= 0 then return {} end
local out = {}
for _, k in ipairs(redis.call('ZRANGE', sets[ARGV[3]], 0, limit - 1)) do
  local fields = view(k)
  if fields then table.insert(out, fields) end
end
return out
";

/// Counts, and the oldest waiting delivery's age (ms, or -1).
const STATS: &str = r"
local oldest = -1
for _, set in ipairs({ sets.pending, sets.running }) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[2] then
    local age = now - tonumber(first[2])
    if age > oldest then oldest = age end
  end
end
return { redis.call('ZCARD', sets.pending), redis.call('ZCARD', sets.running),
  redis.call('ZCARD', sets.done), redis.call('ZCARD', sets.dead), oldest }
";

/// The inbox backend on Redis Streams (feature `redis`): for several replicas sharing one
/// Redis, with no SQL database of their own.
///
/// # How it works
///
/// - **Accept** is one script: when the key (the delivery's [`IdempotencyKey`], which names
///   the endpoint) has no hash yet and the depth allows it, it stores the delivery in a hash
///   and appends an entry to the stream with `XADD`; otherwise it answers the stored state (a
///   duplicate) or full. The `2xx` follows the script's answer.
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
/// - Sorted sets index the deliveries by state (scored by acceptance, for `list` and `stats`)
///   and the done ones by completion (for `prune`).
///
/// Every script reads the time from Redis (`TIME`), so every replica shares one clock, and every
/// call fails with [`InboxError::Timeout`] after the configured timeout. Needs Redis 6.2 or
/// later.
///
/// Claims follow the stream's order, merged with expired leases by due time: a retry re-enters
/// the stream when it is due (a new entry), so it waits behind deliveries accepted before that
/// moment and not yet claimed. Deliveries are not processed in order in any case.
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
/// `state:pending|running|done|dead`, `finished` (sorted sets of keys in hex), and `d:<key in
/// hex>` (one hash per delivery). Two inboxes with different prefixes share a Redis without
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
struct Keys {
    /// The keys every script is given, in the order of [`PRELUDE`].
    all: [String; 9],
    /// The prefix of each delivery's hash.
    hash: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}inbox}}:");
        let key = |name: &str| format!("{base}{name}");
        Self {
            all: [
                key("stream"),
                key("delayed"),
                key("leases"),
                key("state:pending"),
                key("state:running"),
                key("state:done"),
                key("state:dead"),
                key("finished"),
                key("dead-letters"),
            ],
            hash: key("d:"),
        }
    }
}

struct Scripts {
    accept: Script,
    claim: Script,
    renew: Script,
    complete: Script,
    retry: Script,
    dead_letter: Script,
    release: Script,
    replay: Script,
    purge: Script,
    prune: Script,
    repair: Script,
    get: Script,
    list: Script,
    stats: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

impl Scripts {
    fn new() -> Self {
        Self {
            accept: script(ACCEPT),
            claim: script(CLAIM),
            renew: script(RENEW),
            complete: script(COMPLETE),
            retry: script(RETRY),
            dead_letter: script(DEAD_LETTER),
            release: script(RELEASE),
            replay: script(REPLAY),
            purge: script(PURGE),
            prune: script(PRUNE),
            repair: script(REPAIR),
            get: script(GET),
            list: script(LIST),
            stats: script(STATS),
        }
    }
}

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
        let inbox = Self {
            client,
            connection,
            keys: Arc::new(Keys::new(options.prefix())),
            options,
            consumer: consumer_name().into(),
            scripts: Arc::new(Scripts::new()),
        };
        inbox.create_group().await?;
        Ok(inbox)
    }

    async fn create_group(&self) -> Result<(), InboxError> {
        let mut command = redis::cmd("XGROUP");
        command
            .arg("CREATE")
            .arg(&self.keys.all[0])
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
        &self.keys.all[0]
    }

    /// The Redis key of the dead-letter stream.
    #[must_use]
    pub fn dead_letter_key(&self) -> &str {
        &self.keys.all[8]
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
    /// In a handler, call it through [`Attempt::begin_complete`], so that the worker follows
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
                completion: self.eval(COMPLETE, &lease_args(lease)),
                timeout: self.options.timeout(),
                tracked: None,
            }))
        })
        .await
    }

    /// `EVAL` of the script `body` (after [`PRELUDE`]) with the inbox's keys and `args`
    /// after the hash prefix and group: in a transaction, where `EVALSHA` could fail with
    /// `NOSCRIPT` after the other commands ran.
    fn eval(&self, body: &str, args: &[Vec<u8>]) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command
            .arg(format!("{PRELUDE}{body}"))
            .arg(self.keys.all.len());
        for key in &self.keys.all {
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
        for key in &self.keys.all {
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
    /// [`REPAIR`]); the first call costs a few counts when nothing was removed.
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
                stream = %self.keys.all[0],
                "inbox: pending deliveries had lost their stream entries (trimmed by hand?), appended again"
            );
        }
        Ok(())
    }

    async fn owner_call(&self, script: &Script, lease: &Lease) -> Result<bool, InboxError> {
        let [key, token] = lease_args(lease);
        let answer: i64 = self.run(script, &[&key, &token]).await?;
        Ok(answer == 1)
    }
}

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
    connection: MultiplexedConnection,
    pipeline: redis::Pipeline,
    completion: redis::Cmd,
    timeout: Duration,
    /// The attempt that began it, when begun through one.
    tracked: Option<Tracked>,
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

impl InboxBackend for RedisInbox {
    fn accept<'a>(&'a self, delivery: &'a Delivery) -> InboxFuture<'a, Accepted> {
        Box::pin(async move {
            let fields = encode(delivery)?;
            let key = delivery.key().to_hex();
            let depth = self.options.max_depth().to_string();
            let mut args: Vec<&[u8]> = vec![key.as_bytes(), depth.as_bytes()];
            for (name, value) in &fields {
                args.push(name.as_bytes());
                args.push(value);
            }
            let answer: String = self.run(&self.scripts.accept, &args).await?;
            match answer.as_str() {
                "new" => Ok(Accepted::New),
                "full" => Err(InboxError::Full),
                state => Ok(Accepted::Duplicate(state.parse().map_err(boxed)?)),
            }
        })
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
        Box::pin(self.owner_call(&self.scripts.release, lease))
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
            let (pending, running, done, dead, oldest): (u64, u64, u64, u64, i64) =
                self.run(&self.scripts.stats, &[]).await?;
            Ok(Stats {
                pending,
                running,
                done,
                dead,
                oldest_waiting: u64::try_from(oldest).ok().map(Duration::from_millis),
                ..Stats::default()
            })
        })
    }
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

fn lease_args(lease: &Lease) -> [Vec<u8>; 2] {
    [
        lease.key().to_hex().into_bytes(),
        lease.token().to_hex().into_bytes(),
    ]
}

/// The fields a delivery is stored as, besides the inbox's own.
fn encode(delivery: &Delivery) -> Result<Vec<(&'static str, Vec<u8>)>, InboxError> {
    let facts = delivery.facts();
    let mut fields = vec![
        ("key", delivery.key().as_bytes().to_vec()),
        ("path", delivery.path().as_bytes().to_vec()),
        ("headers", encode_headers(delivery.headers())),
        ("body", delivery.body().to_vec()),
        ("scheme", facts.scheme.as_bytes().to_vec()),
        ("id", facts.id.as_bytes().to_vec()),
    ];
    let optional = [
        ("event", &facts.event),
        ("action", &facts.action),
        ("delivery", &facts.delivery),
        ("scope", &facts.scope),
        ("tenant", &facts.tenant),
        ("version", &facts.version),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.push((name, value.as_bytes().to_vec()));
        }
    }
    if let Some(timestamp) = facts.timestamp {
        let text = timestamp.format(&Rfc3339).map_err(boxed)?;
        fields.push(("signed_at", text.into_bytes()));
    }
    Ok(fields)
}

/// Headers as stored: `name:value` lines (a value never holds a line break, a name never a
/// colon), byte for byte.
fn encode_headers(headers: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_headers(bytes: &[u8]) -> Result<Vec<(HeaderName, HeaderValue)>, InboxError> {
    bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let colon = line
                .iter()
                .position(|byte| *byte == b':')
                .ok_or_else(|| corrupt("a stored header has no name"))?;
            let name = HeaderName::from_bytes(&line[..colon]).map_err(boxed)?;
            let value = HeaderValue::from_bytes(&line[colon + 1..]).map_err(boxed)?;
            Ok((name, value))
        })
        .collect()
}

/// A record from the flat `field, value, ...` list a script answers.
fn decode(row: Vec<Vec<u8>>) -> Result<Record, InboxError> {
    let mut fields: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut items = row.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.insert(name, value);
    }
    let mut take = |name: &str| fields.remove(name.as_bytes());
    let text = |value: Vec<u8>| String::from_utf8(value).map_err(boxed);
    let required = |value: Option<Vec<u8>>, name: &'static str| value.ok_or_else(|| corrupt(name));
    let key: [u8; 32] = required(take("key"), "a stored delivery has no key")?
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("a stored key is not 32 bytes"))?;
    let state: DeliveryState = text(required(take("state"), "a stored delivery has no state")?)?
        .parse()
        .map_err(boxed)?;
    let number = |value: Option<Vec<u8>>| -> Result<Option<i64>, InboxError> {
        value
            .map(|value| {
                // Scores (whole milliseconds) come back without an exponent.
                String::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("a stored number does not parse"))
            })
            .transpose()
    };
    let optional = |value: Option<Vec<u8>>| value.map(text).transpose();
    let accepted = number(take("accepted"))?.ok_or_else(|| corrupt("no acceptance time"))?;
    let due = number(take("due"))?;
    let lease_end = number(take("lease_end"))?;
    let finished = number(take("finished"))?;
    let timestamp = optional(take("signed_at"))?
        .map(|text| OffsetDateTime::parse(&text, &Rfc3339))
        .transpose()
        .map_err(boxed)?;
    let facts = Facts {
        scheme: text(required(take("scheme"), "a stored delivery has no scheme")?)?,
        id: text(required(take("id"), "a stored delivery has no event id")?)?,
        event: optional(take("event"))?,
        action: optional(take("action"))?,
        delivery: optional(take("delivery"))?,
        scope: optional(take("scope"))?,
        tenant: optional(take("tenant"))?,
        timestamp,
        version: optional(take("version"))?,
    };
    let delivery = Delivery {
        key: IdempotencyKey::from_bytes(key),
        facts,
        path: text(take("path").unwrap_or_default())?,
        headers: decode_headers(&take("headers").unwrap_or_default())?,
        body: Bytes::from(take("body").unwrap_or_default()),
    };
    let due_ms = match state {
        DeliveryState::Pending => due.unwrap_or(accepted),
        DeliveryState::Running => lease_end.or(due).unwrap_or(accepted),
        DeliveryState::Done | DeliveryState::Dead => finished.unwrap_or(accepted),
    };
    let mut record = Record::new(delivery, state, from_ms(accepted)?);
    record.attempts = number(take("attempts"))?
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    record.last_error = optional(take("error"))?;
    record.due_at = from_ms(due_ms)?;
    record.finished_at = match state {
        DeliveryState::Done | DeliveryState::Dead => finished.map(from_ms).transpose()?,
        DeliveryState::Pending | DeliveryState::Running => None,
    };
    Ok(record)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, InboxError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(boxed)
}

/// A duration in whole milliseconds (rounded up), at most 100 years.
fn millis(duration: Duration) -> u64 {
    let ms = duration.min(MAX_DURATION).as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `future`, or [`InboxError::Timeout`] after `timeout`.
async fn timed<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or(Err(InboxError::Timeout))
}

/// A Redis error: a response timeout is a timeout.
fn backend(error: redis::RedisError) -> InboxError {
    if error.is_timeout() {
        InboxError::Timeout
    } else {
        InboxError::Backend(Box::new(error))
    }
}

fn boxed(error: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Backend(Box::new(error))
}

fn corrupt(message: &'static str) -> InboxError {
    InboxError::Backend(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_byte_for_byte() {
        let headers = vec![
            (
                HeaderName::from_static("x-webhook-id"),
                HeaderValue::from_static("evt:1 with: colons"),
            ),
            (
                HeaderName::from_static("x-odd"),
                HeaderValue::from_bytes(b"caf\xe9\t").unwrap_or(HeaderValue::from_static("")),
            ),
            (
                HeaderName::from_static("x-empty"),
                HeaderValue::from_static(""),
            ),
        ];
        let decoded = decode_headers(&encode_headers(&headers)).ok();
        assert_eq!(decoded, Some(headers));
    }

    #[test]
    fn consumer_names_differ_within_one_process() {
        let (a, b) = (consumer_name(), consumer_name());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }
}
