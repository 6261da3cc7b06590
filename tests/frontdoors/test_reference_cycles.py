"""What a request leaves behind is freed as its last reference goes, not by a full garbage
collection: relay's objects and the server's (a connection's handler, its request and
answer, a generation, a live feed) form no reference cycles. Garbage in cycles waits for
a full (gen2) collection, and that pause grows with every object in the process: with
10,000 idle subscribers open, 400-500 ms in which no stream moves (docs/performance.md,
round nine).

Over real sockets, on both stores: a subscriber that leaves a silent session, a session
cancelled, streams read to their end, and streams whose client leaves part way, in the
native API and in the HTTP wire formats (OpenAI, Anthropic, the UI message stream).

Not WebSocket: aiohttp itself leaves each closed WebSocket with a heartbeat in a cycle
(its connection handler keeps the socket's `_on_data_received` as its data callback, the
socket refers to its request, the request to the handler), which relay cannot break
without reaching into aiohttp's private state.
"""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


async def test_the_wire_formats_leave_no_reference_cycles(
    relay_server: Relay, garbage_in_cycles: Callable[[], list[object]]
) -> None:
    messages = [{"role": "user", "content": "hello"}]
    chat = {"model": FAST_MOCK, "messages": messages, "stream": True}
    anthropic = {**chat, "max_tokens": 50}
    ui_chat = {
        "model": FAST_MOCK,
        "id": "chat-1",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "trigger": "submit-message",
        "messageId": None,
    }
    for path, body, last in (
        ("/v1/chat/completions", chat, b"data: [DONE]"),
        ("/v1/messages", anthropic, b"message_stop"),
        ("/v1/ui/chat", ui_chat, b"data: [DONE]"),
    ):
        assert last in (await read_to_end(relay_server, path, body))[-200:]
        await leave_part_way(relay_server, path, {**body, "model": SLOW_MOCK})

    await asyncio.sleep(0.3)  # the handlers of the streams that were left have ended

    left = garbage_in_cycles()
    kinds = collections.Counter(type(thing).__qualname__ for thing in left)
    assert not left, f"in reference cycles: {kinds.most_common(12)}"


async def read_to_end(relay_server: Relay, path: str, body: dict[str, Any]) -> bytes:
    async with relay_server.http.post(relay_server.url(path), json=body) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.read()


async def leave_part_way(relay_server: Relay, path: str, body: dict[str, Any]) -> None:
    async with relay_server.http.post(relay_server.url(path), json=body) as answer:
        assert answer.status == 200, await answer.text()
        await answer.content.readany()  # the first bytes; then the client leaves
        answer.close()
