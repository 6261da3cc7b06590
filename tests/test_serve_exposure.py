"""`relay serve` beyond loopback, as a real process: refused without `[[clients]]` (one
line, exit 2) unless `[server] allow_anonymous = true`; with clients, keys from the
environment; the startup log says which mode it runs in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.relay_process import relay_process

REFUSAL = (
    "relay: configuration error: server.host '0.0.0.0' is not a loopback address and no "
    "[[clients]] are configured: add [[clients]] with API keys, or set [server] "
    "allow_anonymous = true to let anyone who can reach it use relay"
)
KEY = "rk_web_Zq4Lm8Tx2Vb6Nc9Hd3Wp"
BODY = {"model": "mock:tokens=3,tps=0,ttft_ms=0", "messages": [{"role": "user", "content": "hi"}]}


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_serving_anonymously_beyond_loopback_is_refused_in_one_line() -> None:
    result = serve("--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [REFUSAL]


def test_the_host_from_the_environment_is_refused_too() -> None:
    result = serve(env={**os.environ, "RELAY_HOST": "0.0.0.0"})
    assert (result.returncode, result.stderr.splitlines()) == (2, [REFUSAL])


def test_a_key_variable_that_is_not_set_stops_serve(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[[clients]]\nname = "web"\napi_key_env = "RELAY_TEST_UNSET_KEY"\n')
    result = serve("--config", str(config), "--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "relay: configuration error: clients[0].api_key_env: "
        "the variable RELAY_TEST_UNSET_KEY is not set or empty"
    ]


async def test_allow_anonymous_serves_beyond_loopback_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("[server]\nallow_anonymous = true\n")
    port, log_path = free_port(), tmp_path / "relay.log"
    url = f"http://127.0.0.1:{port}/v1/sessions"
    serving = relay_process(config, port, log_path, "--host", "0.0.0.0")
    async with serving, aiohttp.ClientSession() as http, http.post(url, json=BODY) as response:
        assert response.status == 201
    assert "access: anonymous (no [[clients]]) on 0.0.0.0" in log_path.read_text()


async def test_with_clients_relay_serves_beyond_loopback_and_wants_keys(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[[clients]]\nname = "web"\napi_key_env = "RELAY_TEST_WEB_KEY"\n')
    port, log_path = free_port(), tmp_path / "relay.log"
    env = {"RELAY_TEST_WEB_KEY": KEY}
    url = f"http://127.0.0.1:{port}/v1/sessions"
    serving = relay_process(config, port, log_path, "--host", "0.0.0.0", env=env)
    async with serving, aiohttp.ClientSession() as http:
        async with http.post(url, json=BODY) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        async with http.post(url, json=BODY, headers=headers) as response:
            assert response.status == 201
    log = log_path.read_text()
    assert "access: 1 client (web), each with its keys" in log
    assert KEY not in log


async def test_on_loopback_the_log_says_anonymous(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("")
    port, log_path = free_port(), tmp_path / "relay.log"
    async with relay_process(config, port, log_path):
        pass
    assert "access: anonymous (no [[clients]]), on loopback only" in log_path.read_text()


def test_check_config_shows_digests_but_never_a_key_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    digest = "ab" * 32
    config.write_text(
        f'[[clients]]\nname = "web"\napi_key_sha256 = "{digest}"\n'
        '[[clients]]\nname = "mobile"\napi_key_env = "RELAY_TEST_MOBILE_KEY"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "relay", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RELAY_TEST_MOBILE_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert digest in result.stdout and "RELAY_TEST_MOBILE_KEY" in result.stdout
    assert KEY not in result.stdout + result.stderr
