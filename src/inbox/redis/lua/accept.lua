-- `ARGV[3]` key (hex), `ARGV[4]` depth limit, `ARGV[5..]` the delivery's fields. Answers
-- `new`, `full`, or the stored state.
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
