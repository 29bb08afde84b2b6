-- `ARGV[3]` the score to start at (empty: the start), `ARGV[4]` the key at that score to start
-- after (or empty), `ARGV[5]` batch. Builds the `retrying` index for an inbox written before
-- it existed: adds the pending deliveries attempted already, a batch at a time in the pending
-- index's order (new retries are indexed by the scripts meanwhile), and marks the inbox
-- `indexed` after the last. Answers `{ 1, '', '' }` when the index is complete (at once when
-- marked already), or `{ 0, score, key }`: where the next batch starts after.
if redis.call('EXISTS', indexed) == 1 then return { 1, '', '' } end
local batch = tonumber(ARGV[5])
local start = first_rank(sets.pending, ARGV[3], ARGV[4])
local rows = redis.call('ZRANGE', sets.pending, start, start + batch - 1, 'WITHSCORES')
for i = 1, #rows, 2 do
  local ok, v = pcall(redis.call, 'HMGET', hprefix .. rows[i], 'state', 'attempts')
  if ok and v[1] == 'pending' and (tonumber(v[2]) or 0) > 0 then
    redis.call('ZADD', retrying, rows[i + 1], rows[i])
  end
end
if #rows < 2 * batch then
  redis.call('SET', indexed, '1')
  return { 1, '', '' }
end
return { 0, rows[#rows], rows[#rows - 1] }
