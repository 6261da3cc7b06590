"""The layering in .importlinter holds, and the check really fails when it is broken.

`make lint` runs the same contracts; these tests prove that a front door importing
another (or a module other than the Redis store importing redis) is caught, by running
lint-imports on a copy of relay with such an import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (the lint extra)"
)


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with relay's contracts, run on the relay package under `tree`."""
    shutil.copy(ROOT / ".importlinter", tree / ".importlinter")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_of_relay(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "relay", tmp_path / "relay", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def add_import(module: Path, line: str) -> None:
    source = module.read_text()
    head, marker, rest = source.partition("from __future__ import annotations\n")
    module.write_text(head + marker + line + "\n" + rest)


def test_relay_keeps_its_contracts(tmp_path: Path) -> None:
    result = lint_imports(copy_of_relay(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_front_door_importing_another_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_of_relay(tmp_path)
    add_import(tree / "relay/frontdoors/openai_chat.py", "import relay.frontdoors.native  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "relay.frontdoors.openai_chat is not allowed to import" in result.stdout
    assert "relay.frontdoors.native" in result.stdout


def test_redis_outside_the_redis_store_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_of_relay(tmp_path)
    add_import(tree / "relay/runner.py", "import redis  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "relay.runner is not allowed to import redis" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_of_relay(tmp_path)
    add_import(tree / "relay/store/memory.py", "import relay.runner  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "relay.store" in result.stdout and "relay.runner" in result.stdout
