-- What every script starts with: the keys (the same list for all, in the order of
-- `Keys::all` in scripts.rs), the hash prefix and group in `ARGV[1]`, `ARGV[2]`, Redis's clock
-- in milliseconds, and the helpers the scripts share.
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
