"""The producer API over real sockets, on both stores: an external producer's session,
its numbered batches (idempotent retries, 409s with the seq expected), who may append,
validation naming the path, and `producer_lost` once a producer dies, on every instance.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from asyncio.subprocess import Process
from typing import Any

import pytest

from tests.frontdoors.conftest import READ_TIMEOUT_S, Relay, StartRelay
from tests.frontdoors.test_clients import CLIENTS, MOBILE_KEY, WEB_KEY, bearer, sha256
from tests.frontdoors.test_native_api import REDIS_ONLY
from tests.sse_client import SseEvent

EXTERNAL = {"producer": "external"}
# Reaped within a tenth of a second of lapsing (the reaper runs every lease_ttl_s / 4).
FAST_REAPER = {"store": {"lease_ttl_s": 0.4}}
IDLE_S = 1.0


def delta(text: str) -> dict[str, Any]:
    return {"type": "delta", "data": {"text": text}}


DONE = {"type": "done", "data": {"finish_reason": "stop"}}


async def create_external(relay: Relay, key: str | None = None, **fields: Any) -> dict[str, Any]:
    headers = bearer(key) if key else None
    body = {**EXTERNAL, **fields}
    async with relay.http.post(relay.url("/v1/sessions"), json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def post_batch(
    relay: Relay, created: dict[str, Any], seq: int, events: list[Any], **fields: Any
) -> tuple[int, dict[str, Any]]:
    return await post(relay, created, "events", {"seq": seq, "events": events, **fields})


async def post(
    relay: Relay,
    created: dict[str, Any],
    endpoint: str,
    body: Any = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    url = relay.url(f"/v1/sessions/{created['id']}/{endpoint}")
    headers = bearer(token or created["producer_token"])
    async with relay.http.post(url, json=body, headers=headers) as response:
        answer: dict[str, Any] = await response.json()
        return response.status, answer


def event_keys(events: list[SseEvent]) -> list[tuple[int, str, Any]]:
    return [(event.int_id, event.event, event.json()) for event in events]


# --- creating ---------------------------------------------------------------------------


async def test_an_external_session_comes_with_a_producer_token(relay_server: Relay) -> None:
    created = await create_external(relay_server, producer_idle_timeout_s=30)
    assert created["producer_token"].startswith("pt_")
    assert created["token"].startswith("rt_") and created["id"].startswith("s_")
    assert created["producer_idle_timeout_s"] == 30
    snapshot = await relay_server.snapshot(created["id"])
    assert (snapshot["status"], snapshot["last_event_id"], snapshot["model"]) == ("running", 0, "")


async def test_the_idle_timeout_defaults_from_config_and_is_capped(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(
        generation={"producer_idle_timeout_s": 45, "producer_idle_timeout_max_s": 100}
    )
    assert (await create_external(relay))["producer_idle_timeout_s"] == 45
    body = {**EXTERNAL, "producer_idle_timeout_s": 101}
    async with await relay.post_session(body) as response:
        assert response.status == 400
        message = (await response.json())["error"]["message"]
    assert "producer_idle_timeout_s" in message and "100" in message


async def test_a_bad_producer_value_names_the_field(relay_server: Relay) -> None:
    async with await relay_server.post_session({"producer": "internal"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["message"].startswith("producer:")


# --- batches ----------------------------------------------------------------------------


async def test_a_retried_batch_gets_the_same_answer_and_appends_nothing(
    relay_server: Relay,
) -> None:
    created = await create_external(relay_server)
    status = {"type": "status", "data": {"state": "searching", "message": "Searching…"}}
    first = await post_batch(relay_server, created, 1, [status, delta("Hello")])
    assert first == (201, {"id": created["id"], "seq": 1, "ids": [1, 2], "appended": True})
    retried = await post_batch(relay_server, created, 1, [status, delta("Hello")])
    assert retried == (200, {**first[1], "appended": False})
    assert (await relay_server.snapshot(created["id"]))["last_event_id"] == 2
    assert await post_batch(relay_server, created, 2, [delta(" world"), DONE]) == (
        201,
        {"id": created["id"], "seq": 2, "ids": [3, 4], "appended": True},
    )
    assert (await post_batch(relay_server, created, 2, [DONE]))[0] == 200  # after the end too
    events = await relay_server.events(created["id"])
    assert [(e.int_id, e.event) for e in events] == [
        (1, "status"), (2, "delta"), (3, "delta"), (4, "done"),
    ]  # fmt: skip
    snapshot = await relay_server.snapshot(created["id"])
    assert (snapshot["status"], snapshot["text"]) == ("completed", "Hello world")


async def test_a_batch_answer_is_these_bytes(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    url = relay_server.url(f"/v1/sessions/{created['id']}/events")
    body = {"seq": 1, "events": [delta("a"), delta("b")], "coalesce": True}
    headers = bearer(created["producer_token"])
    for status, appended in ((201, b"true"), (200, b"false")):
        async with relay_server.http.post(url, json=body, headers=headers) as response:
            assert response.status == status
            assert response.content_type == "application/json"
            expected = b'{"id":"%s","seq":1,"ids":[1],"appended":%s}' % (
                created["id"].encode(),
                appended,
            )
            assert await response.read() == expected


async def test_a_gap_or_an_old_seq_is_409_naming_the_seq_expected(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    status, answer = await post_batch(relay_server, created, 2, [delta("a")])
    assert (status, answer["error"]["code"], answer["error"]["expected_seq"]) == (
        409, "seq_conflict", 1,
    )  # fmt: skip
    assert (await post_batch(relay_server, created, 1, [delta("a")]))[0] == 201
    assert (await post_batch(relay_server, created, 2, [delta("b")]))[0] == 201
    for seq in (1, 4):
        status, answer = await post_batch(relay_server, created, seq, [delta("c")])
        assert (status, answer["error"]["expected_seq"]) == (409, 3)
    assert (await relay_server.snapshot(created["id"]))["text"] == "ab"


async def test_after_the_terminal_event_batches_and_keepalives_are_409(
    relay_server: Relay,
) -> None:
    created = await create_external(relay_server)
    assert (await post_batch(relay_server, created, 1, [DONE]))[0] == 201
    status, answer = await post_batch(relay_server, created, 2, [delta("late")])
    assert (status, answer["error"]["code"]) == (409, "session_ended")
    status, answer = await post(relay_server, created, "keepalive")
    assert (status, answer["error"]["code"]) == (409, "session_ended")
    assert (await relay_server.snapshot(created["id"]))["last_event_id"] == 1


async def test_text_deltas_are_coalesced_when_the_batch_asks(relay_server: Relay) -> None:
    created = await create_external(relay_server)
    tokens = [delta(word) for word in ("one ", "two ", "three")]
    status, answer = await post_batch(relay_server, created, 1, tokens, coalesce=True)
    assert (status, answer["ids"]) == (201, [1])
    status, answer = await post_batch(relay_server, created, 2, [*tokens, DONE])
    assert (status, answer["ids"]) == (201, [2, 3, 4, 5])  # not asked: one event each
    events = await relay_server.events(created["id"])
    assert events[0].json() == {"text": "one two three"}


async def test_a_cancel_ends_an_external_session_after_its_producers_grace(
    start_relay: StartRelay,
) -> None:
    """The producer is sent a `cancel` signal (tests/frontdoors/test_signals.py); one that
    ignores it loses the session to `cancelled` once the grace is over."""
    relay = await start_relay(generation={"producer_cancel_grace_s": 0.3})
    created = await create_external(relay)
    started = time.monotonic()
    async with relay.http.delete(relay.url(f"/v1/sessions/{created['id']}")) as r:
        assert (r.status, (await r.json())["status"]) == (202, "cancelling")
    assert (await relay.wait_until_ended(created["id"]))["status"] == "cancelled"
    assert time.monotonic() - started < 0.3 + 1.0  # no generator to wait for
    status, answer = await post_batch(relay, created, 1, [delta("late")])
    assert (status, answer["error"]["code"]) == (409, "session_ended")


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "path"),
    [
        ([delta("a"), delta("b"), {"type": "delta", "data": {}}], "events[2].data.text"),
        ([{"type": "tool_call", "data": {"index": 0, "id": "c", "name": "f"}}],
         "events[0].data.arguments"),
        ([{"type": "thought", "data": {}}], "events[0].type"),
        ([DONE, delta("after the end")], "events[0].type"),
        ([{"type": "delta", "data": {"text": "a"}, "extra": 1}], "events[0]"),
        ([], "events"),
    ],
)  # fmt: skip
async def test_an_invalid_event_is_400_naming_its_path(
    relay_server: Relay, events: list[Any], path: str
) -> None:
    created = await create_external(relay_server)
    status, answer = await post_batch(relay_server, created, 1, events)
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert answer["error"]["message"].startswith(path), answer
    assert (await relay_server.snapshot(created["id"]))["last_event_id"] == 0


# --- who may append ---------------------------------------------------------------------


async def test_a_wrong_producer_token_is_401_whether_the_session_exists_or_not(
    relay_server: Relay,
) -> None:
    created, other = await create_external(relay_server), await create_external(relay_server)
    forged = "pt_" + "A" * 32
    for token in (other["producer_token"], forged):
        status, answer = await post(
            relay_server, created, "events", {"seq": 1, "events": [DONE]}, token
        )
        assert (status, answer["error"]["code"]) == (401, "invalid_token")
    unknown = {**created, "id": "s_" + "B" * 22}
    status, _ = await post(relay_server, unknown, "keepalive")
    assert status == 401
    # The read token reads; it does not append.
    status, answer = await post(relay_server, created, "keepalive", token=created["token"])
    assert (status, answer["error"]["code"]) == (401, "producer_token_required")
    assert (await relay_server.snapshot(created["id"]))["last_event_id"] == 0


async def test_another_clients_key_is_404_and_the_owners_key_is_not_enough(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(clients=CLIENTS)
    created = await create_external(relay, WEB_KEY)
    status, answer = await post(relay, created, "keepalive", token=MOBILE_KEY)
    assert (status, answer["error"]["code"]) == (404, "session_not_found")
    status, answer = await post(relay, created, "keepalive", token=WEB_KEY)
    assert (status, answer["error"]["code"]) == (401, "producer_token_required")
    assert (await post(relay, created, "events", {"seq": 1, "events": [DONE]}))[0] == 201


# --- subscribers ------------------------------------------------------------------------


async def produce(relay: Relay, created: dict[str, Any], batches: int) -> None:
    """`batches` batches of two deltas, then `done`, paced like a model's output."""
    for seq in range(1, batches + 1):
        status, _ = await post_batch(relay, created, seq, [delta(f"{seq}a "), delta(f"{seq}b ")])
        assert status == 201
        await asyncio.sleep(0.01)
    assert (await post_batch(relay, created, batches + 1, [DONE]))[0] == 201


async def resumed_midway(relay: Relay, session_id: str) -> list[SseEvent]:
    """The events of a subscriber that leaves after 5 and comes back from the last it had."""
    async with relay.subscribe(session_id) as reader:
        first = await reader.read(5)
    rest = await relay.events(session_id, last_event_id=first[-1].id)
    return first + rest


# Two instances share a Redis; a memory store is one process's.
@pytest.mark.parametrize(
    ("store_url", "instances"),
    [("memory", 1), ("redis", 1), ("redis", 2)],
    indirect=["store_url"],
)
async def test_a_subscriber_resuming_midway_gets_every_event_once(
    start_relay: StartRelay, instances: int
) -> None:
    producing = await start_relay()
    reading = await start_relay() if instances == 2 else producing
    created = await create_external(producing)
    producer = asyncio.create_task(produce(producing, created, batches=20))
    seen = await resumed_midway(reading, created["id"])
    await producer
    full = await reading.events(created["id"])
    assert event_keys(seen) == event_keys(full)
    assert [event.int_id for event in full] == list(range(1, 42))
    assert full[-1].event == "done"


# --- producer_lost ----------------------------------------------------------------------

# A producer that posts a batch every 50 ms and says so on stdout, until it is killed.
PRODUCER_SCRIPT = """
import json, sys, time, urllib.request
url, token = sys.argv[1], sys.argv[2]
for seq in range(1, 10**6):
    body = json.dumps({"seq": seq, "events": [{"type": "delta", "data": {"text": "x"}}]})
    request = urllib.request.Request(url, body.encode(), method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    print(seq, flush=True)
    time.sleep(0.05)
"""


async def start_producer_process(relay: Relay, created: dict[str, Any]) -> Process:
    """A producer process that has had three batches accepted."""
    url = relay.url(f"/v1/sessions/{created['id']}/events")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRODUCER_SCRIPT, url, created["producer_token"],
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    for _ in range(3):
        line = await process.stdout.readline()
        assert line.strip(), "the producer process stopped"
    return process


async def kill(process: Process) -> float:
    """SIGKILL it; when it died (monotonic)."""
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()
    return time.monotonic()


async def assert_lost_within_idle_timeout(relay: Relay, session_id: str, killed_at: float) -> None:
    async with relay.subscribe(session_id) as reader:
        events = await reader.read_all()
    lost_after_s = time.monotonic() - killed_at
    assert events[-1].event == "error" and events[-1].json()["code"] == "producer_lost"
    assert [event.event for event in events[:-1]] == ["delta"] * (len(events) - 1)
    # Within its idle timeout of the last batch, plus the reaper's period (0.1 s) and
    # room for a loaded machine.
    assert lost_after_s < IDLE_S + 0.1 + 0.9, lost_after_s
    assert lost_after_s > IDLE_S - 0.1 - 0.05, lost_after_s  # not before it timed out
    snapshot = await relay.snapshot(session_id)
    assert snapshot["status"] == "failed" and snapshot["error"]["code"] == "producer_lost"


async def test_a_killed_producer_loses_its_session_within_the_idle_timeout(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(**FAST_REAPER)
    created = await create_external(relay, producer_idle_timeout_s=IDLE_S)
    killed_at = await kill(await start_producer_process(relay, created))
    await assert_lost_within_idle_timeout(relay, created["id"], killed_at)


@REDIS_ONLY
async def test_another_instance_ends_a_killed_producers_session(start_relay: StartRelay) -> None:
    """The producer posts to one instance, which then stops: the other ends the session."""
    one = await start_relay(**FAST_REAPER)
    two = await start_relay(**FAST_REAPER)
    created = await create_external(one, producer_idle_timeout_s=IDLE_S)
    killed_at = await kill(await start_producer_process(one, created))
    await one.close()  # nothing on it reaps any more
    await assert_lost_within_idle_timeout(two, created["id"], killed_at)


async def test_keepalives_keep_a_quiet_producers_session(start_relay: StartRelay) -> None:
    relay = await start_relay(**FAST_REAPER)
    created = await create_external(relay, producer_idle_timeout_s=0.5)
    deadline = time.monotonic() + 1.5  # three idle timeouts
    while time.monotonic() < deadline:
        status, answer = await post(relay, created, "keepalive")
        assert (status, answer["status"]) == (200, "running")
        await asyncio.sleep(0.15)
    assert (await relay.snapshot(created["id"]))["status"] == "running"
    async with asyncio.timeout(READ_TIMEOUT_S):
        snapshot = await relay.wait_until_ended(created["id"])  # silent now: lost
    assert snapshot["error"]["code"] == "producer_lost"


async def test_an_external_session_holds_its_clients_slot_until_it_ends(
    start_relay: StartRelay,
) -> None:
    agent = {"name": "agent", "api_key_sha256": sha256(WEB_KEY), "max_concurrent_sessions": 1}
    relay = await start_relay(clients=[agent])
    created = await create_external(relay, WEB_KEY)
    refused = await relay.http.post(
        relay.url("/v1/sessions"), json=EXTERNAL, headers=bearer(WEB_KEY)
    )
    async with refused:
        assert (refused.status, (await refused.json())["error"]["code"]) == (429, "rate_limited")
    assert (await post_batch(relay, created, 1, [DONE]))[0] == 201
    await create_external(relay, WEB_KEY)  # the slot is free again
