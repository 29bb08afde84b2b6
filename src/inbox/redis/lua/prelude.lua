-- What every script starts with: the keys (the same list for all, in the order of
-- `Keys::all` in scripts.rs), the hash prefix and group in `ARGV[1]`, `ARGV[2]`, Redis's clock
-- in milliseconds, and the helpers the scripts share.
local stream, delayed, leases = KEYS[1], KEYS[2], KEYS[3]
local sets = { pending = KEYS[4], running = KEYS[5], done = KEYS[6], dead = KEYS[7] }
local finished, deadletters = KEYS[8], KEYS[9]
-- The pending deliveries attempted already (`Status::Retrying`), by acceptance: a subset of
-- `sets.pending`, kept by `move` (and `purge`), so that counting them costs a `ZCARD`.
local retrying = KEYS[10]
-- Set once `retrying` holds every retry (built by `index.lua` for an inbox from before it).
local indexed = KEYS[11]
local hprefix, group = ARGV[1], ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function ms(n) return string.format('%.0f', n) end
-- Runs `command key <list...>` (plus `extra` arguments before the list, when given) in as few
-- calls as Lua's stack allows: the list in chunks of at most 4,000 items (even, so that
-- score-member pairs stay together).
local function chunked(command, key, list, extra)
  local step = 4000
  for first = 1, #list, step do
    local last = math.min(first + step - 1, #list)
    if extra then
      redis.call(command, key, extra, unpack(list, first, last))
    else
      redis.call(command, key, unpack(list, first, last))
    end
  end
end
-- Moves delivery k from the index of one state to another's (scored by acceptance), after
-- its hash was updated: into the retrying index too when it is pending with attempts.
local function move(k, h, from, to)
  local v = redis.call('HMGET', h, 'accepted', 'attempts')
  redis.call('ZREM', sets[from], k)
  redis.call('ZADD', sets[to], v[1], k)
  if to == 'pending' and (tonumber(v[2]) or 0) > 0 then
    redis.call('ZADD', retrying, v[1], k)
  else
    redis.call('ZREM', retrying, k)
  end
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
-- Delivery h's history (a JSON array in its `history` field, oldest first, the last
-- `history_limit` kept; `history_limit` is set before this prelude from `HISTORY_LIMIT`), as
-- `stored` (the field's value, or false), with an entry appended: the attempt it ended (or,
-- replayed, the attempts before the reset), what happened, the error (retried or dead) and
-- when. A history that does not decode, or not encode again, is started again rather than fail
-- the outcome. Answers the encoded history, for the caller's `HSET`.
local function appended(stored, attempt, kind, err)
  local entries = {}
  if stored then
    local ok, decoded = pcall(cjson.decode, stored)
    if ok and type(decoded) == 'table' then
      for _, entry in ipairs(decoded) do
        if type(entry) == 'table' then table.insert(entries, entry) end
      end
    end
  end
  local entry = { attempt = tonumber(attempt) or 0, kind = kind, at = now }
  if err then entry.error = err end
  table.insert(entries, entry)
  while #entries > history_limit do table.remove(entries, 1) end
  -- What decodes may not encode again (a number out of range reads as infinity, which
  -- `cjson` refuses to write): such a history starts again too.
  local ok, encoded = pcall(cjson.encode, entries)
  if not ok then encoded = cjson.encode({ entry }) end
  return encoded
end
-- Appends an entry to delivery h's history (see `appended`).
local function remember(h, attempt, kind, err)
  redis.call('HSET', h, 'history', appended(redis.call('HGET', h, 'history'), attempt, kind, err))
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
-- Whether key a comes after key b, byte by byte (not `>`, which follows the locale).
local function after(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
-- The rank in `set` (a state index: scores, then members byte by byte) of its first member
-- past a position: at `score` or later (empty: the start), and after `key` at that score
-- when it is not empty. The members with a lower score are counted, and those with that
-- score searched by key (O(log n) each).
local function first_rank(set, score, key)
  if score == '' then return 0 end
  local lo = redis.call('ZCOUNT', set, '-inf', '(' .. score)
  if key == '' then return lo end
  local hi = lo + redis.call('ZCOUNT', set, score, score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if after(redis.call('ZRANGE', set, mid, mid)[1], key) then hi = mid else lo = mid + 1 end
  end
  return lo
end
