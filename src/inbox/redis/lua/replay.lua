-- `ARGV[3]` key, `ARGV[4]` `dead` or `dead-or-done`.
local k = ARGV[3]
local h = hprefix .. k
local state = redis.call('HGET', h, 'state')
if not (state == 'dead' or (state == 'done' and ARGV[4] == 'dead-or-done')) then return 0 end
local dsid = redis.call('HGET', h, 'dsid')
if dsid then redis.call('XDEL', deadletters, dsid) end
remember(h, redis.call('HGET', h, 'attempts'), 'replayed')
redis.call('HDEL', h, 'dsid', 'finished')
redis.call('ZREM', finished, k)
redis.call('HSET', h, 'state', 'pending', 'due', ms(now), 'attempts', 0)
move(k, h, state, 'pending')
enstream(k, h)
return 1
