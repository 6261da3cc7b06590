"""What a Redis server says about its clients: commands run (INFO commandstats) and
connections open (CLIENT LIST), the latter sampled while a job runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

SAMPLE_EVERY_S = 0.25


class RedisProbe:
    def __init__(self, port: int) -> None:
        self.port = port
        self._client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self._own_id = int(self._client.client_id())

    def reset(self) -> None:
        self._client.config_resetstat()

    def commandstats(self) -> dict[str, int]:
        """Calls per command since the last reset (commands run by scripts included)."""
        info: dict[str, Any] = self._client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in info.items()
            if name.removeprefix("cmdstat_") not in ("config", "info", "client")
        }

    def connections(self) -> int:
        """Clients connected now, this probe's own connection left out."""
        clients: list[dict[str, Any]] = self._client.client_list()
        return sum(1 for client in clients if int(client["id"]) != self._own_id)

    @contextmanager
    def sampling(self) -> Iterator[dict[str, int]]:
        """Yields a dict whose `max_connections` holds the peak seen while inside."""
        peak = {"max_connections": self.connections()}
        stop = threading.Event()

        def sample() -> None:
            probe = RedisProbe(self._client.connection_pool.connection_kwargs["port"])
            while not stop.wait(SAMPLE_EVERY_S):
                peak["max_connections"] = max(peak["max_connections"], probe.connections() - 1)
            probe.close()

        thread = threading.Thread(target=sample, name="redis-probe", daemon=True)
        thread.start()
        try:
            yield peak
        finally:
            stop.set()
            thread.join()

    def close(self) -> None:
        self._client.close()
