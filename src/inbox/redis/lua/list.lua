-- `ARGV[3]` state, `ARGV[4]` limit.
local limit = tonumber(ARGV[4])
if limit <= 0 then return {} end
local out = {}
for _, k in ipairs(redis.call('ZRANGE', sets[ARGV[3]], 0, limit - 1)) do
  local fields = view(k)
  if fields then table.insert(out, fields) end
end
return out
