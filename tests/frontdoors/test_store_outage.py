"""A Redis restart in the middle of a generation, over real sockets: the generation
rides it out (appends are retried for `store_retry_s`), and a subscriber keeps its
connection and receives every event, in order, once Redis is back. A frozen Redis
(SIGSTOP) gets quick answers: `/readyz` within a second, naming no address, and a new
session a 503 within seconds."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.frontdoors.conftest import MESSAGES, Relay, StartRelay
from tests.redis_server import RedisServer, require_redis_server

pytestmark = pytest.mark.parametrize("store_url", ["redis"], indirect=True)


class DurableRedisServer(RedisServer):
    """Persists every acknowledged write (AOF, fsync always), as production Redis does,
    so a restart on the same port and directory comes back with the data."""

    def _command(self) -> list[str]:
        command = super()._command()
        at = command.index("--appendonly")
        return command[:at] + ["--appendonly", "yes", "--appendfsync", "always"]


async def test_a_redis_restart_mid_generation_loses_nothing(start_relay: StartRelay) -> None:
    redis = DurableRedisServer(require_redis_server())
    redis.start()
    try:
        relay = await start_relay(
            store={"url": redis.url},
            server={"heartbeat_s": 0.2},
            generation={"store_retry_s": 15},
        )
        created = await relay.create("mock:tokens=150,tps=50,ttft_ms=0")
        async with relay.subscribe(created["id"]) as reader:
            while sum(e.event == "delta" for e in await reader.read(1)) == 0:
                pass
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(1.0)  # the mock keeps generating; relay buffers and retries
            await asyncio.to_thread(redis.start)
            async with asyncio.timeout(20):
                events = await reader.read_all()
            assert not reader.aborted  # one connection throughout: the outage was ridden out
        snapshot = await relay.wait_until_ended(created["id"])
    finally:
        redis.close()
    ids = [int(event.id) for event in events if event.id]
    assert ids == list(range(1, len(ids) + 1))  # every event, in order, once
    assert events[-1].event == "done"
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")
    assert text == snapshot["text"]
    assert len(text.split(" ")) == 150
    assert snapshot["status"] == "completed"


async def test_an_outage_longer_than_store_retry_fails_the_session_clearly(
    start_relay: StartRelay,
) -> None:
    redis = DurableRedisServer(require_redis_server())
    redis.start()
    try:
        relay = await start_relay(
            store={"url": redis.url, "lease_ttl_s": 1.0},
            generation={"store_retry_s": 0.5},
        )
        created = await relay.create("mock:tokens=1000,tps=50,ttft_ms=0")
        async with relay.subscribe(created["id"]) as reader:
            while sum(e.event == "delta" for e in await reader.read(1)) == 0:
                pass
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(2.0)  # longer than store_retry_s: the generation is abandoned
        await asyncio.to_thread(redis.start)
        async with asyncio.timeout(10):
            snapshot = await relay.wait_until_ended(created["id"])
        events = await relay.events(created["id"])
    finally:
        redis.close()
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["code"] == "generation_lost"
    assert snapshot["error"]["retryable"] is True
    ids = [int(event.id) for event in events if event.id]
    assert ids == list(range(1, len(ids) + 1))  # what was acknowledged is all there, in order
    assert events[-1].event == "error"


async def readiness(relay: Relay) -> tuple[int, str, float]:
    """`/readyz`'s status and body, and how long it took to answer."""
    started = time.monotonic()
    async with relay.http.get(relay.url("/readyz")) as response:
        return response.status, await response.text(), time.monotonic() - started


async def test_a_frozen_redis_is_answered_quickly_and_names_no_address(
    start_relay: StartRelay,
) -> None:
    redis = RedisServer(require_redis_server())
    redis.start()
    try:
        relay = await start_relay(store={"url": redis.url})
        assert (await readiness(relay))[0] == 200
        redis.freeze()
        try:
            frozen_status, frozen_body, ready_s = await readiness(relay)
            started = time.monotonic()
            async with await relay.post_session({"model": "mock", "messages": MESSAGES}) as created:
                create_s = time.monotonic() - started
                create_status, error = created.status, (await created.json())["error"]
        finally:
            redis.thaw()
        async with asyncio.timeout(10):
            while (await readiness(relay))[0] != 200:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(redis.stop)
        stopped_status, stopped_body, _ = await readiness(relay)
    finally:
        redis.close()
    assert frozen_status == 503 and ready_s < 1.0
    assert json.loads(frozen_body) == {
        "status": "store_unavailable",
        "message": "the event store did not answer within 0.5 s",
    }
    assert stopped_status == 503
    assert json.loads(stopped_body)["message"] == "the event store is unreachable"
    for body in (frozen_body, stopped_body):
        assert str(redis.port) not in body and "127.0.0.1" not in body
    assert create_status == 503 and error["code"] == "store_unavailable"
    assert create_s < 3.0  # one socket timeout (2 s), not three of 5 s
