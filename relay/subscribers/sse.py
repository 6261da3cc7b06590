"""The SSE transport: writes a session's encoded frames to an HTTP response.

Headers make proxies pass events through at once (`X-Accel-Buffering: no`, no
caching, never compressed). The frames come ready to write (see
`relay.subscribers.feeds`): each chunk is one write, idle periods bring a `: ping`
comment so intermediaries keep the connection open. A client that goes away ends only
this response; the generation goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

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
    """One SSE response: a `retry:` line (optional), then the session's frames."""

    def __init__(
        self, session_id: str, frames: AsyncGenerator[bytes, None], *, retry_ms: int | None
    ) -> None:
        self.session_id = session_id
        self.frames = frames
        self.retry_ms = retry_ms

    async def respond(
        self, request: web.Request, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
        try:
            await response.prepare(request)  # the client may already be gone
            if self.retry_ms is not None:
                await response.write(sse.retry_frame(self.retry_ms))
            async with contextlib.aclosing(self.frames) as frames:
                async for chunk in frames:
                    await response.write(chunk)
        except ConnectionResetError:
            log.debug("subscriber of %s went away", self.session_id)
            return response
        except StoreError as exc:
            # Headers are sent: end the body so the client reconnects with Last-Event-ID.
            log.warning("stream of %s ended early: %s", self.session_id, exc)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response
