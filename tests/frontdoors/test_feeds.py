"""The live feed behind fan-out, over real sockets: one follow per session however many
subscribers it has, slow clients left behind without holding up the others, wire
formats rendered once for all, and feeds that end with their last subscriber and at
shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from relay.services import SERVICES
from relay.subscribers import feeds
from relay.subscribers.feeds import Feeds
from tests.frontdoors.conftest import READ_TIMEOUT_S, Relay, StartRelay
from tests.sse_client import SseEvent, SseParser, SseReader

EventKey = tuple[str | None, str, str]


def keys(events: list[SseEvent]) -> list[EventKey]:
    return [event.key() for event in events]


def feeds_of(relay: Relay) -> Feeds:
    return relay.server.app[SERVICES].feeds


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(READ_TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.01)


async def test_one_feed_serves_every_subscriber_of_a_session(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=150,tps=300,ttft_ms=300")
    subscribers = [asyncio.create_task(relay_server.events(created["id"])) for _ in range(50)]
    await until(lambda: len(feeds_of(relay_server)) == 1)
    feed_counts = []
    while not all(task.done() for task in subscribers):
        feed_counts.append(len(feeds_of(relay_server)))
        await asyncio.sleep(0.01)
    streams = [task.result() for task in subscribers]

    assert max(feed_counts) == 1
    ids = [event.int_id for event in streams[0]]
    assert ids == list(range(1, len(ids) + 1))  # every event, once, in order
    assert streams[0][-1].event == "done"
    replay = keys(await relay_server.events(created["id"]))
    for events in streams:
        assert keys(events) == replay


@pytest.mark.parametrize(
    "query", [{"format": "openai", "include_usage": "true"}, {"format": "anthropic"}]
)
async def test_wire_formats_shared_by_many_match_a_lone_replay(
    relay_server: Relay, query: dict[str, str]
) -> None:
    # 100 tokens/s: a coalesced event holds 2-3 tokens, so the log has dozens of events
    # even when a loaded machine makes each event hold more.
    created = await relay_server.create("mock:tokens=120,tps=100,ttft_ms=200")
    session_id = created["id"]
    live = [asyncio.create_task(relay_server.events(session_id, params=query)) for _ in range(20)]
    async with relay_server.subscribe(session_id) as reader:
        for _ in range(10):  # more join mid-stream, each from where it is
            event = await reader.next_event()
            assert event is not None
            live.append(
                asyncio.create_task(
                    relay_server.events(session_id, params=query, last_event_id=event.id)
                )
            )
        await reader.read_all()
    whole = await relay_server.events(session_id, params=query)
    streams = await asyncio.gather(*live)

    for events in streams[:20]:
        assert keys(events) == keys(whole)
    for resumed in streams[20:]:
        assert keys(resumed) == keys(whole)[-len(resumed) :]
        assert resumed and resumed[-1].key() == whole[-1].key()


async def test_responses_streams_shared_by_many_match_a_lone_replay(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=120,tps=300,ttft_ms=200")
    path = "/v1/responses/resp_" + created["id"].removeprefix("s_")

    async def stream_events(**params: str) -> list[SseEvent]:
        query = {"stream": "true", **params}
        async with relay_server.http.get(relay_server.url(path), params=query) as response:
            assert response.status == 200, await response.text()
            reader = SseReader(response)
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await reader.read_all()

    live = [asyncio.create_task(stream_events()) for _ in range(10)]
    async with relay_server.subscribe(created["id"]) as reader:
        for seen in range(1, 8):  # more join mid-stream, each after a sequence number
            assert await reader.next_event() is not None
            live.append(asyncio.create_task(stream_events(starting_after=str(4 * seen))))
        await reader.read_all()
    whole = await stream_events()
    streams = await asyncio.gather(*live)

    numbers = [event.int_id for event in whole]
    assert numbers == list(range(len(whole)))
    for events in streams[:10]:
        assert keys(events) == keys(whole)
    for seen, resumed in enumerate(streams[10:], start=1):
        assert keys(resumed) == keys(whole)[4 * seen + 1 :]


async def test_the_feed_stops_when_its_last_subscriber_leaves(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=100,tps=20,ttft_ms=0")
    readers = [relay_server.subscribe(created["id"]) for _ in range(3)]
    opened = [await reader.__aenter__() for reader in readers]
    for sse in opened:
        assert await sse.next_event() is not None
    assert len(feeds_of(relay_server)) == 1
    for reader in readers[:2]:
        await reader.__aexit__(None, None, None)
    await asyncio.sleep(0.2)
    assert len(feeds_of(relay_server)) == 1  # one subscriber is still there
    await readers[2].__aexit__(None, None, None)
    await until(lambda: len(feeds_of(relay_server)) == 0)
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot["status"] == "running"  # leaving never stops the generation


async def test_shutdown_ends_streams_and_awaits_the_feeds(start_relay: StartRelay) -> None:
    relay = await start_relay()
    created = await relay.create("mock:tokens=100,tps=10,ttft_ms=0")
    running = feeds_of(relay)
    async with relay.subscribe(created["id"]) as reader:
        assert await reader.next_event() is not None
        assert len(running) == 1
        await relay.server.close()
        await reader.read_all()
    assert len(running) == 0
    assert not [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("relay-feed-") and not task.done()
    ]


async def test_every_idle_subscriber_gets_heartbeats(start_relay: StartRelay) -> None:
    relay = await start_relay(server={"heartbeat_s": 0.2})
    created = await relay.create("mock:tokens=2,tps=1,ttft_ms=700")
    contexts = [relay.subscribe(created["id"]) for _ in range(5)]
    readers = [await context.__aenter__() for context in contexts]
    try:
        streams = await asyncio.gather(*(reader.read_all() for reader in readers))
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)
    for reader, events in zip(readers, streams, strict=True):
        assert [event.int_id for event in events] == list(range(1, len(events) + 1))
        assert len(reader.comments) >= 2
        assert set(reader.comments) == {": ping"}


# --- a client that stops reading ------------------------------------------------------


class StalledClient:
    """A raw HTTP/1.1 client with a small receive buffer that reads only when told."""

    def __init__(self, relay: Relay, path: str) -> None:
        self.relay = relay
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = self.relay.server.host, self.relay.server.port
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=4096)
        request = f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        self.writer.write(request.encode())
        await self.writer.drain()

    async def read_events(self) -> list[SseEvent]:
        """Read the whole response now, until relay closes the connection; its SSE events
        (an event the connection cut short is not one, as for any SSE parser)."""
        assert self.reader is not None and self.writer is not None
        raw = await self.reader.read()
        self.writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        return SseParser().feed(dechunk(body))


async def shrink_send_buffer(relay: Relay, client: StalledClient) -> None:
    """The server's side of the client's connection gets small send buffers."""
    assert client.writer is not None
    port = client.writer.get_extra_info("sockname")[1]
    server = relay.server.runner.server  # type: ignore[union-attr]

    def connection() -> list[asyncio.Transport]:
        transports = [handler.transport for handler in server.connections]
        return [t for t in transports if t and t.get_extra_info("peername")[1] == port]

    await until(lambda: bool(connection()))
    transport = connection()[0]
    transport.set_write_buffer_limits(high=8192)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def dechunk(body: bytes) -> bytes:
    """A chunked body, as far as it came: the connection may have cut a chunk short."""
    out = bytearray()
    while b"\r\n" in body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)


async def test_a_stalled_subscriber_holds_up_no_one_and_loses_nothing(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """Past `limits.subscriber_buffer_bytes` it is disconnected, after whole events, and
    resumes with Last-Event-ID: every event once (it used to be left to catch up from
    the store while relay held its connection, however long it read nothing)."""
    relay_server = await start_relay(limits={"subscriber_buffer_bytes": 8192})
    caplog.set_level(logging.INFO, logger=feeds.__name__)
    created = await relay_server.create("mock:tokens=20000,tps=10000,ttft_ms=500")
    session_id = created["id"]
    stalled = StalledClient(relay_server, f"/v1/sessions/{session_id}/events")
    await stalled.request()
    await shrink_send_buffer(relay_server, stalled)  # so that the stall reaches relay soon
    others = [asyncio.create_task(relay_server.events(session_id)) for _ in range(10)]
    streams = await asyncio.gather(*others)  # while the stalled client reads nothing

    await until(lambda: "disconnected a subscriber that reads too slowly" in caplog.text)
    whole = keys(streams[0])
    assert streams[0][-1].event == "done"
    assert [event.int_id for event in streams[0]] == list(range(1, len(whole) + 1))
    for events in streams:
        assert keys(events) == whole
    async with asyncio.timeout(READ_TIMEOUT_S):
        got = await stalled.read_events()
    assert got and not got[-1].is_terminal  # cut short, after whole events
    rest = await relay_server.events(session_id, last_event_id=got[-1].id)
    assert keys(got + rest) == whole
