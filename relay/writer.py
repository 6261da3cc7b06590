"""`SessionWriter`: the single producer of one session's log.

It numbers events, encodes each once, and appends a whole batch in one store call.
When the store is unreachable it retries with backoff for up to `retry_s`; a retry
whose first attempt did land (the reply was lost) is recognised by the store's
`last_event_id`, so nothing is written twice.

Whoever writes a session's terminal event (the runner, a cancel from another instance,
the lease reaper) gives back the session's quota slot, if it holds one (`slot_of`),
just before it appends the batch that ends the session: a client that has read the end
then finds its slot free. (A client's quota keys and a session's log are in different
Redis Cluster slots, so both cannot be one script. Freed a round trip early, the bound
is passed by at most one session for that round trip; freed after, a client that read
the end and started again at once would be refused.) Giving it back is best effort; a
slot left behind is found stale by the store's next admission.
"""

from __future__ import annotations

import asyncio
import logging
import time

from relay.errors import (
    AppendConflict,
    SessionEnded,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from relay.events import TERMINAL_TYPES, ErrorData, Event, EventData, EventType, make_event
from relay.session import SessionRecord
from relay.store import Store
from relay.vocabulary import session_tag

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 1.0

EVENT_LIMIT_ERROR = ErrorData(
    "event_limit", "the session reached store.max_events_per_session", retryable=False
)

Items = list[tuple[EventType, EventData]]


def numbered(first_id: int, items: Items) -> list[Event]:
    """`items` as the events from id `first_id` on, each encoded once."""
    return [make_event(first_id + i, kind, data) for i, (kind, data) in enumerate(items)]


class SessionWriter:
    def __init__(
        self,
        store: Store,
        session_id: str,
        *,
        last_event_id: int,
        retry_s: float,
        max_events: int,
        slot_of: str | None = None,
    ) -> None:
        self._store = store
        self.session_id = session_id
        self.last_event_id = last_event_id
        self._retry_s = retry_s
        self._max_events = max_events
        self._slot_of = slot_of  # the client whose quota slot the session holds
        self.last_type: EventType | None = None
        self.terminal: Event | None = None  # the event that ended the session, once written

    @property
    def ended(self) -> bool:
        return self.last_type in TERMINAL_TYPES

    async def append(self, items: Items) -> list[Event]:
        """Append `items` as the next events of the log, in one store call.

        A batch that ends the session (its last event terminal, the cap's error
        included) gives back the quota slot first; if the append then fails, the slot
        stays given back: the session is ending anyway (or, in the rare case that
        another instance took its generation over, runs on there without a slot)."""
        if not items:
            return []
        events = numbered(self.last_event_id + 1, self._fit(items))
        if events[-1].is_terminal:
            await self._release_slot()
        await self._append_with_retry(events)
        self.last_event_id = events[-1].id
        self.last_type = events[-1].type
        if events[-1].is_terminal:
            self.terminal = events[-1]
        return events

    async def _release_slot(self) -> None:
        if self._slot_of is None:
            return
        try:
            await self._store.release(self._slot_of, self.session_id)
        except StoreError as exc:  # the next admission finds the slot stale
            tag = session_tag(self.session_id)
            log.warning("session %s: its quota slot was not given back: %s", tag, exc)

    def _fit(self, items: Items) -> Items:
        """What fits under the event cap; past it, what fits and then the cap's error.

        The store keeps the last id for a terminal event (`fits_under_cap`), so the
        error always fits.
        """
        room = self._max_events - 1 - self.last_event_id
        if len(items) <= room or (len(items) == room + 1 and items[-1][0] in TERMINAL_TYPES):
            return items
        return items[: max(room, 0)] + [(EventType.ERROR, EVENT_LIMIT_ERROR)]

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
                log.warning(
                    "store unavailable, retrying append for %s", session_tag(self.session_id)
                )
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


async def end_from_outside(
    store: Store,
    record: SessionRecord,
    terminal: tuple[EventType, EventData],
    *,
    retry_s: float,
    max_events: int,
) -> bool:
    """End a session that this instance does not generate, with `terminal`.

    The store's id fence makes this safe against the generator (or another instance
    doing the same): whoever appends first wins; the others see a conflict, re-read, and
    find the session ended. Each try gives back the quota slot of the session's client
    before its append (`SessionWriter.append`), which the session ending either way
    makes right. True when this call wrote the terminal event; False when the session
    ended meanwhile, or vanished (there is no log left to end).
    """
    current: SessionRecord | None = record
    while current is not None and not current.status.is_final:
        writer = SessionWriter(
            store, current.id, last_event_id=current.last_event_id, retry_s=retry_s,
            max_events=max_events, slot_of=current.client or None,
        )  # fmt: skip
        try:
            await writer.append([terminal])
            return True
        except (SessionEnded, SessionNotFound):
            return False
        except AppendConflict:
            current = await store.get(current.id)
    return False
