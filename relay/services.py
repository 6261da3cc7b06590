"""`Services`: the long-lived parts one app wires together, reachable from handlers.

Owned by `create_app`, which opens them on startup and closes them on shutdown.
Services holds the streaming plumbing (a session's log to clients: feeds, follow,
SSE streams, and tracking open streams for shutdown); the session lifecycle (create,
find, snapshot, cancel) is `sessions`, a `relay.sessions.Sessions`; `clients` is the
key registry that `relay.frontdoors.auth` authenticates requests with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from aiohttp import web

from relay import metrics
from relay.clients import Clients
from relay.config import Settings
from relay.errors import ApiError
from relay.events import Event
from relay.providers.router import ModelRouter
from relay.runner import GenerationRunner
from relay.sessions import Sessions
from relay.store import Store
from relay.subscribers.feeds import Feeds
from relay.subscribers.follow import follow
from relay.subscribers.formats import WireRenderer
from relay.subscribers.sse import EventEncoder, ResponseConnection, SseSubscription, native_frame


class TooManySubscribers(ApiError):
    """503: the session has `limits.max_subscribers_per_session` open streams here."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            503,
            "too_many_subscribers",
            f"this session already has {limit} open streams on this instance, the most"
            " allowed (limits.max_subscribers_per_session); retry later",
        )


class Services:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        router: ModelRouter,
        runner: GenerationRunner,
        instance_id: str,
        clients: Clients | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients if clients is not None else Clients()
        self.store = store
        self.router = router
        self.runner = runner
        self.instance_id = instance_id
        self.sessions = Sessions(settings, store, router, runner)
        self.feeds = Feeds(
            store,
            heartbeat_s=settings.server.heartbeat_s,
            batch=settings.store.read_batch,
            outage_s=settings.generation.store_retry_s,
            buffer_bytes=settings.limits.subscriber_buffer_bytes,
        )
        self._subscribers: set[asyncio.Task[object]] = set()
        # Open streams per session on this instance (`limits.max_subscribers_per_session`).
        self._streams: collections.Counter[str] = collections.Counter()
        # Set when shutdown ends the streams: a WebSocket then closes itself (1001).
        self.shutting_down = asyncio.Event()

    @property
    def draining(self) -> bool:
        """The instance is shutting down: `/readyz` and new sessions answer 503."""
        return self.sessions.draining

    @draining.setter
    def draining(self, draining: bool) -> None:
        self.sessions.draining = draining

    async def read_all(self, session_id: str, upto: int | None = None) -> list[Event]:
        """Every event of a session (or those with id <= `upto`)."""
        return await self.sessions.read_all(session_id, upto)

    def follow(self, session_id: str, after: int = 0) -> AsyncGenerator[list[Event], None]:
        """A session's log after `after`, with this instance's heartbeat, read batch and
        tolerance of store outages (`store_retry_s`)."""
        return follow(
            self.store,
            session_id,
            after,
            heartbeat_s=self.settings.server.heartbeat_s,
            batch=self.settings.store.read_batch,
            outage_s=self.settings.generation.store_retry_s,
        )

    async def stream(
        self,
        request: web.Request,
        session_id: str,
        after: int,
        *,
        encode: EventEncoder | None = None,
        headers: dict[str, str] | None = None,
        read_ahead: Sequence[Event] = (),
    ) -> web.StreamResponse:
        """Answer `request` with the session's log after `after` as SSE: relay's own
        frames (after a `retry:` line) or, with `encode`, a provider's wire format.
        `read_ahead` are the events after `after` that the caller has read already.
        Live events come from the session's one feed on this instance."""
        retry_ms = self.settings.server.retry_ms if encode is None else None
        encode = encode or native_frame
        connection = ResponseConnection(request.transport)
        subscription = SseSubscription(
            session_id,
            self.feeds.frames(session_id, after, encode, read_ahead, connection),
            encode,
            retry_ms=retry_ms,
            connection=connection,
            send_timeout_s=self.settings.limits.send_timeout_s,
            first_frames_ready=bool(read_ahead) and retry_ms is None,
        )
        wire_format = encode.wire_format if isinstance(encode, WireRenderer) else "native"
        async with self.counted_stream(session_id), self.subscriber(request):
            with metrics.subscribed("sse", wire_format):
                return await subscription.respond(request, headers)

    @contextlib.asynccontextmanager
    async def counted_stream(self, session_id: str) -> AsyncIterator[None]:
        """One more stream of the session (SSE or WebSocket), or a 503 once it has as
        many as allowed."""
        limit = self.settings.limits.max_subscribers_per_session
        if self._streams[session_id] >= limit:
            raise TooManySubscribers(limit)
        self._streams[session_id] += 1
        try:
            yield
        finally:
            self._streams[session_id] -= 1
            if not self._streams[session_id]:
                del self._streams[session_id]

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
        self.shutting_down.set()
        if self._subscribers:
            await asyncio.wait(set(self._subscribers), timeout=grace_s)
        for task in self._subscribers:
            task.cancel()


SERVICES = web.AppKey("services", Services)
