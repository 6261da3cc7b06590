"""Three relay processes behind nginx round-robin: a client keeps its stream when the
instance serving its connection is killed -9."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.scaleout.conftest import Deployment
from tests.sse_client import SseEvent, SseParser

MODEL = "mock:tokens=300,tps=100,ttft_ms=0"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about rivers."}]}


async def open_stream_elsewhere(
    http: aiohttp.ClientSession, url: str, avoid: str
) -> aiohttp.ClientResponse:
    """An SSE response through nginx from an instance other than `avoid`."""
    for _ in range(10):
        response = await http.get(url)
        if response.headers["X-Relay-Instance"] != avoid:
            return response
        response.close()
    raise AssertionError("round robin never left the generating instance")


def delta_text(events: list[SseEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")


async def test_a_stream_survives_its_instance_being_killed(deployment: Deployment) -> None:
    base = deployment.balancer
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.post(base + "/v1/sessions", json=BODY) as response:
            assert response.status == 201
            generator = response.headers["X-Relay-Instance"]
            session_id = (await response.json())["id"]
        events_url = f"{base}/v1/sessions/{session_id}/events"
        stream = await open_stream_elsewhere(http, events_url, avoid=generator)
        serving = deployment.instances[stream.headers["X-Relay-Instance"]]
        parser, before = SseParser(), []
        while len([e for e in before if e.event == "delta"]) < 5:
            before += parser.feed(await stream.content.readany())
        serving.kill()  # kill -9 the instance holding this client's connection
        stream.close()
        last_id = [e.id for e in before if e.id][-1]
        async with (
            asyncio.timeout(30),
            http.get(events_url, headers={"Last-Event-ID": last_id}) as rest,
        ):
            assert rest.status == 200
            assert rest.headers["X-Relay-Instance"] != serving.id
            after = SseParser().feed(await rest.read())
        async with http.get(f"{base}/v1/sessions/{session_id}") as response:
            snapshot = await response.json()
    events = [e for e in before if e.id] + [e for e in after if e.id]
    assert [int(e.id) for e in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    assert events[-1].event == "done"
    assert delta_text(events) == snapshot["text"]
    assert len(snapshot["text"].split(" ")) == 300
