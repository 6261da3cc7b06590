"""`SessionWriter`: the single producer of one session's log.

It numbers events, encodes each once, and appends a whole batch in one store call.
When the store is unreachable it retries with backoff for up to `retry_s`; a retry
whose first attempt did land (the reply was lost) is recognised by the store's
`last_event_id`, so nothing is written twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

from relay.errors import AppendConflict, StoreUnavailable
from relay.events import Event, EventData, EventType, make_event
from relay.store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 1.0


class SessionWriter:
    def __init__(self, store: Store, session_id: str, *, last_event_id: int, retry_s: float) -> None:
        self._store = store
        self.session_id = session_id
        self.last_event_id = last_event_id
        self._retry_s = retry_s
        self.ended = False

    async def append(self, items: list[tuple[EventType, EventData]]) -> list[Event]:
        """Append `items` as the next events of the log, in one store call."""
        if not items:
            return []
        first = self.last_event_id + 1
        events = [make_event(first + i, kind, data) for i, (kind, data) in enumerate(items)]
        await self._append_with_retry(events)
        self.last_event_id = events[-1].id
        self.ended = events[-1].is_terminal
        return events

    async def _append_with_retry(self, events: list[Event]) -> None:
        deadline = time.monotonic() + self._retry_s
        backoff = 0.05
        attempt = 0
        while True:
            try:
                await self._store.append(self.session_id, events)
                return
            except StoreUnavailable:
                if time.monotonic() + backoff > deadline:
                    raise
                log.warning("store unavailable, retrying append for %s", self.session_id)
            except AppendConflict:
                if attempt == 0 or not await self._landed(events[-1].id):
                    raise
                return
            attempt += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _landed(self, last_id: int) -> bool:
        """After a lost reply: did the earlier attempt append the batch?"""
        record = await self._store.get(self.session_id)
        return record is not None and record.last_event_id >= last_id
