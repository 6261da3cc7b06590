"""Instances failing under real processes and a real Redis: a killed or frozen generator,
and a cancel that arrives at another instance."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp

from tests.scaleout.conftest import LEASE_TTL_S, Deployment, Instance
from tests.sse_client import SseEvent, SseParser

LONG = {
    "model": "mock:tokens=100000,tps=20,ttft_ms=0",
    "messages": [{"role": "user", "content": "hi"}],
}
MARGIN_S = 2.0  # the reaper runs every lease_ttl / 4; plus process and network time


async def create_on(http: aiohttp.ClientSession, instance: Instance) -> str:
    async with http.post(instance.url + "/v1/sessions", json=LONG) as response:
        assert response.status == 201
        return str((await response.json())["id"])


async def follow_until_end(
    http: aiohttp.ClientSession, instance: Instance, session_id: str, started: asyncio.Event
) -> tuple[list[SseEvent], float]:
    """Every event of the session as seen through `instance`, and when the last arrived."""
    async with http.get(f"{instance.url}/v1/sessions/{session_id}/events") as stream:
        parser, events = SseParser(), []
        async for chunk in stream.content.iter_any():
            events += parser.feed(chunk)
            if any(e.event == "delta" for e in events):
                started.set()
        return events, time.monotonic()


def others(deployment: Deployment, instance: Instance) -> list[Instance]:
    return [i for i in deployment.instances.values() if i is not instance]


def assert_one_terminal(events: list[SseEvent], kind: str) -> dict[str, object]:
    ids = [int(e.id) for e in events if e.id]
    assert ids == list(range(1, len(ids) + 1))
    terminals = [e for e in events if e.event in ("done", "error", "cancelled")]
    assert [e.event for e in terminals] == [kind] and terminals[0] is events[-1]
    data: dict[str, object] = json.loads(terminals[0].data)
    return data


async def test_a_killed_generator_ends_its_sessions_with_generation_lost(
    deployment: Deployment,
) -> None:
    generator, *survivors = deployment.instances.values()
    async with aiohttp.ClientSession() as http:
        session_id = await create_on(http, generator)
        started = [asyncio.Event() for _ in range(4)]
        watchers = [
            asyncio.create_task(follow_until_end(http, survivors[n % 2], session_id, started[n]))
            for n in range(4)
        ]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 10)
        generator.kill()  # kill -9
        killed_at = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*watchers), LEASE_TTL_S + 10)
    for events, ended_at in results:
        data = assert_one_terminal(events, "error")
        assert data["code"] == "generation_lost" and data["retryable"] is True
        assert ended_at - killed_at <= LEASE_TTL_S + MARGIN_S
    assert len({tuple(e.id for e in events) for events, _ in results}) == 1  # all saw the same


async def test_a_generator_that_comes_back_cannot_write_after_the_end(
    deployment: Deployment,
) -> None:
    generator, reader, _ = deployment.instances.values()
    async with aiohttp.ClientSession() as http:
        session_id = await create_on(http, generator)
        started = asyncio.Event()
        watcher = asyncio.create_task(follow_until_end(http, reader, session_id, started))
        await asyncio.wait_for(started.wait(), 10)
        generator.send_signal(signal.SIGSTOP)  # frozen: it stops renewing its lease
        try:
            events, _ = await asyncio.wait_for(watcher, LEASE_TTL_S + 10)
        finally:
            generator.send_signal(signal.SIGCONT)  # back, with text it wants to append
        await asyncio.sleep(1.0)
        async with http.get(f"{reader.url}/v1/sessions/{session_id}") as response:
            snapshot = await response.json()
        async with http.get(f"{reader.url}/v1/sessions/{session_id}/events") as replay:
            log = SseParser().feed(await replay.read())
    assert_one_terminal(events, "error")
    assert_one_terminal(log, "error")  # the old owner's appends were fenced off
    assert snapshot["status"] == "failed" and snapshot["last_event_id"] == int(log[-1].id or 0)


async def test_a_cancel_sent_to_another_instance_stops_the_generator(
    deployment: Deployment,
) -> None:
    generator, reader, canceller = deployment.instances.values()
    async with aiohttp.ClientSession() as http:
        session_id = await create_on(http, generator)
        started = asyncio.Event()
        watcher = asyncio.create_task(follow_until_end(http, reader, session_id, started))
        await asyncio.wait_for(started.wait(), 10)
        sent_at = time.monotonic()
        async with http.delete(f"{canceller.url}/v1/sessions/{session_id}") as response:
            assert response.status == 202
        events, ended_at = await asyncio.wait_for(watcher, 5)
    data = assert_one_terminal(events, "cancelled")
    assert data == {"reason": "client"}
    assert ended_at - sent_at < 0.1  # the generator itself cancelled, at once
