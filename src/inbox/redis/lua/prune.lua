-- `ARGV[3]` window (ms), `ARGV[4]` batch, `ARGV[5]` idle consumer age (ms). Answers how many
-- done deliveries it removed.
local cutoff = now - tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', finished, '-inf', '(' .. ms(cutoff), 'LIMIT', 0, tonumber(ARGV[4]))
for _, k in ipairs(old) do
  local h = hprefix .. k
  redis.call('ZREM', finished, k)
  if redis.call('HGET', h, 'state') == 'done' then
    redis.call('ZREM', sets.done, k)
    redis.call('ZREM', retrying, k)
    redis.call('DEL', h)
  end
end
local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
if type(consumers) == 'table' and not consumers.err then
  for _, c in ipairs(consumers) do
    local name, pending, idle = nil, nil, nil
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1] end
      if c[i] == 'pending' then pending = c[i + 1] end
      if c[i] == 'idle' then idle = c[i + 1] end
    end
    if name and pending == 0 and idle and idle > tonumber(ARGV[5]) then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
  end
end
return #old
