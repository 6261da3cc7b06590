"""Tracebacks in a process's log, with the record they belong to. Pure code, no I/O.

relay logs text records as `2026-12-02 02:09:35,123 ERROR relay.runner: message`; a
traceback follows its record's line and runs until the next record's line.
"""

from __future__ import annotations

import re
import time

from bench.soak.traces import Traceback

_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_START = "Traceback (most recent call last):"
_REDIS_FRAME = re.compile(r"[/\\]redis[/\\]|\bredis\.exceptions\b")


def record_time(line: str) -> float | None:
    """The wall-clock time of a record's line (local time, as `logging` writes it)."""
    found = _RECORD.match(line)
    if found is None:
        return None
    seconds = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
    return seconds + int(found.group(2)) / 1000


def tracebacks_in(text: str, log: str) -> list[Traceback]:
    found: list[Traceback] = []
    lines = text.splitlines()
    headline, at = "", None
    index = 0
    while index < len(lines):
        line = lines[index]
        if (stamp := record_time(line)) is not None:
            headline, at = line, stamp
        if line.strip() != _START:
            index += 1
            continue
        end = _block_end(lines, index + 1)
        block = lines[index:end]
        exception = next((b.strip() for b in reversed(block) if b.strip()), "")
        through_redis = any(_REDIS_FRAME.search(b) for b in block)
        found.append(Traceback(log, index + 1, at, headline, exception, through_redis))
        index = end
    return found


def _block_end(lines: list[str], start: int) -> int:
    for index in range(start, len(lines)):
        if record_time(lines[index]) is not None:
            return index
    return len(lines)


def count_levels(text: str, level: str) -> int:
    """Records at `level` (ERROR, WARNING…)."""
    return sum(1 for line in text.splitlines() if _RECORD.match(line) and f" {level} " in line)
