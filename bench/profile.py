"""Where relay's CPU goes: py-spy samples a relay process under load, and the samples are
sorted into the layers of the data path.

A sample belongs to the first layer in `LAYERS` that any frame of its stack is in, so a
store call made from a subscriber counts as store, and logging counts as logging
wherever it happens. py-spy records only samples where the process was running Python,
not waiting, so the shares are shares of relay's busy time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("(logging/",)),
    (
        "upstream client (openai SDK, httpx2, httpcore2, h11, anyio)",
        ("(openai/", "(httpx2/", "(httpcore2/", "(h11/", "(anyio/", "(sniffio/", "(pydantic"),
    ),
    ("store (relay/store, redis-py)", ("(relay/store/", "(redis/")),
    (
        "subscribers (follow, SSE and wire rendering)",
        ("(relay/subscribers/", "(relay/sse.py", "(relay/wire/"),
    ),
    (
        "generation (runner, coalescer, writer, providers)",
        ("(relay/runner.py", "(relay/coalescer.py", "(relay/writer.py", "(relay/providers/"),
    ),
    ("front doors (relay/frontdoors)", ("(relay/frontdoors/",)),
    ("HTTP server (aiohttp)", ("(aiohttp/",)),
    ("thread pool", ("(concurrent/futures/thread.py",)),
]
OTHER = "event loop (uvloop's C code: sockets, timers, callbacks) and other"
_LINE = re.compile(r":\d+\)")


def layer_of(frames: list[str]) -> str:
    for layer, markers in LAYERS:
        if any(marker in frame for frame in frames for marker in markers):
            return layer
    return OTHER


def summarize(raw: str) -> dict[str, Any]:
    """py-spy's `--format raw` output (collapsed stacks) → shares per layer and the
    functions with the most own time, in percent of all samples."""
    layers: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        layers[layer_of(frames)] += int(count)
        own[_LINE.sub(")", frames[-1])] += int(count)
    share = 100 / total if total else 0.0
    return {
        "samples": total,
        "layers": {name: count * share for name, count in layers.most_common()},
        "top_self": [(name, count * share) for name, count in own.most_common(20)],
    }


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: install the bench extra")
    return found


def start_recording(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` into `output`, without pausing it to sample."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds))]
    command += ["--rate", "250", "--nonblocking", "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
