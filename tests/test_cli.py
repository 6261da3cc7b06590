"""The command line, run as a real process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from relay.cli import freeze_startup_objects


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


def test_serving_puts_the_startup_objects_out_of_the_collectors_reach() -> None:
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > before
        assert not gc.garbage
    finally:
        gc.unfreeze()
