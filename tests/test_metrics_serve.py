"""`/metrics` of a real `relay serve`: on `[server] metrics_port` only when it is set, and
with `--workers 2` the counts of both workers added up, whichever answers the scrape; a
worker that exits leaves its counts and takes its gauges."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from relay import metrics
from relay.config import METRICS_DIR_VARIABLE, load_settings
from relay.errors import ConfigError
from tests.redis_server import free_port
from tests.relay_process import relay_process

TOKENS = 9
MODEL = f"mock:tokens={TOKENS},tps=0,ttft_ms=0"
MOCK = {"upstream": "mock", "model": "mock:*", "client": "anonymous"}


async def get(url: str) -> tuple[int, str, str]:
    """status, body and the answering instance, over a fresh connection (so that the
    kernel may pick another worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as response:
        return response.status, await response.text(), response.headers.get("X-Relay-Instance", "")


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def test_metrics_port_serves_the_metrics_and_the_public_port_does_not(
    tmp_path: Path,
) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f"[server]\nmetrics_port = {metrics_port}\n")
    async with relay_process(config, port, tmp_path / "relay.log"):
        status, _, _ = await get(f"http://127.0.0.1:{port}/metrics")
        assert status == 404
        status, text, _ = await get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert value(text, "relay_build_info", version="0.1.0") == 1
        assert value(text, "relay_http_requests_total", route="unmatched", status="404") == 1


async def create_sessions(base: str, count: int) -> set[str]:
    """`count` sessions run to their end, each over a fresh connection; the instances
    that generated them."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}]}
    instances = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(count):
            async with http.post(base + "/v1/sessions", json=body) as response:
                created = await response.json()
                instances.add(response.headers["X-Relay-Instance"])
            async with asyncio.timeout(10), http.get(base + created["events_url"]) as stream:
                assert b"event: done" in await stream.read()
    return instances


async def test_workers_add_up_their_counts(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "relay.toml"
    config.write_text(f'[store]\nurl = "{redis_url}"\n')
    log_path = tmp_path / "relay.log"
    sessions = 40  # 2^-39 odds that every one lands on the same worker of two
    async with relay_process(config, port, log_path, "--workers", "2"):
        async with asyncio.timeout(20):
            while log_path.read_text().count(" ready on ") < 2:
                await asyncio.sleep(0.05)
        assert len(await create_sessions(base, sessions)) == 2
        answered = set()
        for _ in range(20):  # both workers answer scrapes, with the same sums
            status, text, instance = await get(base + "/metrics")
            assert status == 200
            answered.add(instance)
            assert value(text, "relay_sessions_started_total", **MOCK) == sessions
            output = value(text, "relay_output_tokens_total", **MOCK, source="usage")
            assert output == sessions * TOKENS
            assert value(text, "relay_input_tokens_total", **MOCK, source="usage") == sessions * 3
            finished = value(
                text, "relay_sessions_finished_total", status="completed", reason="stop"
            )
            assert finished == sessions
            assert value(text, "relay_sessions_running") == 0
            assert value(text, "relay_build_info", version="0.1.0") == 1  # not 1 per worker
        assert len(answered) == 2


def test_metrics_port_must_not_be_the_public_port() -> None:
    with pytest.raises(ConfigError, match=re.escape("server.metrics_port 8080 is server.port")):
        load_settings(None, environ={}, overrides={"server": {"metrics_port": 8080}})


def test_a_gone_workers_gauges_go_and_its_counts_stay(tmp_path: Path) -> None:
    """What the supervisor does when a worker exits (`relay.metrics.worker_exited`)."""
    script = "from relay import metrics; metrics.session_started('mock', 'mock:*', '')"
    environment = {**os.environ, METRICS_DIR_VARIABLE: str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-c", script], env=environment)
    assert worker.wait(timeout=30) == 0
    assert value(merged(tmp_path), "relay_sessions_running") == 1  # as if it still ran
    metrics.worker_exited(worker.pid, str(tmp_path))
    text = merged(tmp_path)
    assert value(text, "relay_sessions_running") == 0
    assert value(text, "relay_sessions_started_total", **MOCK) == 1


def merged(directory: Path) -> str:
    """What a worker's /metrics answers: every worker's values in `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()
