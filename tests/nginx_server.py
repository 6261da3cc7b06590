"""A real nginx in front of relay instances, started by the tests on a free loopback port.

The proxy settings are those of deploy/nginx.conf (what SSE needs, failover to the next
instance on a connection error); only addresses and paths differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.system_programs import require_program

CONFIG = """
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
    upstream relay {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://relay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def nginx_config(directory: Path, port: int, upstream_ports: Sequence[int]) -> str:
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstream_ports
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    return CONFIG.format(user=user, dir=directory, port=port, servers=servers)


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
