"""deploy/nginx.conf, as the scale-out tests run it (tests/nginx_server.py: the instances'
addresses and the listen address replaced), passes `nginx -t`; and it says what SSE and
WebSocket need without retrying a POST."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import aiohttp

from tests.nginx_server import DEPLOY_CONF, nginx, nginx_config
from tests.redis_server import free_port
from tests.system_programs import require_program


def test_nginx_accepts_the_deploy_config(tmp_path: Path) -> None:
    binary = require_program("nginx", env="NGINX")
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp_path, 18080, [18081, 18082, 18083]))
    tested = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stderr
    assert "test is successful" in tested.stderr


def test_the_shipped_file_is_what_the_tests_run() -> None:
    shipped = DEPLOY_CONF.read_text()
    run = nginx_config(Path("/tmp"), 18080, [18081])
    for line in shipped.splitlines():
        if not re.match(r"\s*(server \S+:\d+ |listen 80;)", line):
            assert line in run


def test_sse_and_websocket_settings() -> None:
    directives = {" ".join(line.split()) for line in _directives(DEPLOY_CONF.read_text())}
    for needed in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_read_timeout 1h;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "map $http_upgrade $connection_upgrade {",
        "'' '';",  # no Upgrade: `Connection ""`, so upstream connections are kept alive
        "keepalive 64;",
    ):
        assert needed in directives


def test_a_post_is_never_retried_on_another_instance() -> None:
    """nginx retries a non-idempotent request only when `non_idempotent` is listed."""
    (retry,) = [d for d in _directives(DEPLOY_CONF.read_text()) if "proxy_next_upstream " in d]
    assert "non_idempotent" not in retry


def _directives(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


async def test_the_balancer_does_not_serve_the_metrics() -> None:
    """Prometheus scrapes each instance; through nginx /metrics is 404, not proxied."""
    async with (
        nginx([free_port()]) as base,
        aiohttp.ClientSession() as http,
        http.get(base + "/metrics") as response,
    ):
        assert response.status == 404
        assert "nginx" in await response.text()
