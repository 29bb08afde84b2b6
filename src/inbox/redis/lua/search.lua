-- `ARGV[3]` status (`any`, `waiting`, `retrying`, `running`, `done`, `dead`), `ARGV[4]` the
-- score (acceptance, ms) to start at or empty for the start, `ARGV[5]` a key (hex) at that
-- score to start after or empty, `ARGV[6]` `=` then the event type or empty, `ARGV[7]` `=`
-- then the event id or empty, `ARGV[8]` limit, `ARGV[9]` how many deliveries to examine at
-- most (the scan budget).
--
-- Walks the state indexes the status allows, merged in the admin order (acceptance, then key:
-- the sorted sets' own order, scores then members byte by byte), from the start position, and
-- answers `{ more, last score, last key, rows }`: the fields of each delivery that matches (up
-- to `limit`), the position of the last one examined (empty when none), and 1 when the
-- indexes hold more after it.
local status, start_score, start_key = ARGV[3], ARGV[4], ARGV[5]
local event, id = ARGV[6], ARGV[7]
local limit, budget = tonumber(ARGV[8]), tonumber(ARGV[9])
local chunk = 128
local sources
if status == 'any' then
  sources = { sets.pending, sets.running, sets.done, sets.dead }
elseif status == 'waiting' then
  sources = { sets.pending }
elseif status == 'retrying' then
  sources = { retrying }
else
  sources = { sets[status] }
end
local iters = {}
for i, set in ipairs(sources) do
  iters[i] = { set = set, rank = first_rank(set, start_score, start_key), buf = {}, pos = 1 }
end
-- The next member of an index and its score, read a chunk at a time.
local function head(it)
  if it.pos > #it.buf then
    if it.done then return nil end
    it.buf = redis.call('ZRANGE', it.set, it.rank, it.rank + chunk - 1, 'WITHSCORES')
    it.pos = 1
    it.rank = it.rank + #it.buf / 2
    if #it.buf == 0 then
      it.done = true
      return nil
    end
  end
  return it.buf[it.pos], tonumber(it.buf[it.pos + 1])
end
local function matches(k)
  local v = redis.call('HMGET', hprefix .. k, 'state', 'attempts', 'event', 'id')
  local state, attempted = v[1], (tonumber(v[2]) or 0) > 0
  if not state then return false end
  if status == 'waiting' then
    if state ~= 'pending' or attempted then return false end
  elseif status == 'retrying' then
    if state ~= 'pending' or not attempted then return false end
  elseif status ~= 'any' and state ~= status then
    return false
  end
  if event ~= '' and v[3] ~= string.sub(event, 2) then return false end
  if id ~= '' and v[4] ~= string.sub(id, 2) then return false end
  return true
end
local out, scanned = {}, 0
local last_score, last_key = '', ''
while #out < limit and scanned < budget do
  local best, bk, bs = nil, nil, nil
  for _, it in ipairs(iters) do
    local k, s = head(it)
    if k and (not best or s < bs or (s == bs and after(bk, k))) then
      best, bk, bs = it, k, s
    end
  end
  if not best then break end
  best.pos = best.pos + 2
  scanned = scanned + 1
  last_score, last_key = ms(bs), bk
  if matches(bk) then
    local fields = view(bk)
    if fields then table.insert(out, fields) end
  end
end
local more = 0
for _, it in ipairs(iters) do
  if head(it) then more = 1 end
end
return { more, last_score, last_key, out }
