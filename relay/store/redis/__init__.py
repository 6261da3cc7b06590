"""The Redis store, one module per concern:

    store.py         `RedisStore`: the event log, and the store as a whole
    keys.py          every key and channel name
    codec.py         records and events as Redis values
    scripts.py       the Lua scripts, run by hash
    boundary.py      concurrency limits; redis-py's exceptions become relay's
    group_commit.py  the append sender: one pipeline in flight
    expiry.py        the running expiry and the records an append's reply can omit
    tail.py          the live tail: one blocking reader per watched session
    leases.py        lease keys and the lease index
    cancels.py       the cancel bus on pub/sub
    connect.py       the client for one server, Sentinel or Cluster

Only this package imports redis-py.
"""

from __future__ import annotations

from relay.store.redis.store import RedisStore

__all__ = ["RedisStore"]
