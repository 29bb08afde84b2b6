-- `ARGV[3]` start (an index in the pending deliveries), `ARGV[4]` batch, `ARGV[5]` `check`
-- on the first call. Appends again the pending deliveries that have neither an entry in the
-- stream that the group has not read yet nor a place in the retry schedule: entries removed
-- by an operator (`XTRIM`, a `MAXLEN`, `XDEL`). Answers `{ next start or -1, how many }`;
-- with `check`, answers `{ -1, 0 }` at once when the stream and the schedule hold at least
-- as many entries as deliveries wait (always so unless entries were removed).
local start, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] == 'check' then
  local waiting = redis.call('ZCARD', sets.pending) + redis.call('ZCARD', sets.running)
  if redis.call('XLEN', stream) + redis.call('ZCARD', delayed) >= waiting then return { -1, 0 } end
end
local keys = redis.call('ZRANGE', sets.pending, start, start + batch - 1)
local fixed = 0
for _, k in ipairs(keys) do
  local h = hprefix .. k
  if redis.call('HGET', h, 'state') == 'pending' and not redis.call('ZSCORE', delayed, k) then
    local sid = redis.call('HGET', h, 'sid')
    local read = sid and redis.pcall('XPENDING', stream, group, sid, sid, 1)
    if not sid or #redis.call('XRANGE', stream, sid, sid) == 0
        or (type(read) == 'table' and not read.err and #read > 0) then
      unstream(h)
      enstream(k, h)
      fixed = fixed + 1
    end
  end
end
if #keys < batch then return { -1, fixed } end
return { start + batch, fixed }
