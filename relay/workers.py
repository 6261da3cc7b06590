"""`relay serve --workers N`: N relay processes sharing one port, under a supervisor.

Each worker is a full `relay serve` process bound with SO_REUSEPORT, so the kernel
spreads new connections across them and one machine's cores are all used. They share
sessions only through the store, so the memory store (one process's memory) is refused.
The supervisor forwards SIGTERM/SIGINT to every worker, waits for them to drain, and
exits 0 when they all did; if one worker fails, it stops the others (workers are not
restarted).

Metrics add up across workers: the supervisor makes a fresh directory for the run's
metrics and names it in each worker's environment (`relay.metrics`); when a worker
exits, its live gauges are dropped (its counts stay), and the directory is removed at
the end of the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import FrameType

from relay import metrics
from relay.config import Settings, worker_environment
from relay.errors import ConfigError

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def check_workers(settings: Settings) -> None:
    """Refuse worker counts the settings cannot serve, naming the reason."""
    server = settings.server
    if server.workers == 1:
        return
    if settings.store.url == "memory://":
        raise ConfigError(
            f"server.workers = {server.workers} needs a shared store: the memory store lives "
            "in one process; set store.url to a redis:// URL or use one worker"
        )
    if server.port == 0:
        raise ConfigError("server.workers > 1 needs a fixed server.port, not 0")


def supervise(count: int, worker_argv: Sequence[str]) -> int:
    """Run `count` workers (`python -m relay <worker_argv>`) until they all exit."""
    metrics_dir = tempfile.mkdtemp(prefix="relay-metrics-")
    try:
        return _supervise(count, worker_argv, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(count: int, worker_argv: Sequence[str], metrics_dir: str) -> int:
    environment = worker_environment(metrics_dir)
    command = [sys.executable, "-m", "relay", *worker_argv]
    workers = [
        subprocess.Popen(command, start_new_session=True, env=environment) for _ in range(count)
    ]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(workers, signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    log.info("supervising %d workers: %s", count, ", ".join(str(w.pid) for w in workers))
    exit_code = 0
    for worker, code in _exits(workers):
        metrics.worker_exited(worker.pid, metrics_dir)
        if code != 0 and not stopping:
            log.error("worker %d exited with %d; stopping the others", worker.pid, code)
            stopping, exit_code = True, code
            _signal_all(workers, signal.SIGTERM)
    return exit_code


def _exits(workers: list[subprocess.Popen[bytes]]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """(worker, exit code) as each worker exits, until all have."""
    by_pid = {worker.pid: worker for worker in workers}
    while by_pid:
        pid, status = os.wait()  # retried after a signal handler runs (PEP 475)
        worker = by_pid.pop(pid, None)
        if worker is not None:
            worker.returncode = os.waitstatus_to_exitcode(status)
            yield worker, worker.returncode


def _signal_all(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for worker in workers:
        if worker.returncode is None:
            worker.send_signal(signum)
