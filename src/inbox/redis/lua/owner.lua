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
-- Done: kept (to answer duplicates) until pruned.
local function complete(k, token)
  local h = hprefix .. k
  if not owned(h, token) then return 0 end
  unstream(h)
  remember(h, redis.call('HGET', h, 'attempts'), 'done')
  redis.call('HDEL', h, 'owner')
  redis.call('HSET', h, 'state', 'done', 'finished', ms(now))
  redis.call('ZREM', leases, k)
  move(k, h, 'running', 'done')
  redis.call('ZADD', finished, ms(now), k)
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
