-- `ARGV[3]` depth limit, then each delivery of the batch: its key (hex), the number `n` of its
-- field arguments, and those `n` arguments (name, value, ...). Answers, for each in order,
-- `new`, `full`, or the stored state (a duplicate: of a delivery stored before, or of one
-- earlier in this batch, then `pending`).
--
-- Every state is read before anything is written: a read that fails (a key of another type)
-- fails the call with nothing stored. The depth limit is exact: each new delivery counts
-- against it for the ones after it.
local limit = tonumber(ARGV[3])
local batch = {}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  table.insert(batch, { k = ARGV[i], first = i + 2, last = i + 1 + n })
  i = i + 2 + n
end
local states = {}
for j, d in ipairs(batch) do
  states[j] = redis.call('HGET', hprefix .. d.k, 'state')
end
local depth = redis.call('ZCARD', sets.pending) + redis.call('ZCARD', sets.running)
local stamp = ms(now)
local out, taken, indexed = {}, {}, {}
for j, d in ipairs(batch) do
  local state = states[j] or taken[d.k]
  if state then
    out[j] = state
  elseif depth >= limit then
    out[j] = 'full'
  else
    local id = redis.call('XADD', stream, '*', 'k', d.k)
    redis.call('HSET', hprefix .. d.k, 'state', 'pending', 'attempts', 0, 'accepted', stamp,
      'due', stamp, 'sid', id, unpack(ARGV, d.first, d.last))
    table.insert(indexed, stamp)
    table.insert(indexed, d.k)
    taken[d.k] = 'pending'
    depth = depth + 1
    out[j] = 'new'
  end
end
chunked('ZADD', sets.pending, indexed)
return out
