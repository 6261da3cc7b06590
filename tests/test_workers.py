"""`relay serve --workers N`: N processes on one port sharing a Redis store."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
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


def test_workers_with_the_memory_store_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--workers", "2", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "server.workers = 2 needs a shared store" in result.stderr
