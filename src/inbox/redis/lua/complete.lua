-- `ARGV[3]` key, `ARGV[4]` token.
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
