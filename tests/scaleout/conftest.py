"""Several real relay processes sharing one real redis-server, behind a real nginx."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.nginx_server import nginx
from tests.redis_server import free_port
from tests.relay_process import relay_process

INSTANCES = 3
LEASE_TTL_S = 1.5  # short, so that a lost generation is noticed quickly in tests


@dataclass
class Instance:
    id: str
    port: int
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.kill()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)


@dataclass
class Deployment:
    balancer: str  # nginx's base URL
    instances: dict[str, Instance]


async def instance_id(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return str((await response.json())["instance"])


@pytest.fixture
async def deployment(tmp_path: Path, redis_url: str) -> AsyncIterator[Deployment]:
    config = tmp_path / "relay.toml"
    config.write_text(f'[store]\nurl = "{redis_url}"\nlease_ttl_s = {LEASE_TTL_S}\n')
    async with contextlib.AsyncExitStack() as stack:
        instances = {}
        for index in range(INSTANCES):
            port = free_port()
            log_path = tmp_path / f"relay-{index}.log"
            process = await stack.enter_async_context(relay_process(config, port, log_path))
            instance = Instance(await instance_id(port), port, process)
            instances[instance.id] = instance
        balancer = await stack.enter_async_context(nginx([i.port for i in instances.values()]))
        yield Deployment(balancer, instances)
