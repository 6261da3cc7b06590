"""Every PromQL expression of the Grafana dashboard and of the alert rules returns data
from a real Prometheus scraping real relays.

Two `relay serve` share a redis-server; Prometheus scrapes both every second and loads
deploy/alerts.yml. Through one of them: generations that complete, one whose upstream
fails mid-way, one whose upstream cannot be reached (retried, then failed), one
cancelled, one whose client leaves mid-way, resumes of each outcome, a 404 and a stream
left open; on the other, a generation whose instance is killed, which the first ends
with `generation_lost`. Then each dashboard query (Grafana's `$__rate_interval` made a
minute) and each operand of each alert's comparisons must return a series, and each
label value a query selects must be one relay exports.

Needs /metrics (issue 13 point 1): it passes once the metrics branch is merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.deploy.files import (
    ALERTS,
    alert_expressions,
    dashboard_expressions,
    operands,
    with_range,
)
from tests.deploy.prometheus_server import prometheus as run_prometheus
from tests.deploy.prometheus_server import query
from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.sse_client import SseReader
from tests.system_programs import require_program

KEY = "live-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LEASE_TTL_S = 1.5
QUICK = "mock:tokens=20,tps=400,ttft_ms=20"
LONG = "mock:tokens=100000,tps=20,ttft_ms=0"
DATA_WITHIN_S = 60.0
# A second upstream on a port nothing listens on: its requests are retried, then fail.
CONFIG = f"""
[server]
drain_timeout_s = 0
[store]
url = "{{redis_url}}"
lease_ttl_s = {LEASE_TTL_S}
[[clients]]
name = "web"
api_key_env = "RELAY_LIVE_TEST_KEY"
[[upstreams]]
name = "mock"
kind = "mock"
models = ["mock:*"]
[[upstreams]]
name = "unreachable"
kind = "openai"
base_url = "http://127.0.0.1:{{closed_port}}/v1"
models = ["unreachable"]
max_retries = 1
"""
_SELECTOR = re.compile(r"(\w+)\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=|!=)\s*"([^"]*)"')


def body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "Tell me about rivers."}]}


@contextlib.asynccontextmanager
async def relays(
    tmp_path: Path, redis_url: str
) -> AsyncIterator[list[tuple[str, asyncio.subprocess.Process]]]:
    config = tmp_path / "relay.toml"
    config.write_text(CONFIG.format(redis_url=redis_url, closed_port=free_port()))
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for index in range(2):
            port = free_port()
            process = await stack.enter_async_context(relay_process(
                config, port, tmp_path / f"relay-{index}.log", env={"RELAY_LIVE_TEST_KEY": KEY}
            ))  # fmt: skip
            started.append((f"127.0.0.1:{port}", process))
        yield started


async def create(http: aiohttp.ClientSession, base: str, model: str) -> str:
    async with http.post(base + "/v1/sessions", json=body(model), headers=AUTH) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def read_all(http: aiohttp.ClientSession, base: str, session_id: str) -> int:
    """Follows the session to its end; the last event id."""
    async with http.get(f"{base}/v1/sessions/{session_id}/events", headers=AUTH) as response:
        events = await SseReader(response).read_all()
    return int(events[-1].id or 0)


async def resume(http: aiohttp.ClientSession, base: str, session_id: str, last_id: int) -> int:
    headers = {**AUTH, "Last-Event-ID": str(last_id)}
    async with http.get(f"{base}/v1/sessions/{session_id}/events", headers=headers) as response:
        await response.read()
        return response.status


async def workload(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    """Sessions of every ending and resumes of every outcome; returns a stream left open."""
    for _ in range(3):
        done = await create(http, base, QUICK)
        last = await read_all(http, base, done)
    await read_all(http, base, await create(http, base, QUICK + ",fail_after=5"))
    await read_all(http, base, await create(http, base, "unreachable"))
    cancelled = await create(http, base, LONG)
    await asyncio.sleep(0.3)
    async with http.delete(f"{base}/v1/sessions/{cancelled}", headers=AUTH) as response:
        assert response.status in (200, 202), await response.text()
    left = await http.get(
        f"{base}/v1/sessions/{await create(http, base, LONG)}/events", headers=AUTH
    )
    await SseReader(left).read(5)
    left.close()  # the client leaves mid-way; its generation goes on
    assert await resume(http, base, done, 1) == 200  # replayed
    assert await resume(http, base, done, last) == 204  # ended
    assert await resume(http, base, "s_" + "x" * 22, 3) == 404
    async with http.get(f"{base}/v1/sessions/s_unknown", headers=AUTH) as response:
        assert response.status == 404
    open_stream = await http.get(
        f"{base}/v1/sessions/{await create(http, base, LONG)}/events", headers=AUTH
    )
    await SseReader(open_stream).read(3)
    return open_stream


def expressions() -> list[tuple[str, str]]:
    named = [(f"dashboard {title!r}", with_range(e, "1m")) for title, e in dashboard_expressions()]
    for alert, expression in alert_expressions():
        named += [(f"alert {alert}", operand) for operand in operands(expression)]
    return named


def label_selections() -> list[tuple[str, str]]:
    """(where, `metric{label="value"}`) for each label value an expression selects."""
    found = []
    for where, expression in expressions():
        for metric, matchers in _SELECTOR.findall(expression):
            for label, _, value in _MATCHER.findall(matchers):
                found.append((where, f'{metric}{{{label}="{value}"}}'))
    return found


async def empty_queries(http: aiohttp.ClientSession, base: str) -> list[str]:
    empty = []
    for where, expression in expressions() + label_selections():
        if not await query(http, base, expression):
            empty.append(f"{where}: {expression}")
    return empty


async def test_every_dashboard_and_alert_expression_returns_data(
    tmp_path: Path, redis_url: str
) -> None:
    require_program("prometheus", package="prometheus")
    async with relays(tmp_path, redis_url) as instances, aiohttp.ClientSession() as http:
        (victim_address, victim), (address, _) = instances
        async with run_prometheus(tmp_path, [a for a, _ in instances], [ALERTS]) as prometheus:
            await create(http, f"http://{victim_address}", LONG)
            await asyncio.sleep(2.0)  # scraped while it generates
            victim.kill()  # the other relay ends its session with generation_lost
            open_stream = await workload(http, f"http://{address}")
            try:
                empty: list[str] = []
                for _ in range(int(DATA_WITHIN_S)):
                    await asyncio.sleep(1.0)
                    empty = await empty_queries(http, prometheus)
                    if not empty:
                        break
                assert empty == [], "\n".join(empty)
                rules = await query(http, prometheus, "ALERTS")  # the rules load and evaluate
                assert isinstance(rules, list)
            finally:
                open_stream.close()
