"""The WebSocket API (`GET /v1/ws`) over real sockets, on both stores: sessions started
and followed on one socket, resume equal to SSE, cancel latency on one and across two
instances, bad frames, a client that does not read, keys in the header or a message,
isolation, and shutdown."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from relay import sse
from relay.events import Event, EventType
from relay.frontdoors import websocket
from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, READ_TIMEOUT_S, Relay, StartRelay
from tests.frontdoors.test_clients import CLIENTS, MOBILE_KEY, WEB_KEY, bearer, create, ended
from tests.frontdoors.test_feeds import StalledClient, shrink_send_buffer, until
from tests.frontdoors.test_native_api import REDIS_ONLY

SLOW_MOCK = "mock:tokens=2000,tps=100,ttft_ms=0"
Message = dict[str, Any]


class Socket:
    """A client's socket to relay: messages out, messages in (by type and session)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.held: list[Message] = []  # read while waiting for another message

    async def send(self, message: Message) -> None:
        await self.ws.send_str(json.dumps(message))

    async def receive(self) -> Message:
        if self.held:
            return self.held.pop(0)
        async with asyncio.timeout(READ_TIMEOUT_S):
            frame = await self.ws.receive()
        assert frame.type is aiohttp.WSMsgType.TEXT, frame
        message: Message = json.loads(frame.data)
        return message

    async def expect(self, message_type: str) -> Message:
        message = await self.receive()
        assert message["type"] == message_type, message
        return message

    async def start(self, model: str = FAST_MOCK, **fields: Any) -> str:
        await self.send({"type": "start", "model": model, "messages": MESSAGES, **fields})
        held = []
        while (message := await self.receive())["type"] == "event":
            held.append(message)
        assert message["type"] == "session", message
        self.held += held
        session: str = message["session"]
        return session

    async def events_until_terminal(self, session_id: str) -> list[Message]:
        """The session's events from here to its terminal one (others' are skipped)."""
        events: list[Message] = []
        while True:
            message = await self.receive()
            if message.get("session") != session_id:
                continue
            assert message["type"] == "event", message
            events.append(message)
            if message["event"] in ("done", "error", "cancelled"):
                return events

    async def closed(self) -> aiohttp.WSMessage:
        """The frame that ends the socket (messages before it are skipped)."""
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                frame = await self.ws.receive()
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    return frame


async def open_socket(relay: Relay, **options: Any) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await relay.http.ws_connect(
        relay.url("/v1/ws"), **options
    )
    return ws


@pytest.fixture(name="socket")
async def open_relay_socket(relay_server: Relay) -> AsyncIterator[Socket]:
    async with await open_socket(relay_server) as ws:
        yield Socket(ws)


def delta_text(events: list[Message]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "delta")


# --- messages (pure) -------------------------------------------------------------------


def test_a_feeds_chunk_is_one_message_per_event_and_no_ping() -> None:
    encode = websocket.EventFrames("s_1")
    first = Event(1, EventType.DELTA, msgspec.Raw(b'{"text":"a\\nb"}'))
    second = Event(2, EventType.DONE, msgspec.Raw(b'{"finish_reason":"stop"}'))
    chunk = encode(first) + sse.PING + encode(second)
    messages = [json.loads(message) for message in websocket.messages_in(chunk)]
    assert messages == [
        {"type": "event", "session": "s_1", "id": 1, "event": "delta", "data": {"text": "a\nb"}},
        {
            "type": "event",
            "session": "s_1",
            "id": 2,
            "event": "done",
            "data": {"finish_reason": "stop"},
        },
    ]


def test_a_message_is_decoded_by_its_type() -> None:
    message = websocket.decode_message(b'{"type": "subscribe", "session": "s_1", "after": 4}')
    assert message == websocket.SubscribeMessage("s_1", 4)
    start = websocket.decode_message(
        b'{"type": "start", "model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    )
    assert isinstance(start, websocket.StartMessage) and start.model == "m"


# --- sessions on one socket -----------------------------------------------------------


async def test_a_started_session_streams_to_its_starter(
    socket: Socket, relay_server: Relay
) -> None:
    session_id = await socket.start()
    events = await socket.events_until_terminal(session_id)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "done"
    snapshot = await relay_server.snapshot(session_id)
    assert delta_text(events) == snapshot["text"]
    assert set(events[0]) == {"type", "session", "id", "event", "data"}


async def test_several_sessions_stream_on_one_socket(socket: Socket) -> None:
    ids = [await socket.start() for _ in range(3)]
    events: dict[str, list[Message]] = {session_id: [] for session_id in ids}
    ended: set[str] = set()
    while ended != set(ids):
        message = await socket.expect("event")
        events[message["session"]].append(message)
        if message["event"] == "done":
            ended.add(message["session"])
    for session_events in events.values():
        assert [e["id"] for e in session_events] == list(range(1, len(session_events) + 1))
        assert delta_text(session_events)


async def test_resume_with_after_gives_what_sse_gives(socket: Socket, relay_server: Relay) -> None:
    created = await relay_server.create()
    sse = await relay_server.events(created["id"], last_event_id="3")
    await socket.send({"type": "subscribe", "session": created["id"], "after": 3})
    events = await socket.events_until_terminal(created["id"])
    assert [(e["id"], e["event"], e["data"]) for e in events] == [
        (event.int_id, event.event, event.json()) for event in sse
    ]


async def test_after_the_terminal_event_the_socket_stays(socket: Socket) -> None:
    session_id = await socket.start()
    last = (await socket.events_until_terminal(session_id))[-1]["id"]
    await socket.send({"type": "subscribe", "session": session_id, "after": last})
    ended = await socket.expect("error")
    assert ended["code"] == "session_ended" and ended["session"] == session_id
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}


async def test_unsubscribe_stops_the_events_not_the_session(
    socket: Socket, relay_server: Relay
) -> None:
    session_id = await socket.start(SLOW_MOCK)
    await socket.expect("event")
    await socket.send({"type": "unsubscribe", "session": session_id})
    await socket.send({"type": "ping"})
    while (message := await socket.receive())["type"] == "event":
        pass
    assert message == {"type": "pong"}
    assert (await relay_server.snapshot(session_id))["status"] == "running"
    await socket.send({"type": "unsubscribe", "session": session_id})
    assert (await socket.expect("error"))["code"] == "not_subscribed"


async def test_closing_the_socket_leaves_the_generation_running(relay_server: Relay) -> None:
    async with await open_socket(relay_server) as ws:
        socket = Socket(ws)
        session_id = await socket.start("mock:tokens=60,tps=200,ttft_ms=0")
        await socket.expect("event")
    snapshot = await relay_server.wait_until_ended(session_id)
    assert snapshot["status"] == "completed" and len(snapshot["text"]) > 0


# --- cancel -----------------------------------------------------------------------------


async def cancel_latency(starter: Socket, canceller: Socket, watcher: Socket) -> list[float]:
    """Seconds from sending `cancel` to each socket's `cancelled` event."""
    session_id = await starter.start(SLOW_MOCK)
    await starter.expect("event")
    await watcher.send({"type": "subscribe", "session": session_id, "after": 0})
    await watcher.expect("event")
    sent = time.monotonic()
    await canceller.send({"type": "cancel", "session": session_id})
    latencies = []
    for subscriber in (starter, watcher):
        events = await subscriber.events_until_terminal(session_id)
        assert events[-1]["event"] == "cancelled"
        assert events[-1]["data"]["reason"] == "client"
        latencies.append(time.monotonic() - sent)
    return latencies


async def test_cancel_reaches_every_subscriber_within_100_ms(relay_server: Relay) -> None:
    async with await open_socket(relay_server) as one, await open_socket(relay_server) as two:
        latencies = await cancel_latency(Socket(one), Socket(one), Socket(two))
    print(f"cancel latency, one instance: {[round(s * 1000, 1) for s in latencies]} ms")
    assert max(latencies) < 0.1


@REDIS_ONLY
async def test_cancel_reaches_every_instance_within_250_ms(start_relay: StartRelay) -> None:
    one, two = await start_relay(), await start_relay()
    async with await open_socket(one) as first, await open_socket(two) as second:
        latencies = await cancel_latency(Socket(first), Socket(second), Socket(second))
    print(f"cancel latency, two instances: {[round(s * 1000, 1) for s in latencies]} ms")
    assert max(latencies) < 0.25


# --- bad messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "named"),
    [
        ("{not json", "invalid_json", ""),
        ('{"type": "fly"}', "unknown_type", "fly"),
        ('{"session": "s_1"}', "invalid_request", "type"),
        ('{"type": "subscribe"}', "invalid_request", "session"),
        ('{"type": "subscribe", "session": "s_1", "after": -1}', "invalid_request", "after"),
        (
            '{"type": "start", "messages": [{"role": "user", "content": "hi"}]}',
            "invalid_request",
            "model",
        ),
        ('{"type": "start", "model": "mock", "messages": []}', "invalid_request", "messages"),
        ('{"type": "ping", "extra": 1}', "invalid_request", "extra"),
        ("[1, 2]", "invalid_request", "object"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_socket_stays(
    socket: Socket, frame: str, code: str, named: str
) -> None:
    await socket.ws.send_str(frame)
    error = await socket.expect("error")
    assert error["code"] == code, error
    assert named in error["message"], error
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}


async def test_an_unknown_session_is_not_found(socket: Socket) -> None:
    await socket.send({"type": "subscribe", "session": "s_nope", "after": 0})
    error = await socket.expect("error")
    assert error["code"] == "session_not_found"
    await socket.send({"type": "cancel", "session": "s_nope"})
    error = await socket.expect("error")
    assert error["code"] == "session_not_found" and error["session"] == "s_nope"


async def test_an_oversized_frame_closes_with_1009(start_relay: StartRelay) -> None:
    relay = await start_relay(limits={"ws_max_message_bytes": 4096})
    async with await open_socket(relay) as ws:
        await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 5000}))
        frame = await Socket(ws).closed()
        assert frame.type is aiohttp.WSMsgType.CLOSE and frame.data == 1009


def text_frame(message: Message) -> bytes:
    """A client's text frame (masked, as a client's must be; with a zero mask)."""
    payload = json.dumps(message).encode()
    assert len(payload) < 1 << 16
    return bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload


class StalledSocket(StalledClient):
    """A raw WebSocket client with a small receive buffer that reads only its
    upgrade's answer and the first message."""

    async def upgrade(self, message: Message) -> Message:
        """Send the upgrade and `message`; the first message relay answers."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = self.relay.server.host, self.relay.server.port
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (
            f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
        self.writer.write(head.encode() + text_frame(message))
        assert (await self.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        _, size = await self.reader.readexactly(2)
        answer: Message = json.loads(await self.reader.readexactly(size))
        return answer


async def test_a_client_that_does_not_read_is_cut_at_the_bound(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(limits={"subscriber_buffer_bytes": 8192})
    caplog.set_level(logging.INFO, logger=websocket.__name__)
    stalled = StalledSocket(relay, "/v1/ws")
    model = "mock:tokens=20000,tps=10000,ttft_ms=300"
    answer = await stalled.upgrade({"type": "start", "model": model, "messages": MESSAGES})
    assert answer["type"] == "session", answer
    await shrink_send_buffer(relay, stalled)
    await until(lambda: "disconnected a websocket that reads too slowly" in caplog.text)
    server = relay.server.runner.server
    assert server is not None
    await until(lambda: not server.connections)
    assert stalled.writer is not None
    stalled.writer.close()
    snapshot = await relay.wait_until_ended(answer["session"])
    assert snapshot["status"] == "completed"


async def test_server_pings_find_a_dead_peer(start_relay: StartRelay) -> None:
    relay = await start_relay(server={"heartbeat_s": 0.2})
    async with await open_socket(relay, autoping=False) as ws:
        frames = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not ws.closed:
                frames.append((await ws.receive()).type)
        assert frames[0] is aiohttp.WSMsgType.PING  # and no pong answered it
        assert frames[-1] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_plain_get_is_426(relay_server: Relay) -> None:
    async with relay_server.http.get(relay_server.url("/v1/ws")) as response:
        assert response.status == 426 and response.headers["Upgrade"] == "websocket"
        assert (await response.json())["error"]["code"] == "upgrade_required"


# --- keys ---------------------------------------------------------------------------------


@pytest.fixture
async def keyed(start_relay: StartRelay) -> Relay:
    return await start_relay(clients=CLIENTS)


async def test_a_key_in_the_header(keyed: Relay) -> None:
    async with await open_socket(keyed, headers=bearer(WEB_KEY)) as ws:
        socket = Socket(ws)
        session_id = await socket.start()
        assert (await socket.events_until_terminal(session_id))[-1]["event"] == "done"


async def test_a_wrong_key_in_the_header_is_401(keyed: Relay) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await open_socket(keyed, headers=bearer("rk_wrong"))
    assert refused.value.status == 401


async def test_a_key_in_the_first_message(keyed: Relay) -> None:
    async with await open_socket(keyed) as ws:
        socket = Socket(ws)
        await socket.send({"type": "start", "model": FAST_MOCK, "messages": MESSAGES})
        assert (await socket.expect("error"))["code"] == "missing_api_key"
        await socket.send({"type": "auth", "key": WEB_KEY})
        session_id = await socket.start()
        assert (await socket.events_until_terminal(session_id))[-1]["event"] == "done"


async def test_a_wrong_key_in_a_message_closes_the_socket(keyed: Relay) -> None:
    async with await open_socket(keyed) as ws:
        socket = Socket(ws)
        await socket.send({"type": "auth", "key": "rk_wrong"})
        assert (await socket.expect("error"))["code"] == "invalid_api_key"
        frame = await socket.closed()
        assert frame.type is aiohttp.WSMsgType.CLOSE and frame.data == 1008


async def test_a_read_token_on_subscribe(keyed: Relay) -> None:
    created = await create(keyed, WEB_KEY)
    async with await open_socket(keyed) as ws:
        socket = Socket(ws)
        await socket.send({"type": "subscribe", "session": created["id"], "after": 0})
        assert (await socket.expect("error"))["code"] == "missing_api_key"
        await socket.send({"type": "subscribe", "session": created["id"], "token": "rt_x"})
        assert (await socket.expect("error"))["code"] == "invalid_token"
        token = {"type": "subscribe", "session": created["id"], "token": created["token"]}
        await socket.send(token)
        assert (await socket.events_until_terminal(created["id"]))[-1]["event"] == "done"
        await socket.send({"type": "cancel", "session": created["id"]})
        assert (await socket.expect("error"))["code"] == "missing_api_key"


async def test_another_clients_session_is_not_found(keyed: Relay) -> None:
    created = await create(keyed, WEB_KEY, SLOW_MOCK)
    async with await open_socket(keyed, headers=bearer(MOBILE_KEY)) as ws:
        socket = Socket(ws)
        for message_type in ("subscribe", "cancel"):
            await socket.send({"type": message_type, "session": created["id"]})
            error = await socket.expect("error")
            assert error["code"] == "session_not_found", error
            assert error["session"] == created["id"]
    async with await open_socket(keyed, headers=bearer(WEB_KEY)) as ws:
        await Socket(ws).send({"type": "cancel", "session": created["id"]})
    assert (await ended(keyed, WEB_KEY, created["id"]))["status"] == "cancelled"


async def test_a_page_on_an_origin_no_client_lists_is_refused(keyed: Relay) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await open_socket(keyed, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    async with await open_socket(keyed, headers={"Origin": "https://m.example.com"}) as ws:
        socket = Socket(ws)
        await socket.send({"type": "auth", "key": WEB_KEY})  # web lists no origin
        assert (await socket.expect("error"))["code"] == "origin_not_allowed"
        assert (await socket.closed()).data == 1008
    async with await open_socket(keyed, headers={"Origin": "https://m.example.com"}) as ws:
        socket = Socket(ws)
        await socket.send({"type": "auth", "key": MOBILE_KEY})
        session_id = await socket.start("mock:tokens=3,tps=0,ttft_ms=0")
        assert (await socket.events_until_terminal(session_id))[-1]["event"] == "done"


# --- limits and shutdown ------------------------------------------------------------------


async def test_subscribers_are_counted_with_sse(start_relay: StartRelay) -> None:
    relay = await start_relay(limits={"max_subscribers_per_session": 1})
    async with await open_socket(relay) as ws:
        socket = Socket(ws)
        session_id = await socket.start(SLOW_MOCK)
        await socket.expect("event")
        answer = await relay.open_events(session_id)
        assert answer.status == 503
        answer.close()
        async with await open_socket(relay) as other:
            second = Socket(other)
            await second.send({"type": "subscribe", "session": session_id})
            error = await second.expect("error")
            assert error["code"] == "too_many_subscribers" and error["session"] == session_id


async def test_shutdown_delivers_cancelled_then_closes_with_1001(start_relay: StartRelay) -> None:
    relay = await start_relay()
    async with await open_socket(relay) as ws:
        socket = Socket(ws)
        session_id = await socket.start(SLOW_MOCK)
        await socket.expect("event")
        shutdown = asyncio.create_task(relay.server.close())
        events = await socket.events_until_terminal(session_id)
        assert events[-1]["event"] == "cancelled" and events[-1]["data"]["reason"] == "shutdown"
        frame = await socket.closed()
        assert frame.type is aiohttp.WSMsgType.CLOSE and frame.data == 1001
        await shutdown
