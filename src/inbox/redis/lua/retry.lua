-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` delay (ms), `ARGV[6]` error.
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
