"""The Redis store: one Stream (the event log) and one hash (the record) per session,
with the leases, the cancel bus, the quotas and the chat streams beside them on the same
client.

Each command and script touches the keys of one session only, which share one Cluster
slot (see keys.py), or only the keys all sessions share, or only one client's quota
keys (quotas.py), or one chat's key (chats.py). Appending is one round trip: the append
script (scripts.py), sent with the appends that queued meanwhile (group_commit.py).
Creating is one round trip too: a script writes the record, the first lease and the
session's first events (its first `status`), pipelined with the session's entry in the
lease index; this process's subscribers follow it from there without a read. Both
scripts know when they are run a second time for the same call (the client sends a
pipeline again after a dropped connection, which may have run it already), and change
nothing then. Reading is XRANGE; waiting parks on the session's tail (tail.py).

Connections. One client per store (connect.py). Every call passes one of two
`Boundary`s (boundary.py): commands, and the tails' blocking reads, except the append
sender's round trips, on a connection of its own (group_commit.py; on a Cluster they
are commands). The client's pool (per node, on a Cluster) holds their sum and one more,
so no shape ever opens more, or fails for want of a free connection.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NamedTuple, cast

from redis.asyncio.cluster import RedisCluster

from relay.config import StoreSettings
from relay.errors import SessionEnded, SessionNotFound
from relay.events import STATUS_AFTER_TERMINAL, Event, SessionStatus
from relay.quotas import QuotaLimits, QuotaRefusal
from relay.session import SessionRecord
from relay.store.base import ChatStream, Signal, Store, check_batch, check_first, with_first
from relay.store.redis.boundary import AppendRefusals, Boundary, redis_errors_translated
from relay.store.redis.cancels import RedisCancelBus
from relay.store.redis.chats import RedisChatStreams
from relay.store.redis.codec import (
    Fields,
    RawEntries,
    decode_entries,
    decode_record,
    decode_signal_entries,
    decode_stream_read,
    encode_record,
    entry_id,
    ms,
    stream_read_entries,
)
from relay.store.redis.connect import (
    POOL_TIMEOUT_S,
    Closeable,
    Commands,
    RedisClient,
    connect,
    raw_stream_replies,
)
from relay.store.redis.expiry import AppendingSessions, append_ttl_s, expires_by
from relay.store.redis.group_commit import APPEND_CONNECTIONS, AppendSender, Queue, Settle
from relay.store.redis.keys import session_keys
from relay.store.redis.leases import RedisLeases
from relay.store.redis.quotas import RedisQuotas
from relay.store.redis.scripts import APPEND_SCRIPT, CREATE_SCRIPT, SIGNAL_SCRIPT
from relay.store.redis.tail import BLOCK_MS, ReadNew, SessionTails, xread_blocking
from relay.store.redis_url import parse_redis_url

__all__ = ["MAX_CONNECTIONS", "MAX_TAIL_CONNECTIONS", "RedisStore"]

MAX_CONNECTIONS = 64
MAX_TAIL_CONNECTIONS = 32


class _LogTop(NamedTuple):
    ended: bool
    last_event_id: int


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
        also_close: Sequence[Closeable] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        raw_stream_replies(client)  # decoded by codec.py, faster than redis-py does
        self._settings = settings
        self._commands = Boundary(max_connections, POOL_TIMEOUT_S)
        self._tail_reads = Boundary(max_tail_connections, None)
        self._also_close = also_close
        self._clock = clock
        self._tails = SessionTails(self._tail_read)
        self._appends = AppendSender(client, self._commands, APPEND_SCRIPT)
        self._appending = AppendingSessions()
        # Each append's id, unique to the call (see APPEND_SCRIPT): a store's own prefix
        # and a count.
        self._append_prefix = secrets.token_hex(8).encode()
        self._append_count = itertools.count(1)
        self._leases = RedisLeases(client, self._commands, settings, clock)
        self._cancels = RedisCancelBus(client, self._commands)
        self._quotas = RedisQuotas(client, self._commands)
        self._chats = RedisChatStreams(client, self._commands, settings)

    @classmethod
    def from_url(cls, url: str, settings: StoreSettings) -> RedisStore:
        """A store on the Redis `url` names (see relay/store/redis_url.py), with at most
        `max_connections + max_blocking_reads + 1` connections per Redis server (the
        one: the append sender's own, group_commit.py)."""
        limits = settings.max_connections, settings.max_blocking_reads, APPEND_CONNECTIONS
        client, also_close = connect(parse_redis_url(url), sum(limits))
        return cls(
            client,
            settings,
            max_connections=settings.max_connections,
            max_tail_connections=settings.max_blocking_reads,
            also_close=also_close,
        )

    # --- the event log ----------------------------------------------------------------

    async def create(
        self,
        record: SessionRecord,
        takeover: bytes | None = None,
        first: Sequence[Event] = (),
    ) -> SessionRecord:
        check_first(first, self._settings.max_events_per_session)
        stored = with_first(record, first)
        queue, settle = self._creation(stored, takeover, first)
        with redis_errors_translated():
            await self._appends.send(queue, settle)
        return stored

    def _creation(
        self, stored: SessionRecord, takeover: bytes | None, first: Sequence[Event]
    ) -> tuple[Queue, Settle]:
        """How a creation goes in the append sender's round trip, and its replies.

        Once stored, the session is known here before anything queued after it is
        answered (its first append may be in the next pipeline, out at the same time):
        that append finds its record and its tail, whose subscribers here need no read."""
        args = self._create_args(stored, first)
        keys = session_keys(stored.id)
        sent_at = time.monotonic()
        script_keys = [keys.meta, keys.lease, keys.log]
        running_ttl_s = self._settings.running_ttl_s
        running_ttl_ms = ms(running_ttl_s)

        # One round trip, shared with the other creations and appends under way: the
        # record, its first lease and first events in one script, and its entry in the
        # lease index beside it (on a Cluster, the index's node is sent it at the same
        # time). An entry without a record is harmless: the lease sweep drops it.
        def queue(pipe: Commands) -> int:
            # Sent whole: a first append right behind it finds the session, even where
            # the server's cache holds the append script but not this one (after a
            # failover, an instance that only appended since loaded that one alone).
            CREATE_SCRIPT.queue_whole(pipe, script_keys, args)
            self._leases.queue_index_entries(pipe, [stored.id])
            if takeover is not None:  # in the same round trip; its slot is the record's
                pipe.execute_command("SET", keys.takeover, takeover, "PX", running_ttl_ms)
                return 3
            return 2

        def settle(replies: list[Any]) -> None:
            created, indexed, *kept = replies
            for reply in (created, indexed, *kept):  # the script went whole: never NOSCRIPT
                if isinstance(reply, Exception):
                    raise reply
            # Without first events its log has no expiry yet: the first append sets it.
            expiry = sent_at + running_ttl_s if first else None
            self._appending.remember(stored, expiry)
            self._tails.created(stored.id, first)

        return queue, settle

    def _create_args(self, stored: SessionRecord, first: Sequence[Event]) -> list[Any]:
        settings = self._settings
        fields: list[Any] = []
        for name, value in encode_record(stored).items():
            fields += [name, value]
        args = [ms(settings.running_ttl_s), ms(settings.lease_ttl_s), stored.owner, len(fields)]
        args += fields
        for event in first:
            args += [event.type.value, memoryview(event.data)]
        return args

    async def read_takeover(self, session_id: str) -> bytes | None:
        async with self._commands:
            kept = await self._client.get(session_keys(session_id).takeover)
        return cast(bytes | None, kept)

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self._commands:
            fields = cast(Fields, await self._client.hgetall(session_keys(session_id).meta))
        return decode_record(fields) if fields else None

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        return await self._append(session_id, events, seq=0)

    async def append_batch(
        self, session_id: str, seq: int, events: Sequence[Event]
    ) -> SessionRecord:
        return await self._append(session_id, events, seq=seq)

    async def _append(self, session_id: str, events: Sequence[Event], seq: int) -> SessionRecord:
        check_batch(events)
        keys = session_keys(session_id)
        known = self._appending.get(session_id)
        now, sent_at = self._clock(), time.monotonic()
        running_ttl_s = append_ttl_s(known, sent_at, self._settings.running_ttl_s)
        args = self._append_args(events, now, running_ttl_s, want_record=known is None, seq=seq)

        def stored() -> None:  # its subscribers here write it while this task resumes
            self._tails.take_appended(session_id, events)

        try:
            with AppendRefusals(session_id, events[0].id):
                reply = await self._appends.run(
                    [keys.meta, keys.log, keys.signals, keys.takeover], args, stored
                )
        except (SessionNotFound, SessionEnded):
            self._appending.forget(session_id)
            self._tails.wake(session_id)  # its waiters here look again now: gone, or ended
            raise
        if known is None:
            record = decode_record(dict(zip(reply[::2], reply[1::2], strict=True)))
        elif seq:
            record = known.record.after_batch(seq, list(events), now)
        else:
            record = known.record.after_append(list(events), now)
        self._appending.remember(record, expires_by(known, sent_at, running_ttl_s))
        return record

    def _append_args(
        self,
        events: Sequence[Event],
        now: float,
        running_ttl_s: float,
        *,
        want_record: bool,
        seq: int,
    ) -> list[Any]:
        last = events[-1]
        final = STATUS_AFTER_TERMINAL[last.type].value if last.is_terminal else ""
        settings = self._settings
        args: list[Any] = [
            repr(now),
            events[0].id,
            final,
            settings.max_events_per_session,
            ms(settings.retention_s),
            ms(running_ttl_s) if running_ttl_s else 0,
            "1" if want_record else "0",
            seq,
            b"%s:%d" % (self._append_prefix, next(self._append_count)),
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
                session_keys(session_id).log, min=entry_id(max(after, 0) + 1), count=limit
            )
        return decode_entries(cast(RawEntries, entries))

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
                handed = await self._tails.wait_on(session_id, after, after, limit, timeout)
                if handed is not None:
                    return handed
        while True:
            top, events = await self._read_with_top(session_id, after, limit)
            if events or top is None or top.ended:
                return events
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            handed = await self._tails.wait_on(
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
            pipe.xrange(keys.log, min=entry_id(max(after, 0) + 1), count=limit)
            (status, last_event_id), entries = await pipe.execute()
        if status is None:
            return None, []
        top = _LogTop(SessionStatus(status.decode()).is_final, int(last_event_id))
        return top, decode_entries(entries)

    def _tail_read(self, session_id: str) -> ReadNew:
        return functools.partial(self._read_new, session_keys(session_id).log)

    async def _read_new(self, log_key: str, cursor: int) -> list[Event]:
        """The events after `cursor`, blocking up to BLOCK_MS for the first one."""
        async with self._tail_reads:
            reply = await xread_blocking(
                self._client, log_key, entry_id(cursor), self._settings.read_batch
            )
        return decode_stream_read(reply)

    # --- the signal log ---------------------------------------------------------------

    async def append_signal(self, session_id: str, data: bytes) -> int:
        keys = session_keys(session_id)
        script_keys = [keys.meta, keys.signals, keys.log]
        args = [self._settings.max_signals_per_session, data]
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            SIGNAL_SCRIPT.queue(pipe, script_keys, args)
            (reply,) = await pipe.execute(raise_on_error=False)
            with AppendRefusals(session_id, 0):
                reply = await SIGNAL_SCRIPT.settle(self._client, reply, script_keys, args)
        return int(reply)

    async def read_signals(self, session_id: str, after: int, limit: int) -> list[Signal]:
        if limit <= 0:
            return []
        async with self._commands:
            entries = await self._client.xrange(
                session_keys(session_id).signals, min=entry_id(max(after, 0) + 1), count=limit
            )
        return _signals(cast(RawEntries, entries))

    async def wait_signals(
        self, session_id: str, after: int, limit: int, timeout: float
    ) -> list[Signal]:
        """Reads, then blocks on the signals Stream (XREAD BLOCK, BLOCK_MS at a time and
        no longer than what is left of `timeout`, on a tail connection) until one comes,
        the session ends or `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        keys = session_keys(session_id)
        while True:
            async with self._commands, self._client.pipeline(transaction=False) as pipe:
                pipe.hget(keys.meta, "status")
                pipe.xrange(keys.signals, min=entry_id(max(after, 0) + 1), count=limit)
                status, entries = await pipe.execute()
            signals = _signals(entries)
            if signals or status is None or status != b"running" or loop.time() >= deadline:
                return signals
            left_ms = round((deadline - loop.time()) * 1000)
            async with self._tail_reads:
                reply = await xread_blocking(
                    self._client, keys.signals, entry_id(after), limit, min(BLOCK_MS, left_ms)
                )
            if signals := [
                signal for found in stream_read_entries(reply) for signal in _signals(found)
            ]:
                return signals

    # --- the leases and the cancel bus (leases.py, cancels.py) ------------------------

    async def renew_leases(
        self, owner: str, session_ids: Sequence[str], ttl_s: float | None = None
    ) -> None:
        await self._leases.renew_leases(owner, session_ids, ttl_s)

    async def lapsed_leases(self, limit: int) -> list[str]:
        return await self._leases.lapsed_leases(limit)

    async def claim_lease(self, session_id: str, owner: str, max_takeovers: int) -> int:
        return await self._leases.claim_lease(session_id, owner, max_takeovers)

    async def publish_cancel(self, session_id: str) -> None:
        await self._cancels.publish_cancel(session_id)

    def cancel_requests(self) -> AsyncIterator[str]:
        return self._cancels.cancel_requests()

    # --- the quotas (quotas.py) ---------------------------------------------------------

    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        return await self._quotas.admit(client, session_id, limits, now)

    async def release(self, client: str, session_id: str) -> None:
        await self._quotas.release(client, session_id)

    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        await self._quotas.count_tokens(client, tokens, now)

    # --- the chat streams (chats.py) ----------------------------------------------------

    async def set_chat_stream(self, client: str, chat_id: str, stream: ChatStream) -> None:
        await self._chats.set_chat_stream(client, chat_id, stream)

    async def chat_stream(self, client: str, chat_id: str) -> ChatStream | None:
        return await self._chats.chat_stream(client, chat_id)

    # --- the whole store ----------------------------------------------------------------

    async def ping(self) -> None:
        async with self._commands:
            if isinstance(self._client, RedisCluster):
                # Every primary, not just one: each holds a share of the sessions.
                await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._client.ping()

    async def close(self) -> None:
        await self._cancels.aclose()
        await self._appends.aclose()
        await self._tails.aclose()
        await self._client.aclose()
        for owned in self._also_close:
            await owned.aclose()


def _signals(entries: RawEntries) -> list[Signal]:
    """Signal entries (`N-0`, field `d`) as signals."""
    return [Signal(signal_id, data) for signal_id, data in decode_signal_entries(entries)]
