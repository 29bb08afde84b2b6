-- Counts (pending, running, done, dead, retrying: each a `ZCARD`), and the oldest waiting
-- delivery's age (ms, or -1).
local oldest = -1
for _, set in ipairs({ sets.pending, sets.running }) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[2] then
    local age = now - tonumber(first[2])
    if age > oldest then oldest = age end
  end
end
return { redis.call('ZCARD', sets.pending), redis.call('ZCARD', sets.running),
  redis.call('ZCARD', sets.done), redis.call('ZCARD', sets.dead), oldest, redis.call('ZCARD', retrying) }
