"""Following a session's log: replay from a resume point, then live, until the end.

Transport-independent: SSE and WebSocket both iterate `follow`. Each step yields a
batch of events, or an empty batch when `heartbeat_s` passed with nothing new (the
transport sends a keep-alive then). Iteration ends after the terminal event, or when
the session disappears (expired) — the record is checked on every idle beat, so a
reader never waits forever on a log that will not grow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from relay.events import Event
from relay.store import Store


async def follow(
    store: Store, session_id: str, after: int, *, heartbeat_s: float, batch: int
) -> AsyncIterator[list[Event]]:
    while True:
        events = await store.wait(session_id, after, batch, heartbeat_s)
        if events:
            yield events
            if events[-1].is_terminal:
                return
            after = events[-1].id
            continue
        if await _finished_before(store, session_id, after):
            return
        yield events


async def _finished_before(store: Store, session_id: str, after: int) -> bool:
    """True when nothing more will come after `after`: gone, or ended at or before it."""
    record = await store.get(session_id)
    return record is None or (record.status.is_final and record.last_event_id <= after)
