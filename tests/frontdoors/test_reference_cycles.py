"""What a request leaves behind is freed as its last reference goes, not by a full garbage
collection: relay's objects and the server's (a connection's handler, its request and
answer, a generation, a live feed) form no reference cycles. Garbage in cycles waits for
a full (gen2) collection, and that pause grows with every object in the process: with
10,000 idle subscribers open, 400-500 ms in which no stream moves (docs/performance.md,
round nine).

Over real sockets, on both stores: a subscriber that leaves a silent session, a session
cancelled, streams read to their end, and a stream whose client leaves part way.
"""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import relay
from tests.frontdoors.conftest import FAST_MOCK, Relay

RELAY_SOURCE = str(Path(relay.__file__).parent)
SERVER_MODULES = ("relay.", "aiohttp.web", "aiohttp.http_writer", "aiohttp._http_parser")
SILENT_MOCK = "mock:tokens=1,ttft_ms=3600000"  # its first token is an hour away
SLOW_MOCK = "mock:tokens=200,tps=50,ttft_ms=0"


def is_servers(thing: object) -> bool:
    """Relay's or aiohttp's server side (not the test's client), or a frame of relay's."""
    code = getattr(thing, "f_code", None)
    if code is not None:
        return str(code.co_filename).startswith(RELAY_SOURCE)
    return type(thing).__module__.startswith(SERVER_MODULES)


@pytest.fixture
def garbage_in_cycles() -> Iterator[Callable[[], list[object]]]:
    """What a full collection would find unreachable of the server's objects made from
    now on (with collections off meanwhile, so that none frees it before it is looked
    at). Objects made before are left out: an earlier test's app, say, let go now."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    before = {id(thing) for thing in gc.get_objects()}

    def found() -> list[object]:
        gc.collect()
        return [t for t in gc.garbage if id(t) not in before and is_servers(t)]

    try:
        yield found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_requests_and_sessions_leave_no_reference_cycles(
    relay_server: Relay, garbage_in_cycles: Callable[[], list[object]]
) -> None:
    silent = await relay_server.create(SILENT_MOCK)
    async with relay_server.subscribe(silent["id"]) as reader:
        await reader.next_event()  # following it; then the client leaves
    await cancel(relay_server, silent["id"])

    for _ in range(3):
        ended = await relay_server.create(FAST_MOCK)
        assert (await relay_server.events(ended["id"]))[-1].event == "done"

    slow = await relay_server.create(SLOW_MOCK)
    async with relay_server.subscribe(slow["id"]) as reader:
        for _ in range(3):
            await reader.next_event()  # part way, on its live feed; then it leaves
    await cancel(relay_server, slow["id"])
    await asyncio.sleep(0.2)  # the handlers of the streams that were left have ended

    left = garbage_in_cycles()
    kinds = collections.Counter(type(thing).__qualname__ for thing in left)
    assert not left, f"in reference cycles: {kinds.most_common(12)}"


async def cancel(relay_server: Relay, session_id: str) -> None:
    async with relay_server.http.delete(relay_server.url(f"/v1/sessions/{session_id}")) as answer:
        assert answer.status == 202
    await relay_server.wait_until_ended(session_id)
