-- `ARGV[3]` key.
local k = ARGV[3]
local h = hprefix .. k
if redis.call('EXISTS', h) == 0 then return 0 end
unstream(h)
local dsid = redis.call('HGET', h, 'dsid')
if dsid then redis.call('XDEL', deadletters, dsid) end
for _, set in ipairs({ delayed, leases, finished, sets.pending, retrying, sets.running, sets.done,
    sets.dead }) do
  redis.call('ZREM', set, k)
end
redis.call('DEL', h)
return 1
