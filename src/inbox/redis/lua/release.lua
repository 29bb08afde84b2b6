-- `ARGV[3]` key, `ARGV[4]` token.
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
local attempts = tonumber(redis.call('HGET', h, 'attempts')) - 1
if attempts < 0 then attempts = 0 end
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'pending', 'due', ms(now), 'attempts', attempts)
redis.call('ZREM', leases, k)
move(k, h, 'running', 'pending')
enstream(k, h)
return 1
