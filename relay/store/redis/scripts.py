"""The Lua scripts of the store, and how they are run: by hash (EVALSHA), and sent whole
(EVAL) only to a server that lacks one.

Servers cache scripts each on their own and replicas are not sent them, so after a
restart, a failover or on a new Cluster node EVALSHA answers NOSCRIPT; EVAL, routed to
the same keys, runs the script there and caches it for the next EVALSHA.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions

from relay.store.redis.connect import Commands, RedisClient

__all__ = [
    "ADMIT_SCRIPT",
    "APPEND_SCRIPT",
    "CLAIM_SCRIPT",
    "CREATE_SCRIPT",
    "SIGNAL_SCRIPT",
    "Later",
    "Script",
]


class Script:
    """A Lua script, queued in a pipeline by its hash."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def queue(self, pipe: Commands, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Run it as part of `pipe`; `settle` its reply (executed with raise_on_error=False)."""
        # By name: redis-py blocks `evalsha` on a Cluster pipeline, but routes the
        # command by its keys like any other (all of a script's keys share one slot).
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue_whole(self, pipe: Commands, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Run it as part of `pipe`, its source sent with it: never missing from the
        server's script cache, which a call queued behind it may rely on."""
        pipe.execute_command("EVAL", self.source, len(keys), *keys, *args)

    def answer(
        self, client: RedisClient, reply: Any, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script's reply from a pipeline (an error reply raised), or, where the
        server lacked the script (NOSCRIPT), a `Later` that runs it whole."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            return Later(lambda: client.eval(self.source, len(keys), *keys, *args))
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def settle(
        self, client: RedisClient, reply: Any, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """`answer`, awaited: the reply, after running the script whole where it was missing."""
        answer = self.answer(client, reply, keys, args)
        return await answer.run() if isinstance(answer, Later) else answer


class Later:
    """An answer that takes a round trip of its own first (a script run whole after
    NOSCRIPT): `run()` is the answer. Whoever returns one has changed nothing yet."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[], Awaitable[Any]]) -> None:
        self.run = run


# Creating a session: its record, its first lease and its first events (ids 1, 2, …:
# `EventLog.create` checked them), whose log then expires like the record. A record that
# exists already is this very creation's, run before and sent again after a dropped
# connection (session ids are random, 128 bits, never reused): it changes nothing then,
# since the session may have gone on since (its first append, in the same round trip).
# KEYS: meta, lease, log. ARGV: running ttl ms, lease ttl ms, owner, how many record
# arguments follow (field, value pairs), those, then type, data per first event.
CREATE_SCRIPT = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'OK'
end
local fields = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local first = 5 + fields
local count = (#ARGV - first + 1) / 2
for i = 0, count - 1 do
  redis.call('XADD', KEYS[3], string.format('%d-0', i + 1), ARGV[first + 2 * i],
             ARGV[first + 1 + 2 * i])
end
if count > 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
end
return redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
"""
)

# Appending: checks the rules of `EventLog.append`, XADDs the events with explicit entry
# ids (so a second writer's XADD can never land between or on top of them) and updates
# the record, all atomically. Its refusals are error replies `RELAY_<WHY> [detail]`,
# which boundary.py translates.
# KEYS: meta, log, signals, takeover (their expiry follows the log's; the takeover is
# deleted when the session ends: it is only needed while it runs). ARGV: now, first id, final
# status ("" unless the batch ends with a terminal event), max events, retention ms,
# running ttl ms (0: leave the expiry as it is), "1" to get the whole record back (else
# the new last id), an external producer's batch seq ("0": not one; else it and the
# batch's ids are set in the record with the events, see `EventLog.append_batch`), the
# append's id (unique to the call, kept in the record's `last_append`), then type, data
# per event. A session whose last append has this id had it already: the same call,
# sent again after a dropped connection; it answers as it did then, changing nothing.
# Every check comes before the first write: a script that fails halfway is not undone.
APPEND_SCRIPT = Script(
    """
local meta, log = KEYS[1], KEYS[2]
local now, first, final = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local cap, retention_ms, running_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local want_record = ARGV[7] == '1'
local seq, append_id = ARGV[8], ARGV[9]
local count = (#ARGV - 9) / 2
local last = first + count - 1

local state = redis.call('HMGET', meta, 'status', 'last_event_id', 'last_append')
if not state[1] then
  return redis.error_reply('RELAY_NOT_FOUND')
end
if state[3] == append_id then
  if want_record then
    return redis.call('HGETALL', meta)
  end
  return last
end
if state[1] ~= 'running' then
  return redis.error_reply('RELAY_ENDED ' .. state[1])
end
local expected = tonumber(state[2]) + 1
if first ~= expected then
  return redis.error_reply(string.format('RELAY_CONFLICT %d', expected))
end
-- The last id is kept for the terminal event, so a session at the cap can still end
-- (relay.store.base.fits_under_cap, the same rule in Python).
if last > cap or (final == '' and last > cap - 1) then
  return redis.error_reply(string.format('RELAY_LIMIT %d', cap))
end

for i = 0, count - 1 do
  redis.call('XADD', log, string.format('%d-0', first + i), ARGV[10 + 2 * i], ARGV[11 + 2 * i])
end
local last_id = string.format('%d', last)
if seq ~= '0' then
  redis.call('HSET', meta, 'producer_seq', seq, 'producer_first_id', string.format('%d', first),
             'producer_last_id', last_id)
end
if final ~= '' then
  redis.call('HSET', meta, 'last_event_id', last_id, 'updated_at', now, 'status', final,
             'last_append', append_id)
  redis.call('PEXPIRE', meta, retention_ms)
  redis.call('PEXPIRE', log, retention_ms)
  redis.call('PEXPIRE', KEYS[3], retention_ms)
  redis.call('DEL', KEYS[4])
else
  redis.call('HSET', meta, 'last_event_id', last_id, 'updated_at', now, 'last_append', append_id)
  -- Never shortened: another instance's append may have set a longer one.
  for _, key in ipairs({meta, log, KEYS[3], KEYS[4]}) do
    if running_ms > 0 and redis.call('PTTL', key) < running_ms then
      redis.call('PEXPIRE', key, running_ms)
    end
  end
end
if want_record then
  return redis.call('HGETALL', meta)
end
return last
"""
)

# Claiming the lease of a running session whose lease lapsed (`Leases.claim_lease`): the
# check and the claim in one step, so that of the instances claiming it at once exactly
# one wins. KEYS: meta, lease. ARGV: owner, lease ttl ms, max takeovers. Returns the new
# takeover count, or 0 when nothing changed.
CLAIM_SCRIPT = Script(
    """
local state = redis.call('HMGET', KEYS[1], 'status', 'takeovers')
if state[1] ~= 'running' or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local takeovers = tonumber(state[2] or '0')
if takeovers >= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'takeovers', string.format('%d', takeovers + 1))
return takeovers + 1
"""
)

# Appending a signal: the session must be running and below the cap; the signal is entry
# `N-0` of the signals Stream, N one past its length (nothing is trimmed), and the Stream
# expires with the session's log. Refusals are error replies, like the append script's.
# KEYS: meta, signals, log. ARGV: max signals, data. Returns the signal's id.
SIGNAL_SCRIPT = Script(
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return redis.error_reply('RELAY_NOT_FOUND')
end
if status ~= 'running' then
  return redis.error_reply('RELAY_ENDED ' .. status)
end
local id = redis.call('XLEN', KEYS[2]) + 1
if id > tonumber(ARGV[1]) then
  return redis.error_reply('RELAY_SIGNAL_LIMIT ' .. ARGV[1])
end
redis.call('XADD', KEYS[2], string.format('%d-0', id), 'd', ARGV[2])
local ttl = redis.call('PTTL', KEYS[3])
if ttl < 0 then ttl = redis.call('PTTL', KEYS[1]) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return id
"""
)

# Admitting a session of a client (relay/quotas.py): reads the per-minute counts and the
# running slots, and only when every limit admits, counts the request and takes a slot.
# The comparisons are relay/quotas.py's `Window.admits`, in the same floating point (the
# weight is handed in), so Python reads the refusal's limit from the counts returned.
# KEYS: slots, requests previous minute, requests this minute, tokens previous, tokens
# this minute (all of one client: one hash slot). ARGV: previous minute's weight, rpm,
# tpm, max concurrent (0: no limit), session id, now ms, count ttl ms.
# Returns {admitted (0 or 1), requests previous, this, tokens previous, this, running}.
ADMIT_SCRIPT = Script(
    """
local weight = tonumber(ARGV[1])
local rpm, tpm, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local rp, rc, tp, tc = count(KEYS[2]), count(KEYS[3]), count(KEYS[4]), count(KEYS[5])
local running = redis.call('ZCARD', KEYS[1])
local over = (tpm > 0 and not (tp * weight + tc < tpm))
  or (rpm > 0 and not (rp * weight + rc + 1 <= rpm))
  or (cap > 0 and running >= cap)
if over then
  return {0, rp, rc, tp, tc, running}
end
if rpm > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
if cap > 0 then
  redis.call('ZADD', KEYS[1], ARGV[6], ARGV[5])
end
return {1, rp, rc, tp, tc, running}
"""
)
