"""The SSE transport: writes a session's encoded frames to an HTTP response.

Headers make proxies pass events through at once (`X-Accel-Buffering: no`, no
caching, never compressed). The frames come ready to write (see
`relay.subscribers.feeds`): each chunk is one write, idle periods bring a `: ping`
comment so intermediaries keep the connection open. A client that goes away ends only
this response; the generation goes on. A client whose socket takes nothing for
`send_timeout_s` while bytes wait for it is disconnected (`StallWatch`): it resumes
with Last-Event-ID.

A started response is a different world: once its headers are sent, no status can be
answered any more. A failure then ends the body cleanly with an in-band error in the
stream's own format (relay's `error` event, or its renderer's `error_frame`), code
`internal_error`, and its traceback goes to the log, once. The exception is a store
failure (`StoreError`): the log is fine, this instance could not read it, so the body
just ends and the client reconnects with Last-Event-ID.

A client that goes away is no failure, however its connection ends under a write:
aiohttp raises `ConnectionError` ("Connection lost" while a write waited for a full
socket to drain, `ClientConnectionResetError` on a closed transport; a reset or a broken
pipe are its subclasses). The stream ends there, with a debug line; the handler returns
its response, which aiohttp's access log shows with its status (200), as it does for
any response whose peer left.

The in-band error has no `id:` line. It is not an event of the session's log, and a
frame without `id:` leaves an EventSource's last event id as it was, so a client that
reconnects resumes after the last event it really got, and no event id is taken that
the log may yet give to a real event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter

from relay import log_context, sse
from relay.errors import StoreError
from relay.events import ErrorData, Event, EventType
from relay.subscribers.formats import WireRenderer
from relay.vocabulary import session_tag

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

# What a client reads when its stream fails after the headers: relay's fault, without
# its details (they are in the server log). Not retryable: a retry replays the same log.
STREAM_FAILED = ErrorData(
    "internal_error", "relay failed while sending this stream", retryable=False
)

EventEncoder = Callable[[Event], bytes]

_encode = msgspec.json.Encoder().encode


def native_frame(event: Event) -> bytes:
    return event.sse


def native_error_frame(error: ErrorData) -> bytes:
    """relay's own `error` event, without `id:` (see the module docstring)."""
    return sse.data_frame(_encode(error), None, EventType.ERROR.value)


def in_band_error(encode: EventEncoder, error: ErrorData) -> bytes:
    """The frame that ends a failed stream, in the format `encode` writes."""
    if isinstance(encode, WireRenderer):
        return encode.error_frame(error)
    return native_error_frame(error)


class _HeadersWithFirstFrames(web.StreamResponse):
    """A stream whose first frames are at hand: its headers go out in the same write as
    they do (one send, not two, on the first token's path). aiohttp sends a plain
    `StreamResponse`'s headers on their own when it is prepared; its `Response` waits
    like this, by this class attribute (if a later aiohttp drops it, the headers just
    go out on their own again)."""

    _send_headers_immediately = False


def _send_headers(writer: AbstractStreamWriter) -> None:
    """The headers, if no write has taken them yet (and the client is still there)."""
    with contextlib.suppress(ConnectionError):
        writer.send_headers()


class SubscriberGone(Exception):
    """The client's connection closed under a write: it left, or relay dropped it."""


class ResponseConnection:
    """The connection of a streaming response, as its feed sees it
    (`relay.subscribers.feeds.Connection`): what its transport has not sent yet,
    dropping it (an abort: what is unsent is discarded, so nothing more is written), and
    writing frames at once while its stream waits for them (`write_now`), once the
    stream has said where its body goes (`writing`)."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport
        self._writer: AbstractStreamWriter | None = None
        self._sent: Callable[[bytes], None] | None = None

    def unsent(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def drop(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def writing(self, writer: AbstractStreamWriter, sent: Callable[[bytes], None]) -> None:
        """The response's body writer, and what counts a write made by `write_now` as
        the stream counts its own."""
        self._writer, self._sent = writer, sent

    def stopped_writing(self) -> None:
        self._writer = self._sent = None

    def write_now(self, frames: bytes) -> bool:
        transport, writer, sent = self._transport, self._writer, self._sent
        if transport is None or writer is None or sent is None:
            return False
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        if not write_body_now(writer, frames):
            return False
        sent(frames)
        return True


def write_body_now(writer: AbstractStreamWriter, data: bytes) -> bool:
    """Write `data` as the body's next bytes without awaiting, as aiohttp's
    `StreamWriter.write` does when it need not drain (chunked or not); False, having
    written nothing, unless the writer is aiohttp's own with its headers sent and
    nothing that `write` would do first (compression, a declared length, a hook).
    aiohttp has no public synchronous write, so this reads its writer's private state;
    an aiohttp that changes it makes this return False, and every write goes through
    the stream's own `write` again (tests/subscribers/test_write_now.py says so)."""
    if type(writer) is not StreamWriter or getattr(writer, "_headers_written", None) is not True:
        return False
    if any(getattr(writer, name, _MISSING) is not None for name in _WRITE_STEPS):
        return False
    write = getattr(writer, "_write_chunked_payload" if writer.chunked else "_write", None)
    if not callable(write):
        return False
    write(data)
    return True


# What aiohttp's `StreamWriter.write` may do before it writes: compress, cut to a
# declared length, call a hook. None of them is ever set on an SSE response.
_WRITE_STEPS = ("_compress", "length", "_on_chunk_sent", "on_body_write")
_MISSING = object()


class StallWatch:
    """Drops a connection whose socket took nothing for a whole `period_s` while bytes
    waited for it (`limits.send_timeout_s`): a client that never reads is let go even
    where no feed bounds it (while it replays, or after the session ended). One timer
    per stream, armed once a period; a write that completes, or unsent bytes that
    shrink, is progress."""

    def __init__(self, connection: ResponseConnection, period_s: float) -> None:
        self._connection = connection
        self._period_s = period_s
        self._writes = 0
        self._seen: tuple[int, int] = (0, 0)  # writes done, bytes unsent: at the last check
        self._timer = asyncio.get_running_loop().call_later(period_s, self._check)

    def wrote(self) -> None:
        self._writes += 1

    def stop(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        unsent = self._connection.unsent()
        writes, unsent_before = self._seen
        if unsent and writes == self._writes and unsent >= unsent_before:
            log.info(
                "disconnected a subscriber that read nothing for %g s (limits.send_timeout_s)",
                self._period_s,
            )
            self._connection.drop()
            return
        self._seen = (self._writes, unsent)
        self._timer = asyncio.get_running_loop().call_later(self._period_s, self._check)


class SseSubscription:
    """One SSE response: a `retry:` line (optional), then the session's frames, which
    `encode` made (it also makes the in-band error, should the stream fail)."""

    def __init__(
        self,
        session_id: str,
        frames: AsyncGenerator[bytes, None],
        encode: EventEncoder = native_frame,
        *,
        retry_ms: int | None,
        connection: ResponseConnection | None = None,
        send_timeout_s: float | None = None,
        first_frames_ready: bool = False,
    ) -> None:
        self.session_id = session_id
        # The first frames need no wait (events read ahead): the headers go with them.
        self.first_frames_ready = first_frames_ready
        self.frames = frames
        self.encode = encode
        self.retry_ms = retry_ms
        self.connection = connection
        self.send_timeout_s = send_timeout_s
        self._watch: StallWatch | None = None
        self._tally: log_context.StreamTally | None = None

    async def respond(
        self, request: web.Request, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        kind = _HeadersWithFirstFrames if self.first_frames_ready else web.StreamResponse
        response = kind(status=200, headers={**SSE_HEADERS, **(headers or {})})
        self._tally = log_context.stream_tally()  # for the request's access-log line
        try:
            await self._send(self._prepare(response, request))  # the client may be gone
            await self._write_stream(response)
        except SubscriberGone:
            return self._gone(response)
        except StoreError as exc:
            log.warning("stream of %s ended early: %s", session_tag(self.session_id), exc)
        except Exception:
            log.exception(
                "stream of %s failed after its headers were sent", session_tag(self.session_id)
            )
            await self._write_failure(response)
        with contextlib.suppress(SubscriberGone):
            await self._send(response.write_eof())
        return response

    async def _prepare(self, response: web.StreamResponse, request: web.Request) -> None:
        writer = await response.prepare(request)
        if self.connection is not None and writer is not None:
            self.connection.writing(writer, self._sent_at_once)
        if self.first_frames_ready and writer is not None:
            # Frames that render to nothing must not hold the headers back: by the next
            # turn of the loop they go, with the first frames or on their own.
            asyncio.get_running_loop().call_soon(_send_headers, writer)

    async def _write_stream(self, response: web.StreamResponse) -> None:
        if self.connection is not None and self.send_timeout_s is not None:
            self._watch = StallWatch(self.connection, self.send_timeout_s)
        try:
            if self.retry_ms is not None:
                await self._send_frames(response, sse.retry_frame(self.retry_ms), events=0)
            async with contextlib.aclosing(self.frames) as frames:
                async for chunk in frames:
                    await self._send_frames(response, chunk)
                    if self._watch is not None:
                        self._watch.wrote()
        finally:
            if self.connection is not None:
                self.connection.stopped_writing()
            if self._watch is not None:
                self._watch.stop()

    @staticmethod
    async def _send(write: Awaitable[object]) -> None:
        """Await a write to the client: the boundary where its going away is translated."""
        try:
            await write
        except ConnectionError as exc:
            raise SubscriberGone() from exc

    async def _send_frames(
        self, response: web.StreamResponse, frames: bytes, events: int | None = None
    ) -> None:
        """Write whole frames, then count them: their bytes, and their events (or
        `events`: a `retry:` line is none)."""
        await self._send(response.write(frames))
        if self._tally is not None:
            count = sse.event_count(frames) if events is None else events
            self._tally.sent(count, len(frames))

    def _sent_at_once(self, frames: bytes) -> None:
        """Frames its feed wrote to the connection itself (`ResponseConnection.write_now`),
        counted as `_send_frames` counts its own."""
        if self._tally is not None:
            self._tally.sent(sse.event_count(frames), len(frames))
        if self._watch is not None:
            self._watch.wrote()

    async def _write_failure(self, response: web.StreamResponse) -> None:
        with contextlib.suppress(SubscriberGone):
            await self._send_frames(response, in_band_error(self.encode, STREAM_FAILED))

    def _gone(self, response: web.StreamResponse) -> web.StreamResponse:
        log.debug("subscriber of %s went away", session_tag(self.session_id))
        return response
