"""The command line, run as a real process."""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.cli import YOUNGEST_GENERATION_THRESHOLD, tune_garbage_collector


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_prints_the_effective_settings(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[server]\nport = 9999\n")
    result = relay("check-config", str(path))
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["server"]["port"] == 9999
    assert settings["store"]["url"] == "memory://"


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[store]\nretention = "1h"\n')
    result = relay("check-config", str(path))
    assert result.returncode == 2
    assert "unknown field `retention` - at `store`" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unknown_store_scheme(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[store]\nurl = "postgres://db"\n')
    result = relay("serve", "--config", str(path), "--port", "0")
    assert result.returncode == 2
    assert "store.url 'postgres://db' is not supported" in result.stderr


def test_serving_freezes_startup_objects_and_collects_young_less_often() -> None:
    before, thresholds = gc.get_freeze_count(), gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_freeze_count() > before
        assert not gc.garbage
        assert gc.get_threshold() == (YOUNGEST_GENERATION_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], port: int) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"relay: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in result.stderr
    assert "ready on" not in result.stderr and "started" not in result.stderr


def test_serve_on_a_busy_port_names_the_address(busy_port: int) -> None:
    assert_refused_in_one_line(relay("serve", "--port", str(busy_port)), busy_port)


def test_workers_on_a_busy_port_are_not_started(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[store]\nurl = "redis://127.0.0.1:1"\n')  # never reached
    result = relay("serve", "--config", str(path), "--port", str(busy_port), "--workers", "2")
    assert_refused_in_one_line(result, busy_port)
    assert "supervising" not in result.stderr


def test_mock_upstream_on_a_busy_port_names_the_address(busy_port: int) -> None:
    result = relay("mock-upstream", "--port", str(busy_port))
    assert_refused_in_one_line(result, busy_port)
    assert "Running on" not in result.stderr
