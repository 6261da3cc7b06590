"""The Redis store: one Stream (the event log) and one hash (the record) per session.

Shapes. One server (`redis://`, `rediss://`, `unix://`), a master watched by Sentinels
(`redis+sentinel://`) or a Redis Cluster (`redis+cluster://`): relay/store/redis_url.py
parses the URL, `_connect` builds the client for that shape, and everything else here is
the same for all three. Each command and script touches the keys of one session only,
which share one Cluster slot, or only the shared lease index; a Cluster client splits a
pipeline by node and sends each node its part at once. A Sentinel client asks the
Sentinels for the master whenever it connects, so a failover is followed.

Layout. Every key of a session carries the session id as a Cluster hash tag:

    relay:{<session id>}:log    Stream; event N is entry `N-0` with fields t=type, d=data JSON
    relay:{<session id>}:meta   hash; the `SessionRecord` fields, as strings

Appending is one round trip: a Lua script checks the rules of `Store.append`, XADDs the
events with explicit entry ids (so a second writer's XADD can never land between or on
top of them) and updates the record, all atomically. The data bytes are stored as
given and read back unchanged. Creating is one round trip too: a script writes the
record and the first lease, pipelined with the session's entry in the lease index.
Scripts run by hash (EVALSHA); a server that does not have one (restarted, promoted by a
failover, a new Cluster node) answers NOSCRIPT and is sent the whole script once (EVAL).

Expiry. Both keys get `running_ttl_s` while the session runs, then `retention_s` once its
terminal event is in. Appends renew the running expiry so that the keys always outlive
the last append by `running_ttl_s`, but at most about once a second per session: a
renewal gives a second more than that, which covers the appends of the next second
(see `_running_ttl_s`). The lease key has its own short expiry, renewed by the
generating instance (`renew_leases`). `max_sessions` applies to the memory store only:
here Redis's memory policy and these expiries bound the data.

Replies. An append answers with the new last id only: the rest of the record cannot
have changed, and the store keeps each running session's record from its creation or
an earlier append. For a session it does not know (created elsewhere, or forgotten
past REMEMBERED_SESSIONS) it asks for the whole record.

Waiting. Waiters on one session in this process share one "tail": a task doing a short
blocking XREAD on that session's stream and handing new events to all of them. So
the number of connections grows with the sessions being watched, not with the waiters.
Events appended by this process are handed to its tail as soon as they are stored,
without waiting for the XREAD; waiters on other instances hear of them through theirs.

Connections. One client per store. Every call passes one of two `_Boundary`s: commands
(at most `max_connections` at once, each waiting up to POOL_TIMEOUT_S for its turn) and
the tails' blocking reads (`max_tail_connections`, waiting as long as it takes), so
blocking reads never starve commands. The client's pool (per node, on a Cluster) holds
their sum, so no shape ever opens more, or fails for want of a free connection.

Redis's own exceptions stop at the boundaries: they leave this module as
`StoreUnavailable` (cannot reach or use Redis now: connection, timeout, cluster down,
no master known to the Sentinels, …) or `StoreError`; the script's refusals map onto the
exceptions `Store.append` documents.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeAlias, cast

import msgspec
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import ExponentialWithJitterBackoff

from relay.config import StoreSettings
from relay.errors import (
    AppendConflict,
    EventLimitReached,
    SessionEnded,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from relay.events import STATUS_AFTER_TERMINAL, Event, EventType, SessionStatus
from relay.session import SessionRecord
from relay.store.base import Store, check_batch
from relay.store.redis_url import RedisAddress, Topology, parse_redis_url
from relay.tasks import cancel_and_wait

__all__ = ["RedisClient", "RedisStore", "SessionKeys", "session_keys"]

RedisClient: TypeAlias = redis.asyncio.Redis | RedisCluster

# Short enough that an idle tail notices soon that its waiters have gone (or that the
# session expired), long enough to cost nothing while waiting.
BLOCK_MS = 500
# Blocking reads a tail goes on with after its last waiter took its events: subscribers
# come straight back for more, and find it still reading (no read of their own).
LINGER_READS = 1
# Events a tail keeps after handing them out, for waiters a little behind.
RECENT_EVENTS = 1024
# After an append in this process handed a session's tail its events, the tail reads
# nothing for this long: this process's appends keep coming and are handed over
# directly, and a blocking read would only bring them again, a round trip per append.
# Appends from elsewhere (a fence write after a lapsed lease) are read once it passes.
APPEND_QUIET_S = 0.5
# A running session's expiry is renewed at most about once per this many seconds by
# appends here (see `_running_ttl_s`).
EXPIRY_SLACK_S = 1.0
# Running sessions whose record the store keeps, so that an append's reply can be the
# new last id instead of the whole record; one not kept just costs the longer reply.
REMEMBERED_SESSIONS = 16_384
MAX_CONNECTIONS = 64
MAX_TAIL_CONNECTIONS = 32
# The most appends one pipeline carries (see `_AppendSender`).
MAX_APPEND_BATCH = 256
# How long a command waits for its turn on a connection before the store counts as
# unavailable. Tails wait for theirs without limit: their waiters time out on their own.
POOL_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 5.0
# A couple of quick reconnects ride out a dropped connection; anything longer is an
# outage, which callers should hear about as `StoreUnavailable` rather than wait out.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2)

# With decode_responses=False every reply holds bytes; redis-py's types also allow str.
_Fields = Mapping[bytes, bytes]
_Entries = list[tuple[bytes, _Fields]]
_Pipeline: TypeAlias = redis.asyncio.client.Pipeline | ClusterPipeline


class SessionKeys(NamedTuple):
    log: str
    meta: str
    lease: str  # exists while the generating instance keeps renewing it


def session_keys(session_id: str) -> SessionKeys:
    """The one place that names a session's keys. The braces are a Cluster hash tag."""
    prefix = f"relay:{{{session_id}}}"
    return SessionKeys(log=f"{prefix}:log", meta=f"{prefix}:meta", lease=f"{prefix}:lease")


# The keys shared by all sessions. The lease index scores each running session with its
# lease deadline (ms, by the renewer's clock): a shortlist of sessions to check, while
# the lease keys' expiry (by Redis's clock) decides.
LEASE_INDEX_KEY = "relay:leases"
CANCEL_CHANNEL = "relay:cancel"


class _Script:
    """A Lua script, run by hash and sent whole only to a server that lacks it.

    Servers cache scripts each on their own and replicas are not sent them, so after a
    restart, a failover or on a new Cluster node EVALSHA answers NOSCRIPT; EVAL, routed
    to the same keys, runs the script there and caches it for the next EVALSHA.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client: RedisClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def queue(self, pipe: _Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Run it as part of `pipe`; `settle` its reply (executed with raise_on_error=False)."""
        # By name: redis-py blocks `evalsha` on a Cluster pipeline, but routes the
        # command by its keys like any other (all of a script's keys share one slot).
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def settle(
        self, client: RedisClient, reply: Any, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script's reply from a pipeline, after running it whole where it was missing."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            return await client.eval(self.source, len(keys), *keys, *args)
        if isinstance(reply, Exception):
            raise reply
        return reply


# KEYS: meta, lease. ARGV: running ttl ms, lease ttl ms, owner, then field, value pairs.
_CREATE_SCRIPT = _Script(
    """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
"""
)

# KEYS: meta, log. ARGV: now, first id, final status ("" unless the batch ends with a
# terminal event), max events, retention ms, running ttl ms (0: leave the expiry as it
# is), "1" to get the whole record back (else the new last id), then type, data per event.
# Every check comes before the first write: a script that fails halfway is not undone.
_APPEND_SCRIPT = _Script(
    """
local meta, log = KEYS[1], KEYS[2]
local now, first, final = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local cap, retention_ms, running_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local want_record = ARGV[7] == '1'
local count = (#ARGV - 7) / 2
local last = first + count - 1

local state = redis.call('HMGET', meta, 'status', 'last_event_id')
if not state[1] then
  return redis.error_reply('RELAY_NOT_FOUND')
end
if state[1] ~= 'running' then
  return redis.error_reply('RELAY_ENDED ' .. state[1])
end
local expected = tonumber(state[2]) + 1
if first ~= expected then
  return redis.error_reply(string.format('RELAY_CONFLICT %d', expected))
end
-- The last id is kept for the terminal event, so a session at the cap can still end.
if last > cap or (final == '' and last > cap - 1) then
  return redis.error_reply(string.format('RELAY_LIMIT %d', cap))
end

for i = 0, count - 1 do
  redis.call('XADD', log, string.format('%d-0', first + i),
             't', ARGV[8 + 2 * i], 'd', ARGV[9 + 2 * i])
end
local last_id = string.format('%d', last)
if final ~= '' then
  redis.call('HSET', meta, 'last_event_id', last_id, 'updated_at', now, 'status', final)
  redis.call('PEXPIRE', meta, retention_ms)
  redis.call('PEXPIRE', log, retention_ms)
else
  redis.call('HSET', meta, 'last_event_id', last_id, 'updated_at', now)
  -- Never shortened: another instance's append may have set a longer one.
  for _, key in ipairs({meta, log}) do
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

# Failures that mean "Redis cannot serve now", worth retrying later.
_UNAVAILABLE_ERRORS = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    MasterNotFoundError,  # no Sentinel named a master (a ConnectionError too)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover
    redis.exceptions.ClusterError,  # includes ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.RedisClusterException,  # includes SlotNotCoveredError; not a RedisError
)


def _translated(exc: BaseException) -> StoreError | None:
    """The relay exception for a redis exception; None for any other."""
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return StoreUnavailable(f"redis is unavailable: {exc}")
    if isinstance(exc, redis.exceptions.RedisError):
        return StoreError(f"redis failed: {exc}")
    return None


class _Boundary:
    """Where calls cross into Redis: at most `limit` at once, and redis's exceptions
    become relay's on the way out (`async with boundary: ...`).

    A call waits for its turn up to `wait_s` (None: as long as it takes).
    """

    def __init__(self, limit: int, wait_s: float | None) -> None:
        self._turns = asyncio.Semaphore(limit)
        self._wait_s = wait_s

    async def __aenter__(self) -> None:
        if self._wait_s is None or not self._turns.locked():
            await self._turns.acquire()
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await self._turns.acquire()
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"no redis connection was free within {self._wait_s:g} s"
            ) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._turns.release()
        translated = None if exc is None else _translated(exc)
        if translated is not None:
            raise translated from exc


class _QueuedAppend:
    """One append waiting for its turn in a pipeline; `reply` is the script's answer."""

    __slots__ = ("args", "keys", "reply")

    def __init__(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        self.keys = keys
        self.args = args
        self.reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(self, outcome: Any) -> None:
        """Its reply, or the exception it raises; nothing if its caller has gone."""
        if self.reply.done():
            return
        if isinstance(outcome, BaseException):
            self.reply.set_exception(outcome)
        else:
            self.reply.set_result(outcome)


class _AppendSender:
    """Sends the appends of every session of this store, a pipeline at a time.

    A group commit: the appends that queue while a pipeline is out go together in the
    next one, so under load the client's per-command cost (a pool checkout, a write, a
    read) is paid once per round trip, not once per append; with one append waiting it
    goes out at once, alone. Each append gets its own script reply or error; a failure of
    the whole pipeline (Redis unreachable) fails every append in it alike, and their
    writers retry (a lost reply is recognised by the id fence). The one task is the
    store's: `aclose` cancels it and fails what still waits.
    """

    def __init__(self, client: RedisClient, commands: _Boundary, script: _Script) -> None:
        self._client = client
        self._commands = commands
        self._script = script
        self._queue: list[_QueuedAppend] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        call = _QueuedAppend(keys, args)
        self._queue.append(call)
        self._queued.set()
        if self._task is None:
            self._task = asyncio.create_task(self._send_forever(), name="relay redis appends")
        return await call.reply

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            await cancel_and_wait([self._task])
        for call in self._queue:
            call.settle(StoreUnavailable("the store is closed"))
        self._queue.clear()

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                batch = self._queue[:MAX_APPEND_BATCH]
                del self._queue[:MAX_APPEND_BATCH]
                await self._send(batch)

    async def _send(self, batch: list[_QueuedAppend]) -> None:
        calls = [call for call in batch if not call.reply.done()]  # callers still there
        if not calls:
            return
        try:
            async with self._commands, self._client.pipeline(transaction=False) as pipe:
                for call in calls:
                    self._script.queue(pipe, call.keys, call.args)
                replies = await pipe.execute(raise_on_error=False)
                for call, reply in zip(calls, replies, strict=True):
                    call.settle(await self._settled(call, reply))
        except Exception as exc:  # handed to every caller, not swallowed
            for call in calls:
                call.settle(exc)
        finally:  # cancelled (the store closes): the batch may or may not have landed
            for call in calls:
                call.settle(StoreUnavailable("the store closed while appending"))

    async def _settled(self, call: _QueuedAppend, reply: Any) -> Any:
        """The script's answer, or the exception its caller raises (a refusal is one)."""
        try:
            return await self._script.settle(self._client, reply, call.keys, call.args)
        except redis.exceptions.ResponseError as exc:
            return exc


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


class RedisStore(Store):
    """Sessions in Redis. The keys of a session never span Cluster slots.

    The store owns `client` and whatever is in `also_close` (a Sentinel's own
    connections) and closes them.
    """

    def __init__(
        self,
        client: RedisClient,
        settings: StoreSettings,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_tail_connections: int = MAX_TAIL_CONNECTIONS,
        also_close: Sequence[_Closeable] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._settings = settings
        self._commands = _Boundary(max_connections, POOL_TIMEOUT_S)
        self._tail_reads = _Boundary(max_tail_connections, None)
        self._also_close = also_close
        self._clock = clock
        self._tails: dict[str, _SessionTail] = {}
        self._appends = _AppendSender(client, self._commands, _APPEND_SCRIPT)
        # Running sessions this store appended to or created, least recent first.
        self._appending: collections.OrderedDict[str, _Appending] = collections.OrderedDict()

    @classmethod
    def from_url(cls, url: str, settings: StoreSettings) -> RedisStore:
        """A store on the Redis `url` names (see relay/store/redis_url.py), with at most
        `max_connections + max_blocking_reads` connections per Redis server."""
        limits = settings.max_connections, settings.max_blocking_reads
        client, also_close = _connect(parse_redis_url(url), sum(limits))
        return cls(
            client,
            settings,
            max_connections=settings.max_connections,
            max_tail_connections=settings.max_blocking_reads,
            also_close=also_close,
        )

    async def create(self, record: SessionRecord) -> None:
        keys = session_keys(record.id)
        settings = self._settings
        args: list[Any] = [_ms(settings.running_ttl_s), _ms(settings.lease_ttl_s), record.owner]
        for name, value in _encode_record(record).items():
            args += [name, value]
        # One round trip: the record and its first lease in one script, and its entry in
        # the lease index beside it (on a Cluster, the index's node is sent it at the same
        # time). An entry without a record is harmless: the lease sweep drops it.
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            _CREATE_SCRIPT.queue(pipe, [keys.meta, keys.lease], args)
            pipe.zadd(LEASE_INDEX_KEY, {record.id: self._lease_deadline_ms()})
            created, indexed = await pipe.execute(raise_on_error=False)
            await _CREATE_SCRIPT.settle(self._client, created, [keys.meta, keys.lease], args)
            if isinstance(indexed, Exception):
                raise indexed
        self._remember(record, None)  # its log has no expiry yet: the first append sets it

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self._commands:
            fields = cast(_Fields, await self._client.hgetall(session_keys(session_id).meta))
        return _decode_record(fields) if fields else None

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        check_batch(events)
        keys = session_keys(session_id)
        known = self._appending.get(session_id)
        now, sent_at = self._clock(), time.monotonic()
        running_ttl_s = _running_ttl_s(known, sent_at, self._settings.running_ttl_s)
        args = self._append_args(events, now, running_ttl_s, want_record=known is None)
        try:
            reply = await self._appends.run([keys.meta, keys.log], args)
        except redis.exceptions.ResponseError as exc:
            refusal = _append_refusal(session_id, events[0].id, exc)
            if refusal is None:
                raise StoreError(f"redis failed: {exc}") from exc
            if isinstance(refusal, SessionNotFound | SessionEnded):
                self._appending.pop(session_id, None)
            raise refusal from exc
        if known is None:
            record = _decode_record(dict(zip(reply[::2], reply[1::2], strict=True)))
        else:
            record = known.record.after_append(list(events), now)
        self._remember(record, _expires_by(known, sent_at, running_ttl_s))
        tail = self._tails.get(session_id)
        if tail is not None:  # waiters here wake now, not when the tail's read returns
            tail.take_appended(events)
        return record

    def _remember(self, record: SessionRecord, expires_by: float | None) -> None:
        """Keep what the next append needs to know; forget ended sessions and, past
        REMEMBERED_SESSIONS, the least recently appended to (they cost a longer reply)."""
        self._appending.pop(record.id, None)
        if record.status.is_final:
            return
        self._appending[record.id] = _Appending(record, expires_by)
        if len(self._appending) > REMEMBERED_SESSIONS:
            self._appending.popitem(last=False)

    def _append_args(
        self, events: Sequence[Event], now: float, running_ttl_s: float, *, want_record: bool
    ) -> list[Any]:
        last = events[-1]
        final = STATUS_AFTER_TERMINAL[last.type].value if last.is_terminal else ""
        settings = self._settings
        args: list[Any] = [
            repr(now),
            events[0].id,
            final,
            settings.max_events_per_session,
            _ms(settings.retention_s),
            _ms(running_ttl_s) if running_ttl_s else 0,
            "1" if want_record else "0",
        ]
        for event in events:
            # A memoryview passes the JSON bytes through without copying them.
            args += [event.type.value, memoryview(event.data)]
        return args

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        async with self._commands:
            entries = await self._client.xrange(
                session_keys(session_id).log, min=_entry_id(max(after, 0) + 1), count=limit
            )
        return _decode_entries(cast(_Entries, entries))

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        if limit <= 0:
            return []
        after = max(after, 0)  # the tail's cursor is never below 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tail = self._tails.get(session_id)
        if tail is not None:
            # Served by the tail without a read of its own: events it handed out recently,
            # or, for a waiter that has all it has seen, the next ones.
            recent = tail.recent_after(after, limit)
            if recent:
                return recent
            if tail.caught_up(after):
                handed = await self._wait_on_tail(session_id, after, after, limit, timeout)
                if handed is not None:
                    return handed
        while True:
            top, events = await self._read_with_top(session_id, after, limit)
            if events or top is None or top.ended:
                return events
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            handed = await self._wait_on_tail(
                session_id, top.last_event_id, after, limit, remaining
            )
            if handed is not None:
                return handed

    async def _read_with_top(
        self, session_id: str, after: int, limit: int
    ) -> tuple[_LogTop | None, list[Event]]:
        """The session's state and the events after `after`, in one round trip.

        The state is read first, so a session found ended has all its events in the read.
        """
        keys = session_keys(session_id)
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.meta, ["status", "last_event_id"])
            pipe.xrange(keys.log, min=_entry_id(max(after, 0) + 1), count=limit)
            (status, last_event_id), entries = await pipe.execute()
        if status is None:
            return None, []
        top = _LogTop(SessionStatus(status.decode()).is_final, int(last_event_id))
        return top, _decode_entries(entries)

    async def _wait_on_tail(
        self, session_id: str, top: int, after: int, limit: int, timeout: float
    ) -> list[Event] | None:
        """Events handed over by the session's tail; [] on timeout; None: read again."""
        tail = self._tails.get(session_id)
        if tail is None:
            read_new = functools.partial(self._read_new, session_keys(session_id).log)
            tail = self._tails[session_id] = _SessionTail(
                session_id, top, read_new, self._forget_tail
            )
        waiter = tail.join(after, limit)
        if waiter is None:
            return None
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            return []
        finally:
            tail.leave(waiter)

    async def _read_new(self, log_key: str, cursor: int) -> list[Event]:
        """The events after `cursor`, blocking up to BLOCK_MS for the first one."""
        async with self._tail_reads:
            reply = await _xread_blocking(
                self._client, log_key, _entry_id(cursor), self._settings.read_batch
            )
        streams = cast(list[tuple[bytes, _Entries]], reply or [])
        return [event for _, entries in streams for event in _decode_entries(entries)]

    def _forget_tail(self, tail: _SessionTail) -> None:
        if self._tails.get(tail.session_id) is tail:
            del self._tails[tail.session_id]

    async def renew_leases(self, owner: str, session_ids: Sequence[str]) -> None:
        ttl_ms = _ms(self._settings.lease_ttl_s)
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(session_keys(session_id).lease, owner, px=ttl_ms)
            pipe.zadd(LEASE_INDEX_KEY, dict.fromkeys(session_ids, self._lease_deadline_ms()))
            await pipe.execute()

    def _lease_deadline_ms(self) -> int:
        """A lease's deadline in the index, if renewed now."""
        return int(self._clock() * 1000) + _ms(self._settings.lease_ttl_s)

    async def lapsed_leases(self, limit: int) -> list[str]:
        now_ms = int(self._clock() * 1000)
        async with self._commands:
            due = await self._client.zrangebyscore(LEASE_INDEX_KEY, "-inf", now_ms, 0, limit)
        session_ids = [member.decode() for member in cast(list[bytes], due)]
        if not session_ids:
            return []
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                keys = session_keys(session_id)
                pipe.hget(keys.meta, "status")
                pipe.exists(keys.lease)
            replies = await pipe.execute()
        return await self._sort_lapsed(session_ids, replies[::2], replies[1::2])

    async def _sort_lapsed(
        self, session_ids: list[str], statuses: list[bytes | None], leased: list[int]
    ) -> list[str]:
        """The running sessions without a lease; sessions gone or ended leave the index."""
        lapsed, done = [], []
        for session_id, status, has_lease in zip(session_ids, statuses, leased, strict=True):
            if status is None or SessionStatus(status.decode()).is_final:
                done.append(session_id)
            elif not has_lease:
                lapsed.append(session_id)
        if done:
            async with self._commands:
                await self._client.zrem(LEASE_INDEX_KEY, *done)
        return lapsed

    async def publish_cancel(self, session_id: str) -> None:
        async with self._commands:
            await self._client.publish(CANCEL_CHANNEL, session_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CANCEL_CHANNEL)
            async for message in pubsub.listen():
                yield message["data"].decode()
        except Exception as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def ping(self) -> None:
        async with self._commands:
            if isinstance(self._client, RedisCluster):
                # Every primary, not just one: each holds a share of the sessions.
                await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._client.ping()

    async def close(self) -> None:
        await self._appends.aclose()
        tails = list(self._tails.values())
        self._tails.clear()
        await asyncio.gather(*(tail.aclose() for tail in tails))
        await self._client.aclose()
        for owned in self._also_close:
            await owned.aclose()


async def _xread_blocking(client: RedisClient, key: str, after: str, count: int) -> Any:
    """XREAD COUNT count BLOCK BLOCK_MS STREAMS key after."""
    if not isinstance(client, RedisCluster):
        return await client.xread({key: after}, count=count, block=BLOCK_MS)
    # XREAD's key has no fixed position, so redis-py would ask a node where it is
    # (COMMAND GETKEYS) before every read; the key's slot already says which node.
    await client.initialize()  # returns at once unless the slot map needs a refresh
    node = client.get_node_from_key(key)
    return await client.execute_command(
        "XREAD", "COUNT", count, "BLOCK", BLOCK_MS, "STREAMS", key, after, target_nodes=node
    )


class _Connection(NamedTuple):
    client: RedisClient
    also_close: tuple[_Closeable, ...] = ()


def _connect(address: RedisAddress, max_connections: int) -> _Connection:
    """A client for the address's shape, with at most `max_connections` per server."""
    if address.topology is Topology.CLUSTER:
        return _Connection(_cluster_client(address, max_connections))
    if address.topology is Topology.SENTINEL:
        return _sentinel_client(address, max_connections)
    return _Connection(_server_client(address, max_connections))


def _connection_options(address: RedisAddress) -> dict[str, Any]:
    """What every connection to a Redis server takes, whatever the shape."""
    return {
        "username": address.username,
        "password": address.password,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
        "decode_responses": False,
        **address.tls_options,
    }


def _server_client(address: RedisAddress, max_connections: int) -> redis.asyncio.Redis:
    where: dict[str, Any]
    if address.socket_path is not None:
        where = {"connection_class": UnixDomainSocketConnection, "path": address.socket_path}
    else:
        host, port = address.hosts[0]
        connection_class = SSLConnection if address.tls else Connection
        where = {"connection_class": connection_class, "host": host, "port": port}
    pool = redis.asyncio.BlockingConnectionPool(
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_S,
        db=address.db,
        retry=RETRY,
        **where,
        **_connection_options(address),
    )
    return redis.asyncio.Redis.from_pool(pool)


def _cluster_client(address: RedisAddress, max_connections: int) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.hosts],
        max_connections=max_connections,  # per node
        retry=RETRY,  # here: how often a command is retried after refreshing the slot map
        ssl=address.tls,
        **_connection_options(address),
    )


def _sentinel_client(address: RedisAddress, max_connections: int) -> _Connection:
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(address.hosts),
        sentinel_kwargs={
            "password": address.sentinel_password,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "retry": RETRY,
            "ssl": address.tls,
            **address.tls_options,
        },
    )
    assert address.master_name is not None  # parse_redis_url requires one
    client = sentinel.master_for(
        address.master_name,
        redis_class=redis.asyncio.Redis,
        max_connections=max_connections,
        db=address.db,
        retry=RETRY,
        ssl=address.tls,
        **_connection_options(address),
    )
    return _Connection(client, (sentinel,))


class _Appending(NamedTuple):
    """What the store knows of a running session it appends to."""

    record: SessionRecord  # as of its last append (or create) here
    expires_by: float | None  # monotonic time its keys live at least until; None: unknown


def _running_ttl_s(known: _Appending | None, now: float, running_ttl_s: float) -> float:
    """The expiry an append gives a running session's keys, in seconds; 0: none needed.

    After every append the keys live at least `running_ttl_s` more, as when every append
    renewed them. Knowing nothing, an append gives exactly that; one that has renewed
    them before gives EXPIRY_SLACK_S more, so the appends of the next EXPIRY_SLACK_S
    seconds need not renew them again (each renewal costs two writes).
    """
    if known is None or known.expires_by is None:
        return running_ttl_s
    if known.expires_by >= now + running_ttl_s:
        return 0.0
    return running_ttl_s + EXPIRY_SLACK_S


def _expires_by(known: _Appending | None, sent_at: float, running_ttl_s: float) -> float | None:
    """What the store knows of the keys' expiry after an append sent at `sent_at`: the
    script renews it no earlier than that, and never shortens it."""
    if running_ttl_s:
        return sent_at + running_ttl_s
    return None if known is None else known.expires_by


class _LogTop(NamedTuple):
    ended: bool
    last_event_id: int


# The script's refusals, by the first word of its error reply.
_SCRIPT_REFUSALS = frozenset({"RELAY_NOT_FOUND", "RELAY_ENDED", "RELAY_CONFLICT", "RELAY_LIMIT"})


def _append_refusal(
    session_id: str, first_id: int, exc: redis.exceptions.ResponseError
) -> StoreError | None:
    """The relay exception for one of the script's error replies; None for any other."""
    code, _, detail = str(exc).partition(" ")
    if code not in _SCRIPT_REFUSALS:
        return None
    if code == "RELAY_NOT_FOUND":
        return SessionNotFound(session_id)
    if code == "RELAY_ENDED":
        return SessionEnded(f"session {session_id} has ended")
    if code == "RELAY_CONFLICT":
        return AppendConflict(f"session {session_id}: expected event {detail}, got {first_id}")
    return EventLimitReached(f"session {session_id} reached {detail} events")


def _encode_record(record: SessionRecord) -> dict[str, str]:
    # str() of a float is its shortest exact repr, so times survive the round trip.
    return {name: str(value) for name, value in msgspec.to_builtins(record).items()}


def _decode_record(fields: _Fields) -> SessionRecord:
    text = {name.decode(): value.decode() for name, value in fields.items()}
    try:
        # strict=False parses the numbers that a hash can only hold as strings.
        return msgspec.convert(text, SessionRecord, strict=False)
    except msgspec.ValidationError as exc:
        raise StoreError(f"session record {text.get('id')!r} in redis is malformed: {exc}") from exc


def _decode_entries(entries: _Entries) -> list[Event]:
    return [_decode_event(entry_id, fields) for entry_id, fields in entries]


def _decode_event(entry_id: bytes, fields: _Fields) -> Event:
    event_id = int(entry_id.partition(b"-")[0])
    return Event(event_id, EventType(fields[b"t"].decode()), msgspec.Raw(fields[b"d"]))


def _entry_id(event_id: int) -> str:
    return f"{event_id}-0"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Waiter:
    """One `wait` call parked on a tail, until events after `after` arrive."""

    __slots__ = ("after", "future", "limit")

    def __init__(self, after: int, limit: int) -> None:
        self.after = after
        self.limit = limit
        self.future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()

    def offer(self, events: list[Event]) -> bool:
        """Take the events this waiter wants; True when it has been answered."""
        if self.future.done():
            return True
        fresh = [event for event in events if event.id > self.after][: self.limit]
        # A terminal event answers everyone: nothing more will come after it.
        if fresh or events[-1].is_terminal:
            self.future.set_result(fresh)
            return True
        return False


class _SessionTail:
    """The one blocking reader of a session's stream in this process, shared by its waiters.

    `cursor` is the id of an event known to exist (or 0), and every event after it is
    handed to the waiters then present, once: from its own reads, or earlier from an
    append in this process (the read in flight then brings them again, and they are
    dropped); while such appends keep coming it does not read at all, and reads again
    `APPEND_QUIET_S` after the last. A waiter that joins with `after` below the
    cursor may need events already handed out, so it is sent back to read them.
    The task runs while there are waiters, and one blocking read longer, so that waiters
    who took their events and come straight back find it still reading and need no read
    of their own; `aclose` cancels it and wakes them all.
    """

    def __init__(
        self,
        session_id: str,
        cursor: int,
        read_new: Callable[[int], Awaitable[list[Event]]],
        on_exit: Callable[[_SessionTail], None],
        *,
        append_quiet_s: float = APPEND_QUIET_S,
    ) -> None:
        self.session_id = session_id
        self._cursor = cursor
        self._append_quiet_s = append_quiet_s
        self._appended_at = -math.inf  # when an append here last handed it events
        self._read_new = read_new
        self._on_exit = on_exit
        self._waiters: set[_Waiter] = set()
        self._task: asyncio.Task[None] | None = None
        self._ended = False  # it handed out the terminal event
        # The events it handed out last, for waiters a little behind (e.g. still writing
        # the previous batch to a slow socket); ids are consecutive, so they index it.
        self._recent: collections.deque[Event] = collections.deque(maxlen=RECENT_EVENTS)

    def caught_up(self, after: int) -> bool:
        """True when a waiter after `after` needs nothing this tail has already seen."""
        return not self._ended and after == self._cursor

    def recent_after(self, after: int, limit: int) -> list[Event]:
        """Events after `after` from those recently handed out; [] when they do not
        reach back that far (the caller reads the store) or there are none yet."""
        if not self._recent or not self._recent[0].id <= after + 1 <= self._recent[-1].id:
            return []
        start = after + 1 - self._recent[0].id
        return list(itertools.islice(self._recent, start, start + limit))

    def join(self, after: int, limit: int) -> _Waiter | None:
        if after < self._cursor:
            return None
        waiter = _Waiter(after, limit)
        self._waiters.add(waiter)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay tail {self.session_id}")
        return waiter

    def leave(self, waiter: _Waiter) -> None:
        self._waiters.discard(waiter)

    def take_appended(self, events: Sequence[Event]) -> None:
        """Events this process just appended: its waiters need not wait for the read
        that will bring them (and that the cursor then skips), and while such appends
        keep coming the tail does not read (APPEND_QUIET_S)."""
        # Also when the read in flight brought them first: appends here keep coming.
        if self._take(events) or (events and events[-1].id <= self._cursor):
            self._appended_at = asyncio.get_running_loop().time()

    def _take(self, events: Sequence[Event]) -> bool:
        """Hand out the events after the cursor, each once and in order. Events that do
        not follow on from it (another instance appended some in between) are left to
        the reads, which bring every event after the cursor. True if any were new."""
        fresh = [event for event in events if event.id > self._cursor]
        if self._ended or not fresh or fresh[0].id != self._cursor + 1:
            return False
        self._cursor = fresh[-1].id
        self._ended = fresh[-1].is_terminal
        self._recent.extend(fresh)
        self._hand_out(fresh)
        return True

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        # A task cancelled before its first step never ran its `finally`.
        self._hand_out_nothing()

    async def _run(self) -> None:
        try:
            reads_without_waiters = 0
            while reads_without_waiters <= LINGER_READS and not self._ended:
                quiet = await self._quiet_after_appends()
                events = [] if quiet else await self._read_new(self._cursor)
                # Counted before the hand-out, which removes the waiters it answers.
                had_waiters = bool(self._waiters)
                self._take(events)
                reads_without_waiters = 0 if had_waiters else reads_without_waiters + 1
        except Exception as exc:  # not swallowed: every waiter raises it
            self._fail(exc)
        finally:
            self._on_exit(self)
            self._hand_out_nothing()

    async def _quiet_after_appends(self) -> bool:
        """Sleep out the quiet time after this process's last append, if it has not
        passed; False when it has, and the tail must read."""
        remaining = self._appended_at + self._append_quiet_s - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        await asyncio.sleep(remaining)
        return True

    def _hand_out(self, events: list[Event]) -> None:
        answered = {waiter for waiter in self._waiters if waiter.offer(events)}
        self._waiters -= answered

    def _fail(self, exc: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._waiters.clear()

    def _hand_out_nothing(self) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result([])
        self._waiters.clear()
