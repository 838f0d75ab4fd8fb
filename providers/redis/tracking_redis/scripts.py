"""The relay's Lua scripts: each runs atomically in Redis, so what the relays count is exact
even with many relays in one group.

Keys: the stream, the dead-letter stream and the group's state (a hash: ``position``, the
number of entries added before and with the last one the group was given; ``trimmed``,
``dead_lettered``, ``acknowledged``). On Redis Cluster they must share a slot: name the stream
with a hash tag (``{tracking}:events``) and the derived keys follow it.
"""

from __future__ import annotations

__all__ = ["CLAIM", "HEARTBEAT", "LEAVE", "READ", "SETUP"]

#: Create the group (reading from the stream's start) unless it exists, and its position:
#: 0 for a new group, else the group's own read counter (Redis 7), else what was trimmed.
#: KEYS: stream, state. ARGV: group. Returns 1 when the group was created.
SETUP = """
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(created) == 'table' and created.err then
  if not string.find(created.err, 'BUSYGROUP') then return created end
  created = 0
else
  created = 1
end
if redis.call('HEXISTS', KEYS[2], 'position') == 0 then
  local position = 0
  if created == 0 then
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    local added, length = 0, 0
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then added = info[i + 1] end
      if info[i] == 'length' then length = info[i + 1] end
    end
    position = added - length
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local fields = {}
      for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
      if fields['name'] == ARGV[1] and type(fields['entries-read']) == 'number' then
        position = math.max(position, fields['entries-read'])
      end
    end
  end
  redis.call('HSET', KEYS[2], 'position', position)
end
return created
"""

#: Read new entries for this consumer, first counting those trimmed before the group was given
#: them: the entries ever added less the stream's length is how many were trimmed; those past
#: the group's position were never read. (Exact while nobody XDELs entries by hand.)
#: KEYS: stream, state. ARGV: group, consumer, count.
#: Returns {trimmed unread, the stream's last id, entries}.
READ = """
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local added, length, last = 0, 0, '0-0'
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then added = info[i + 1] end
  if info[i] == 'length' then length = info[i + 1] end
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local position = tonumber(redis.call('HGET', KEYS[2], 'position') or '0')
local skipped = 0
if added - length > position then
  skipped = added - length - position
  position = added - length
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
local entries = {}
if reply then entries = reply[1][2] end
redis.call('HSET', KEYS[2], 'position', position + #entries)
if skipped > 0 then redis.call('HINCRBY', KEYS[2], 'trimmed', skipped) end
return {skipped, last, entries}
"""

#: Claim entries pending longer than min-idle on any consumer (XAUTOCLAIM); move those
#: delivered more than max-deliveries times to the dead-letter stream (acknowledged there), and
#: count those trimmed while pending (XAUTOCLAIM drops them from the pending list).
#: KEYS: stream, dead-letter stream, state. ARGV: group, consumer, min idle (ms), cursor,
#: count, max deliveries. Returns {next cursor, trimmed, dead-lettered, {{id, fields, times}}}.
CLAIM = """
local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  'COUNT', ARGV[5])
local deleted = reply[3] or {}
local kept, dead = {}, 0
for _, entry in ipairs(reply[2]) do
  local id, fields = entry[1], entry[2]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local times = 1
  if pending[1] then times = pending[1][4] end
  if times > tonumber(ARGV[6]) and fields then
    local moved = {'XADD', KEYS[2], '*'}
    for _, value in ipairs(fields) do table.insert(moved, value) end
    for _, value in ipairs({'source_id', id, 'deliveries', times,
                            'reason', 'delivered too many times'}) do
      table.insert(moved, value)
    end
    redis.call(unpack(moved))
    redis.call('XACK', KEYS[1], ARGV[1], id)
    dead = dead + 1
  elseif fields then
    table.insert(kept, {id, fields, times})
  end
end
if #deleted > 0 then redis.call('HINCRBY', KEYS[3], 'trimmed', #deleted) end
if dead > 0 then redis.call('HINCRBY', KEYS[3], 'dead_lettered', dead) end
return {reply[1], #deleted, dead, kept}
"""

#: Keep this consumer's entries in flight from being claimed by another relay: reset their
#: idle time (XCLAIM JUSTID does not count a delivery), only for those it still owns.
#: KEYS: stream. ARGV: group, consumer, ids... Returns how many it still owned.
HEARTBEAT = """
local owned = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then table.insert(owned, ARGV[i]) end
end
local count = #owned
if count > 0 then
  table.insert(owned, 'JUSTID')
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(owned))
end
return count
"""

#: A stopping relay leaves the group when nothing is pending on it (else its entries stay
#: pending, to be claimed by the others). KEYS: stream. ARGV: group, consumer. Returns 1 when
#: it left.
LEAVE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
