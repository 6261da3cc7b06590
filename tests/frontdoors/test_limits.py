"""`[limits]` that the app enforces, over real sockets, on both stores: the size of a
request after translation (every front door, in its own error shape), the time to send
a body, subscribers per session, and a reader that takes nothing while it replays
(disconnected after `send_timeout_s`, then it resumes with Last-Event-ID and loses
nothing). The write buffer of a live subscriber that stops reading:
tests/frontdoors/test_feeds.py.

The limits on connections and request heads belong to `relay serve`'s connection
handler: tests/test_serve_limits.py."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import pytest

from relay.subscribers import sse
from tests.frontdoors.conftest import FAST_MOCK, READ_TIMEOUT_S, StartRelay
from tests.frontdoors.test_feeds import StalledClient, shrink_send_buffer, until

USER = {"role": "user", "content": "hi"}
# path, a valid body given its messages, and how to read the code out of an error body
DOORS: dict[str, tuple[str, Any]] = {
    "native": ("/v1/sessions", lambda messages: {"model": FAST_MOCK, "messages": messages}),
    "chat": ("/v1/chat/completions", lambda messages: {"model": FAST_MOCK, "messages": messages}),
    "messages": (
        "/v1/messages",
        lambda messages: {"model": FAST_MOCK, "max_tokens": 5, "messages": messages},
    ),
    "responses": ("/v1/responses", lambda messages: {"model": FAST_MOCK, "input": messages}),
}


def error_message(payload: dict[str, Any]) -> str:
    """The message of an error body in any front door's shape."""
    return str(payload["error"]["message"])


@pytest.mark.parametrize("door", DOORS)
async def test_too_many_messages_or_too_much_text_is_a_400_on_every_front_door(
    start_relay: StartRelay, door: str
) -> None:
    relay = await start_relay(limits={"max_messages": 3, "max_prompt_chars": 40})
    path, body = DOORS[door]
    cases = [
        ([USER] * 4, "limits.max_messages", "too_many_messages"),
        ([{"role": "user", "content": "x" * 41}], "limits.max_prompt_chars", "prompt_too_long"),
    ]
    for messages, setting, code in cases:
        async with relay.http.post(relay.url(path), json=body(messages)) as response:
            payload = await response.json()
            assert response.status == 400, payload
        assert setting in error_message(payload), payload
        if door != "messages":  # Anthropic's shape has no code
            assert payload["error"]["code"] == code, payload
    async with relay.http.post(relay.url(path), json=body([USER] * 3)) as response:
        assert response.status in (200, 201), await response.text()


async def test_a_body_that_stalls_is_cut_with_a_408(start_relay: StartRelay) -> None:
    relay = await start_relay(limits={"body_timeout_s": 0.5})
    reader, writer = await asyncio.open_connection(relay.server.host, relay.server.port)
    started = time.monotonic()
    try:
        writer.write(
            b"POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model": '
        )
        await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            body = await reader.readexactly(length)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert 0.5 <= time.monotonic() - started < 5
    assert json.loads(body) == {
        "error": {
            "code": "request_timeout",
            "message": "the request body did not arrive within limits.body_timeout_s=0.5 s",
        }
    }
    # A body that arrives in time is not affected.
    assert (await relay.create())["status"] == "running"


async def test_one_subscriber_more_than_a_session_allows_gets_a_503(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(limits={"max_subscribers_per_session": 2})
    session_id = (await relay.create("mock:tokens=50,tps=20,ttft_ms=0"))["id"]
    first = await relay.open_events(session_id)
    second = await relay.open_events(session_id)
    try:
        assert (first.status, second.status) == (200, 200)
        async with await relay.open_events(session_id) as third:
            assert third.status == 503
            assert await third.json() == {
                "error": {
                    "code": "too_many_subscribers",
                    "message": "this session already has 2 open streams on this instance, the"
                    " most allowed (limits.max_subscribers_per_session); retry later",
                }
            }
        other = (await relay.create(FAST_MOCK))["id"]  # the limit is per session
        assert (await relay.events(other))[-1].event == "done"
    finally:
        first.close()
    # A stream that ends makes room again.
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        async with await relay.open_events(session_id) as again:
            if again.status == 200:
                break
        assert time.monotonic() < deadline, "the closed stream was never counted out"
        await asyncio.sleep(0.05)
    second.close()


async def test_a_reader_that_takes_nothing_while_it_replays_is_let_go_and_resumes(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """No feed bounds a replay of an ended session: `send_timeout_s` does."""
    relay = await start_relay(limits={"send_timeout_s": 0.5})
    caplog.set_level(logging.INFO, logger=sse.__name__)
    session_id = (await relay.create("mock:tokens=30000,tps=0,ttft_ms=0"))["id"]
    await relay.wait_until_ended(session_id)
    stalled = StalledClient(relay, f"/v1/sessions/{session_id}/events")
    await stalled.request()
    await shrink_send_buffer(relay, stalled)
    await until(lambda: "disconnected a subscriber that read nothing" in caplog.text)
    got = await stalled.read_events()
    assert got and not got[-1].is_terminal
    rest = await relay.events(session_id, last_event_id=got[-1].id)
    whole = await relay.events(session_id)
    assert [event.key() for event in got + rest] == [event.key() for event in whole]
    # A reader that keeps reading, however slowly its stream goes, is not let go.
    async with relay.subscribe(session_id) as reader:
        assert (await reader.read_all())[-1].event == "done"
