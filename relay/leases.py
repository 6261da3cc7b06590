"""Ownership leases: no session stays `running` after its generator died.

Every instance renews, every `lease_ttl_s / 3`, the leases of the sessions it generates.
Every instance also looks, every `lease_ttl_s / 4`, for running sessions whose lease
lapsed (their generator was killed, or lost the store for longer than it retries) and
ends each with an `error` event, code `generation_lost`, retryable; a session of an
external producer (relay/external.py), whose lease its producer's appends and
keep-alives renew for its idle timeout, ends with code `producer_lost`. A session whose
upstream takes lost generations over (`on_instance_loss`, relay/takeover.py) is claimed
and run here instead, while it has takeovers left. The store's id
fence makes that safe when two instances race, or when the old generator comes back:
exactly one terminal event is ever appended.

A lease lapses by the clock, so an event loop blocked for longer than `lease_ttl_s`
lapses the leases of the sessions it generates although they are alive. The reaper
never ends those: a lapsed lease of a session that still generates here is renewed
instead, and a renewal that is overdue (the loop was blocked) runs before any reaping.
Each renewal measures how late it ran against its schedule, and warns when that was
late enough for other instances to find these leases lapsed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relay import metrics
from relay.config import Settings
from relay.errors import StoreError
from relay.events import ErrorData, EventType
from relay.external import PRODUCER_LOST
from relay.runner import GenerationRunner
from relay.store import Store
from relay.takeover import Takeovers
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

    def __init__(
        self,
        store: Store,
        runner: GenerationRunner,
        settings: Settings,
        takeovers: Takeovers | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._settings = settings
        self._takeovers = takeovers
        self._renew_every_s = settings.store.lease_ttl_s / 3
        self._renew_due = 0.0  # loop time the next renewal is due
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._renew_due = asyncio.get_running_loop().time() + self._renew_every_s
        reap_every_s = self._settings.store.lease_ttl_s / 4
        self._tasks = [
            asyncio.create_task(self._renew_on_schedule(), name="relay-lease-renew"),
            asyncio.create_task(self._every(reap_every_s, self.reap), name="relay-lease-reap"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def renew(self) -> None:
        """Renew the lease of every session generating here, now; the next renewal is due
        a period from now."""
        loop = asyncio.get_running_loop()
        late_s = loop.time() - self._renew_due
        self._renew_due = loop.time() + self._renew_every_s  # before the await: one renewal
        running = self._runner.running_ids
        self._report_lateness(late_s, len(running))
        if running:
            await self._store.renew_leases(self._runner.instance_id, running)

    async def reap(self) -> int:
        """End the sessions whose lease lapsed but that do not generate here; how many this
        instance ended."""
        if asyncio.get_running_loop().time() >= self._renew_due:  # after a stall: ours first
            await self.renew()
        lapsed = await self._store.lapsed_leases(REAP_BATCH)
        running_here = set(self._runner.running_ids)
        await self._keep_alive([sid for sid in lapsed if sid in running_here])
        ended = 0
        for session_id in lapsed:
            if session_id not in running_here:
                ended += await self._end_lost(session_id)
        return ended

    async def _keep_alive(self, session_ids: list[str]) -> None:
        """Renew lapsed leases of sessions that still generate here (the loop was blocked
        past their renewal, or the renewal failed): they are alive, not lost."""
        if session_ids:
            log.warning(
                "renewing %d lapsed lease(s) of sessions still generating here", len(session_ids)
            )
            await self._store.renew_leases(self._runner.instance_id, session_ids)

    def _report_lateness(self, late_s: float, sessions: int) -> None:
        if late_s >= self._renew_every_s:  # leases came within a period of lapsing, or lapsed
            log.warning(
                "lease renewal ran %.1f s late (a blocked event loop, or a slow store); "
                "renewing the leases of %d session(s) now; lease_ttl_s is %g s",
                late_s, sessions, self._settings.store.lease_ttl_s,
            )  # fmt: skip
        else:
            log.debug("lease renewal ran %.3f s late, %d session(s)", late_s, sessions)

    async def _end_lost(self, session_id: str) -> bool:
        record = await self._store.get(session_id)
        if record is None or record.status.is_final:
            return False
        if self._takeovers is not None and await self._takeovers.take_over(record):
            return False  # taken over (here or by another instance): not ended
        lost = PRODUCER_LOST if record.is_external else GENERATION_LOST
        wrote = await end_from_outside(
            self._store,
            record,
            (EventType.ERROR, lost),
            retry_s=self._settings.generation.store_retry_s,
            max_events=self._settings.store.max_events_per_session,
        )
        if wrote:
            metrics.session_ended_from_outside("failed", lost.code)
            tag = session_tag(session_id)
            if record.is_external:
                log.warning("session %s lost its external producer", tag)
            else:
                log.warning("session %s lost its generator %s", tag, record.owner or "?")
        return wrote

    async def _renew_on_schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._renew_due - loop.time()))
            if loop.time() >= self._renew_due:  # else the reaper renewed meanwhile
                await self._guarded(self.renew)

    @classmethod
    async def _every(cls, period_s: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            await cls._guarded(work)

    @staticmethod
    async def _guarded(work: Callable[[], Awaitable[object]]) -> None:
        try:
            await work()
        except StoreError as exc:  # the next round tries again
            log.warning("lease %s failed: %s", work.__name__, exc)
        except Exception:  # a bug must not stop the leases for good
            log.exception("lease %s failed", work.__name__)
