"""The native HTTP API over a real socket: create, stream, snapshot, cancel, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.frontdoors.conftest import (
    FAST_MOCK,
    MESSAGES,
    Relay,
    StartRelay,
    seconds_to_first_ping,
    with_early_first_heartbeat,
)
from tests.redis_server import RedisServer, require_redis_server
from tests.sse_client import SseEvent, SseReader

SESSION_ID = re.compile(r"s_[A-Za-z0-9_-]{22}")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
SNAPSHOT_FIELDS = {
    "id",
    "status",
    "model",
    "text",
    "tool_calls",
    "last_event_id",
    "finish_reason",
    "usage",
    "error",
    "created_at",
    "updated_at",
}
UNKNOWN_SESSION = "s_AAAAAAAAAAAAAAAAAAAAAA"

# Needs a store that several instances share, and that can go away.
REDIS_ONLY = pytest.mark.parametrize("store_url", ["redis"], indirect=True)


def delta_text(events: list[SseEvent]) -> str:
    return "".join(event.json()["text"] for event in events if event.event == "delta")


def of_type(events: list[SseEvent], kind: str) -> list[SseEvent]:
    return [event for event in events if event.event == kind]


def assert_well_formed(events: list[SseEvent], after: int = 0) -> None:
    """Ids consecutive from `after + 1`; exactly one terminal event, and it is last."""
    assert [event.int_id for event in events] == list(range(after + 1, after + 1 + len(events)))
    assert [event.is_terminal for event in events].count(True) == 1
    assert events[-1].is_terminal


def assert_error_body(body: str, code: str | None = None, *names: str) -> dict[str, Any]:
    assert "Traceback" not in body
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    for name in names:
        assert name in error["message"], f"{name!r} not named in {error['message']!r}"
    return dict(error)


async def finished_events(relay: Relay, model: str = FAST_MOCK, **fields: Any) -> list[SseEvent]:
    created = await relay.create(model, **fields)
    return await relay.events(created["id"])


# --- creating a session ------------------------------------------------------------


async def test_create_answers_201_with_the_session(relay_server: Relay) -> None:
    async with await relay_server.post_session({"model": FAST_MOCK, "messages": MESSAGES}) as r:
        assert r.status == 201
        created = await r.json()
        location = r.headers["Location"]
    assert SESSION_ID.fullmatch(created["id"])
    assert created["status"] == "running"
    assert created["events_url"] == f"/v1/sessions/{created['id']}/events"
    assert isinstance(created["token"], str)
    assert created["token"]
    assert location == f"/v1/sessions/{created['id']}"


async def test_session_ids_differ(relay_server: Relay) -> None:
    ids = {(await relay_server.create())["id"] for _ in range(5)}
    assert len(ids) == 5


# --- the event stream --------------------------------------------------------------


async def test_stream_wire_format(relay_server: Relay) -> None:
    created = await relay_server.create()
    response = await relay_server.open_events(
        created["id"], headers={"Accept-Encoding": "gzip, deflate"}
    )
    async with response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in response.headers
        reader = SseReader(response)
        events = await reader.read_all()
    assert reader.ended
    assert not reader.aborted
    assert reader.parser.first_line == "retry: 1000"
    assert reader.retry == 1000
    assert_well_formed(events)
    assert events[-1].event == "done"
    for event in events:
        data = event.json()
        assert isinstance(data, dict)
        assert event.lines == (f"id: {event.id}", f"event: {event.event}", f"data: {event.data}")
    assert {event.event for event in events} <= {"status", "delta", "usage", "done"}


async def test_stream_has_status_text_usage_then_done(relay_server: Relay) -> None:
    events = await finished_events(relay_server)
    assert events[0].event == "status"
    assert of_type(events, "delta")
    usage = of_type(events, "usage")[-1].json()
    done = events[-1].json()
    assert done["finish_reason"] == "stop"
    assert done["usage"] == usage


async def test_same_model_and_messages_give_the_same_text(relay_server: Relay) -> None:
    model = "mock:tokens=30,tps=0,ttft_ms=0,seed=7"
    first = delta_text(await finished_events(relay_server, model))
    second = delta_text(await finished_events(relay_server, model))
    other_seed = delta_text(await finished_events(relay_server, model.replace("7", "8")))
    assert first == second
    assert first != other_seed


async def test_mock_usage_counts_words(relay_server: Relay) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is  the weather\ttoday"},
        {"role": "user", "content": [{"type": "text", "text": "in Paris"}]},
    ]
    events = await finished_events(
        relay_server, "mock:tokens=25,tps=0,ttft_ms=0", messages=messages
    )
    text = delta_text(events)
    usage = events[-1].json()["usage"]
    assert len(text.split()) == 25
    assert usage == {"input_tokens": 9, "output_tokens": 25}


async def test_max_tokens_cuts_with_finish_reason_length(relay_server: Relay) -> None:
    events = await finished_events(relay_server, "mock:tokens=25,tps=0,ttft_ms=0", max_tokens=4)
    done = events[-1].json()
    assert len(delta_text(events).split()) == 4
    assert done["finish_reason"] == "length"
    assert done["usage"]["output_tokens"] == 4


async def test_max_tokens_above_tokens_does_not_cut(relay_server: Relay) -> None:
    events = await finished_events(relay_server, "mock:tokens=5,tps=0,ttft_ms=0", max_tokens=50)
    assert events[-1].json()["finish_reason"] == "stop"
    assert len(delta_text(events).split()) == 5


# --- snapshot ------------------------------------------------------------------


async def test_snapshot_folds_the_log(relay_server: Relay) -> None:
    created = await relay_server.create()
    events = await relay_server.events(created["id"])
    snapshot = await relay_server.snapshot(created["id"])
    assert set(snapshot) == SNAPSHOT_FIELDS
    assert snapshot["id"] == created["id"]
    assert snapshot["status"] == "completed"
    assert snapshot["model"] == FAST_MOCK
    assert snapshot["text"] == delta_text(events)
    assert snapshot["last_event_id"] == events[-1].int_id
    assert snapshot["finish_reason"] == "stop"
    assert snapshot["usage"] == of_type(events, "usage")[-1].json()
    assert snapshot["error"] is None
    created_at, updated_at = snapshot["created_at"], snapshot["updated_at"]
    assert RFC3339_UTC.fullmatch(created_at)
    assert RFC3339_UTC.fullmatch(updated_at)
    assert datetime.datetime.fromisoformat(created_at) <= datetime.datetime.fromisoformat(
        updated_at
    )


async def test_snapshot_of_a_running_session(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=5,tps=1,ttft_ms=5000")
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot["status"] == "running"
    assert snapshot["finish_reason"] is None
    assert snapshot["text"] == ""


async def test_generation_finishes_with_no_client_then_replays(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=40,tps=400,ttft_ms=0")
    snapshot = await relay_server.wait_until_ended(created["id"])
    assert snapshot["status"] == "completed"
    events = await relay_server.events(created["id"])
    assert_well_formed(events)
    assert events[-1].event == "done"
    assert delta_text(events) == snapshot["text"]
    assert len(snapshot["text"].split()) == 40
    assert events[-1].int_id == snapshot["last_event_id"]


# --- resume points ---------------------------------------------------------------


@pytest.fixture
async def finished(relay_server: Relay) -> tuple[str, list[SseEvent]]:
    """A completed session and its whole log."""
    created = await relay_server.create()
    return created["id"], await relay_server.events(created["id"])


async def status_of(relay: Relay, session_id: str, **kwargs: Any) -> tuple[int, str]:
    async with await relay.open_events(session_id, **kwargs) as response:
        return response.status, await response.text()


async def test_resume_at_the_terminal_event_is_204(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, events = finished
    last = events[-1].int_id
    for resume in (last, last + 1, last + 1000, 10**30):
        assert (await status_of(relay_server, session_id, last_event_id=str(resume)))[0] == 204
        params = {"last_event_id": str(resume)}
        assert (await status_of(relay_server, session_id, params=params))[0] == 204


async def test_resume_replays_exactly_the_suffix(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, events = finished
    keys = [event.key() for event in events]
    for after in range(len(events)):
        by_header = await relay_server.events(session_id, last_event_id=str(after))
        by_query = await relay_server.events(session_id, params={"last_event_id": str(after)})
        assert [event.key() for event in by_header] == keys[after:]
        assert [event.key() for event in by_query] == keys[after:]


async def test_resume_header_wins_over_query(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, events = finished
    resumed = await relay_server.events(
        session_id, last_event_id="2", params={"last_event_id": "0"}
    )
    assert resumed[0].int_id == 3
    status, _ = await status_of(
        relay_server,
        session_id,
        last_event_id=str(events[-1].int_id),
        params={"last_event_id": "1"},
    )
    assert status == 204


async def test_empty_header_counts_as_absent(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, _ = finished
    resumed = await relay_server.events(session_id, last_event_id="", params={"last_event_id": "3"})
    assert resumed[0].int_id == 4
    from_start = await relay_server.events(session_id, last_event_id="")
    assert from_start[0].int_id == 1


async def test_resume_id_with_surrounding_spaces(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, _ = finished
    by_header = await relay_server.events(session_id, last_event_id=" 3 ")
    by_query = await relay_server.events(session_id, params={"last_event_id": " 3 "})
    assert by_header[0].int_id == 4
    assert by_query[0].int_id == 4


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "0x10", "+3", "1e3", "3 4", "\uff13"])
async def test_invalid_resume_id_is_400(
    relay_server: Relay, finished: tuple[str, list[SseEvent]], bad: str
) -> None:
    session_id, _ = finished
    status, body = await status_of(relay_server, session_id, params={"last_event_id": bad})
    assert status == 400
    assert_error_body(body, None, "last_event_id")
    if bad.isascii():
        status, body = await status_of(relay_server, session_id, last_event_id=bad)
        assert status == 400
        assert_error_body(body, None, "Last-Event-ID")


async def test_resume_beyond_the_end_waits_for_later_events(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=20,tps=40,ttft_ms=500")
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot["status"] == "running"
    assert snapshot["last_event_id"] < 3
    events = await relay_server.events(created["id"], last_event_id="3")
    assert_well_formed(events, after=3)
    full = await relay_server.events(created["id"])
    assert [event.key() for event in events] == [event.key() for event in full[3:]]


@pytest.mark.parametrize("resume", [100_000, 2**64, 10**30])
async def test_resume_far_beyond_a_running_session_ends_with_it(
    relay_server: Relay, resume: int
) -> None:
    created = await relay_server.create("mock:tokens=5,tps=20,ttft_ms=0")
    async with relay_server.subscribe(created["id"], last_event_id=str(resume)) as reader:
        async with asyncio.timeout(3):  # the session itself ends within half a second
            assert await reader.read_all() == []
        assert reader.ended
    assert (await relay_server.snapshot(created["id"]))["status"] == "completed"


# Resume ids of thousands of digits: past Python's int-digit limit (4,300) they are still
# decimal digits, so an id beyond the end (CONTRACT.md); past aiohttp's limit on a header
# or request line (8,190 bytes) they never reach relay: its HTTP parser answers 400.
THOUSANDS_OF_DIGITS = pytest.mark.parametrize("digits", [4301, 8000])


@THOUSANDS_OF_DIGITS
async def test_a_resume_id_of_thousands_of_digits_after_the_end_is_204(
    relay_server: Relay, finished: tuple[str, list[SseEvent]], digits: int
) -> None:
    session_id, _ = finished
    resume = "9" * digits
    assert (await status_of(relay_server, session_id, last_event_id=resume))[0] == 204
    params = {"last_event_id": resume}
    assert (await status_of(relay_server, session_id, params=params))[0] == 204


@THOUSANDS_OF_DIGITS
async def test_a_resume_id_of_thousands_of_digits_waits_for_a_running_session(
    relay_server: Relay, digits: int
) -> None:
    created = await relay_server.create("mock:tokens=5,tps=20,ttft_ms=0")
    params = {"last_event_id": "1" + "0" * (digits - 1)}
    async with relay_server.subscribe(created["id"], params=params) as reader:
        async with asyncio.timeout(3):  # the session itself ends within half a second
            assert await reader.read_all() == []
        assert reader.ended
    assert (await relay_server.snapshot(created["id"]))["status"] == "completed"


async def test_a_resume_id_longer_than_a_request_line_is_refused_before_relay(
    relay_server: Relay, finished: tuple[str, list[SseEvent]]
) -> None:
    session_id, _ = finished
    resume = "9" * 10_000
    assert (await status_of(relay_server, session_id, last_event_id=resume))[0] == 400
    params = {"last_event_id": resume}
    assert (await status_of(relay_server, session_id, params=params))[0] == 400


async def test_heartbeat_comments_while_idle(start_relay: StartRelay) -> None:
    relay = await start_relay(server={"heartbeat_s": 0.2})
    created = await relay.create("mock:tokens=2,tps=1,ttft_ms=600")
    async with relay.subscribe(created["id"]) as reader:
        events = await reader.read_all()
    assert_well_formed(events)
    assert len(reader.comments) >= 2
    assert set(reader.comments) == {": ping"}


async def test_an_idle_stream_pings_first_early_by_its_session(start_relay: StartRelay) -> None:
    """Streams opened together must not ping together every heartbeat: the first
    `: ping` comes at the session's own point of the interval's second half."""
    heartbeat_s = 1.0
    relay = await start_relay(server={"heartbeat_s": heartbeat_s})
    created, first_s = await with_early_first_heartbeat(
        lambda: relay.create("mock:tokens=1,ttft_ms=60000"), heartbeat_s
    )
    async with await relay.open_events(created["id"]) as response:
        pinged_s = await seconds_to_first_ping(response)
    assert first_s - 0.05 <= pinged_s < 0.8 * heartbeat_s, (first_s, pinged_s)


# --- read tokens -----------------------------------------------------------------


async def test_read_token_in_the_query(relay_server: Relay) -> None:
    created = await relay_server.create()
    status, body = await status_of(relay_server, created["id"], params={"token": "rt_wrong"})
    assert status == 401  # was 403 before issue 11: a token that is not valid is a 401
    assert_error_body(body)
    events = await relay_server.events(created["id"], params={"token": created["token"]})
    assert_well_formed(events)


async def test_a_token_is_for_one_session(relay_server: Relay) -> None:
    first = await relay_server.create()
    second = await relay_server.create()
    status, _ = await status_of(relay_server, second["id"], params={"token": first["token"]})
    assert status == 401


# --- unknown sessions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/sessions/{UNKNOWN_SESSION}"),
        ("GET", f"/v1/sessions/{UNKNOWN_SESSION}/events"),
        ("DELETE", f"/v1/sessions/{UNKNOWN_SESSION}"),
        ("GET", "/v1/sessions/nonsense"),
    ],
)
async def test_unknown_session_is_404(relay_server: Relay, method: str, path: str) -> None:
    async with relay_server.http.request(method, relay_server.url(path)) as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        assert_error_body(await response.text(), "session_not_found")


# --- cancel ----------------------------------------------------------------------


async def delete(relay: Relay, session_id: str) -> int:
    async with relay.http.delete(relay.url(f"/v1/sessions/{session_id}")) as response:
        await response.read()
        return response.status


async def read_until(reader: SseReader, kind: str) -> SseEvent:
    async for event in reader:
        if event.event == kind:
            return event
    raise AssertionError(f"the stream ended without a {kind} event")


async def test_cancel_stops_a_long_generation_quickly(relay_server: Relay) -> None:
    """Quickly, counted in the upstream's tokens rather than in time (a loaded machine
    stretches any time): the DELETE comes while the upstream is silent between tokens
    (it hangs after `SPOKEN`), so a cancel that waited for its next token, or for the
    end of its 100,000, would never end the session. It ends at once: the DELETE's
    answer already finds it `cancelled` (relay waits up to `cancel_wait_s` for that),
    and the subscriber's next event is `cancelled`."""
    model = f"mock:tokens=100000,tps=50,ttft_ms=0,hang_after={SPOKEN}"
    created = await relay_server.create(model)
    async with relay_server.subscribe(created["id"]) as reader:
        before = await read_words(reader, SPOKEN)
        assert await delete(relay_server, created["id"]) == 202
        at_the_answer = await relay_server.snapshot(created["id"])
        assert at_the_answer["status"] == "cancelled", at_the_answer
        events = await reader.read_all()
    assert events[: len(before)] == before
    assert [event.event for event in events[len(before) :]] == ["cancelled"]
    cancelled = events[-1]
    assert cancelled.json() == {"reason": "client"}
    assert_well_formed(events)
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot == at_the_answer
    assert snapshot["text"] == delta_text(before)
    assert len(snapshot["text"].split()) == SPOKEN
    assert snapshot["last_event_id"] == cancelled.int_id
    assert snapshot["finish_reason"] is None


SPOKEN = 5  # the words the upstream says before it falls silent


async def read_words(reader: SseReader, count: int) -> list[SseEvent]:
    """The events read up to the one whose text makes `count` words."""
    async for _ in reader:
        if len(delta_text(reader.events).split()) >= count:
            return list(reader.events)
    raise AssertionError(f"the stream ended before {count} words: {reader.events}")


async def test_delete_is_idempotent(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=100000,tps=50,ttft_ms=0")
    assert await delete(relay_server, created["id"]) == 202
    assert await delete(relay_server, created["id"]) == 202
    ended = await relay_server.wait_until_ended(created["id"])
    assert await delete(relay_server, created["id"]) == 202
    events = await relay_server.events(created["id"])
    assert_well_formed(events)
    assert len(of_type(events, "cancelled")) == 1
    assert await relay_server.snapshot(created["id"]) == ended
    assert ended["status"] == "cancelled"


async def test_delete_after_completion_changes_nothing(relay_server: Relay) -> None:
    created = await relay_server.create()
    events = await relay_server.events(created["id"])
    before = await relay_server.snapshot(created["id"])
    assert await delete(relay_server, created["id"]) == 202
    after = await relay_server.snapshot(created["id"])
    assert after == before
    assert after["status"] == "completed"
    replay = await relay_server.events(created["id"])
    assert [event.key() for event in replay] == [event.key() for event in events]


async def test_cancel_before_the_first_token(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=10,tps=10,ttft_ms=5000")
    assert await delete(relay_server, created["id"]) == 202
    events = await relay_server.events(created["id"])
    assert_well_formed(events)
    assert events[-1].event == "cancelled"
    assert (await relay_server.snapshot(created["id"]))["text"] == ""


async def test_a_subscriber_leaving_does_not_stop_the_generation(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=30,tps=150,ttft_ms=0")
    async with relay_server.subscribe(created["id"]) as reader:
        await reader.read(2)
    snapshot = await relay_server.wait_until_ended(created["id"])
    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split()) == 30


@REDIS_ONLY
async def test_delete_on_another_instance(start_relay: StartRelay, store_url: str) -> None:
    owner = await start_relay()
    other = await start_relay()
    created = await owner.create("mock:tokens=100000,tps=50,ttft_ms=0")
    async with owner.subscribe(created["id"]) as reader:
        await read_until(reader, "delta")
        assert await delete(other, created["id"]) == 202
        cancelled = await read_until(reader, "cancelled")
        events = await reader.read_all()
    assert cancelled.json() == {"reason": "client"}
    assert_well_formed(events)
    assert (await other.snapshot(created["id"]))["status"] == "cancelled"


@REDIS_ONLY
async def test_a_store_outage_ends_open_streams(start_relay: StartRelay, store_url: str) -> None:
    """Once a stream has started, a store failure must end it (the client then resumes
    with Last-Event-ID), never leave it open and silent."""
    outage = RedisServer(require_redis_server())
    outage.start()
    try:
        relay = await start_relay(
            store={"url": outage.url},
            server={"heartbeat_s": 0.2},
            generation={"store_retry_s": 0.2},
        )
        created = await relay.create("mock:tokens=1000,tps=20,ttft_ms=0")
        async with relay.subscribe(created["id"]) as reader:
            await read_until(reader, "delta")
            outage.stop()
            async with asyncio.timeout(3):
                await reader.read_all()
        assert reader.ended
    finally:
        outage.close()


# --- upstream failures and tools ---------------------------------------------------


async def test_upstream_failure_is_an_error_event(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=20,tps=0,ttft_ms=0,fail_after=5")
    events = await relay_server.events(created["id"])
    assert_well_formed(events)
    error = events[-1]
    assert error.event == "error"
    data = error.json()
    assert set(data) == {"code", "message", "retryable"}
    assert data["code"] == "upstream_error"
    assert data["retryable"] is True
    assert len(delta_text(events).split()) == 5
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == data
    assert snapshot["text"] == delta_text(events)


async def test_a_silent_upstream_times_out(start_relay: StartRelay) -> None:
    relay = await start_relay(generation={"idle_timeout_s": 0.3})
    created = await relay.create("mock:tokens=20,tps=0,ttft_ms=0,hang_after=3")
    events = await relay.events(created["id"])
    assert_well_formed(events)
    assert events[-1].event == "error"
    assert events[-1].json()["code"] == "upstream_timeout"
    assert len(delta_text(events).split()) == 3
    snapshot = await relay.snapshot(created["id"])
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["code"] == "upstream_timeout"


async def test_tool_call(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=6,tps=0,ttft_ms=0,tools")
    events = await relay_server.events(created["id"])
    assert_well_formed(events)
    calls = of_type(events, "tool_call")
    assert len(calls) == 1
    call = calls[0].json()
    assert call["index"] == 0
    assert isinstance(call["id"], str)
    assert call["id"]
    assert isinstance(call["name"], str)
    assert call["name"]
    assert isinstance(json.loads(call["arguments"]), dict)
    assert events[-1].event == "done"
    assert events[-1].json()["finish_reason"] == "tool_calls"
    assert (await relay_server.snapshot(created["id"]))["finish_reason"] == "tool_calls"


# --- probes and the demo page ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes(relay_server: Relay, path: str) -> None:
    async with relay_server.http.get(relay_server.url(path)) as response:
        assert response.status == 200
        assert response.content_type == "application/json"


async def test_demo_page(relay_server: Relay) -> None:
    async with relay_server.http.get(relay_server.url("/")) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "<html" in (await response.text()).lower()


# --- bad input -------------------------------------------------------------------------

MAX_BODY_BYTES = 1024
GOOD = {"model": FAST_MOCK, "messages": MESSAGES}
JSON = {"Content-Type": "application/json"}


def body(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def without(name: str) -> bytes:
    return json.dumps({key: value for key, value in GOOD.items() if key != name}).encode()


def padded_to(size: int) -> bytes:
    """A valid body of exactly `size` bytes."""
    empty = body(metadata={"pad": ""})
    return body(metadata={"pad": "x" * (size - len(empty))})


async def chunked(data: bytes, size: int = 300) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# (id, body, content type, status, code, words the message must contain)
BAD_BODIES: list[tuple[str, bytes, str, int, str | None, tuple[str, ...]]] = [
    ("malformed", b'{"model": "mock",', "application/json", 400, "invalid_json", ("JSON",)),
    ("empty", b"", "application/json", 400, "invalid_json", ()),
    ("not-an-object", b"[1, 2]", "application/json", 400, None, ()),
    ("model-int", body(model=1), "application/json", 400, None, ("model",)),
    ("messages-str", body(messages="hi"), "application/json", 400, None, ("messages",)),
    ("max-tokens-str", body(max_tokens="x"), "application/json", 400, None, ("max_tokens",)),
    ("max-tokens-0", body(max_tokens=0), "application/json", 400, None, ("max_tokens",)),
    ("temperature", body(temperature=9), "application/json", 400, None, ("temperature",)),
    ("no-messages", without("messages"), "application/json", 400, None, ("messages",)),
    ("no-model", without("model"), "application/json", 400, None, ("model",)),
    ("empty-messages", body(messages=[]), "application/json", 400, None, ("messages",)),
    ("no-role", body(messages=[{"content": "x"}]), "application/json", 400, None, ("role",)),
    ("empty-model", body(model=""), "application/json", 400, None, ("model",)),
    ("unknown-model", body(model="gpt-x"), "application/json", 400, None, ("gpt-x", "mock")),
    ("bad-mock-option", body(model="mock:bogus=1"), "application/json", 400, None, ("bogus",)),
    ("bad-mock-value", body(model="mock:tokens=x"), "application/json", 400, None, ("tokens",)),
    ("mock-nan-ttft", body(model="mock:ttft_ms=nan"), "application/json", 400, None, ("ttft_ms",)),
    ("mock-inf-ttft", body(model="mock:ttft_ms=inf"), "application/json", 400, None, ("ttft_ms",)),
    ("mock-nan-tps", body(model="mock:tps=nan"), "application/json", 400, None, ("tps",)),
    ("unknown-field", body(frobnicate=1), "application/json", 400, None, ("frobnicate",)),
    ("too-large", padded_to(MAX_BODY_BYTES + 1), "application/json", 413, None, ()),
    ("text-plain", body(), "text/plain", 415, None, ("text/plain",)),
    ("octet-stream", body(), "application/octet-stream", 415, None, ()),
    ("form", b"model=mock", "application/x-www-form-urlencoded", 415, None, ()),
]


@pytest.fixture
async def strict_relay(start_relay: StartRelay) -> Relay:
    return await start_relay(server={"max_body_bytes": MAX_BODY_BYTES})


@contextlib.asynccontextmanager
async def bystander(relay: Relay) -> AsyncIterator[None]:
    """A session streaming while the block runs; afterwards it must be intact."""
    created = await relay.create("mock:tokens=40,tps=200,ttft_ms=0")
    subscriber = asyncio.create_task(relay.events(created["id"]))
    async with relay.subscribe(created["id"]) as reader:
        await read_until(reader, "delta")
    yield
    events = await subscriber
    assert_well_formed(events)
    assert events[-1].event == "done"
    snapshot = await relay.snapshot(created["id"])
    assert snapshot["status"] == "completed"
    assert snapshot["text"] == delta_text(events)
    assert len(snapshot["text"].split()) == 40


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code", "names"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_bad_request_bodies(
    strict_relay: Relay,
    data: bytes,
    content_type: str,
    status: int,
    code: str | None,
    names: tuple[str, ...],
) -> None:
    async with bystander(strict_relay):
        url = strict_relay.url("/v1/sessions")
        headers = {"Content-Type": content_type}
        async with strict_relay.http.post(url, data=data, headers=headers) as response:
            assert response.status == status
            assert response.content_type == "application/json"
            assert_error_body(await response.text(), code, *names)


async def test_a_chunked_body_over_the_limit_is_413(strict_relay: Relay) -> None:
    async with bystander(strict_relay):
        data = padded_to(MAX_BODY_BYTES * 4)
        url = strict_relay.url("/v1/sessions")
        async with strict_relay.http.post(url, data=chunked(data), headers=JSON) as response:
            assert response.status == 413
            assert_error_body(await response.text(), None, str(MAX_BODY_BYTES))


async def test_a_body_of_exactly_the_limit_is_accepted(strict_relay: Relay) -> None:
    data = padded_to(MAX_BODY_BYTES)
    assert len(data) == MAX_BODY_BYTES
    url = strict_relay.url("/v1/sessions")
    async with strict_relay.http.post(url, data=data, headers=JSON) as response:
        assert response.status == 201
    async with strict_relay.http.post(url, data=chunked(data), headers=JSON) as response:
        assert response.status == 201


async def test_deeply_nested_json_is_400(relay_server: Relay) -> None:
    """Nesting is the client's doing: a 400 that says so, not a 500."""
    nested = "[" * 5000 + "]" * 5000
    data = body(metadata={}).replace(b"{}", b'{"a": ' + nested.encode() + b"}")
    async with bystander(relay_server):
        url = relay_server.url("/v1/sessions")
        async with relay_server.http.post(url, data=data, headers=JSON) as response:
            assert response.status == 400
            assert_error_body(await response.text())


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/vnd.foo+json", "Application/JSON"],
)
async def test_json_content_types_are_accepted(relay_server: Relay, content_type: str) -> None:
    url = relay_server.url("/v1/sessions")
    headers = {"Content-Type": content_type}
    async with relay_server.http.post(url, data=body(), headers=headers) as response:
        assert response.status == 201, await response.text()


async def test_unknown_route_is_404_json(relay_server: Relay) -> None:
    url = relay_server.url("/v1/nothing")
    async with bystander(relay_server), relay_server.http.get(url) as response:
        assert response.status == 404
        assert_error_body(await response.text(), None, "/v1/nothing")


async def test_wrong_method_is_405_json_with_allow(relay_server: Relay) -> None:
    async with bystander(relay_server):
        url = relay_server.url("/v1/sessions")
        async with relay_server.http.put(url, data=body(), headers=JSON) as response:
            assert response.status == 405
            assert "POST" in response.headers["Allow"]
            assert_error_body(await response.text(), None, "PUT")
