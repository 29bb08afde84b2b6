-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` error.
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
unstream(h)
local id = redis.call('XADD', deadletters, '*', 'k', k, 'error', ARGV[5])
redis.call('HDEL', h, 'owner')
redis.call('HSET', h, 'state', 'dead', 'finished', ms(now), 'error', ARGV[5], 'dsid', id)
redis.call('ZREM', leases, k)
move(k, h, 'running', 'dead')
return 1
