"""A real nginx in front of relay instances, started by the tests on a free loopback port.

Its configuration is deploy/nginx.conf itself (what SSE and WebSocket need, failover to the
next instance on a connection error), with the instances' addresses and the listen address
replaced, inside an http {} block that keeps nginx's files in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.system_programs import require_program

DEPLOY_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"

# deploy/nginx.conf goes in an http {} block; around it, what nginx run by a user needs.
MAIN = """
daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{deploy}
}}
"""
# The instances in the `upstream` block (consecutive `server host:port options;` lines).
UPSTREAM_SERVERS = re.compile(
    r"^([ \t]*)server \S+:\d+ (.*);\n(?:[ \t]*server \S+:\d+ .*;\n)*", re.M
)
LISTEN = re.compile(r"^([ \t]*)listen 80;$", re.MULTILINE)


def deploy_config(port: int, upstream_ports: Sequence[int]) -> str:
    """deploy/nginx.conf with its instances replaced by `upstream_ports` on loopback (with
    the options of its first) and listening on 127.0.0.1:`port`; every other line as shipped."""
    text = DEPLOY_CONF.read_text()
    servers = UPSTREAM_SERVERS.search(text)
    if servers is None or not LISTEN.search(text):
        raise AssertionError(f"{DEPLOY_CONF} has no `server host:port …;` or `listen 80;`")
    indent, options = servers.group(1), servers.group(2)
    ours = "".join(f"{indent}server 127.0.0.1:{p} {options};\n" for p in upstream_ports)
    text = text[: servers.start()] + ours + text[servers.end() :]
    return LISTEN.sub(rf"\g<1>listen 127.0.0.1:{port};", text)


def nginx_config(directory: Path, port: int, upstream_ports: Sequence[int]) -> str:
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    deploy = deploy_config(port, upstream_ports)
    return MAIN.format(user=user, dir=directory, deploy=deploy)


@contextlib.asynccontextmanager
async def nginx(upstream_ports: Sequence[int]) -> AsyncIterator[str]:
    """nginx balancing round-robin over `upstream_ports`; yields its base URL."""
    binary = require_program("nginx", env="NGINX")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="relay-nginx-") as directory:
        config = Path(directory) / "nginx.conf"
        config.write_text(nginx_config(Path(directory), port, upstream_ports))
        process = await asyncio.create_subprocess_exec(
            binary, "-p", directory, "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_until_listening(base, process, Path(directory) / "error.log")
            yield base
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()


async def _wait_until_listening(
    base: str, process: asyncio.subprocess.Process, error_log: Path
) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            if process.returncode is not None:
                stderr = await process.stderr.read() if process.stderr else b""
                raise AssertionError(f"nginx exited: {stderr.decode()}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(base + "/healthz"):
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"nginx did not start: {error_log.read_text()}")
