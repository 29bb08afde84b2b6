-- Answers the group's `last-delivered-id`: every entry of the stream after it waits for a
-- claim (a blocking `XREAD` from there returns as soon as there is one). `0-0` when the group
-- or the stream is missing (a Redis that lost its data): every entry then waits.
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    local name, id = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then id = g[i + 1] end
    end
    if name == group and id then return id end
  end
end
return '0-0'
