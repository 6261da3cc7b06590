"""The Redis store: one Stream (the event log) and one hash (the record) per session.

Layout. Every key of a session carries the session id as a Cluster hash tag, so all
of them live in one slot and the append script may touch them together:

    relay:{<session id>}:log    Stream; event N is entry `N-0` with fields t=type, d=data JSON
    relay:{<session id>}:meta   hash; the `SessionRecord` fields, as strings

Appending is one round trip: a Lua script checks the rules of `Store.append`, XADDs the
events with explicit entry ids (so a second writer's XADD can never land between or on
top of them) and updates the record, all atomically. The data bytes are stored as
given and read back unchanged.

Expiry. Both keys get `running_ttl_s` while the session runs (refreshed on every
append), then `retention_s` once its terminal event is in. `max_sessions` applies to the
memory store only: here Redis's memory policy and these expiries bound the data.

Waiting. Waiters on one session in this process share one "tail": a task doing a short
blocking XREAD on that session's stream and handing new events to all of them. So
the number of connections grows with the sessions being watched, not with the waiters,
and blocking reads use their own bounded pool, apart from the commands'.

Redis's own exceptions stop here: they leave this module as `StoreUnavailable` (cannot
reach or use the server) or `StoreError`; the script's refusals map onto the exceptions
`Store.append` documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

import msgspec
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.typing import EncodableT, FieldT

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

__all__ = ["RedisStore", "SessionKeys", "session_keys"]

# Short enough that an idle tail notices soon that its waiters have gone (or that the
# session expired), long enough to cost nothing while waiting.
BLOCK_MS = 500
MAX_CONNECTIONS = 64
MAX_TAIL_CONNECTIONS = 32
# How long a command waits for a free pooled connection before the store counts as
# unavailable. Tails wait for one without limit: their waiters time out on their own.
POOL_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 5.0
# A couple of quick reconnects ride out a dropped connection; anything longer is an
# outage, which callers should hear about as `StoreUnavailable` rather than wait out.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2)

# With decode_responses=False every reply holds bytes; redis-py's types also allow str.
_Fields = Mapping[bytes, bytes]
_Entries = list[tuple[bytes, _Fields]]


class SessionKeys(NamedTuple):
    log: str
    meta: str


def session_keys(session_id: str) -> SessionKeys:
    """The one place that names a session's keys. The braces are a Cluster hash tag."""
    prefix = f"relay:{{{session_id}}}"
    return SessionKeys(log=f"{prefix}:log", meta=f"{prefix}:meta")


# KEYS: meta, log. ARGV: now, first id, final status ("" unless the batch ends with a
# terminal event), max events, retention ms, running ttl ms, then type, data per event.
# Every check comes before the first write: a script that fails halfway is not undone.
_APPEND_SCRIPT = """
local meta, log = KEYS[1], KEYS[2]
local now, first, final = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local cap, retention_ms, running_ms = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local count = (#ARGV - 6) / 2
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
             't', ARGV[7 + 2 * i], 'd', ARGV[8 + 2 * i])
end
redis.call('HSET', meta, 'last_event_id', string.format('%d', last), 'updated_at', now)
local ttl = running_ms
if final ~= '' then
  redis.call('HSET', meta, 'status', final)
  ttl = retention_ms
end
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', log, ttl)
return redis.call('HGETALL', meta)
"""

# Failures that mean "the server cannot serve now", worth retrying later.
_UNAVAILABLE_ERRORS = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.RedisClusterException,
)


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """The boundary where redis exceptions become relay's."""
    try:
        yield
    except _UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(f"redis is unavailable: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise StoreError(f"redis failed: {exc}") from exc


class RedisStore(Store):
    """Sessions in Redis. The keys of a session never span Cluster slots.

    The store owns `client` and `tail_client` (they may be one client) and closes them.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: StoreSettings,
        *,
        tail_client: redis.asyncio.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._tail_client = client if tail_client is None else tail_client
        self._settings = settings
        self._clock = clock
        self._append_script = client.register_script(_APPEND_SCRIPT)
        self._tails: dict[str, _SessionTail] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: StoreSettings,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_tail_connections: int = MAX_TAIL_CONNECTIONS,
    ) -> RedisStore:
        return cls(
            _connect(url, max_connections, POOL_TIMEOUT_S),
            settings,
            tail_client=_connect(url, max_tail_connections, None),
        )

    async def create(self, record: SessionRecord) -> None:
        keys = session_keys(record.id)
        with _translate_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(keys.meta, mapping=_encode_record(record))
                pipe.pexpire(keys.meta, _ms(self._settings.running_ttl_s))
                await pipe.execute()

    async def get(self, session_id: str) -> SessionRecord | None:
        with _translate_errors():
            fields = cast(_Fields, await self._client.hgetall(session_keys(session_id).meta))
        return _decode_record(fields) if fields else None

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        check_batch(events)
        keys = session_keys(session_id)
        with _translate_errors():
            try:
                reply = await self._append_script(
                    keys=[keys.meta, keys.log], args=self._append_args(events)
                )
            except redis.exceptions.ResponseError as exc:
                refusal = _append_refusal(session_id, events[0].id, exc)
                if refusal is None:
                    raise
                raise refusal from exc
        return _decode_record(dict(zip(reply[::2], reply[1::2], strict=True)))

    def _append_args(self, events: Sequence[Event]) -> list[Any]:
        last = events[-1]
        final = STATUS_AFTER_TERMINAL[last.type].value if last.is_terminal else ""
        settings = self._settings
        args: list[Any] = [
            repr(self._clock()),
            events[0].id,
            final,
            settings.max_events_per_session,
            _ms(settings.retention_s),
            _ms(settings.running_ttl_s),
        ]
        for event in events:
            # A memoryview passes the JSON bytes through without copying them.
            args += [event.type.value, memoryview(event.data)]
        return args

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        with _translate_errors():
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
        with _translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
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
        with _translate_errors():
            reply = await self._tail_client.xread(
                {log_key: _entry_id(cursor)}, count=self._settings.read_batch, block=BLOCK_MS
            )
        streams = cast(list[tuple[bytes, _Entries]], reply or [])
        return [event for _, entries in streams for event in _decode_entries(entries)]

    def _forget_tail(self, tail: _SessionTail) -> None:
        if self._tails.get(tail.session_id) is tail:
            del self._tails[tail.session_id]

    async def ping(self) -> None:
        with _translate_errors():
            await self._client.ping()

    async def close(self) -> None:
        tails = list(self._tails.values())
        self._tails.clear()
        await asyncio.gather(*(tail.aclose() for tail in tails))
        await self._client.aclose()
        if self._tail_client is not self._client:
            await self._tail_client.aclose()


def _connect(url: str, max_connections: int, pool_timeout: float | None) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=RETRY,
        decode_responses=False,
    )
    return redis.asyncio.Redis.from_pool(pool)


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


def _encode_record(record: SessionRecord) -> dict[FieldT, EncodableT]:
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
    handed to the waiters then present. A waiter that joins with `after` below the
    cursor may need events already handed out, so it is sent back to read them.
    The task runs while there are waiters; `aclose` cancels it and wakes them all.
    """

    def __init__(
        self,
        session_id: str,
        cursor: int,
        read_new: Callable[[int], Awaitable[list[Event]]],
        on_exit: Callable[[_SessionTail], None],
    ) -> None:
        self.session_id = session_id
        self._cursor = cursor
        self._read_new = read_new
        self._on_exit = on_exit
        self._waiters: set[_Waiter] = set()
        self._task: asyncio.Task[None] | None = None

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

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # A task cancelled before its first step never ran its `finally`.
        self._hand_out_nothing()

    async def _run(self) -> None:
        try:
            while self._waiters:
                events = await self._read_new(self._cursor)
                if events:
                    self._cursor = events[-1].id
                    self._hand_out(events)
        except Exception as exc:  # not swallowed: every waiter raises it
            self._fail(exc)
        finally:
            self._on_exit(self)
            self._hand_out_nothing()

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
