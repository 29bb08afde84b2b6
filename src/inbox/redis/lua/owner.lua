-- The owner's calls, shared by their single scripts and the batches (`finish.lua`,
-- `renew_all.lua`). Each answers 1 when `token` still holds delivery k (its last claim's
-- token, and still running) and records the outcome, or 0 and changes nothing. Each outcome
-- (not a renewal) is remembered in the delivery's history, with the lease's attempt.

-- The lease now ends `duration` ms from now; the entry moves to `consumer` (for `XPENDING`).
local function renew(k, token, consumer, duration)
  local h = hprefix .. k
  if not owned(h, token) then return 0 end
  -- The entry first: a damaged one fails before the lease is extended.
  local sid = redis.call('HGET', h, 'sid')
  if sid then redis.call('XCLAIM', stream, group, consumer, 0, sid, 'JUSTID') end
  redis.call('ZADD', leases, ms(now + tonumber(duration)), k)
  return 1
end
-- What `done` outcomes leave to the end of their script: the index and stream commands of many
-- deliveries, one command each for all of them (`XACK`, `XDEL`, `ZREM`, `ZADD` take many).
local function later_batch()
  return { sids = {}, keys = {}, done = {}, finished = {} }
end
-- The indexes first: an entry left on the stream (its group removed by hand: `NOGROUP`) is
-- dropped by the claim that reads it (its delivery is no longer pending), while a lease left
-- in `leases` would be taken over.
local function flush_later(later)
  chunked('ZREM', leases, later.keys)
  chunked('ZREM', sets.running, later.keys)
  chunked('ZADD', sets.done, later.done)
  chunked('ZADD', finished, later.finished)
  pcall(chunked, 'XACK', stream, later.sids, group)
  chunked('XDEL', stream, later.sids)
end
-- Done: kept (to answer duplicates) until pruned. One read of the fields it needs and one
-- write of the hash (the history with the state); the stream entry and the indexes are left to
-- `later` (flushed at once without one): what `owned`, `unstream`, `remember` and `move` do,
-- in fewer commands (a running delivery is never in `retrying`). Odd data fails before any
-- write.
local function complete(k, token, later)
  local h = hprefix .. k
  local v = redis.call('HMGET', h, 'state', 'owner', 'sid', 'attempts', 'accepted', 'history')
  if v[1] ~= 'running' or v[2] ~= token then return 0 end
  local accepted = tonumber(v[5])
  if not accepted then error('the acceptance time of ' .. k .. ' is not a number') end
  if v[3] and not string.match(v[3], '^%d+%-%d+$') then
    error('the stream entry of ' .. k .. ' is not an entry id')
  end
  local alone = later == nil
  if alone then later = later_batch() end
  redis.call('HDEL', h, 'owner', 'sid')
  redis.call('HSET', h, 'state', 'done', 'finished', ms(now),
    'history', appended(v[6], v[4], 'done'))
  if v[3] then table.insert(later.sids, v[3]) end
  table.insert(later.keys, k)
  table.insert(later.done, ms(accepted))
  table.insert(later.done, k)
  table.insert(later.finished, ms(now))
  table.insert(later.finished, k)
  if alone then flush_later(later) end
  return 1
end
-- Pending, due `delay` ms from now (in the retry schedule), with `err` as its last error.
local function retry(k, token, delay, err)
  local h = hprefix .. k
  if not owned(h, token) then return 0 end
  unstream(h)
  local due = ms(now + tonumber(delay))
  remember(h, redis.call('HGET', h, 'attempts'), 'retried', err)
  redis.call('HDEL', h, 'owner')
  redis.call('HSET', h, 'state', 'pending', 'due', due, 'error', err)
  redis.call('ZREM', leases, k)
  move(k, h, 'running', 'pending')
  redis.call('ZADD', delayed, due, k)
  return 1
end
-- Dead, with `err`: an entry in the dead-letter stream.
local function dead_letter(k, token, err)
  local h = hprefix .. k
  if not owned(h, token) then return 0 end
  unstream(h)
  remember(h, redis.call('HGET', h, 'attempts'), 'dead', err)
  local id = redis.call('XADD', deadletters, '*', 'k', k, 'error', err)
  redis.call('HDEL', h, 'owner')
  redis.call('HSET', h, 'state', 'dead', 'finished', ms(now), 'error', err, 'dsid', id)
  redis.call('ZREM', leases, k)
  move(k, h, 'running', 'dead')
  return 1
end
-- Given back: pending and due now (a new stream entry), the attempt not counted.
local function release(k, token)
  local h = hprefix .. k
  if not owned(h, token) then return 0 end
  unstream(h)
  local attempts = tonumber(redis.call('HGET', h, 'attempts')) - 1
  if attempts < 0 then attempts = 0 end
  remember(h, attempts + 1, 'released')
  redis.call('HDEL', h, 'owner')
  redis.call('HSET', h, 'state', 'pending', 'due', ms(now), 'attempts', attempts)
  redis.call('ZREM', leases, k)
  move(k, h, 'running', 'pending')
  enstream(k, h)
  return 1
end
