"""Finding system programs that some suites need (chromium, nginx, node).

A suite whose program is missing skips and says why; under `RELAY_REQUIRE_ALL=1` (set by
.ci/run, which installs the programs) the same absence fails the test instead, so CI can
never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_all() -> bool:
    return os.environ.get("RELAY_REQUIRE_ALL") == "1"


def missing(reason: str) -> None:
    """Skip, or fail under RELAY_REQUIRE_ALL=1."""
    if require_all():
        pytest.fail(f"{reason} (RELAY_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(reason)


def require_program(*names: str, env: str | None = None, package: str | None = None) -> str:
    """The path of the first program found (an `env` variable wins), else skip or fail;
    `package` is the Debian package to name when it is not `names[0]`."""
    configured = os.environ.get(env) if env else None
    if configured:
        return configured
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    missing(
        f"{' or '.join(names)} is not installed (Debian: apt-get install {package or names[0]})"
    )
    raise AssertionError("unreachable")
