"""What /proc says about a process: CPU time, resident memory, open files."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class CpuWatch:
    """CPU used by some processes over a window: `start()`, then `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = {**pids, "loadgen": os.getpid()}
        self._started_at = 0.0
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = self._sample()
        self._started_at = time.perf_counter()

    def stop(self) -> dict[str, object]:
        wall = time.perf_counter() - self._started_at
        after = self._sample()
        used = {name: after[name] - self._before[name] for name in after if name in self._before}
        return {
            "wall_s": wall,
            "cpu_s": used,
            "cpu_pct": {name: 100 * seconds / wall for name, seconds in used.items()},
        }

    def _sample(self) -> dict[str, float]:
        sample = {}
        for name, pid in self._pids.items():
            try:
                sample[name] = cpu_seconds(pid)
            except OSError:  # the process is gone
                continue
        return sample
