"""The resume property: however often a client drops and comes back, it reads the log once.

For random disconnect points (1-3 per run, after random numbers of events, with a random
pause before reconnecting), the events read before each disconnect plus those read after
resuming from the last id seen are exactly the events of an uninterrupted subscriber:
ids consecutive across reconnects, nothing duplicated, nothing missing, and the text
equals the snapshot's.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frontdoors.conftest import Relay, StartRelay
from tests.sse_client import SseEvent

# Long enough to span several reconnects, short enough for 15 examples per store.
MODEL = "mock:tokens=60,tps=600,ttft_ms=20"

Via = Literal["header", "query"]

cut_points = st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=3)
pauses_ms = st.lists(st.integers(min_value=0, max_value=40), min_size=3, max_size=3)

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Needs a store that several instances share, and that can go away.
REDIS_ONLY = pytest.mark.parametrize("store_url", ["redis"], indirect=True)


def delta_text(events: list[SseEvent]) -> str:
    return "".join(event.json()["text"] for event in events if event.event == "delta")


def resume_kwargs(via: Via, last_id: int) -> dict[str, object]:
    if via == "header":
        return {"last_event_id": str(last_id)}
    return {"params": {"last_event_id": str(last_id)}}


async def read_with_disconnects(
    relay: Relay, session_id: str, cuts: list[int], pauses: list[int], via: Via
) -> list[SseEvent]:
    """Read the whole log, dropping the connection after `cuts[i]` events each time."""
    received: list[SseEvent] = []
    for cut, pause_ms in zip(cuts, pauses, strict=False):
        kwargs = resume_kwargs(via, received[-1].int_id) if received else {}
        async with relay.subscribe(session_id, **kwargs) as reader:
            received += await reader.read(cut)
        if received and received[-1].is_terminal:
            return received
        await asyncio.sleep(pause_ms / 1000)
    async with relay.subscribe(session_id, **resume_kwargs(via, received[-1].int_id)) as reader:
        return received + await reader.read_all()


async def check_resume_property(relay: Relay, cuts: list[int], pauses: list[int], via: Via) -> None:
    created = await relay.create(MODEL)
    session_id = created["id"]
    uninterrupted = asyncio.create_task(relay.events(session_id))
    received = await read_with_disconnects(relay, session_id, cuts, pauses, via)
    reference = await uninterrupted

    ids = [event.int_id for event in received]
    assert ids == list(range(1, len(received) + 1))
    assert [event.key() for event in received] == [event.key() for event in reference]
    assert [event.is_terminal for event in received].count(True) == 1
    assert received[-1].event == "done"
    snapshot = await relay.snapshot(session_id)
    assert delta_text(received) == snapshot["text"] == delta_text(reference)
    assert snapshot["last_event_id"] == received[-1].int_id

    # The client now has the terminal event: coming back once more is a 204.
    async with await relay.open_events(session_id, **resume_kwargs(via, ids[-1])) as response:
        assert response.status == 204


@PROPERTY
@given(cuts=cut_points, pauses=pauses_ms)
async def test_resume_by_last_event_id_header(
    relay_server: Relay, cuts: list[int], pauses: list[int]
) -> None:
    await check_resume_property(relay_server, cuts, pauses, "header")


@PROPERTY
@given(cuts=cut_points, pauses=pauses_ms)
async def test_resume_by_last_event_id_query(
    relay_server: Relay, cuts: list[int], pauses: list[int]
) -> None:
    await check_resume_property(relay_server, cuts, pauses, "query")


async def test_resume_after_every_event(relay_server: Relay) -> None:
    """The extreme case: one event per connection, reconnecting at once."""
    created = await relay_server.create(MODEL)
    received: list[SseEvent] = []
    while not received or not received[-1].is_terminal:
        kwargs = resume_kwargs("header", received[-1].int_id) if received else {}
        async with relay_server.subscribe(created["id"], **kwargs) as reader:
            received += await reader.read(1)
    assert [event.int_id for event in received] == list(range(1, len(received) + 1))
    reference = await relay_server.events(created["id"])
    assert [event.key() for event in received] == [event.key() for event in reference]


async def test_a_stream_open_at_shutdown_gets_the_cancelled_event(start_relay: StartRelay) -> None:
    """Shutdown cancels the generation (reason `shutdown`); a client following it reads
    that terminal event and then a cleanly ended response, as for any other ending."""
    relay = await start_relay()
    created = await relay.create("mock:tokens=100000,tps=50,ttft_ms=0")
    async with relay.subscribe(created["id"]) as reader:
        await reader.read(3)
        await relay.server.close()
        received = await reader.read_all()
    assert not reader.aborted, "the stream was cut instead of ended"
    assert [event.int_id for event in received] == list(range(1, len(received) + 1))
    assert received[-1].event == "cancelled"
    assert received[-1].json() == {"reason": "shutdown"}


@REDIS_ONLY
async def test_after_shutdown_a_client_resumes_on_another_instance(
    start_relay: StartRelay, store_url: str
) -> None:
    """A rolling deploy: however the draining instance ended the stream, the client
    resumes on another instance and reads the rest of the log, ending in `cancelled`."""
    draining = await start_relay()
    created = await draining.create("mock:tokens=100000,tps=50,ttft_ms=0")
    async with draining.subscribe(created["id"]) as reader:
        await reader.read(3)
        await draining.server.close()
        received = await reader.read_all()
    other = await start_relay()
    if received[-1].is_terminal:
        rest = []
    else:
        rest = await other.events(created["id"], last_event_id=str(received[-1].int_id))
    log = received + rest
    assert [event.int_id for event in log] == list(range(1, len(log) + 1))
    assert [event.is_terminal for event in log].count(True) == 1
    assert log[-1].event == "cancelled"
    assert log[-1].json() == {"reason": "shutdown"}
    snapshot = await other.snapshot(created["id"])
    assert snapshot["status"] == "cancelled"
    assert snapshot["text"] == delta_text(log)
