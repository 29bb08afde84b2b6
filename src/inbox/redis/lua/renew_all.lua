-- `ARGV[3]` consumer, `ARGV[4]` duration (ms), `ARGV[5..]` the key and token of each lease.
-- Renews each as `renew.lua` would and answers for each, in order: 1 renewed, 0 not the
-- owner's, or -1 when it failed on odd stored data (the others are renewed all the same).
local consumer, duration = ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 2 do
  local ok, answer = pcall(renew, ARGV[i], ARGV[i + 1], consumer, duration)
  if ok then table.insert(out, answer) else table.insert(out, -1) end
end
return out
