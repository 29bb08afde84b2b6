-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` consumer, `ARGV[6]` duration (ms).
local k, token = ARGV[3], ARGV[4]
local h = hprefix .. k
if not owned(h, token) then return 0 end
redis.call('ZADD', leases, ms(now + tonumber(ARGV[6])), k)
local sid = redis.call('HGET', h, 'sid')
if sid then redis.call('XCLAIM', stream, group, ARGV[5], 0, sid, 'JUSTID') end
return 1
