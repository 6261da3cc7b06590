"""Ownership leases: no session stays `running` after its generator died.

Every instance renews, every `lease_ttl_s / 3`, the leases of the sessions it generates.
Every instance also looks, every `lease_ttl_s / 4`, for running sessions whose lease
lapsed (their generator was killed, or lost the store for longer than it retries) and
ends each with an `error` event, code `generation_lost`, retryable. The store's id
fence makes that safe when two instances race, or when the old generator comes back:
exactly one terminal event is ever appended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relay.config import Settings
from relay.errors import StoreError
from relay.events import ErrorData, EventType
from relay.runner import GenerationRunner
from relay.store import Store
from relay.tasks import cancel_and_wait
from relay.vocabulary import session_tag
from relay.writer import end_from_outside

log = logging.getLogger(__name__)

GENERATION_LOST = ErrorData(
    "generation_lost",
    "the instance generating this session stopped; start the generation again",
    retryable=True,
)
REAP_BATCH = 100


class LeaseKeeper:
    """Owned by the app: `start()` on startup, `stop()` on shutdown."""

    def __init__(self, store: Store, runner: GenerationRunner, settings: Settings) -> None:
        self._store = store
        self._runner = runner
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        ttl = self._settings.store.lease_ttl_s
        self._tasks = [
            asyncio.create_task(self._every(ttl / 3, self.renew), name="relay-lease-renew"),
            asyncio.create_task(self._every(ttl / 4, self.reap), name="relay-lease-reap"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def renew(self) -> None:
        running = self._runner.running_ids
        if running:
            await self._store.renew_leases(self._runner.instance_id, running)

    async def reap(self) -> int:
        """End the sessions whose lease lapsed; how many this instance ended."""
        ended = 0
        for session_id in await self._store.lapsed_leases(REAP_BATCH):
            ended += await self._end_lost(session_id)
        return ended

    async def _end_lost(self, session_id: str) -> bool:
        record = await self._store.get(session_id)
        if record is None or record.status.is_final:
            return False
        wrote = await end_from_outside(
            self._store,
            record,
            (EventType.ERROR, GENERATION_LOST),
            retry_s=self._settings.generation.store_retry_s,
            max_events=self._settings.store.max_events_per_session,
        )
        if wrote:
            owner = record.owner or "?"
            log.warning("session %s lost its generator %s", session_tag(session_id), owner)
        return wrote

    @staticmethod
    async def _every(period_s: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await work()
            except StoreError as exc:  # the next round tries again
                log.warning("lease %s failed: %s", work.__name__, exc)
            except Exception:  # a bug must not stop the leases for good
                log.exception("lease %s failed", work.__name__)
