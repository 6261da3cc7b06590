"""`relay serve --workers N`: N processes on one port sharing a Redis store."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.relay_process import relay_process

WORKERS = 2


async def instances_seen(base: str, connections: int) -> set[str]:
    """Which instances answered `connections` fresh connections."""
    seen = set()
    for _ in range(connections):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get(base + "/healthz") as response,
        ):
            seen.add((await response.json())["instance"])
    return seen


async def test_workers_share_the_port_and_the_sessions(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f'[store]\nurl = "{redis_url}"\n')
    base = f"http://127.0.0.1:{port}"
    args = ("--workers", str(WORKERS))
    log_path = tmp_path / "relay.log"
    async with relay_process(config, port, log_path, *args) as supervisor:
        # Each worker logs its ready line once it accepts; the first one answering /healthz
        # says nothing of the others.
        async with asyncio.timeout(20):
            while log_path.read_text().count(" ready on ") < WORKERS:
                await asyncio.sleep(0.05)
        # The kernel spreads new connections over the workers (SO_REUSEPORT); 2^-39 odds
        # that 40 connections all reach one of two.
        assert len(await instances_seen(base, 40)) == WORKERS
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            body = {
                "model": "mock:tokens=20,tps=0,ttft_ms=0",
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with http.post(base + "/v1/sessions", json=body) as response:
                session_id = (await response.json())["id"]
            for _ in range(10):  # any worker serves the session
                async with (
                    asyncio.timeout(10),
                    http.get(f"{base}/v1/sessions/{session_id}/events") as stream,
                ):
                    assert stream.status == 200
                    assert b"event: done" in await stream.read()
        supervisor.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await supervisor.wait() == 0
    async with aiohttp.ClientSession() as http:  # every worker is gone with the supervisor
        try:
            async with http.get(base + "/healthz") as response:
                raise AssertionError(f"a worker still answers: {response.status}")
        except aiohttp.ClientConnectionError:
            pass


QUOTA_KEY = "rk_workers_Nc3Tf8Wq1Lz6Bh4Xm"
SLOW_KEY = "rk_workers_slow_Qa7Dk2Vr5Jy9Pe"
QUOTA_CONFIG = """
[server]
drain_timeout_s = 0

[store]
url = "{redis_url}"

[[clients]]
name = "web"
api_key_sha256 = "{web}"
requests_per_minute = 6

[[clients]]
name = "slow"
api_key_sha256 = "{slow}"
max_concurrent_sessions = 2
"""


async def start_sessions(base: str, key: str, model: str, count: int) -> list[tuple[int, str]]:
    """(status, instance) of each of `count` session creations, each on a new connection."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    answered: list[tuple[int, str]] = []
    for _ in range(count):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.post(
                f"{base}/v1/sessions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as response,
        ):
            answered.append((response.status, response.headers["X-Relay-Instance"]))
    return answered


async def test_workers_share_the_quotas(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    digests = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in
               (("web", QUOTA_KEY), ("slow", SLOW_KEY))}  # fmt: skip
    config.write_text(QUOTA_CONFIG.format(redis_url=redis_url, **digests))
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "relay.log"
    async with relay_process(config, port, log_path, "--workers", str(WORKERS)):
        async with asyncio.timeout(20):
            while log_path.read_text().count(" ready on ") < WORKERS:
                await asyncio.sleep(0.05)
        fast = await start_sessions(base, QUOTA_KEY, "mock:tokens=5,tps=0,ttft_ms=0", 20)
        slow = await start_sessions(base, SLOW_KEY, "mock:tokens=400,tps=20,ttft_ms=0", 20)
    assert Counter(status for status, _ in fast) == {201: 6, 429: 14}
    assert len({instance for _, instance in fast}) == WORKERS  # the requests reached both
    assert Counter(status for status, _ in slow) == {201: 2, 429: 18}
    assert len({instance for _, instance in slow}) == WORKERS


def test_workers_with_the_memory_store_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--workers", "2", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "server.workers = 2 needs a shared store" in result.stderr
