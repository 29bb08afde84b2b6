-- `ARGV[3]` consumer, `ARGV[4]` token, `ARGV[5]` lease (ms), `ARGV[6]` limit, `ARGV[7]` how
-- many due retries to move at most. Moves due retries back onto the stream, then takes up to
-- `limit` deliveries, the one due first first: expired leases (by when they ended, `XCLAIM`ed
-- to this consumer) and the stream's next entries (`XREADGROUP`). Answers each claimed
-- delivery's fields.
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
-- The index commands of the deliveries taken from the stream, one of each for all of them at
-- the end (after every take, whether it failed or not).
local taken = { leases = {}, pending = {}, running = {} }
-- Entry `id` of delivery k, just read from the stream: what `move` and `view` do, in fewer
-- commands (the lease's end is the one just given; the indexes are left to `taken`). Its lease
-- is given first: an odd delivery (attempts or acceptance time not a number) keeps it, as the
-- comment above says.
local function take(id, k)
  local h = hprefix .. k
  local v = redis.call('HMGET', h, 'state', 'sid', 'attempts', 'accepted')
  if v[1] == 'pending' and v[2] == id then
    local ends = ms(now + lease)
    table.insert(taken.leases, ends)
    table.insert(taken.leases, k)
    -- None stored counts as none made (as `HINCRBY` counts it).
    local attempts = 0
    if v[3] then attempts = tonumber(v[3]) end
    if not attempts or attempts ~= math.floor(attempts) then
      error('the attempts of ' .. k .. ' are not a whole number')
    end
    local accepted = tonumber(v[4])
    if not accepted then error('the acceptance time of ' .. k .. ' is not a number') end
    redis.call('HSET', h, 'state', 'running', 'owner', token, 'attempts', attempts + 1)
    table.insert(taken.pending, k)
    table.insert(taken.running, ms(accepted))
    table.insert(taken.running, k)
    -- Pending with attempts, it was in the retrying index.
    if attempts > 0 then redis.call('ZREM', retrying, k) end
    local all = redis.call('HGETALL', h)
    table.insert(all, 'lease_end')
    table.insert(all, ends)
    return all
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
  chunked('ZADD', leases, taken.leases)
  chunked('ZREM', sets.pending, taken.pending)
  chunked('ZADD', sets.running, taken.running)
end
return out
