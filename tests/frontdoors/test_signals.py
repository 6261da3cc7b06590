"""Signals from a session's users to its producer, over real sockets on both stores:
`POST /v1/sessions/{id}/signals` and the WebSocket `signal` message, the producer's SSE
stream of them (order, resume, who may send and read), across two instances on one
Redis, and a cancel that reaches an external producer as a `cancel` signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.frontdoors.conftest import (
    READ_TIMEOUT_S,
    Relay,
    StartRelay,
    seconds_to_first_ping,
    with_early_first_heartbeat,
)
from tests.frontdoors.test_clients import CLIENTS, MOBILE_KEY, WEB_KEY, bearer
from tests.frontdoors.test_native_api import REDIS_ONLY
from tests.frontdoors.test_producer import DONE, create_external, delta, post_batch
from tests.sse_client import SseEvent, SseReader

GRACE = {"generation": {"producer_cancel_grace_s": 0.5}}


async def send_signal(
    relay: Relay,
    session_id: str,
    data: Any,
    *,
    key: str | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    url = relay.url(f"/v1/sessions/{session_id}/signals")
    params = {"token": token} if token else None
    headers = bearer(key) if key else None
    async with relay.http.post(url, json={"data": data}, params=params, headers=headers) as r:
        answer: dict[str, Any] = await r.json()
        return r.status, answer


def signals_url(relay: Relay, created: dict[str, Any]) -> str:
    return relay.url(f"/v1/sessions/{created['id']}/signals")


@contextlib.asynccontextmanager
async def signal_stream(
    relay: Relay, created: dict[str, Any], last_event_id: str | None = None
) -> AsyncIterator[SseReader]:
    """The producer's open signal stream (status 200 asserted)."""
    headers = bearer(created["producer_token"])
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await relay.http.get(signals_url(relay, created), headers=headers)
    try:
        assert response.status == 200, await response.text()
        async with asyncio.timeout(READ_TIMEOUT_S):
            yield SseReader(response)
    finally:
        response.close()


def signal_keys(events: list[SseEvent]) -> list[tuple[int, str, Any]]:
    return [(event.int_id, event.event, event.json()) for event in events]


async def end_session(relay: Relay, created: dict[str, Any], seq: int = 1) -> None:
    assert (await post_batch(relay, created, seq, [DONE]))[0] == 201


# --- order and resume -------------------------------------------------------------------


async def test_signals_reach_the_producer_in_order_and_the_stream_ends_with_the_session(
    relay_server: Relay,
) -> None:
    created = await create_external(relay_server)
    for n in range(1, 4):
        status, answer = await send_signal(relay_server, created["id"], {"n": n})
        assert (status, answer) == (201, {"id": n, "session": created["id"]})
    async with signal_stream(relay_server, created) as reader:
        replayed = await reader.read(3)
        live = asyncio.create_task(reader.read(1))
        await asyncio.sleep(0.05)
        assert (await send_signal(relay_server, created["id"], {"n": 4}))[0] == 201
        await live
        await end_session(relay_server, created)
        assert await reader.read_all() == replayed + live.result()
        assert not reader.aborted
    assert signal_keys(reader.events) == [(n, "signal", {"n": n}) for n in range(1, 5)]


async def test_the_producers_stream_resumes_after_last_event_id(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    for n in range(1, 6):
        await send_signal(relay_server, created["id"], {"n": n})
    async with signal_stream(relay_server, created) as reader:
        first = await reader.read(2)
    await end_session(relay_server, created)
    async with signal_stream(relay_server, created, last_event_id=first[-1].id) as reader:
        rest = await reader.read_all()
    assert [event.int_id for event in first + rest] == [1, 2, 3, 4, 5]
    # The query parameter does the same, for a producer that cannot set headers.
    headers = bearer(created["producer_token"])
    url = signals_url(relay_server, created)
    async with relay_server.http.get(url, params={"last_event_id": "4"}, headers=headers) as r:
        assert r.status == 200
        assert signal_keys(await SseReader(r).read_all()) == [(5, "signal", {"n": 5})]


async def test_a_signal_is_one_json_object_of_bounded_size(start_relay: StartRelay) -> None:
    relay = await start_relay(limits={"max_signal_bytes": 64})
    created = await create_external(relay)
    for data, code in ([1, 2], "invalid_request"), ("text", "invalid_request"):
        status, answer = await send_signal(relay, created["id"], data)
        assert (status, answer["error"]["code"]) == (400, code)
        assert "data" in answer["error"]["message"]
    status, answer = await send_signal(relay, created["id"], {"text": "x" * 100})
    assert (status, answer["error"]["code"]) == (400, "signal_too_large")
    assert "limits.max_signal_bytes" in answer["error"]["message"]


async def test_an_ended_or_relay_generated_session_takes_no_signals(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    await end_session(relay_server, created)
    status, answer = await send_signal(relay_server, created["id"], {"kind": "answer"})
    assert (status, answer["error"]["code"]) == (409, "session_ended")
    generated = await relay_server.create()
    status, answer = await send_signal(relay_server, generated["id"], {"kind": "answer"})
    assert (status, answer["error"]["code"]) == (409, "no_producer")


async def test_past_the_cap_a_session_takes_no_more_signals(start_relay: StartRelay) -> None:
    relay = await start_relay(store={"max_signals_per_session": 2})
    created = await create_external(relay)
    assert [(await send_signal(relay, created["id"], {}))[0] for _ in range(2)] == [201, 201]
    status, answer = await send_signal(relay, created["id"], {})
    assert (status, answer["error"]["code"]) == (409, "signal_limit")


# --- who may send and read --------------------------------------------------------------


async def test_the_owner_and_the_read_token_send_and_no_one_else(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=CLIENTS)
    created, other = await create_external(relay, WEB_KEY), await create_external(relay, WEB_KEY)
    session_id = created["id"]
    assert (await send_signal(relay, session_id, {"by": "owner"}, key=WEB_KEY))[0] == 201
    token = created["token"]
    assert (await send_signal(relay, session_id, {"by": "reader"}, token=token))[0] == 201
    status, answer = await send_signal(relay, session_id, {}, key=MOBILE_KEY)
    assert (status, answer["error"]["code"]) == (404, "session_not_found")
    status, answer = await send_signal(relay, session_id, {}, token=other["token"])
    assert (status, answer["error"]["code"]) == (401, "invalid_token")
    await end_session(relay, created)
    async with signal_stream(relay, created) as reader:
        assert [event.json() for event in await reader.read_all()] == [
            {"by": "owner"},
            {"by": "reader"},
        ]


async def test_only_the_producer_token_reads_the_signals(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=CLIENTS)
    created, other = await create_external(relay, WEB_KEY), await create_external(relay, WEB_KEY)
    url = signals_url(relay, created)
    for key, status, code in (
        (WEB_KEY, 401, "producer_token_required"),
        (created["token"], 401, "invalid_api_key"),
        (other["producer_token"], 401, "invalid_token"),
        (MOBILE_KEY, 404, "session_not_found"),
    ):
        async with relay.http.get(url, headers=bearer(key)) as response:
            answer = await response.json()
            assert (response.status, answer["error"]["code"]) == (status, code), key


# --- the WebSocket, and across instances ------------------------------------------------


async def test_a_websocket_signal_reaches_the_producer(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    async with relay_server.http.ws_connect(relay_server.url("/v1/ws")) as ws:
        signal = {"type": "signal", "session": created["id"], "data": {"kind": "answer"}}
        await ws.send_json({**signal, "token": created["token"]})
        await ws.send_json({**signal, "token": "rt_" + "A" * 32})
        error = await ws.receive_json(timeout=READ_TIMEOUT_S)
        assert (error["type"], error["code"], error["session"]) == (
            "error",
            "invalid_token",
            created["id"],
        )
    await end_session(relay_server, created)
    async with signal_stream(relay_server, created) as reader:
        assert signal_keys(await reader.read_all()) == [(1, "signal", {"kind": "answer"})]


@REDIS_ONLY
async def test_a_signal_sent_on_one_instance_reaches_the_stream_on_another(
    start_relay: StartRelay,
) -> None:
    one, two = await start_relay(), await start_relay()
    created = await create_external(one)
    async with signal_stream(two, created) as reader:
        live = asyncio.create_task(reader.read(2))
        await asyncio.sleep(0.05)
        for n in (1, 2):
            assert (await send_signal(one, created["id"], {"n": n}))[0] == 201
        started = time.monotonic()
        assert signal_keys(await live) == [(1, "signal", {"n": 1}), (2, "signal", {"n": 2})]
        assert time.monotonic() - started < 1.0  # woken, not found by a slow poll
        await end_session(one, created)
        assert await reader.read_all() == live.result()


# --- cancel -----------------------------------------------------------------------------


async def cancel(relay: Relay, session_id: str) -> str:
    async with relay.http.delete(relay.url(f"/v1/sessions/{session_id}")) as response:
        assert response.status == 202
        status: str = (await response.json())["status"]
        return status


async def test_a_cancel_the_producer_ignores_ends_the_session_after_the_grace(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(**GRACE)
    created = await create_external(relay)
    async with signal_stream(relay, created) as reader:
        started = time.monotonic()
        assert await cancel(relay, created["id"]) == "cancelling"
        assert signal_keys(await reader.read(1)) == [(1, "signal", {"kind": "cancel"})]
        snapshot = await relay.wait_until_ended(created["id"])
        assert 0.5 <= time.monotonic() - started < 0.5 + 1.0
        assert await reader.read_all() == reader.events[:1]  # the stream ends with it
    assert snapshot["status"] == "cancelled"
    events = await relay.events(created["id"])
    assert [(event.event, event.json()) for event in events] == [
        ("cancelled", {"reason": "client"})
    ]
    status, answer = await post_batch(relay, created, 1, [delta("late")])
    assert (status, answer["error"]["code"]) == (409, "session_ended")


async def test_a_producer_that_ends_the_session_after_the_cancel_keeps_its_own_end(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(**GRACE)
    created = await create_external(relay)
    async with signal_stream(relay, created) as reader:
        asked = asyncio.create_task(cancel(relay, created["id"]))
        assert (await reader.read(1))[0].json() == {"kind": "cancel"}
        assert (await post_batch(relay, created, 1, [delta("stopping"), DONE]))[0] == 201
        assert await asked in ("completed", "cancelling")
    await asyncio.sleep(0.5 + 0.3)  # past the grace: nothing more is appended
    events = await relay.events(created["id"])
    assert [event.event for event in events] == ["delta", "done"]
    assert (await relay.snapshot(created["id"]))["status"] == "completed"


@REDIS_ONLY
async def test_a_cancel_on_one_instance_reaches_the_producer_on_another(
    start_relay: StartRelay,
) -> None:
    one, two = await start_relay(**GRACE), await start_relay(**GRACE)
    created = await create_external(one)
    async with signal_stream(two, created) as reader:
        assert await cancel(one, created["id"]) == "cancelling"
        assert (await reader.read(1))[0].json() == {"kind": "cancel"}
        assert (await two.wait_until_ended(created["id"]))["status"] == "cancelled"
    assert [event.event for event in await two.events(created["id"])] == ["cancelled"]


async def test_a_websocket_cancel_of_an_external_session_signals_its_producer(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(**GRACE)
    created = await create_external(relay)
    async with relay.http.ws_connect(relay.url("/v1/ws")) as ws:
        await ws.send_json({"type": "subscribe", "session": created["id"]})
        await ws.send_json({"type": "cancel", "session": created["id"]})
        async with signal_stream(relay, created) as reader:
            assert (await reader.read(1))[0].json() == {"kind": "cancel"}
        message = await ws.receive_json(timeout=READ_TIMEOUT_S)
        assert (message["type"], message["event"]) == ("event", "cancelled")


# --- the session's state, for a producer that reconnects or takes over ------------------


async def test_a_stream_asked_for_the_state_starts_with_it(relay_server: Relay) -> None:
    """A producer process taking over from another (or reconnecting after the instance
    serving it was lost) learns that the session is still open and the seq to append
    with next, then gets the signals as ever; the frame has no `id:`, so the stream's
    resume point does not move."""
    created = await create_external(relay_server)
    assert (await post_batch(relay_server, created, 1, [delta("a"), delta("b")]))[0] == 201
    assert (await post_batch(relay_server, created, 2, [delta("c")]))[0] == 201
    await send_signal(relay_server, created["id"], {"n": 1})
    headers = bearer(created["producer_token"])
    url = signals_url(relay_server, created)
    async with relay_server.http.get(url, params={"state": "true"}, headers=headers) as r:
        reader = SseReader(r)
        first, signal = await reader.read(2)
        assert (first.id, first.event) == (None, "session")
        assert first.json() == {
            "state": "running", "last_seq": 2, "next_seq": 3, "last_event_id": 3
        }  # fmt: skip
        assert signal_keys([signal]) == [(1, "signal", {"n": 1})]
        status, answer = await post_batch(relay_server, created, 3, [DONE])
        assert status == 201 and answer["ids"] == [4]
        assert await reader.read_all() == [first, signal]  # ended: nothing more
    async with relay_server.http.get(url, params={"state": "1"}, headers=headers) as r:
        ended = (await SseReader(r).read_all())[0]
        assert ended.json() == {
            "state": "completed", "last_seq": 3, "next_seq": 4, "last_event_id": 4
        }  # fmt: skip


async def test_an_idle_signal_stream_pings_first_early_by_its_session(
    start_relay: StartRelay,
) -> None:
    """Producers that reconnect together must not be pinged together every heartbeat:
    the first `: ping` comes at the session's own point of the interval's second half."""
    heartbeat_s = 1.0
    relay = await start_relay(server={"heartbeat_s": heartbeat_s})
    created, first_s = await with_early_first_heartbeat(lambda: create_external(relay), heartbeat_s)
    headers = bearer(created["producer_token"])
    async with relay.http.get(signals_url(relay, created), headers=headers) as response:
        pinged_s = await seconds_to_first_ping(response)
    assert first_s - 0.05 <= pinged_s < 0.8 * heartbeat_s, (first_s, pinged_s)
