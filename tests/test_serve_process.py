"""`relay serve` as a real process: JSON logs, and a clean exit on SIGTERM that ends
running generations with `cancelled` (reason `shutdown`), kept in Redis for resume."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.sse_client import SseParser


async def test_sigterm_cancels_generations_that_outlast_the_drain(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[server]\ndrain_timeout_s = 0.3\n[store]\nurl = "{redis_url}"\n[log]\nformat = "json"\n'
    )
    log_path = tmp_path / "relay.log"
    base = f"http://127.0.0.1:{port}"
    async with relay_process(config, port, log_path) as process, aiohttp.ClientSession() as http:
        body = {
            "model": "mock:tokens=100000,tps=50,ttft_ms=0",
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with http.post(base + "/v1/sessions", json=body) as response:
            session_id = (await response.json())["id"]
        async with http.get(f"{base}/v1/sessions/{session_id}/events") as stream:
            parser, events = SseParser(), []
            while not any(e.event == "delta" for e in events):
                events += parser.feed(await stream.content.readany())
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                events += parser.feed(await stream.content.read())
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    assert [e.event for e in events][-1] == "cancelled"
    assert json.loads(events[-1].data) == {"reason": "shutdown"}
    ids = [int(e.id) for e in events if e.id]
    assert ids == list(range(1, len(ids) + 1))
    # Every log line is one JSON object; requests and the session's lifecycle are there.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in log_path.read_text().splitlines() if line.strip()])
    messages = [line["message"] for line in lines]
    assert any(f"session {session_id} created" in m for m in messages)
    assert any(f"session {session_id} ended with cancelled" in m for m in messages)
    assert any('"POST /v1/sessions HTTP/1.1" 201' in m for m in messages)


async def test_sigterm_drains_refuses_new_work_and_lets_generations_finish(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 20\n[store]\nurl = "{redis_url}"\n')
    base = f"http://127.0.0.1:{port}"
    body = {
        "model": "mock:tokens=60,tps=60,ttft_ms=0",
        "messages": [{"role": "user", "content": "hi"}],
    }
    log_path = tmp_path / "relay.log"
    async with relay_process(config, port, log_path) as process, aiohttp.ClientSession() as http:
        async with http.post(base + "/v1/sessions", json=body) as response:
            session_id = (await response.json())["id"]
        async with http.get(f"{base}/v1/sessions/{session_id}/events") as stream:
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with http.get(base + "/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["status"] == "draining"
            async with http.post(base + "/v1/sessions", json=body) as refused:
                assert refused.status == 503
                assert (await refused.json())["error"]["code"] == "draining"
            async with asyncio.timeout(15):
                events = SseParser().feed(await stream.content.read())
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    assert events[-1].event == "done"  # the generation was allowed to finish
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")
    assert len(text.split(" ")) == 60
