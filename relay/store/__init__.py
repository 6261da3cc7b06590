"""Stores: the event log, the signal log, the leases, the cancel bus, the quotas and the
chat streams (relay/store/base.py), in memory or in Redis. `open_store` picks the
implementation from the store URL."""

from __future__ import annotations

from relay.config import StoreSettings
from relay.errors import ConfigError
from relay.store.base import (
    CancelBus,
    ChatStream,
    ChatStreams,
    EventLog,
    Leases,
    Quotas,
    Signal,
    SignalLog,
    Store,
    fits_under_cap,
)
from relay.store.redis_url import REDIS_SCHEMES, parse_redis_url

__all__ = [
    "CancelBus",
    "ChatStream",
    "ChatStreams",
    "EventLog",
    "Leases",
    "Quotas",
    "Signal",
    "SignalLog",
    "Store",
    "check_store_url",
    "fits_under_cap",
    "open_store",
]

MEMORY_URL = "memory://"


def open_store(settings: StoreSettings) -> Store:
    """The store `settings.url` names; `ConfigError` naming what is wrong with it."""
    check_store_url(settings.url)
    if settings.url == MEMORY_URL:
        from relay.store.memory import MemoryStore

        return MemoryStore(settings)
    from relay.store.redis import RedisStore

    redis_store: Store = RedisStore.from_url(settings.url, settings)
    return redis_store


def check_store_url(url: str) -> None:
    """`ConfigError`, naming the problem, unless relay can open a store on `url`."""
    if url == MEMORY_URL:
        return
    if url.lower().startswith(REDIS_SCHEMES):
        parse_redis_url(url)
        return
    raise ConfigError(
        f"store.url {_redacted(url)!r} is not supported; "
        f"allowed: {', '.join((MEMORY_URL, *REDIS_SCHEMES))}"
    )


def _redacted(url: str) -> str:
    """The URL with its credentials, if any, shown as ***."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, _ = head.partition("://")
    return f"{scheme}{sep}***@{tail}" if sep else f"***@{tail}"
