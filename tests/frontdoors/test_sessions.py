"""The session lifecycle over HTTP, on both stores: how a generation ends when relay (not
the upstream) fails, what a cancel leaves behind (usage, the answer of DELETE), tool
calls in the snapshot, and cancels that cross instances."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import pytest

from relay.config import StoreSettings
from relay.errors import UpstreamError
from relay.events import EventType, StatusData, Usage, make_event
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta, ToolCall, UsageReport
from relay.session import SessionRecord, hash_token, new_session_id
from relay.store import open_store
from relay.vocabulary import GenerationRequest, session_tag
from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, Relay, StartRelay
from tests.frontdoors.test_native_api import (
    REDIS_ONLY,
    assert_well_formed,
    delete,
    of_type,
    read_until,
)
from tests.sse_client import SseReader

# The built-in mock stays routable beside `scripted`, the upstream whose provider a
# test injects.
UPSTREAMS = [
    {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]},
    {"name": "scripted", "kind": "mock", "models": ["scripted"]},
]
LONG_MOCK = "mock:tokens=100000,tps=50,ttft_ms=0"


class NotAnItem:
    """What no provider may yield: the generation task fails on it (a bug, not an outage)."""


class Scripted(Provider):
    """Yields its script in order, raising the exceptions in it where they stand; then
    holds the stream open (`hold`) until it is closed, or finishes."""

    def __init__(self, *script: object, hold: bool = False) -> None:
        self.script: Sequence[object] = script
        self.hold = hold

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        for item in self.script:
            if isinstance(item, Exception):
                raise item
            yield cast(ProviderItem, item)
            await asyncio.sleep(0)
        if self.hold:
            await asyncio.Future()  # until the generation is cancelled
        yield Finish("stop")


async def relay_with(start_relay: StartRelay, provider: Provider, **overrides: Any) -> Relay:
    return await start_relay(
        with_providers={"scripted": provider}, upstreams=UPSTREAMS, **overrides
    )


async def ended_with(relay: Relay, model: str = "scripted") -> tuple[list[Any], dict[str, Any]]:
    """A new session's events (their data, by type) and its final snapshot."""
    created = await relay.create(model, MESSAGES)
    events = await relay.events(created["id"])
    assert_well_formed(events)
    snapshot = await relay.wait_until_ended(created["id"])
    return [(event.event, event.json()) for event in events], snapshot


def bug_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """relay's log records with a traceback (asyncio's reports of other tests' leftover
    tasks, collected by the garbage collector meanwhile, are not relay's)."""
    return [
        record
        for record in caplog.records
        if record.exc_info is not None and record.name.startswith("relay")
    ]


# --- relay's own failures are not upstream errors -----------------------------------


@pytest.mark.parametrize(
    "script",
    [
        pytest.param((KeyError("choices"),), id="before-the-first-item"),
        pytest.param(
            (TextDelta("some"), TextDelta(" words"), KeyError("choices")), id="mid-stream"
        ),
        pytest.param((NotAnItem(),), id="in-the-generation-task"),
    ],
)
async def test_a_bug_ends_the_session_with_internal_error(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture, script: tuple[object, ...]
) -> None:
    caplog.set_level(logging.ERROR)
    relay = await relay_with(start_relay, Scripted(*script))
    events, snapshot = await ended_with(relay)
    kind, error = events[-1]
    assert kind == "error"
    assert error == {
        "code": "internal_error",
        "message": "relay failed while generating",
        "retryable": False,
    }
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == error
    expected_text = "".join(s.text for s in script if isinstance(s, TextDelta))
    assert snapshot["text"] == expected_text
    [report] = bug_reports(caplog)  # logged once, with its traceback, on the server
    assert session_tag(snapshot["id"]) in report.getMessage()  # by its tag, not its id
    assert snapshot["id"] not in report.getMessage()


async def test_an_upstream_error_keeps_its_own_code(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    failure = UpstreamError("rate_limited", "slow down", retryable=True, status=429)
    relay = await relay_with(start_relay, Scripted(TextDelta("some"), failure))
    events, snapshot = await ended_with(relay)
    assert events[-1] == (
        "error",
        {"code": "rate_limited", "message": "slow down", "retryable": True, "upstream_status": 429},
    )
    assert snapshot["status"] == "failed"
    assert bug_reports(caplog) == []


# --- what a cancelled session keeps ---------------------------------------------------


async def test_a_mock_cancelled_mid_stream_reports_no_usage_it_never_had(
    relay_server: Relay,
) -> None:
    """The mock reports usage at its end only: cancelled before, nothing is invented."""
    created = await relay_server.create("mock:tokens=200,tps=50,ttft_ms=0")
    async with relay_server.subscribe(created["id"]) as reader:
        await read_until(reader, "delta")
        assert await delete(relay_server, created["id"]) == 202
        cancelled = await read_until(reader, "cancelled")
    assert cancelled.json() == {"reason": "client"}
    snapshot = await relay_server.snapshot(created["id"])
    assert snapshot["status"] == "cancelled"
    assert snapshot["usage"] is None
    assert snapshot["text"]


async def test_a_cancelled_session_keeps_the_usage_it_had(start_relay: StartRelay) -> None:
    provider = Scripted(UsageReport(7, 1), TextDelta("first"), UsageReport(7, 2), hold=True)
    relay = await relay_with(start_relay, provider)
    created = await relay.create("scripted", MESSAGES)
    async with relay.subscribe(created["id"]) as reader:
        await read_until(reader, "delta")
        await read_until(reader, "usage")
        assert await delete(relay, created["id"]) == 202
        cancelled = await read_until(reader, "cancelled")
    usage = {"input_tokens": 7, "output_tokens": 2}
    assert cancelled.json() == {"reason": "client", "usage": usage}
    snapshot = await relay.snapshot(created["id"])
    assert snapshot["status"] == "cancelled"
    assert snapshot["usage"] == usage
    assert snapshot["finish_reason"] is None
    assert snapshot["text"] == "first"


async def test_a_session_whose_generator_is_gone_keeps_its_usage_when_cancelled(
    start_relay: StartRelay, store_url: str
) -> None:
    """No instance answers the cancel: relay ends the log itself; the usage stays."""
    store = open_store(StoreSettings(url=store_url))
    relay = await start_relay(with_store=store)
    record = await orphan_session(store, Usage(5, 3))
    started = time.monotonic()
    assert await delete_answer(relay, record.id) == {"id": record.id, "status": "cancelled"}
    assert time.monotonic() - started < 3
    events = await relay.events(record.id)
    assert_well_formed(events)
    assert events[-1].event == "cancelled"
    assert events[-1].json() == {"reason": "client"}
    snapshot = await relay.snapshot(record.id)
    assert snapshot["status"] == "cancelled"
    assert snapshot["usage"] == {"input_tokens": 5, "output_tokens": 3}


async def orphan_session(store: Any, usage: Usage) -> SessionRecord:
    """A running session whose generator died without a word (as if its instance was
    killed), its usage reported."""
    now = time.time()
    record = SessionRecord(new_session_id(), "mock", now, now, hash_token("t"), owner="i_gone")
    await store.create(record)
    status = make_event(1, EventType.STATUS, StatusData("generating"))
    await store.append(record.id, [status, make_event(2, EventType.USAGE, usage)])
    return record


# --- what DELETE answers ----------------------------------------------------------------


async def delete_answer(relay: Relay, session_id: str) -> dict[str, Any]:
    async with relay.http.delete(relay.url(f"/v1/sessions/{session_id}")) as response:
        assert response.status == 202, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


@pytest.mark.parametrize(
    ("model", "status"),
    [(FAST_MOCK, "completed"), ("mock:tokens=20,tps=0,ttft_ms=0,fail_after=3", "failed")],
)
async def test_delete_on_an_ended_session_answers_its_status(
    relay_server: Relay, model: str, status: str
) -> None:
    created = await relay_server.create(model)
    before = await relay_server.wait_until_ended(created["id"])
    assert await delete_answer(relay_server, created["id"]) == {
        "id": created["id"],
        "status": status,
    }
    assert await relay_server.snapshot(created["id"]) == before


async def test_delete_on_a_running_session_answers_cancelled_once_it_is(
    relay_server: Relay,
) -> None:
    created = await relay_server.create(LONG_MOCK)
    answer = await delete_answer(relay_server, created["id"])
    assert answer == {"id": created["id"], "status": "cancelled"}
    assert (await relay_server.snapshot(created["id"]))["status"] == "cancelled"
    again = await delete_answer(relay_server, created["id"])
    assert again == {"id": created["id"], "status": "cancelled"}
    events = await relay_server.events(created["id"])
    assert len(of_type(events, "cancelled")) == 1


# --- tool calls in the snapshot ---------------------------------------------------------


async def test_the_snapshot_lists_the_tool_calls_in_order(start_relay: StartRelay) -> None:
    calls = [
        ToolCall(0, "call_a", "search", '{"query": "rain"}'),
        ToolCall(1, "call_b", "weather", '{"city": "Oslo"}'),
    ]
    relay = await relay_with(start_relay, Scripted(TextDelta("looking"), *calls))
    events, snapshot = await ended_with(relay)
    tool_call_events = [data for kind, data in events if kind == "tool_call"]
    assert snapshot["tool_calls"] == tool_call_events
    assert snapshot["tool_calls"] == [
        {"index": 0, "id": "call_a", "name": "search", "arguments": '{"query": "rain"}'},
        {"index": 1, "id": "call_b", "name": "weather", "arguments": '{"city": "Oslo"}'},
    ]


async def test_the_snapshot_of_a_mock_tool_call(relay_server: Relay) -> None:
    events, snapshot = await ended_with(relay_server, "mock:tokens=5,tps=0,ttft_ms=0,tools")
    assert snapshot["tool_calls"] == [data for kind, data in events if kind == "tool_call"]
    assert len(snapshot["tool_calls"]) == 1
    assert (await relay_server.snapshot(snapshot["id"]))["finish_reason"] == "tool_calls"


async def test_a_session_without_tool_calls_has_an_empty_list(relay_server: Relay) -> None:
    _, snapshot = await ended_with(relay_server, FAST_MOCK)
    assert snapshot["tool_calls"] == []


# --- cancels that cross instances -------------------------------------------------------


@REDIS_ONLY
async def test_a_cancel_on_another_instance_is_written_by_the_generating_one(
    start_relay: StartRelay, store_url: str
) -> None:
    provider = Scripted(UsageReport(4, 1), TextDelta("first"), hold=True)
    owner = await relay_with(start_relay, provider)
    other = await relay_with(start_relay, Scripted())
    created = await owner.create("scripted", MESSAGES)
    async with owner.subscribe(created["id"]) as reader:
        await read_until(reader, "delta")
        answer = await delete_answer(other, created["id"])
        cancelled = await read_until(reader, "cancelled")
        rest = await reader.read_all()
    assert answer == {"id": created["id"], "status": "cancelled"}
    # Only the generating instance knows the usage, so it wrote `cancelled`.
    assert cancelled.json() == {
        "reason": "client",
        "usage": {"input_tokens": 4, "output_tokens": 1},
    }
    assert rest[-1] is cancelled
    assert_well_formed(rest)
    for relay in (owner, other):
        assert (await relay.snapshot(created["id"]))["usage"] == {
            "input_tokens": 4,
            "output_tokens": 1,
        }


@REDIS_ONLY
async def test_a_cancel_on_another_instance_of_an_ended_session_changes_nothing(
    start_relay: StartRelay, store_url: str
) -> None:
    owner = await start_relay()
    other = await start_relay()
    created = await owner.create(FAST_MOCK)
    before = await owner.wait_until_ended(created["id"])
    assert await delete_answer(other, created["id"]) == {"id": created["id"], "status": "completed"}
    assert await owner.snapshot(created["id"]) == before


@pytest.mark.parametrize(
    ("failure", "error_type", "code"),
    [
        pytest.param(KeyError("choices"), "server_error", "internal_error", id="relay-bug"),
        pytest.param(
            UpstreamError("upstream_error", "the upstream broke", retryable=True),
            "upstream_error",
            "upstream_error",
            id="upstream-failure",
        ),
    ],
)
async def test_a_chat_stream_tells_relays_failures_from_the_upstreams(
    start_relay: StartRelay, failure: Exception, error_type: str, code: str
) -> None:
    relay = await relay_with(start_relay, Scripted(TextDelta("some"), failure))
    body = {"model": "scripted", "messages": MESSAGES, "stream": True}
    async with relay.http.post(relay.url("/v1/chat/completions"), json=body) as response:
        assert response.status == 200
        reader = SseReader(response)
        events = await reader.read_all()
    assert not reader.aborted
    last = json.loads(events[-1].data)
    assert last["error"]["type"] == error_type
    assert last["error"]["code"] == code
