"""`relay serve` as a real child process, for tests of the command itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import aiohttp

STARTUP_S = 20.0
STOP_S = 5.0


@contextlib.asynccontextmanager
async def relay_process(
    config: Path,
    port: int,
    log_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    unimportable: Sequence[str] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A started and healthy `relay serve` (`env` added to this process's environment,
    `preexec_fn` run in the child before it starts, the modules named `unimportable`
    made so); killed on exit if it is still running."""
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *_relay_command(unimportable), "serve", "--config", str(config),
            "--port", str(port), *args,
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )  # fmt: skip
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}", process, log_path)
        yield process
    finally:
        await stop(process)


def _relay_command(unimportable: Sequence[str]) -> list[str]:
    """`python -m relay`, or the same with these modules' imports failing (None in
    `sys.modules` makes `import` raise ImportError)."""
    if not unimportable:
        return ["-m", "relay"]
    blocked = ", ".join(repr(name) for name in unimportable)
    return ["-c", f"import sys; sys.modules.update(dict.fromkeys([{blocked}])); "
            "from relay.cli import main; raise SystemExit(main())"]  # fmt: skip


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM first: a `--workers` supervisor passes it on to its workers, which run in
    their own sessions and would outlive a SIGKILL of the supervisor; SIGKILL if it lingers."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(STOP_S):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


async def wait_until_healthy(
    base: str, process: asyncio.subprocess.Process, log_path: Path
) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(STARTUP_S / 0.1)):
            if process.returncode is not None:
                raise AssertionError(f"relay serve exited: {log_path.read_text()}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError(f"relay serve did not become healthy: {log_path.read_text()}")
