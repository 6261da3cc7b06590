"""Following a session's log: replay from a resume point, then live, until the end.

Transport-independent: SSE and WebSocket both iterate `follow`. Each step yields a
batch of events, or an empty batch when `heartbeat_s` passed with nothing new (the
transport sends a keep-alive then). Iteration ends after the terminal event, or when
the session disappears (expired) — the record is checked on every idle beat, so a
reader never waits forever on a log that will not grow. A short store outage is ridden
out: the subscriber keeps its connection and continues where it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from relay.errors import StoreUnavailable
from relay.events import Event
from relay.store import Store

MIN_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


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
    while True:
        try:
            events = await store.wait(session_id, after, batch, heartbeat_s)
            finished = not events and await _finished_before(store, session_id, after)
        except StoreUnavailable:
            await outage.wait_before_retry()
            yield []
            continue
        outage.over()
        if finished:
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


async def _finished_before(store: Store, session_id: str, after: int) -> bool:
    """True when nothing more will come after `after`: gone, or ended at or before it."""
    record = await store.get(session_id)
    return record is None or (record.status.is_final and record.last_event_id <= after)
