"""The in-process store: one Python list of events per session.

For a single process. Bounded: at most `max_sessions` sessions (the oldest finished
ones are evicted first, and creating a session fails with `StoreFull` when all are
running) and `max_events_per_session` events each. Finished sessions expire
`retention_s` after they end, freed by a timer (the store's own task, ended by `close`)
as well as by the next create.

Its cancel bus reaches the listeners of this store object, and its quotas
(memory_quotas.py) count for it alone: in one process it is the whole backend. A chat's
stream is forgotten with its session (so there are never more than sessions).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec

from relay.config import StoreSettings
from relay.errors import (
    AppendConflict,
    EventLimitReached,
    SessionEnded,
    SessionNotFound,
    SignalLimitReached,
    StoreFull,
)
from relay.events import Event
from relay.quotas import QuotaLimits, QuotaRefusal
from relay.session import SessionRecord
from relay.store.base import (
    ChatStream,
    Signal,
    Store,
    check_batch,
    check_first,
    fits_under_cap,
    with_first,
)
from relay.store.memory_quotas import MemoryQuotas
from relay.tasks import cancel_and_wait
from relay.vocabulary import session_tag

# The expiry timer looks again at least this often: the clock is the caller's, and may
# jump.
EXPIRY_CHECK_S = 1.0


class _SessionLog:
    __slots__ = (
        "appended", "chat", "events", "expires_at", "record", "signalled", "signals",
        "takeover",
    )  # fmt: skip

    def __init__(self, record: SessionRecord, takeover: bytes | None) -> None:
        self.record = record
        self.takeover = takeover  # dropped when the session ends
        self.events: list[Event] = []
        self.signals: list[bytes] = []
        # Set and replaced on every append: waiters of one append share one future.
        self.appended = asyncio.Event()
        self.signalled = asyncio.Event()
        self.expires_at = float("inf")
        # The chat that streams this session (client, chat id), if one does.
        self.chat: tuple[str, str] | None = None

    def wake_waiters(self) -> None:
        self.appended.set()
        self.appended = asyncio.Event()
        self.wake_signal_waiters()  # the session may have ended: its signal stream too

    def wake_signal_waiters(self) -> None:
        self.signalled.set()
        self.signalled = asyncio.Event()


class MemoryStore(Store):
    def __init__(self, settings: StoreSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._sessions: dict[str, _SessionLog] = {}
        # Finished sessions in the order they ended: the eviction order.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._closed = False
        # Lease deadlines of running sessions, by session id.
        self._leases: dict[str, float] = {}
        # One queue per cancel listener; None ends it.
        self._cancel_listeners: set[asyncio.Queue[str | None]] = set()
        self._quotas = MemoryQuotas(self._record_of)
        # What each chat streams, by (client, chat id), and until when it may.
        self._chats: dict[tuple[str, str], tuple[ChatStream, float]] = {}
        # Frees finished sessions as they expire; runs while there are any.
        self._expiry: asyncio.Task[None] | None = None

    async def create(
        self,
        record: SessionRecord,
        takeover: bytes | None = None,
        first: Sequence[Event] = (),
    ) -> SessionRecord:
        check_first(first, self._settings.max_events_per_session)
        self._expire_finished()
        if len(self._sessions) >= self._settings.max_sessions:
            self._evict_oldest_finished()
        log = self._sessions[record.id] = _SessionLog(with_first(record, first), takeover)
        log.events.extend(first)
        self._leases[record.id] = self._clock() + self._settings.lease_ttl_s
        return log.record

    async def get(self, session_id: str) -> SessionRecord | None:
        log = self._live(session_id)
        return log.record if log else None

    async def read_takeover(self, session_id: str) -> bytes | None:
        log = self._live(session_id)
        return log.takeover if log else None

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        return self._append(session_id, events, seq=None)

    async def append_batch(
        self, session_id: str, seq: int, events: Sequence[Event]
    ) -> SessionRecord:
        return self._append(session_id, events, seq=seq)

    def _append(self, session_id: str, events: Sequence[Event], seq: int | None) -> SessionRecord:
        check_batch(events)
        log = self._live(session_id)
        if log is None:
            raise SessionNotFound(f"session {session_tag(session_id)}")
        self._check_append(log, events)
        log.events.extend(events)
        now = self._clock()
        record = log.record
        log.record = (
            record.after_append(list(events), now)
            if seq is None
            else record.after_batch(seq, list(events), now)
        )
        if log.record.status.is_final:
            log.expires_at = self._clock() + self._settings.retention_s
            self._finished[session_id] = None
            self._leases.pop(session_id, None)
            log.takeover = None
            self._expire_on_timer()
        log.wake_waiters()
        return log.record

    def _check_append(self, log: _SessionLog, events: Sequence[Event]) -> None:
        record = log.record
        if record.status.is_final:
            raise SessionEnded(f"session {session_tag(record.id)} has ended")
        if events[0].id != record.last_event_id + 1:
            raise AppendConflict(
                f"session {session_tag(record.id)}: expected event {record.last_event_id + 1}, "
                f"got {events[0].id}"
            )
        cap = self._settings.max_events_per_session
        if not fits_under_cap(events[-1], cap):
            raise EventLimitReached(f"session {session_tag(record.id)} reached {cap} events")

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        log = self._live(session_id)
        if log is None:
            return []
        # Event N sits at index N - 1.
        return log.events[max(after, 0) : max(after, 0) + limit]

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        log = self._live(session_id)
        while log is not None and log.record.last_event_id <= after:
            if self._closed or log.record.status.is_final or loop.time() >= deadline:
                return []
            try:
                async with asyncio.timeout_at(deadline):
                    await log.appended.wait()
            except TimeoutError:
                return []
            log = self._live(session_id)
        return await self.read(session_id, after, limit)

    async def append_signal(self, session_id: str, data: bytes) -> int:
        log = self._live(session_id)
        if log is None:
            raise SessionNotFound(f"session {session_tag(session_id)}")
        if log.record.status.is_final:
            raise SessionEnded(f"session {session_tag(session_id)} has ended")
        cap = self._settings.max_signals_per_session
        if len(log.signals) >= cap:
            raise SignalLimitReached(f"session {session_tag(session_id)} reached {cap} signals")
        log.signals.append(data)
        log.wake_signal_waiters()
        return len(log.signals)

    async def read_signals(self, session_id: str, after: int, limit: int) -> list[Signal]:
        log = self._live(session_id)
        if log is None:
            return []
        start = max(after, 0)  # signal N sits at index N - 1
        return [
            Signal(start + 1 + i, data) for i, data in enumerate(log.signals[start : start + limit])
        ]

    async def wait_signals(
        self, session_id: str, after: int, limit: int, timeout: float
    ) -> list[Signal]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        log = self._live(session_id)
        while log is not None and len(log.signals) <= after:
            if self._closed or log.record.status.is_final or loop.time() >= deadline:
                return []
            try:
                async with asyncio.timeout_at(deadline):
                    await log.signalled.wait()
            except TimeoutError:
                return []
            log = self._live(session_id)
        return await self.read_signals(session_id, after, limit)

    async def renew_leases(
        self, owner: str, session_ids: Sequence[str], ttl_s: float | None = None
    ) -> None:
        deadline = self._clock() + (ttl_s or self._settings.lease_ttl_s)
        for session_id in session_ids:
            if session_id in self._leases:
                self._leases[session_id] = deadline

    async def lapsed_leases(self, limit: int) -> list[str]:
        now = self._clock()
        lapsed = sorted((deadline, sid) for sid, deadline in self._leases.items() if deadline < now)
        return [session_id for _, session_id in lapsed[:limit]]

    async def claim_lease(self, session_id: str, owner: str, max_takeovers: int) -> int:
        # No await in here: the check and the claim are one step, as the script is on Redis.
        log = self._live(session_id)
        deadline = self._leases.get(session_id)
        if log is None or deadline is None or deadline >= self._clock():
            return 0
        record = log.record
        if record.status.is_final or record.takeovers >= max_takeovers:
            return 0
        log.record = msgspec.structs.replace(record, owner=owner, takeovers=record.takeovers + 1)
        self._leases[session_id] = self._clock() + self._settings.lease_ttl_s
        return log.record.takeovers

    async def publish_cancel(self, session_id: str) -> None:
        for listener in self._cancel_listeners:
            listener.put_nowait(session_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        if self._closed:
            return
        listener: asyncio.Queue[str | None] = asyncio.Queue()
        self._cancel_listeners.add(listener)
        try:
            while (session_id := await listener.get()) is not None:
                yield session_id
        finally:
            self._cancel_listeners.discard(listener)

    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        return await self._quotas.admit(client, session_id, limits, now)

    async def release(self, client: str, session_id: str) -> None:
        await self._quotas.release(client, session_id)

    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        await self._quotas.count_tokens(client, tokens, now)

    async def set_chat_stream(self, client: str, chat_id: str, stream: ChatStream) -> None:
        log = self._live(stream.session_id)
        if log is None:
            return  # its session is gone already: the chat streams nothing
        chat = (client, chat_id)
        lasts_s = self._settings.running_ttl_s + self._settings.retention_s
        self._chats[chat] = (stream, self._clock() + lasts_s)
        log.chat = chat

    async def chat_stream(self, client: str, chat_id: str) -> ChatStream | None:
        stream, expires_at = self._chats.get((client, chat_id), (None, 0.0))
        if stream is None or self._live(stream.session_id) is None:
            return None  # forgotten with its session (now, by `_live`, or before)
        return stream if expires_at > self._clock() else None

    def _record_of(self, session_id: str) -> SessionRecord | None:
        log = self._live(session_id)
        return log.record if log else None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        if self._expiry is not None:
            await cancel_and_wait([self._expiry])
        for log in self._sessions.values():
            log.wake_waiters()
        for listener in self._cancel_listeners:
            listener.put_nowait(None)  # after the cancels it has not taken yet

    def _live(self, session_id: str) -> _SessionLog | None:
        log = self._sessions.get(session_id)
        if log is not None and log.expires_at <= self._clock():
            self._forget(session_id)
            return None
        return log

    def _expire_finished(self) -> None:
        now = self._clock()
        while self._finished:
            oldest = next(iter(self._finished))
            if self._sessions[oldest].expires_at > now:
                break
            self._forget(oldest)

    def _expire_on_timer(self) -> None:
        """Start the expiry timer, unless it runs."""
        if not self._closed and (self._expiry is None or self._expiry.done()):
            self._expiry = asyncio.create_task(self._expire_when_due(), name="relay-memory-expiry")

    async def _expire_when_due(self) -> None:
        """Forget each finished session once it expires, until none is left."""
        while self._finished:
            oldest = self._sessions[next(iter(self._finished))]
            await asyncio.sleep(min(max(oldest.expires_at - self._clock(), 0.0), EXPIRY_CHECK_S))
            self._expire_finished()

    def _evict_oldest_finished(self) -> None:
        if not self._finished:
            raise StoreFull(
                f"the memory store holds max_sessions={self._settings.max_sessions} "
                "running sessions"
            )
        self._forget(next(iter(self._finished)))

    def _forget(self, session_id: str) -> None:
        log = self._sessions.pop(session_id)
        self._finished.pop(session_id, None)
        if log.chat is not None:
            self._forget_chat(log.chat, session_id)
        self._leases.pop(session_id, None)
        log.wake_waiters()

    def _forget_chat(self, chat: tuple[str, str], session_id: str) -> None:
        """The chat's entry, unless a later session of the chat replaced it."""
        stream, _ = self._chats.get(chat, (None, 0.0))
        if stream is not None and stream.session_id == session_id:
            del self._chats[chat]
