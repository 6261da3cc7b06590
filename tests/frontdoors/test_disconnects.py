"""Disconnects are not errors, over real sockets: clients that vanish while relay waits on
a blocked write to them, or while it reads their body, leave no error and no traceback in
relay's or aiohttp's logs, and no 500 in the access log.

The clients are raw sockets with a small receive buffer that stop reading; once relay
is blocked writing to every one of them (its side of each connection is paused), they
close abruptly (SO_LINGER 0: a TCP reset), so aiohttp's pending drain fails with
`ConnectionError("Connection lost")`. The session is long and fast: replayed once it
has ended, or followed live on its feed; in relay's native SSE and in a wire format.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncGenerator, Callable

import pytest

from relay.providers.base import Finish, Provider, ProviderItem, TextDelta
from relay.services import SERVICES
from relay.vocabulary import GenerationRequest
from tests.frontdoors.conftest import FAST_MOCK, Relay, StartRelay
from tests.frontdoors.test_feeds import until

SUBSCRIBERS = 50
PIECES = 1000  # of PIECE_CHARS each: 2 MB of text, more than every buffer on the way
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

    def __init__(self, *, hold: bool) -> None:
        self.hold = hold
        self.go = asyncio.Event()

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        await self.go.wait()
        for _ in range(PIECES):
            yield TextDelta("x" * (PIECE_CHARS - 1) + " ")
        if self.hold:
            await asyncio.Future()
        yield Finish("stop")


async def firehose_relay(start_relay: StartRelay, provider: Provider, **limits: float) -> Relay:
    return await start_relay(
        with_providers={"firehose": provider}, upstreams=UPSTREAMS, limits={**PATIENT, **limits}
    )


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


def relay_connections(relay: Relay) -> list[asyncio.BaseProtocol]:
    server = relay.server.runner.server  # type: ignore[union-attr]
    return list(server.connections)


def shrink_send_buffers(relay: Relay) -> None:
    """relay's side of each connection buffers little, so its writes block soon."""
    for handler in relay_connections(relay):
        transport = handler.transport  # type: ignore[attr-defined]
        if transport is not None:
            transport.set_write_buffer_limits(high=8192)
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def blocked_writing(relay: Relay, count: int) -> Callable[[], bool]:
    def blocked() -> bool:
        paused = [h for h in relay_connections(relay) if h.writing_paused]  # type: ignore[attr-defined]
        return len(paused) >= count

    return blocked


def troubles(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """relay's and aiohttp's records that report an error or carry a traceback."""
    return [
        record
        for record in caplog.records
        if record.name.startswith(("relay", "aiohttp"))
        and (record.levelno >= logging.ERROR or record.exc_info is not None)
    ]


def access_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    lines = (r.getMessage() for r in caplog.records if r.name == "aiohttp.access")
    return [line for line in lines if path in line]


async def until_answered(caplog: pytest.LogCaptureFixture, path: str, count: int) -> list[str]:
    """The access log's lines for `path`, once every one of `count` handlers has ended."""
    await until(lambda: len(access_lines(caplog, path)) >= count)
    return access_lines(caplog, path)


def statuses(lines: list[str]) -> set[int]:
    return {int(line.split('" ')[1].split()[0]) for line in lines}


async def assert_still_serving(relay: Relay) -> None:
    created = await relay.create(FAST_MOCK)
    assert (await relay.events(created["id"]))[-1].event == "done"


async def reset_while_blocked(relay: Relay, path: str) -> None:
    clients = [await RawClient.send(relay, f"GET {path} HTTP/1.1") for _ in range(SUBSCRIBERS)]
    await until(lambda: len(relay_connections(relay)) >= SUBSCRIBERS)
    shrink_send_buffers(relay)
    await until(blocked_writing(relay, SUBSCRIBERS))
    for client in clients:
        client.reset()


@FORMATS
async def test_subscribers_reset_while_relay_replays_to_them_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = Firehose(hold=False)
    provider.go.set()
    relay = await firehose_relay(start_relay, provider)
    created = await relay.create("firehose")
    await relay.wait_until_ended(created["id"])
    path = f"/v1/sessions/{created['id']}/events{query}"
    await reset_while_blocked(relay, path)
    lines = await until_answered(caplog, path, SUBSCRIBERS)
    assert 500 not in statuses(lines)
    assert troubles(caplog) == []
    await assert_still_serving(relay)


@FORMATS
async def test_subscribers_reset_while_relay_follows_live_for_them_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = Firehose(hold=True)
    relay = await firehose_relay(start_relay, provider)
    created = await relay.create("firehose")
    path = f"/v1/sessions/{created['id']}/events{query}"
    clients = [await RawClient.send(relay, f"GET {path} HTTP/1.1") for _ in range(SUBSCRIBERS)]
    feeds = relay.server.app[SERVICES].feeds
    await until(lambda: len(relay_connections(relay)) >= SUBSCRIBERS and len(feeds) == 1)
    shrink_send_buffers(relay)
    provider.go.set()  # the feed hands 2 MB to every subscriber
    await until(blocked_writing(relay, SUBSCRIBERS))
    for client in clients:
        client.reset()
    lines = await until_answered(caplog, path, SUBSCRIBERS)
    assert 500 not in statuses(lines)
    assert troubles(caplog) == []
    await assert_still_serving(relay)


async def test_subscribers_relay_lets_go_for_not_reading_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """relay drops them itself: a replay stalled for `limits.send_timeout_s`."""
    caplog.set_level(logging.DEBUG)
    provider = Firehose(hold=False)
    provider.go.set()
    relay = await firehose_relay(start_relay, provider, send_timeout_s=0.3)
    created = await relay.create("firehose")
    await relay.wait_until_ended(created["id"])
    path = f"/v1/sessions/{created['id']}/events"
    clients = [await RawClient.send(relay, f"GET {path} HTTP/1.1") for _ in range(10)]
    lines = await until_answered(caplog, path, len(clients))
    assert statuses(lines) == {200}
    assert "disconnected a subscriber that read nothing" in caplog.text
    assert troubles(caplog) == []
    for client in clients:
        client.sock.close()


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/chat/completions"])
async def test_clients_reset_while_relay_reads_their_body_leave_no_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = await start_relay()
    head = f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100000"
    clients = [await RawClient.send(relay, head, b'{"model": "mock", ') for _ in range(10)]
    await until(lambda: len(relay_connections(relay)) >= len(clients))
    await asyncio.sleep(0.1)  # each handler waits for the rest of its body
    for client in clients:
        client.reset()
    lines = await until_answered(caplog, f"POST {path} ", len(clients))
    assert 500 not in statuses(lines)
    assert troubles(caplog) == []
    await assert_still_serving(relay)
