"""A real Prometheus (Debian's `prometheus` package), started by a test on a free loopback
port with its data in a temporary directory, scraping the targets it is given."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.redis_server import free_port
from tests.system_programs import require_program

SCRAPE_INTERVAL = "1s"
STARTUP_S = 30.0


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path]) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": "relay",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": list(targets)}],
        }],
    })  # fmt: skip


@contextlib.asynccontextmanager
async def prometheus(
    directory: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
) -> AsyncIterator[str]:
    """Prometheus scraping `targets` (host:port) every second; yields its base URL."""
    binary = require_program("prometheus", env="PROMETHEUS")
    config = directory / "prometheus.yml"
    config.write_text(prometheus_config(targets, rule_files))
    listen = f"127.0.0.1:{free_port()}"
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={listen}",
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        base = f"http://{listen}"
        await _wait_until_ready(base, process, log_path)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _wait_until_ready(base: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(STARTUP_S / 0.1)):
            if process.returncode is not None:
                raise AssertionError(f"prometheus exited: {log.read_text()}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(base + "/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError(f"prometheus did not become ready: {log.read_text()}")


async def query(http: aiohttp.ClientSession, base: str, expression: str) -> list[Any]:
    """The instant vector an expression returns now (a query error fails the test)."""
    async with http.get(base + "/api/v1/query", params={"query": expression}) as response:
        answer = await response.json()
    assert answer["status"] == "success", f"{expression}: {answer}"
    result: list[Any] = answer["data"]["result"]
    return result
