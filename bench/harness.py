"""The harness: starts each part in its own process and hands jobs to the load generator.

Parts, started when a scenario first needs them and stopped at the end of the run:
- `upstream`: `relay mock-upstream` (OpenAI wire format, one token per chunk);
- `proxy`: bench/proxy.py, the bare pass-through in front of the upstream;
- relays: `relay serve` with an `openai`-kind upstream pointing at the mock upstream,
  on the memory store or on a redis-server of its own, with the default flush interval
  or with coalescing off (`flush_interval_ms = 0`); their TOML is written here;
- the load generator: `python -m bench.loadgen`, one process per job.

Relays and the proxy (the processes under test) run on the tested core, the others on
the rest (bench/processes.py `Pinning`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench.processes import Child, Pinning, free_port, pin_self, python_child, redis_child
from bench.procfs import CpuWatch
from bench.redis_probe import RedisProbe
from bench.sizes import Sizes

DEFAULT_FLUSH_MS = 25  # relay's default `generation.flush_interval_ms`
# Before each job, every process must have been below SETTLE_CPU_PCT for a window.
SETTLE_WINDOW_S = 0.3
SETTLE_CPU_PCT = 5.0
SETTLE_MAX_S = 30.0


@dataclass(frozen=True)
class RelaySpec:
    store: str  # "memory" or "redis"
    flush_ms: int

    @property
    def name(self) -> str:
        coalescing = "" if self.flush_ms == DEFAULT_FLUSH_MS else f"-flush{self.flush_ms}"
        return f"relay-{self.store}{coalescing}"


MEMORY = RelaySpec("memory", DEFAULT_FLUSH_MS)
MEMORY_NO_COALESCING = RelaySpec("memory", 0)
REDIS = RelaySpec("redis", DEFAULT_FLUSH_MS)
REDIS_NO_COALESCING = RelaySpec("redis", 0)


def relay_toml(port: int, store_url: str, flush_ms: int, upstream_port: int) -> str:
    """The relay settings of a run: defaults, except what a benchmark must pin down."""
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
drain_timeout_s = 0
demo_page = false

[store]
url = "{store_url}"

[generation]
flush_interval_ms = {flush_ms}
# Idle subscribers follow sessions whose first token is an hour away.
idle_timeout_s = 7200

[log]
level = "info"

[limits]
# Every load-generator connection comes from 127.0.0.1: the per-address limit (1,000)
# would refuse the idle and throughput runs' connections.
max_connections = 100000
max_connections_per_ip = 100000

[[upstreams]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
models = ["mock", "mock:*"]
first_token_timeout_s = 7200
# The default (100) would queue every stream past the 100th for a connection.
max_connections = 4096
"""


class Bench:
    """The processes of one run, and the way to send the load generator a job."""

    def __init__(self, sizes: Sizes, run_dir: Path) -> None:
        self.sizes = sizes
        self.run_dir = run_dir
        self.children: list[Child] = []
        self._named: dict[str, Child] = {}
        self._probes: dict[str, RedisProbe] = {}
        self.configs: dict[str, str] = {}
        self.pinning = Pinning.detect()
        # The harness, and so everything it starts unpinned (upstream, redis-server, the
        # load generator), stays off the tested core.
        pin_self(self.pinning.rest)

    def _start(self, child: Child, ready_path: str | None = None) -> Child:
        self.children.append(child)
        child.start(ready_path)
        self._named[child.name] = child
        return child

    def upstream(self) -> Child:
        if "upstream" not in self._named:
            port = free_port()
            args = ["-m", "relay", "mock-upstream", "--port", str(port)]
            self._start(python_child("upstream", args, port, self.run_dir), "/v1/models")
        return self._named["upstream"]

    def proxy(self) -> Child:
        if "proxy" not in self._named:
            port, upstream = free_port(), self.upstream()
            args = ["-m", "bench.proxy", "--port", str(port)]
            args += ["--upstream", f"http://127.0.0.1:{upstream.port}"]
            tested = self.pinning.tested
            self._start(python_child("proxy", args, port, self.run_dir, tested))
        return self._named["proxy"]

    def relay(self, spec: RelaySpec, *, fresh: bool = False) -> Child:
        """The relay for `spec`; with `fresh`, a new process even if one runs (a memory
        measurement must not reuse a heap that earlier scenarios grew)."""
        if fresh and spec.name in self._named:
            self._named.pop(spec.name).stop()
        if spec.name not in self._named:
            port = free_port()
            config = relay_toml(port, self._store_url(spec), spec.flush_ms, self.upstream().port)
            path = self.run_dir / f"{spec.name}.toml"
            path.write_text(config)
            self.configs[spec.name] = config
            args = ["-m", "relay", "serve", "--config", str(path)]
            child = python_child(spec.name, args, port, self.run_dir, self.pinning.tested)
            self._start(child, "/readyz")
        return self._named[spec.name]

    def _store_url(self, spec: RelaySpec) -> str:
        """memory://, or a redis-server of the relay's own (so its stats are its own)."""
        if spec.store == "memory":
            return "memory://"
        name = f"redis-for-{spec.name}"
        if name not in self._named:
            redis = self._start(redis_child(name, self.run_dir))
            self._probes[spec.name] = RedisProbe(redis.port)
        return f"redis://127.0.0.1:{self._named[name].port}/0"

    def redis_probe(self, spec: RelaySpec) -> RedisProbe | None:
        return self._probes.get(spec.name)

    def pid(self, name: str) -> int | None:
        child = self._named.get(name)
        return child.pid if child else None

    def watch(self, *names: str) -> dict[str, int]:
        """The pids the load generator reads CPU time of: these and the upstream."""
        pids = {name: self.pid(name) for name in ("upstream", *names)}
        return {name: pid for name, pid in pids.items() if pid is not None}

    def settle(self) -> bool:
        """Wait until every process of the run is idle (as after a run that was cut,
        whose generations go on); False if one was still busy after SETTLE_MAX_S."""
        deadline = time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < deadline:
            pids = {child.name: child.pid for child in self._named.values()}
            watch = CpuWatch(pids)
            watch.start()
            time.sleep(SETTLE_WINDOW_S)
            busy = watch.stop()["cpu_pct"]
            assert isinstance(busy, dict)
            if all(pct < SETTLE_CPU_PCT for name, pct in busy.items() if name != "loadgen"):
                return True
        return False

    def loadgen(self, job: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
        settled = self.settle()
        completed = subprocess.run(
            [sys.executable, "-m", "bench.loadgen"],
            input=msgspec.json.encode(job),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"load generator failed on {job['kind']}:\n{completed.stderr.decode()[-3000:]}"
            )
        result: dict[str, Any] = msgspec.json.decode(completed.stdout)
        result["settled_before"] = settled
        return result

    def close(self) -> None:
        for probe in self._probes.values():
            probe.close()
        for child in reversed(self.children):
            child.stop()
