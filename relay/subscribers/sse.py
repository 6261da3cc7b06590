"""The SSE transport: writes a followed session log to an HTTP response.

Headers make proxies pass events through at once (`X-Accel-Buffering: no`, no
caching, never compressed). Each batch of events becomes one write; idle periods send
a `: ping` comment so intermediaries keep the connection open. A client that goes
away ends only this response; the generation goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from aiohttp import web

from relay import sse
from relay.errors import StoreError
from relay.events import Event
from relay.store import Store
from relay.subscribers.follow import follow

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

EventEncoder = Callable[[Event], bytes]


def native_frame(event: Event) -> bytes:
    return event.sse


class SseSubscription:
    """What one SSE response streams, and how."""

    def __init__(
        self,
        store: Store,
        session_id: str,
        after: int,
        *,
        heartbeat_s: float,
        retry_ms: int | None,
        batch: int,
        encode: EventEncoder = native_frame,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.after = after
        self.heartbeat_s = heartbeat_s
        self.retry_ms = retry_ms
        self.batch = batch
        self.encode = encode

    async def respond(
        self, request: web.Request, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
        await response.prepare(request)
        try:
            if self.retry_ms is not None:
                await response.write(sse.retry_frame(self.retry_ms))
            await self._stream(response)
        except ConnectionResetError:
            log.debug("subscriber of %s went away", self.session_id)
            return response
        except StoreError as exc:
            # Headers are sent: end the body so the client reconnects with Last-Event-ID.
            log.warning("stream of %s ended early: %s", self.session_id, exc)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _stream(self, response: web.StreamResponse) -> None:
        batches = follow(
            self.store, self.session_id, self.after, heartbeat_s=self.heartbeat_s, batch=self.batch
        )
        async for events in batches:
            await response.write(b"".join(map(self.encode, events)) if events else sse.PING)
