"""The `Store` interface: one durable event log and one record per session.

Every implementation behaves identically where a caller can observe it; the
contract suite in tests/store/ runs against each. The rules of `append`:

- the session must exist (`SessionNotFound`) and still be running (`SessionEnded`);
- the batch's ids continue the log exactly: first id = last id + 1, consecutive
  (`AppendConflict`), so a second writer can never interleave or duplicate;
- a terminal event may only be the last of its batch; it ends the session, sets its
  status and starts its retention clock;
- non-terminal events may use ids up to `max_events - 1`; the last id is kept for
  the terminal event, so a session at the cap can still end cleanly
  (`EventLimitReached`). Nothing is ever trimmed.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import AsyncIterator, Sequence

from relay.events import Event
from relay.session import SessionRecord


class Store(abc.ABC):
    """A session event log. Times are the caller's clock, in seconds since the epoch."""

    @abc.abstractmethod
    async def create(self, record: SessionRecord) -> None:
        """Store a new, empty session. Raises `StoreFull` when there is no room."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None when it never existed or has expired."""

    @abc.abstractmethod
    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        """Append `events` atomically (see the module docstring); returns the new record."""

    @abc.abstractmethod
    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        """Up to `limit` events with id > `after`, in order; [] when there are none."""

    @abc.abstractmethod
    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        """Like `read`, but when nothing is there yet, wait up to `timeout` seconds for
        the next append. Returns [] on timeout; the caller decides what that means."""

    @abc.abstractmethod
    async def renew_leases(self, owner: str, session_ids: Sequence[str]) -> None:
        """`owner` still generates these running sessions: extend their leases by
        `lease_ttl_s`. `create` gives a new session its first lease."""

    @abc.abstractmethod
    async def lapsed_leases(self, limit: int) -> list[str]:
        """Up to `limit` running sessions whose lease lapsed (their generator stopped
        renewing), most overdue first. Ending them is the caller's job."""

    @abc.abstractmethod
    async def publish_cancel(self, session_id: str) -> None:
        """Ask every instance to cancel this session's generation if it runs there."""

    @abc.abstractmethod
    def cancel_requests(self) -> AsyncIterator[str]:
        """Session ids whose cancel was asked through `publish_cancel`, from any
        instance, as they come; ends when the store closes."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raises `StoreUnavailable` when the store cannot serve."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and wake every waiter."""


def check_batch(events: Sequence[Event]) -> None:
    """Reject a batch that no store could accept, before any I/O."""
    if not events:
        raise ValueError("append needs at least one event")
    for previous, event in itertools.pairwise(events):
        if event.id != previous.id + 1:
            raise ValueError(f"event ids must be consecutive, got {previous.id} then {event.id}")
        if previous.is_terminal:
            raise ValueError("a terminal event must be the last of its batch")
