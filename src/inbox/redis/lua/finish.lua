-- `ARGV[3..]`, five per outcome: what (`done`, `retry`, `dead`, `release`), key, token, delay
-- (ms, for `retry`; otherwise empty) and error (for `retry` and `dead`; otherwise empty).
-- Records each as its single script would, one after another, and answers for each, in
-- order: 1 recorded, 0 not the owner's (nothing changed), or -1 when it failed on odd stored
-- data. Each runs in a protected call, so that one odd delivery does not abort the batch half
-- way (Redis does not roll a script back): the others are recorded all the same.
-- The `done` outcomes leave their stream and index commands to the end, one of each for all.
local out = {}
local later = later_batch()
for i = 3, #ARGV, 5 do
  local what, k, token, delay, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local ok, answer
  if what == 'done' then
    ok, answer = pcall(complete, k, token, later)
  elseif what == 'retry' then
    ok, answer = pcall(retry, k, token, delay, err)
  elseif what == 'dead' then
    ok, answer = pcall(dead_letter, k, token, err)
  elseif what == 'release' then
    ok, answer = pcall(release, k, token)
  else
    ok = false
  end
  if ok then table.insert(out, answer) else table.insert(out, -1) end
end
flush_later(later)
return out
