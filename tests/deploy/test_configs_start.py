"""relay starts with each deploy config and exactly the environment its deploy file gives
it (keys as placeholders, the store a test redis-server), and the Dockerfile's
HEALTHCHECK command, run as written, passes against it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.files import (
    DEPLOY,
    KUBERNETES,
    KUSTOMIZATIONS,
    compose,
    kustomize,
    objects_of_kind,
    relay_services,
)
from tests.redis_server import free_port
from tests.relay_process import relay_process


def compose_environment() -> dict[str, str]:
    (service, *_) = relay_services(compose()).values()
    return {name: "placeholder" for name in service["environment"]}


def kubernetes_environment() -> dict[str, str]:
    (deployment,) = objects_of_kind(kustomize(KUSTOMIZATIONS["base"]), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {variable["name"]: "placeholder" for variable in container["env"]}


def healthcheck_command() -> list[str]:
    found = re.search(r"^\s*CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert found is not None, "the Dockerfile has no HEALTHCHECK … CMD [...]"
    command: list[str] = json.loads(found.group(1))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.parametrize(
    ("config", "environment"),
    [
        (DEPLOY / "relay.toml", compose_environment),
        (KUBERNETES / "base" / "relay.toml", kubernetes_environment),
    ],
    ids=["image-and-compose", "kubernetes"],
)
async def test_relay_starts_and_the_healthcheck_passes(
    config: Path, environment: Callable[[], dict[str, str]], redis_url: str, tmp_path: Path
) -> None:
    env = {**environment(), "RELAY_STORE_URL": redis_url, "RELAY_HOST": "127.0.0.1"}
    port = free_port()
    env["RELAY_PORT"] = str(port)
    async with relay_process(config, port, tmp_path / "relay.log", env=env):
        check = await asyncio.create_subprocess_exec(*healthcheck_command(), env=env)
        assert await check.wait() == 0
    stopped = await asyncio.create_subprocess_exec(
        *healthcheck_command(), env=env, stderr=asyncio.subprocess.DEVNULL
    )
    assert await stopped.wait() != 0  # and it fails when relay is not there
