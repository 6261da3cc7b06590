"""Disconnects are not errors, over real sockets: clients that vanish while relay waits on
a blocked write to them, or while it reads their body, leave no error and no traceback in
relay's or aiohttp's logs, and no 500 in the access log.

The clients are raw sockets with a small receive buffer that stop reading, and relay's
side of their connections has a small send buffer; once relay is blocked writing to every
one of them (its side of each connection is paused), they close abruptly (SO_LINGER 0:
a TCP reset), so aiohttp's pending drain fails with `ConnectionError("Connection lost")`.
The session is long and fast: replayed once it has ended, or followed live on its feed;
in relay's native SSE and in a wire format.

Each test runs with handlers as `relay serve` runs them (a handler goes on after its client
left, and its answer reaches aiohttp, which logs it) and as aiohttp's test server runs
them (a handler is cancelled when its client leaves), on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, get_port_socket
from aiohttp.typedefs import Handler

from relay.app import create_app
from relay.config import load_settings
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta
from relay.services import SERVICES
from relay.vocabulary import GenerationRequest
from tests.frontdoors.conftest import FAST_MOCK, Relay, merge
from tests.frontdoors.test_feeds import until
from tests.loop_policies import EVENT_LOOP_POLICY_WARNING, event_loop_policy  # noqa: F401

pytestmark = pytest.mark.filterwarnings(EVENT_LOOP_POLICY_WARNING)

SUBSCRIBERS = 50
PIECES = 1000  # of PIECE_CHARS each: 2 MB of text, far more than the buffers on the way
PIECE_CHARS = 2000
UPSTREAMS = [
    {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]},
    {"name": "firehose", "kind": "mock", "models": ["firehose"]},
]
# No subscriber is let go by relay before the test resets it.
PATIENT = {"subscriber_buffer_bytes": 1 << 30, "send_timeout_s": 600}
FORMATS = pytest.mark.parametrize("query", ["", "?format=openai"], ids=["native", "openai"])


class Firehose(Provider):
    """Once `go` is set, 2 MB of text as fast as relay takes it; then it finishes, or
    (`hold`) keeps the stream open until it is closed."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.go = asyncio.Event()
        if not hold:
            self.go.set()

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        await self.go.wait()
        for _ in range(PIECES):
            yield TextDelta("x" * (PIECE_CHARS - 1) + " ")
        if self.hold:
            await asyncio.Future()
        yield Finish("stop")


def small_send_buffers(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A listening socket whose connections (they inherit it) have a small send buffer:
    without it, the kernel would take megabytes for a client that reads nothing."""
    sock = get_port_socket(host, port, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


class RelayServer(TestServer):
    """The app on a real socket (`small_send_buffers`); `cancel_handlers` as aiohttp's
    test server does, or not, as `relay serve` does."""

    def __init__(self, app: web.Application, *, cancel_handlers: bool) -> None:
        super().__init__(app, host="127.0.0.1", socket_factory=small_send_buffers)
        self.cancel_handlers = cancel_handlers

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = self.cancel_handlers
        return web.AppRunner(self.app, **kwargs)


class Ended:
    """How many handlers have ended, by request path: an outermost middleware counts
    them, however they end (returned, raised or cancelled)."""

    def __init__(self) -> None:
        self.paths: collections.Counter[str] = collections.Counter()

    def middleware(self) -> Handler:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                return await handler(request)
            finally:
                self.paths[request.path] += 1

        return count  # type: ignore[return-value]


StartRelay = Callable[..., Awaitable[tuple[Relay, Ended]]]


@pytest.fixture(params=[False, True], ids=["as-served", "handlers-cancelled"])
async def start_relay(store_url: str, request: pytest.FixtureRequest) -> AsyncIterator[StartRelay]:
    started: list[Relay] = []

    async def start(provider: Provider, **limits: float) -> tuple[Relay, Ended]:
        overrides = {"upstreams": UPSTREAMS, "limits": {**PATIENT, **limits}}
        base = {"store": {"url": store_url}, "server": {"drain_timeout_s": 0}}
        settings = load_settings(None, environ={}, overrides=merge(base, overrides))
        app = create_app(settings, providers={"firehose": provider})
        ended = Ended()
        app.middlewares.insert(0, ended.middleware())
        server = RelayServer(app, cancel_handlers=request.param)
        await server.start_server()
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        started.append(Relay(server, http, settings))
        return started[-1], ended

    yield start
    for relay in reversed(started):
        await relay.close()


class RawClient:
    """A raw HTTP/1.1 client with a small receive buffer, which reads nothing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def send(cls, relay: Relay, head: str, body: bytes = b"") -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        host, port = relay.server.host, relay.server.port
        await loop.sock_connect(sock, (host, port))
        request = f"{head}\r\nHost: {host}:{port}\r\n\r\n".encode() + body
        await loop.sock_sendall(sock, request)
        return cls(sock)

    def reset(self) -> None:
        """Close abruptly: with SO_LINGER 0 the kernel sends a reset, not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def relay_connections(relay: Relay) -> list[Any]:
    """relay's side of its open connections (aiohttp's request handlers)."""
    server = relay.server.runner.server  # type: ignore[union-attr]
    return list(server.connections)


def blocked_writing(relay: Relay, count: int) -> Callable[[], bool]:
    return lambda: sum(handler.writing_paused for handler in relay_connections(relay)) >= count


def troubles(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """relay's and aiohttp's records that report an error or carry a traceback."""
    return [
        record
        for record in caplog.records
        if record.name.startswith(("relay", "aiohttp"))
        and (record.levelno >= logging.ERROR or record.exc_info is not None)
    ]


def access_statuses(caplog: pytest.LogCaptureFixture, request_line: str) -> list[int]:
    """The statuses of the access log's lines for requests starting `request_line`."""
    lines = (r.getMessage() for r in caplog.records if r.name == "aiohttp.access")
    # `127.0.0.1 [date] "GET /path HTTP/1.1" 200 1234 "-" "-"`
    return [int(line.split('" ')[1].split()[0]) for line in lines if f'"{request_line}' in line]


async def until_ended(
    relay: Relay, ended: Ended, caplog: pytest.LogCaptureFixture, path: str, count: int
) -> list[int]:
    """Once `count` handlers of `path` have ended: the statuses the access log shows for
    them (none when aiohttp cancelled them: it logs no access for those)."""
    await until(lambda: ended.paths[path] >= count)
    request_line = f"GET {path}" if "/events" in path else f"POST {path} "
    served = not relay.server.cancel_handlers  # type: ignore[attr-defined]
    await until(lambda: not served or len(access_statuses(caplog, request_line)) >= count)
    return access_statuses(caplog, request_line)


async def assert_still_serving(relay: Relay) -> None:
    created = await relay.create(FAST_MOCK)
    assert (await relay.events(created["id"]))[-1].event == "done"


async def subscribe(relay: Relay, path_and_query: str, count: int) -> list[RawClient]:
    clients = [await RawClient.send(relay, f"GET {path_and_query} HTTP/1.1") for _ in range(count)]
    await until(lambda: len(relay_connections(relay)) >= count)
    return clients


def reset_all(clients: list[RawClient]) -> None:
    for client in clients:
        client.reset()


@FORMATS
async def test_subscribers_reset_while_relay_replays_to_them_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.DEBUG)
    relay, ended = await start_relay(Firehose())
    created = await relay.create("firehose")
    await relay.wait_until_ended(created["id"])
    path = f"/v1/sessions/{created['id']}/events"
    clients = await subscribe(relay, path + query, SUBSCRIBERS)
    await until(blocked_writing(relay, SUBSCRIBERS))
    reset_all(clients)
    assert set(await until_ended(relay, ended, caplog, path, SUBSCRIBERS)) <= {200}
    assert troubles(caplog) == []
    await assert_still_serving(relay)


@FORMATS
async def test_subscribers_reset_while_relay_follows_live_for_them_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = Firehose(hold=True)
    relay, ended = await start_relay(provider)
    created = await relay.create("firehose")
    path = f"/v1/sessions/{created['id']}/events"
    clients = await subscribe(relay, path + query, SUBSCRIBERS)
    await until(lambda: len(relay.server.app[SERVICES].feeds) == 1)
    provider.go.set()  # the feed hands 2 MB to every subscriber
    await until(blocked_writing(relay, SUBSCRIBERS))
    reset_all(clients)
    assert set(await until_ended(relay, ended, caplog, path, SUBSCRIBERS)) <= {200}
    assert troubles(caplog) == []
    await assert_still_serving(relay)


async def test_subscribers_relay_lets_go_for_reading_nothing_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """relay drops them itself: a replay that stalled for `limits.send_timeout_s`."""
    caplog.set_level(logging.DEBUG)
    relay, ended = await start_relay(Firehose(), send_timeout_s=0.3)
    created = await relay.create("firehose")
    await relay.wait_until_ended(created["id"])
    path = f"/v1/sessions/{created['id']}/events"
    clients = await subscribe(relay, path, 10)
    assert set(await until_ended(relay, ended, caplog, path, len(clients))) <= {200}
    assert "disconnected a subscriber that read nothing" in caplog.text
    assert troubles(caplog) == []
    for client in clients:
        client.sock.close()


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/chat/completions"])
async def test_clients_reset_while_relay_reads_their_body_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.DEBUG)
    relay, ended = await start_relay(Firehose())
    head = f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100000"
    clients = [await RawClient.send(relay, head, b'{"model": "mock", ') for _ in range(10)]
    await until(lambda: len(relay_connections(relay)) >= len(clients))
    await asyncio.sleep(0.1)  # each handler waits for the rest of its body
    reset_all(clients)
    assert set(await until_ended(relay, ended, caplog, path, len(clients))) <= {499}
    assert troubles(caplog) == []
    await assert_still_serving(relay)
