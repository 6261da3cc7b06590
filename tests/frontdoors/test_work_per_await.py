"""Nothing a client sends makes relay hold its event loop (issue 12): a concurrent
`/healthz` is answered within 50 ms of work while relay replays a 50,000-event session
in each wire format, answers the mock's largest requests, and decodes the largest bodies
the limits allow (in a worker thread: within 80 ms, see `OFF_LOOP_LIMIT_S`).

The server runs on the test's own event loop, so a `/healthz` round trip waits for
whatever relay's loop does first. It is measured in the process's CPU time
(`tests.loop_lag.round_trips`): the work it was held up by, which a loaded machine does
not inflate (it stretches wall time: a worker thread descheduled while it holds the GIL
stalls the loop meanwhile). Before the fix each of these requests held the loop in one
piece of CPU work: 0.1-0.5 s for a replay or 100,000 messages, 16 s for
`mock:tokens=40000000`. A try can never take less work than the piece it is held up by,
only more (a collection, a cold cache), so the best of `TRIES` tries still proves the
work is cut up.

On the memory store only: its reads never wait (the events are at hand), so nothing but
relay's own pauses lets other tasks run; a Redis read waits on the network anyway.

Python's cycle collector pauses the process too, for a time that grows with all it
tracks: in this process, pytest's objects and three SDKs' as well (full collections of
40-160 ms were seen). Those are frozen before each test (`gc.freeze`, which a server
can do after its startup), so that a pause measured is one that relay and the request
cause.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.frontdoors.conftest import Relay, StartRelay
from tests.loop_lag import loop_lag, round_trips

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

LIMIT_S = 0.050
# A body this large is decoded in a worker thread (relay/off_loop.py), which hands the
# GIL to the loop every switch interval (5 ms): a /healthz round trip needs several turns
# of the loop, each of which may wait one interval, and the process's CPU time counts the
# thread's work meanwhile. So its bound is a handful of intervals above LIMIT_S (CI saw
# the best of five tries at 53 and 56 ms on slow days); a decode on the loop itself takes
# 160+ ms in every try, which this bound still fails.
OFF_LOOP_LIMIT_S = 0.080
TRIES = 5  # stops at the first try under the limit; work on the loop fails all five (160+ ms)
EVENTS = 50_000
# One event per token, so that a mock answer of N tokens is a log of N + 4 events.
ONE_EVENT_PER_TOKEN = {"generation": {"flush_interval_ms": 0}}

Work = Callable[[], Awaitable[Any]]


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


async def slowest_healthz(relay: Relay, work: Work) -> tuple[float, int]:
    """The costliest `/healthz` round trip (in CPU time) while `work()` ran, and how
    many there were."""
    task = asyncio.ensure_future(work())
    times = await round_trips(relay.http, relay.url("/healthz"), task)
    await task
    return max(times), len(times)


async def best_of_tries(relay: Relay, work: Work, limit_s: float = LIMIT_S) -> float:
    """The slowest round trip of the best of up to `TRIES` tries of `work` (they stop at
    the first under `limit_s`)."""
    slowest = []
    for _ in range(TRIES):
        worst, _ = await slowest_healthz(relay, work)
        slowest.append(worst)
        if worst < limit_s:
            break
    return min(slowest)


async def long_session(relay: Relay) -> str:
    """A session with a log of `EVENTS` events, ended."""
    created = await relay.create(f"mock:tokens={EVENTS - 4},tps=0,ttft_ms=0")
    snapshot = await relay.wait_until_ended(created["id"])
    assert snapshot["last_event_id"] == EVENTS
    return str(created["id"])


def replay_paths(session_id: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Each wire format's replay of a session, from the start and near its end."""
    events = f"/v1/sessions/{session_id}/events"
    response = f"/v1/responses/resp_{session_id.removeprefix('s_')}"
    near_end = str(EVENTS - 10)
    return {
        "chat": (events + "?format=openai", {}),
        "chat resumed": (events + "?format=openai", {"Last-Event-ID": near_end}),
        "messages": (events + "?format=anthropic", {}),
        "messages resumed": (events + "?format=anthropic", {"Last-Event-ID": near_end}),
        "responses": (response + "?stream=true", {}),
        "responses resumed": (response + f"?stream=true&starting_after={EVENTS * 2}", {}),
        "responses retrieve": (response, {}),
        "snapshot": (f"/v1/sessions/{session_id}", {}),
    }


@pytest.fixture
async def long_relay(start_relay: StartRelay) -> tuple[Relay, str]:
    relay = await start_relay(**ONE_EVENT_PER_TOKEN)
    return relay, await long_session(relay)


@pytest.mark.parametrize(
    "replay",
    [
        "chat",
        "chat resumed",
        "messages",
        "messages resumed",
        "responses",
        "responses resumed",
        "responses retrieve",
        "snapshot",
    ],
)
async def test_a_long_replay_does_not_hold_up_other_clients(
    long_relay: tuple[Relay, str], replay: str
) -> None:
    relay, session_id = long_relay
    path, headers = replay_paths(session_id)[replay]

    async def read_replay() -> None:
        async with relay.http.get(relay.url(path), headers=headers) as response:
            assert response.status == 200
            await response.read()

    assert await best_of_tries(relay, read_replay) < LIMIT_S


async def test_a_replay_renders_every_event(long_relay: tuple[Relay, str]) -> None:
    """What the probes above ran alongside was the whole replay, to its last frame."""
    relay, session_id = long_relay
    path, _ = replay_paths(session_id)["chat"]
    async with relay.http.get(relay.url(path)) as response:
        body = await response.read()
    assert body.count(b"\n\n") == EVENTS - 2  # none for 2 statuses and usage, 2 for done
    assert body.endswith(f"id: {EVENTS}\ndata: [DONE]\n\n".encode())


@pytest.mark.parametrize("door", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
async def test_a_long_whole_answer_does_not_hold_up_other_clients(
    start_relay: StartRelay, door: str
) -> None:
    relay = await start_relay(**ONE_EVENT_PER_TOKEN)
    model = f"mock:tokens={EVENTS - 4},tps=0,ttft_ms=0"
    body = encoded(door, model, [{"role": "user", "content": "hi"}])

    async def whole_answer() -> None:
        await post(relay, door, body)

    assert await best_of_tries(relay, whole_answer) < LIMIT_S


async def test_the_mock_at_its_cap_does_not_hold_up_other_clients(relay_server: Relay) -> None:
    async def largest_mock() -> None:
        created = await relay_server.create("mock:tokens=100000,tps=0,ttft_ms=0")
        await relay_server.wait_until_ended(created["id"])

    assert await best_of_tries(relay_server, largest_mock) < LIMIT_S


async def test_the_mock_refuses_more_tokens_than_its_cap_at_once(relay_server: Relay) -> None:
    """`mock:tokens=40000000` built 40,000,000 words on the loop before: a 16 s stall."""
    async with (
        loop_lag() as lag,
        await relay_server.post_session(
            {"model": "mock:tokens=40000000", "messages": [{"role": "user", "content": "hi"}]}
        ) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "invalid_model"
    assert "tokens must be at most 100000 (mock_max_tokens), got 40000000" in error["message"]
    assert lag.worst_s < 1.0  # generous: the refusal does no work at all


async def test_the_cap_is_the_upstreams_mock_max_tokens(start_relay: StartRelay) -> None:
    mock = {"name": "mock", "kind": "mock", "models": ["mock:*"], "mock_max_tokens": 50}
    relay = await start_relay(upstreams=[mock])
    assert (await relay.create("mock:tokens=50,tps=0,ttft_ms=0"))["status"] == "running"
    body = {"model": "mock:tokens=51", "messages": [{"role": "user", "content": "hi"}]}
    async with await relay.post_session(body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["message"] == (
        "model 'mock:tokens=51': mock option tokens must be at most 50 (mock_max_tokens), got 51"
    )


@pytest.mark.parametrize(
    "door", ["/v1/sessions", "/v1/chat/completions", "/v1/messages", "/v1/responses"]
)
async def test_the_largest_body_does_not_hold_up_other_clients(
    start_relay: StartRelay, door: str
) -> None:
    """100,000 messages (`limits.max_messages`) in a body the limit lets through."""
    relay = await start_relay(server={"max_body_bytes": 8 << 20})
    messages = [{"role": "user", "content": ""}] * (relay.settings.limits.max_messages - 1)
    body = encoded(door, "mock:tokens=5,tps=0,ttft_ms=0", messages)

    async def largest_body() -> None:
        status = await post(relay, door, body)
        assert status in (200, 201)

    assert await best_of_tries(relay, largest_body, OFF_LOOP_LIMIT_S) < OFF_LOOP_LIMIT_S


def encoded(door: str, model: str, messages: list[dict[str, Any]]) -> bytes:
    """A request body for `door`, encoded before any timing: that is the test's work."""
    body: dict[str, Any] = {"model": model}
    if door == "/v1/responses":
        body["input"] = messages
    else:
        body["messages"] = messages
    if door == "/v1/messages":
        body["max_tokens"] = 100_000
    return json.dumps(body, separators=(",", ":")).encode()


async def post(relay: Relay, door: str, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    async with relay.http.post(relay.url(door), data=body, headers=headers) as response:
        await response.read()
        assert response.status in (200, 201), await response.text()
        return response.status
