"""Event log stores. `open_store` picks the implementation from the store URL."""

from __future__ import annotations

from relay.config import StoreSettings
from relay.errors import ConfigError
from relay.store.base import Store

__all__ = ["Store", "open_store"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(settings: StoreSettings) -> Store:
    url = settings.url
    if url == "memory://":
        from relay.store.memory import MemoryStore

        return MemoryStore(settings)
    if url.startswith(REDIS_SCHEMES):
        from relay.store.redis import RedisStore

        redis_store: Store = RedisStore.from_url(url, settings)
        return redis_store
    raise ConfigError(
        f"store.url {url!r} is not supported; allowed: memory://, redis://…, rediss://…, unix://…"
    )
