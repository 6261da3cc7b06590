"""`Services`: the long-lived parts one app wires together, reachable from handlers.

Owned by `create_app`, which opens them on startup and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from relay.config import Settings
from relay.errors import ApiError
from relay.events import Event
from relay.providers.router import ModelRouter
from relay.runner import GenerationRunner
from relay.store import Store


class Services:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        router: ModelRouter,
        runner: GenerationRunner,
        instance_id: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.runner = runner
        self.instance_id = instance_id
        self.draining = False
        self._subscribers: set[asyncio.Task[object]] = set()

    def refuse_when_draining(self) -> None:
        if self.draining:
            raise ApiError(503, "draining", "this instance is shutting down; retry on another")

    async def read_all(self, session_id: str, upto: int | None = None) -> list[Event]:
        """Every event of a session (or those with id <= `upto`), read in batches."""
        batch = self.settings.store.read_batch
        events: list[Event] = []
        while upto is None or len(events) < upto:
            limit = batch if upto is None else min(batch, upto - len(events))
            chunk = await self.store.read(session_id, len(events), limit)
            events += chunk
            if len(chunk) < limit:
                break
        return events

    @contextlib.asynccontextmanager
    async def subscriber(self, request: web.Request) -> AsyncIterator[None]:
        """Track a streaming handler so that shutdown can end it."""
        task = asyncio.current_task()
        assert task is not None
        self._subscribers.add(task)
        try:
            yield
        finally:
            self._subscribers.discard(task)

    async def end_subscribers(self, grace_s: float) -> None:
        """Let open streams deliver what was just written (the `cancelled` events of
        shutdown) for up to `grace_s`, then end the rest; clients reconnect elsewhere
        with Last-Event-ID. The tasks are aiohttp's request handlers: aiohttp owns them."""
        if self._subscribers:
            await asyncio.wait(set(self._subscribers), timeout=grace_s)
        for task in self._subscribers:
            task.cancel()


SERVICES = web.AppKey("services", Services)
