"""Following a session's log: replay from a resume point, then live, until the end.

Transport-independent: SSE and WebSocket both iterate `follow`. Each step yields a
batch of events, or an empty batch when `heartbeat_s` passed with nothing new (the
transport sends a keep-alive then). Iteration ends after the terminal event. A short
store outage is ridden out: the subscriber keeps its connection and continues where it
was.

The first idle beat after the start, or after events, comes a little early, by the
session id (`relay.sse.first_heartbeat_s`), so that readers that fall idle together do
not beat together for as long as they stay idle.

Every idle beat (and every wait that returns nothing at once, as it does for an
unknown session) checks the record, so a reader never waits forever on a log that will
not grow. A reader that has the terminal event never waits again, so a record found
gone (or a log that lacks events its record counts) means the log vanished under it
before its end: store data loss (a Redis restarted without persistence, a FLUSHALL, an
eviction). Nothing can be appended to a log that is gone, so the reader's own stream
ends with `session_lost(after)`: an `error` event, code `session_lost`, numbered right
after the last event it got. A session that ended before the reader's resume point is
the other way to find nothing more: iteration just ends.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncGenerator

from relay.errors import StoreUnavailable
from relay.events import ErrorData, Event, EventType, make_event
from relay.sse import first_heartbeat_s
from relay.store import Store

MIN_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0

SESSION_LOST = ErrorData(
    "session_lost",
    "this session's log vanished from the store before its end was read (store data loss:"
    " a Redis restarted without persistence, flushed, or evicting keys); nothing more of it"
    " can be read or generated: start the generation again",
    retryable=False,
)


def session_lost(after: int) -> Event:
    """The terminal event of a reader whose session vanished after it got event `after`.
    It is in no log (there is none any more): it is made for this reader alone."""
    return make_event(after + 1, EventType.ERROR, SESSION_LOST)


_SESSION_LOST_JSON = bytes(session_lost(0).data)


def is_session_lost(event: Event) -> bool:
    return event.type is EventType.ERROR and bytes(event.data) == _SESSION_LOST_JSON


class Next(enum.Enum):
    """What a wait that brought nothing means for a reader."""

    WAIT = "wait"  # the log goes on: wait again
    ENDED = "ended"  # the session ended at or before the reader's position
    LOST = "lost"  # the log vanished under the reader


async def follow(
    store: Store,
    session_id: str,
    after: int,
    *,
    heartbeat_s: float,
    batch: int,
    outage_s: float = 0.0,
) -> AsyncGenerator[list[Event], None]:
    """Batches of events after `after`; [] for an idle beat. While the store is
    unreachable, keeps beating (so the client's connection stays open) and retries with
    backoff; an outage longer than `outage_s` raises `StoreUnavailable`."""
    outage = Outage(outage_s)
    early_s = idle_s = first_heartbeat_s(heartbeat_s, session_id)
    while True:
        try:
            events = await store.wait(session_id, after, batch, idle_s)
            idle_s = early_s if events else heartbeat_s
            step = await _after_nothing(store, session_id, after) if not events else Next.WAIT
        except StoreUnavailable:
            await outage.wait_before_retry()
            yield []
            continue
        outage.over()
        if step is Next.LOST:
            yield [session_lost(after)]
        if step is not Next.WAIT:
            return
        yield events
        if events and events[-1].is_terminal:
            return
        after = events[-1].id if events else after


class Outage:
    """How long the store has been unreachable, and the backoff between tries."""

    def __init__(self, limit_s: float) -> None:
        self._limit_s = limit_s
        self._since: float | None = None
        self._backoff_s = MIN_BACKOFF_S

    async def wait_before_retry(self) -> None:
        now = time.monotonic()
        self._since = now if self._since is None else self._since
        if now - self._since + self._backoff_s > self._limit_s:
            raise StoreUnavailable(f"the store was unreachable for over {self._limit_s:g} s")
        await asyncio.sleep(self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, MAX_BACKOFF_S)

    def over(self) -> None:
        self._since, self._backoff_s = None, MIN_BACKOFF_S


async def _after_nothing(store: Store, session_id: str, after: int) -> Next:
    """What a wait for the events after `after` that returned none means."""
    record = await store.get(session_id)
    if record is None:
        return Next.LOST
    if record.last_event_id <= after:
        return Next.ENDED if record.status.is_final else Next.WAIT
    # The record counts events the wait did not bring: appended since (read them next
    # time), or gone with the log while the record stayed (an eviction of one key).
    return Next.WAIT if await store.read(session_id, after, 1) else Next.LOST
