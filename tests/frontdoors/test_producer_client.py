"""relay.producer, the client helper for agent backends, and the example agent built on it.

Against a live relay (both stores): the example's steps and text reach a subscriber once
and in order; a connection dropped after relay took a batch is retried with the same seq
and appends nothing twice; the keep-alive task carries a quiet session past its idle
timeout; leaving the `async with` ends the session. Against a stub relay (an aiohttp app
here): a 5xx retried with the same seq, signals read and resumed with Last-Event-ID, and
the example's clarifying question answered by a signal. The SSE parsing of signals is
tested as pure code.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.events import Usage
from relay.producer import (
    Producer,
    Retry,
    SeqConflict,
    SessionEnded,
    Signal,
    _SignalParser,
    signal_of,
)
from relay.tasks import cancel_and_wait
from tests.frontdoors.conftest import Relay, StartRelay

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "what does relay keep for an agent?"
FAST_REAPER = {"store": {"lease_ttl_s": 0.4}}
# What `done()` sends, and relay keeps, without usage.
DONE_DATA = {"finish_reason": "stop", "usage": None}


def load_example() -> ModuleType:
    path = ROOT / "examples" / "retrieval_agent.py"
    spec = importlib.util.spec_from_file_location("retrieval_agent", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


# Against a live relay.


async def test_the_example_agents_steps_and_text_reach_a_subscriber_once_in_order(
    relay_server: Relay,
) -> None:
    async with (
        Producer.create(relay_server.url("/")) as producer,
        relay_server.subscribe(producer.session_id) as reader,
    ):
        events, _ = await asyncio.gather(reader.read_all(), example.run_agent(producer, PROMPT))
    assert [event.int_id for event in events] == list(range(1, len(events) + 1))
    types = [event.event for event in events]
    assert types[:3] == ["status"] * 3 and types[-1] == "done"
    assert set(types[3:-1]) == {"delta"}
    statuses = [event.json()["message"] for event in events[:3]]
    assert statuses == ["Thinking…", "Searching knowledge base…", "Found 5 sources"]
    text = "".join(event.json()["text"] for event in events if event.event == "delta")
    assert text == example.answer_text(PROMPT) + " "
    assert (await relay_server.snapshot(producer.session_id))["text"] == text


async def test_the_example_asks_a_live_relay_and_a_users_signal_answers_it(
    relay_server: Relay,
) -> None:
    """The clarifying question end to end: the user follows the session with its read token,
    sees the question, and answers it with a signal; the agent goes on with the answer."""
    async with (
        Producer.create(relay_server.url("/")) as producer,
        relay_server.subscribe(producer.session_id) as reader,
    ):
        agent = asyncio.create_task(example.run_agent(producer, "relay?", answer_timeout_s=10))
        events = []
        while (event := await reader.next_event()) is not None:
            events.append(event)
            if event.event == "status" and event.json()["state"] == "needs_input":
                signals = f"/v1/sessions/{producer.session_id}/signals"
                answer = {"data": {"answer": "and its event log"}}
                url = relay_server.url(signals) + f"?token={producer.read_token}"
                async with relay_server.http.post(url, json=answer) as sent:
                    assert sent.status == 201
        await agent
    assert [event.int_id for event in events] == list(range(1, len(events) + 1))
    statuses = [event.json()["message"] for event in events if event.event == "status"]
    assert statuses == [
        "Thinking…",
        example.QUESTION,
        "Searching knowledge base…",
        "Found 5 sources",
    ]
    text = "".join(event.json()["text"] for event in events if event.event == "delta")
    assert text == example.answer_text("relay? and its event log") + " "
    assert events[-1].event == "done"


async def test_a_batch_whose_answer_is_lost_is_retried_and_appended_once(
    relay_server: Relay,
) -> None:
    proxy = DroppingProxy(relay_server.server.port or 0)
    async with (
        proxy.running() as proxy_url,
        Producer.create(proxy_url, retry=Retry(first_delay_s=0.01)) as producer,
    ):
        proxy.armed = True  # the next answer relay sends is cut off
        await producer.delta("exactly once")
        await producer.flush()
        assert proxy.dropped == 1
    events = await relay_server.events(producer.session_id)
    assert [(event.event, event.json()) for event in events] == [
        ("delta", {"text": "exactly once"}),
        ("done", DONE_DATA),
    ]


async def test_the_keep_alive_carries_a_quiet_session_past_its_idle_timeout(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(**FAST_REAPER)
    async with Producer.create(relay.url("/"), idle_timeout_s=0.6) as producer:
        await producer.status("waiting", "Waiting for a slow tool…")
        await asyncio.sleep(1.8)  # three idle timeouts without an event
        await producer.delta("still here")
    events = await relay.events(producer.session_id)
    assert [event.event for event in events] == ["status", "delta", "done"]


async def test_leaving_on_an_exception_ends_the_session_with_an_agent_error(
    relay_server: Relay,
) -> None:
    with pytest.raises(LookupError):
        async with Producer.create(relay_server.url("/")) as producer:
            await producer.delta("half an answer")
            raise LookupError("the index is gone")
    events = await relay_server.events(producer.session_id)
    assert [event.event for event in events] == ["delta", "error"]
    assert events[-1].json() == {
        "code": "agent_error",
        "message": "the agent failed: LookupError",
        "retryable": False,
    }


async def test_a_cancel_the_agent_ignores_ends_the_session_and_raises_session_ended(
    start_relay: StartRelay,
) -> None:
    """A cancel reaches the agent as a signal; one that does not read its signals sees the
    session end (relay appends `cancelled` after the grace), and its next batch raises."""
    relay = await start_relay(generation={"producer_cancel_grace_s": 0.3})
    async with Producer.create(relay.url("/")) as producer:
        await producer.delta("before the cancel")
        await producer.flush()
        async with relay.http.delete(relay.url(f"/v1/sessions/{producer.session_id}")) as response:
            assert response.status == 202
        await relay.wait_until_ended(producer.session_id)
        with pytest.raises(SessionEnded, match="session_ended"):
            await producer.delta("after it")
            await producer.flush()
        assert producer.ended
    events = await relay.events(producer.session_id)
    assert [event.event for event in events] == ["delta", "cancelled"]


async def test_a_producer_continuing_a_written_session_needs_its_next_seq(
    relay_server: Relay,
) -> None:
    async with Producer.create(relay_server.url("/")) as first:
        for text in ("one ", "two "):
            await first.delta(text)
            await first.flush()
        session = (relay_server.url("/"), first.session_id, first.producer_token)
        with pytest.raises(SeqConflict) as conflict:
            async with Producer(*session) as guessing:
                await guessing.delta("three")
                await guessing.flush()
        assert conflict.value.expected_seq == 3
        async with Producer(*session, next_seq=3) as second:
            await second.delta("three")
    events = await relay_server.events(first.session_id)
    assert [event.event for event in events] == ["delta", "delta", "delta", "done"]
    assert (await relay_server.snapshot(first.session_id))["text"] == "one two three"


class DroppingProxy:
    """A TCP proxy to relay that, once `armed`, forwards a request and then closes the
    connection instead of forwarding relay's answer: relay has taken the batch, the
    client never hears so."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.dropped = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            await server.wait_closed()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_relay = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = [
            asyncio.create_task(self._pipe(client, to_relay, answers=False)),
            asyncio.create_task(self._pipe(upstream, to_client, answers=True)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(pipes)
            to_relay.close()
            to_client.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, answers: bool
    ) -> None:
        while chunk := await source.read(65536):
            if answers and self.armed:
                self.armed = False
                self.dropped += 1
                return
            sink.write(chunk)
            await sink.drain()


# Against a stub relay.


class StubRelay:
    """Just enough of relay's producer API to script its answers: batches are recorded
    (with the status they got), `fail_first` answers the first batch 503, and the signal
    stream serves `signals` from after the Last-Event-ID it is sent, dropping the
    connection after `drop_after` of them."""

    def __init__(self, signals: list[dict[str, Any]], drop_after: int = 0) -> None:
        self.signals = signals
        self.drop_after = drop_after
        self.fail_first = False
        self.batches: list[tuple[int, dict[str, Any]]] = []
        self.bodies: list[bytes] = []  # each batch as it came over the wire
        self.resumed_from: list[str | None] = []
        app = web.Application()
        app.router.add_post("/v1/sessions/{id}/events", self.events)
        app.router.add_post("/v1/sessions/{id}/keepalive", self.keepalive)
        app.router.add_get("/v1/sessions/{id}/signals", self.signal_stream)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    async def events(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        body = await request.json()
        status = 503 if self.fail_first and not self.batches else 201
        self.batches.append((status, body))
        return web.json_response({"seq": body["seq"], "ids": [], "appended": True}, status=status)

    async def keepalive(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "s_stub", "status": "running", "idle_timeout_s": 30})

    async def signal_stream(self, request: web.Request) -> web.StreamResponse:
        after = request.headers.get("Last-Event-ID")
        self.resumed_from.append(after)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n: ping\n\n")
        first = int(after or 0)
        for number, data in enumerate(self.signals[first:], start=first + 1):
            frame = f"id: {number}\nevent: signal\ndata: {json.dumps(data)}\n\n"
            await response.write(frame.encode())
            if number == self.drop_after:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-stream
                return response
        await asyncio.sleep(30)  # live: no more signals yet
        return response


@contextlib.asynccontextmanager
async def stub_relay(
    signals: list[dict[str, Any]], drop_after: int = 0
) -> AsyncIterator[StubRelay]:
    stub = StubRelay(signals, drop_after)
    await stub.server.start_server()
    try:
        yield stub
    finally:
        await stub.server.close()


async def test_a_5xx_is_retried_with_the_same_seq() -> None:
    async with stub_relay([]) as stub:
        stub.fail_first = True
        async with Producer(stub.url, "s_stub", "pt_stub", retry=Retry(first_delay_s=0.01)):
            pass
    assert [(status, body["seq"]) for status, body in stub.batches] == [(503, 1), (201, 1)]
    assert stub.batches[0][1]["events"] == [{"type": "done", "data": DONE_DATA}]


async def test_every_event_goes_over_the_wire_as_these_bytes() -> None:
    async with stub_relay([]) as stub:
        async with Producer(stub.url, "s_stub", "pt_stub", coalesce=False) as producer:
            await producer.status("searching", "Searching…")
            await producer.delta("Hi")
            await producer.reasoning("hm")
            await producer.tool_call(0, "call_1", "lookup", '{"q": 1}')
            await producer.usage(3, 4)
            await producer.done("length", Usage(3, 4))
        async with Producer(stub.url, "s_stub", "pt_stub") as producer:
            await producer.error("agent_error", "no", retryable=True)
        async with Producer(stub.url, "s_stub", "pt_stub") as producer:
            await producer.cancelled("producer")
        async with Producer(stub.url, "s_stub", "pt_stub") as producer:
            await producer.done(usage={"input_tokens": 1, "output_tokens": 2})  # as JSON has it
    assert stub.bodies == [
        b'{"seq":1,"events":['
        b'{"type":"status","data":{"state":"searching","message":"Searching\xe2\x80\xa6"}},'
        b'{"type":"delta","data":{"text":"Hi"}},'
        b'{"type":"reasoning","data":{"text":"hm"}},'
        b'{"type":"tool_call","data":{"index":0,"id":"call_1","name":"lookup",'
        b'"arguments":"{\\"q\\": 1}"}},'
        b'{"type":"usage","data":{"input_tokens":3,"output_tokens":4}},'
        b'{"type":"done","data":{"finish_reason":"length",'
        b'"usage":{"input_tokens":3,"output_tokens":4}}}'
        b'],"coalesce":false}',
        b'{"seq":1,"events":[{"type":"error","data":{"code":"agent_error","message":"no",'
        b'"retryable":true}}],"coalesce":true}',
        b'{"seq":1,"events":[{"type":"cancelled","data":{"reason":"producer"}}],"coalesce":true}',
        b'{"seq":1,"events":[{"type":"done","data":{"finish_reason":"stop",'
        b'"usage":{"input_tokens":1,"output_tokens":2}}}],"coalesce":true}',
    ]


async def test_a_usage_mapping_with_a_bad_value_is_refused_naming_its_key() -> None:
    async with stub_relay([]) as stub, Producer(stub.url, "s_stub", "pt_stub") as producer:
        with pytest.raises(msgspec.ValidationError, match=r"\$\.output_tokens"):
            await producer.done(usage={"input_tokens": 1, "output_tokens": "many"})
    assert [body["events"] for _, body in stub.batches] == [[{"type": "done", "data": DONE_DATA}]]


async def test_signals_are_read_in_order_and_resumed_after_a_dropped_connection() -> None:
    sent = [{"answer": "the event log"}, {"note": "second"}, {"kind": "cancel"}]
    received: list[Signal] = []
    async with (
        stub_relay(sent, drop_after=1) as stub,
        Producer(stub.url, "s_stub", "pt_stub", retry=Retry(first_delay_s=0.01)) as producer,
        contextlib.aclosing(producer.signals()) as signals,
    ):
        async for signal in signals:
            received.append(signal)
            if signal.kind == "cancel":
                break
    assert [(signal.id, signal.data) for signal in received] == list(enumerate(sent, start=1))
    assert stub.resumed_from == [None, "1"]


async def test_the_example_asks_when_the_prompt_is_ambiguous_and_uses_the_answer() -> None:
    async with (
        stub_relay([{"answer": "and its event log"}]) as stub,
        Producer(stub.url, "s_stub", "pt_stub") as producer,
    ):
        await example.run_agent(producer, "relay?", answer_timeout_s=5)
    events = [event for _, body in stub.batches for event in body["events"]]
    statuses = [event["data"]["message"] for event in events if event["type"] == "status"]
    assert statuses == [
        "Thinking…",
        example.QUESTION,
        "Searching knowledge base…",
        "Found 5 sources",
    ]
    text = "".join(event["data"]["text"] for event in events if event["type"] == "delta")
    assert text == example.answer_text("relay? and its event log") + " "
    assert events[-1] == {"type": "done", "data": DONE_DATA}


async def test_the_example_goes_on_without_an_answer_after_its_timeout() -> None:
    async with stub_relay([]) as stub, Producer(stub.url, "s_stub", "pt_stub") as producer:
        await example.run_agent(producer, "relay?", answer_timeout_s=0.2)
    events = [event for _, body in stub.batches for event in body["events"]]
    states = [event["data"]["state"] for event in events if event["type"] == "status"]
    assert states == ["thinking", "needs_input", "thinking", "searching", "found"]
    assert events[-1]["type"] == "done"


# Pure: the signal stream's parsing.


def test_signal_frames_split_anywhere_parse_into_signals() -> None:
    wire = (
        b"retry: 1000\n\n: ping\n\n"
        b'id: 7\r\nevent: signal\r\ndata: {"kind": "cancel"}\r\n\r\n'
        b'id: 8\nevent: other\ndata: {"x": 1}\n\n'
        b'id: 9\ndata: {"answer": "yes"}\n\n'
    )
    parser = _SignalParser()
    signals = [signal for i in range(len(wire)) for signal in parser.feed(wire[i : i + 1])]
    assert signals == [Signal(7, {"kind": "cancel"}), Signal(9, {"answer": "yes"})]
    assert signals[0].kind == "cancel" and signals[1].kind is None


def test_a_frame_without_an_id_or_data_is_no_signal() -> None:
    assert signal_of({"event": "signal", "data": "{}"}) is None
    assert signal_of({"id": "1", "event": "signal"}) is None


def test_the_retry_backoff_doubles_up_to_its_bound() -> None:
    retry = Retry(first_delay_s=0.1, max_delay_s=0.5)
    assert [retry.delay_s(attempt) for attempt in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
