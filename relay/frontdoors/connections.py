"""The connections of `relay serve`: the limits that act below the app, per connection.

What aiohttp's connection handler does not bound, `LimitedRequestHandler` does, with
the `[limits]` settings (an app served another way has aiohttp's defaults):
- the request head's size: aiohttp's parser refuses a longer request line or header
  field, or more header fields (431 `headers_too_large`, `relay.frontdoors.parse_errors`);
- the time to send a request head: a client whose head is not complete
  `header_timeout_s` after it connected, or after the first byte of a later request on
  the same connection, is cut (slowloris). It gets a 408 `request_timeout` if it sent
  anything; a connection that sent nothing is closed without an answer (a browser's
  preconnected socket). aiohttp's `keepalive_timeout` covers only idle connections;
- connections at once, in total and per client address (`ConnectionGate`): one past
  either limit is closed as soon as it is accepted, before a byte is read or written,
  which costs nothing however many come (an answer would have to read the request).
  Behind a reverse proxy every client has the proxy's address;
- connections past the process's descriptor limit (`OutOfDescriptors`): refused at once,
  counted in one warning every REFUSALS_LOGGED_EVERY_S, while the open ones are served.
The body's time is `relay.frontdoors.http.read_body`'s.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import time
from typing import Any

import msgspec

from relay.config import LimitsSettings
from relay.frontdoors.http import error_body
from relay.frontdoors.parse_errors import JsonErrorRequestHandler

log = logging.getLogger(__name__)

# At most one log line per this many seconds about refused connections (a flood).
REFUSALS_LOGGED_EVERY_S = 10.0
# How many connections the kernel holds for relay to accept (capped by the system's
# net.core.somaxconn). aiohttp's default, 128, is what a burst of new streams overflows
# while the loop is busy for a few ms: a connection refused there waits for its SYN's
# retransmit, a second or more (1,000 streams started in a second had a TTFT p50 of
# 2 s). uvicorn and gunicorn use 2048 too.
LISTEN_BACKLOG = 2048
# The most waiting connections refused at once when out of descriptors (the backlog).
REFUSED_AT_ONCE = LISTEN_BACKLOG

# What an accept fails with when the process (EMFILE) or the system (ENFILE) is out of
# descriptors, or the kernel out of memory: the accept errors asyncio retries later.
_EXHAUSTED = {
    errno.EMFILE: "out of file descriptors (EMFILE)",
    errno.ENFILE: "the system is out of file descriptors (ENFILE)",
    errno.ENOBUFS: "out of socket buffers (ENOBUFS)",
    errno.ENOMEM: "out of memory (ENOMEM)",
}


class RefusalCount:
    """Refusals counted between reports, reported at most once per REFUSALS_LOGGED_EVERY_S
    (the first at once)."""

    def __init__(self) -> None:
        self._count = 0
        self._reported_at = -REFUSALS_LOGGED_EVERY_S

    def add(self, count: int, now: float) -> int:
        """Count `count` more; how many to report now (0: reported not long ago)."""
        self._count += count
        if now - self._reported_at < REFUSALS_LOGGED_EVERY_S:
            return 0
        total, self._count, self._reported_at = self._count, 0, now
        return total


class ConnectionGate:
    """The open connections of one server, in total and per client address."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._refusals = RefusalCount()

    def admit(self, ip: str) -> str | None:
        """Count a new connection from `ip`; or the setting it would exceed (not counted)."""
        if self.total >= self.max_total:
            return "limits.max_connections"
        if self._per_ip[ip] >= self.max_per_ip:
            return "limits.max_connections_per_ip"
        self.total += 1
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self._per_ip[ip] -= 1
        if not self._per_ip[ip]:
            del self._per_ip[ip]

    def refused(self, now: float) -> int:
        """Note a refusal; how many to report now (0: it was reported not long ago)."""
        return self._refusals.add(1, now)


class OutOfDescriptors:
    """The event loop's exception handler in `relay serve`: accepts that fail for want of
    descriptors (or kernel memory) refuse the connections waiting, quietly.

    asyncio reports each such failed accept to the loop's exception handler, leaves the
    connection waiting in the listen backlog, stops accepting for a second and tries
    again (on Python 3.11 it also tries the whole backlog's worth of times, and schedules
    as many retries). Its default handler logs a traceback each time: hundreds of MB of
    log a minute, while clients wait until they time out. Here the connections waiting
    are accepted on a descriptor kept spare for that, and closed at once, so their
    clients hear at once (a load balancer tries another instance) and asyncio's next
    accept finds the backlog empty; one warning per REFUSALS_LOGGED_EVERY_S counts them.
    Open connections are served throughout, and new ones again once descriptors free
    up. Every other report goes to the loop's default handler.

    uvloop never reports these: libuv refuses the connections the same way, silently.
    """

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate
        self._refusals = RefusalCount()
        self._spare = _spare_descriptor()  # held for the life of the process

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error, listener = context.get("exception"), context.get("socket")
        if _is_stale_accept_retry(context):
            log.debug("a retry of accepting ran after its server closed: nothing to retry")
            return
        if not (isinstance(error, OSError) and error.errno in _EXHAUSTED and listener is not None):
            loop.default_exception_handler(context)
            return
        refused = self._refuse_waiting(listener.fileno())
        if count := self._refusals.add(max(refused, 1), time.monotonic()):
            log.warning(
                "refused %d connection(s): %s; the %d open connection(s) are still served",
                count, _EXHAUSTED[error.errno], self._gate.total,
            )  # fmt: skip

    def _refuse_waiting(self, listener_fd: int) -> int:
        """Accept and close the connections waiting on the listening socket, on the spare
        descriptor; how many."""
        spare = self._spare if self._spare is not None else _spare_descriptor()
        if spare is None:
            return 0
        os.close(spare)
        listener = socket.socket(fileno=listener_fd)  # the loop's own socket: detached below
        refused = 0
        try:
            for _ in range(REFUSED_AT_ONCE):
                try:
                    connection, _ = listener.accept()
                except OSError:  # none left waiting (it is non-blocking), or still out
                    break
                connection.close()
                refused += 1
        finally:
            listener.detach()
            self._spare = _spare_descriptor()
        return refused


def _is_stale_accept_retry(context: dict[str, Any]) -> bool:
    """asyncio's retry of a failed accept, due a second later, that ran after its server
    closed (at shutdown): the closed socket's descriptor is -1 by then, which it cannot
    watch. Known only by the callback named in the report."""
    message = str(context.get("message", ""))
    return isinstance(context.get("exception"), ValueError) and "._start_serving(" in message


def _spare_descriptor() -> int | None:
    """A descriptor to give back when out of them; None when there is none to keep."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def client_ip(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def timeout_answer(message: str) -> bytes:
    """A whole 408 response in relay's error shape, written where no request exists."""
    body = msgspec.json.encode(error_body("request_timeout", message))
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedRequestHandler(JsonErrorRequestHandler):
    """aiohttp's connection handler with relay's JSON errors and the `[limits]` above."""

    __slots__ = ("_gate", "_head_started", "_head_timer", "_header_timeout_s", "_ip")

    def __init__(
        self, manager: Any, *, limits: LimitsSettings, gate: ConnectionGate, **kwargs: Any
    ) -> None:
        super().__init__(
            manager,
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            **kwargs,
        )
        self._gate = gate
        self._ip: str | None = None  # set once the connection is admitted
        self._header_timeout_s = limits.header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ip = client_ip(transport)
        refusal = self._gate.admit(ip)
        if refusal is not None:
            self._refuse(transport, ip, refusal)
            return
        self._ip = ip
        super().connection_made(transport)
        self._await_head(started=False)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._ip is None:  # refused: aiohttp never saw it
            return
        self._gate.release(self._ip)
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._current_request is None:
            self._await_head(started=True)  # the first bytes of a request on a kept-alive
        self._head_started = True
        heads_before = self._request_count
        super().data_received(data)
        if self._request_count != heads_before:  # a whole head arrived (or a refused one)
            self._stop_head_timer()

    def _refuse(self, transport: asyncio.BaseTransport, ip: str, setting: str) -> None:
        transport.close()  # nothing was written: it closes at once
        if refused := self._gate.refused(time.monotonic()):
            log.warning(
                "refused %d connection(s) at the limit %s (now from %s; %d open)",
                refused, setting, ip, self._gate.total,
            )  # fmt: skip

    def _await_head(self, *, started: bool) -> None:
        self._head_started = started
        self._head_timer = self._loop.call_later(self._header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        waiting_for_head = self._waiter is not None and not self._waiter.done()
        if not waiting_for_head or self.transport is None:  # a request is being handled
            return
        if self._head_started:
            limit = f"limits.header_timeout_s={self._header_timeout_s:g} s"
            self.transport.write(timeout_answer(f"the request head did not arrive within {limit}"))
        log.info("cut a connection from %s: no whole request head in time", self._ip)
        self.force_close()
