"""The SSE transport: writes a followed session log to an HTTP response.

Headers make proxies pass events through at once (`X-Accel-Buffering: no`, no
caching, never compressed). Each batch of events becomes one write; idle periods send
a `: ping` comment so intermediaries keep the connection open. A client that goes
away ends only this response; the generation goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from relay import sse
from relay.errors import StoreError
from relay.events import Event

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
    """One SSE response: a `retry:` line (optional), then the followed batches."""

    def __init__(
        self,
        session_id: str,
        batches: AsyncIterator[list[Event]],
        *,
        retry_ms: int | None,
        encode: EventEncoder = native_frame,
    ) -> None:
        self.session_id = session_id
        self.batches = batches
        self.retry_ms = retry_ms
        self.encode = encode

    async def respond(
        self, request: web.Request, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
        try:
            await response.prepare(request)  # the client may already be gone
            if self.retry_ms is not None:
                await response.write(sse.retry_frame(self.retry_ms))
            async for events in self.batches:
                await response.write(b"".join(map(self.encode, events)) if events else sse.PING)
        except ConnectionResetError:
            log.debug("subscriber of %s went away", self.session_id)
            return response
        except StoreError as exc:
            # Headers are sent: end the body so the client reconnects with Last-Event-ID.
            log.warning("stream of %s ended early: %s", self.session_id, exc)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response
