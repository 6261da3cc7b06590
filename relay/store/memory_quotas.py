"""The memory store's quotas: each client's slots and per-minute counts, in this process.

One process is the whole backend, so admission is atomic by running without an await.
The counts are kept for the current and the previous minute only.
"""

from __future__ import annotations

from collections.abc import Callable

from relay.quotas import (
    STALE_SLOT_GRACE_S,
    QuotaLimits,
    QuotaRefusal,
    Window,
    minute_of,
    refuse_by_concurrency,
    refuse_by_windows,
)
from relay.session import SessionRecord
from relay.store.base import Quotas

__all__ = ["MemoryQuotas"]


class _MinuteCounts:
    """A count per minute, the last two minutes kept."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def window(self, now: float) -> Window:
        minute = minute_of(now)
        return Window(self._counts.get(minute - 1, 0), self._counts.get(minute, 0), now)

    def add(self, amount: int, now: float) -> None:
        minute = minute_of(now)
        self._counts = {m: c for m, c in self._counts.items() if m >= minute - 1}
        self._counts[minute] = self._counts.get(minute, 0) + amount


class _ClientCounts:
    def __init__(self) -> None:
        self.slots: dict[str, float] = {}  # session id -> when it was admitted
        self.requests = _MinuteCounts()
        self.tokens = _MinuteCounts()


class MemoryQuotas(Quotas):
    """`record_of` is the store's lookup, by which stale slots are found."""

    def __init__(self, record_of: Callable[[str], SessionRecord | None]) -> None:
        self._record_of = record_of
        self._clients: dict[str, _ClientCounts] = {}

    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        counts = self._clients.setdefault(client, _ClientCounts())
        refusal = refuse_by_windows(limits, counts.requests.window(now), counts.tokens.window(now))
        if refusal is None and refuse_by_concurrency(limits, len(counts.slots)):
            self._drop_stale(counts, now)
            refusal = refuse_by_concurrency(limits, len(counts.slots))
        if refusal is not None:
            return refusal
        if limits.requests_per_minute is not None:
            counts.requests.add(1, now)
        if limits.max_concurrent_sessions is not None:
            counts.slots[session_id] = now
        return None

    def _drop_stale(self, counts: _ClientCounts, now: float) -> None:
        for session_id, admitted_at in list(counts.slots.items()):
            record = self._record_of(session_id)
            gone = record is None and now - admitted_at > STALE_SLOT_GRACE_S
            if gone or (record is not None and record.status.is_final):
                del counts.slots[session_id]

    async def release(self, client: str, session_id: str) -> None:
        counts = self._clients.get(client)
        if counts is not None:
            counts.slots.pop(session_id, None)

    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        self._clients.setdefault(client, _ClientCounts()).tokens.add(tokens, now)
