"""The soak's processes and the faults done to them: a redis-server with its append-only
file, `relay mock-upstream`, two `relay serve` on that Redis, and nginx in front.

Every call blocks (it starts or signals a process and waits for it); the soak runs them in
a thread. Each restart logs to a new file (`relay-a-2.log`), so no log is overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path

from bench.processes import Child, find_redis_server, free_port, python_child
from bench.procfs import rss_bytes
from bench.soak.configs import DRAIN_TIMEOUT_S, nginx_conf, redis_command, relay_toml
from bench.soak.traces import Fault, RssSample

RELAYS = ("relay-a", "relay-b")
EXIT_TIMEOUT_S = DRAIN_TIMEOUT_S + 15.0
RESTART_PAUSE_S = 2.0  # a killed relay stays down this long: nginx must route around it


class NginxMissing(RuntimeError):
    """nginx is not installed (nor named by $NGINX)."""


def find_nginx() -> str:
    found = os.environ.get("NGINX") or shutil.which("nginx")
    if not found:
        raise NginxMissing(
            "nginx is not installed: the soak runs two relays behind nginx. Install it "
            "(apt-get install nginx; .ci/run does) or set NGINX=/path/to/nginx."
        )
    return found


class Deployment:
    """The running processes, by name, and which relay each instance id is."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: dict[str, Child] = {}
        self.instances: dict[str, str] = {}  # X-Relay-Instance → relay name
        self._ports = {name: free_port() for name in ("redis", "upstream", "nginx", *RELAYS)}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['nginx']}"

    @property
    def relay_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self._ports[name]) for name in RELAYS]

    def start(self) -> None:
        nginx = find_nginx()  # before anything starts: a missing nginx stops the soak at once
        self._start_redis()
        port = self._ports["upstream"]
        args = ["-m", "relay", "mock-upstream", "--port", str(port)]
        self._run(python_child("upstream", args, port, self.run_dir), "/v1/models")
        for name in RELAYS:
            self._start_relay(name)
        self._start_nginx(nginx)

    def _run(self, child: Child, ready_path: str | None = None) -> Child:
        self.children[child.name] = child
        child.start(ready_path)
        return child

    def _start_redis(self) -> None:
        data_dir = self.run_dir / "redis-data"
        data_dir.mkdir(exist_ok=True)
        port = self._ports["redis"]
        command = redis_command(find_redis_server(), port, data_dir)
        self._run(Child("redis", command, port, self.run_dir))

    def _start_relay(self, name: str) -> None:
        port = self._ports[name]
        config = self.run_dir / f"{name}.toml"
        config.write_text(relay_toml(port, self._ports["redis"], self._ports["upstream"]))
        args = ["-m", "relay", "serve", "--config", str(config)]
        self._run(python_child(name, args, port, self.run_dir), "/readyz")
        self.instances[_instance_id(port)] = name

    def _start_nginx(self, binary: str) -> None:
        directory = self.run_dir / "nginx"
        directory.mkdir(exist_ok=True)
        port = self._ports["nginx"]
        config = directory / "nginx.conf"
        config.write_text(nginx_conf(directory, port, [self._ports[n] for n in RELAYS]))
        command = [binary, "-p", str(directory), "-c", str(config)]
        self._run(Child("nginx", command, port, self.run_dir), "/healthz")

    # --- faults ---------------------------------------------------------------------------

    def drain(self, name: str) -> Fault:
        """SIGTERM: the relay drains and exits; then a new one starts on its port."""
        fault = Fault("drain", name, time.time())
        child = self.children[name]
        child.send_signal(signal.SIGTERM)
        fault.exit_status = child.wait(EXIT_TIMEOUT_S)
        child.stop()  # kills it if the drain never ended
        self._start_relay(name)
        fault.recovered_at = time.time()
        return fault

    def kill(self, name: str) -> Fault:
        """SIGKILL, a pause while nginx routes around it, then a new one."""
        fault = Fault("kill", name, time.time())
        child = self.children[name]
        child.send_signal(signal.SIGKILL)
        child.wait(EXIT_TIMEOUT_S)
        time.sleep(RESTART_PAUSE_S)
        self._start_relay(name)
        fault.recovered_at = time.time()
        return fault

    def freeze_redis(self, seconds: float) -> Fault:
        """SIGSTOP, then SIGCONT: Redis neither answers nor closes a connection meanwhile."""
        fault = Fault("freeze", "redis", time.time(), note=f"{seconds:g} s")
        redis = self.children["redis"]
        redis.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            redis.send_signal(signal.SIGCONT)
        fault.recovered_at = time.time()
        return fault

    def restart_redis(self) -> Fault:
        """SIGTERM (it writes its append-only file and exits), then a new one on the same
        port and data directory, which loads it."""
        fault = Fault("redis-restart", "redis", time.time())
        redis = self.children["redis"]
        redis.send_signal(signal.SIGTERM)
        fault.exit_status = redis.wait(EXIT_TIMEOUT_S)
        redis.stop()
        self._start_redis()
        fault.recovered_at = time.time()
        return fault

    # --- observing ------------------------------------------------------------------------

    def rss(self) -> list[RssSample]:
        now, samples = time.time(), []
        for name in RELAYS:
            try:
                samples.append(RssSample(name, now, rss_bytes(self.children[name].pid)))
            except (OSError, AssertionError):  # between a stop and its restart
                continue
        return samples

    def logs(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.log"))

    def stop(self) -> dict[str, int | None]:
        """Every process SIGTERMed, nginx first and Redis last; each one's exit status."""
        statuses: dict[str, int | None] = {}
        for name in ("nginx", *RELAYS, "upstream", "redis"):
            child = self.children.get(name)
            if child is None:
                continue
            child.send_signal(signal.SIGTERM)
            statuses[name] = child.wait(EXIT_TIMEOUT_S)
            child.stop()
        return statuses


def _instance_id(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return str(json.loads(response.read())["instance"])
