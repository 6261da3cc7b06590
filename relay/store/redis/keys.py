"""Every Redis key and channel relay uses, named in one place.

Every key of a session carries the session id as a Cluster hash tag, so that a
session's keys share one slot and a script may touch them all:

    relay:{<session id>}:log    Stream; event N is entry `N-0` (see codec.py)
    relay:{<session id>}:meta   hash; the `SessionRecord` fields, as strings
    relay:{<session id>}:lease  string; the generating instance, while it renews it

and two names are shared by all sessions:

    relay:leases                sorted set; the lease index (see leases.py)
    relay:cancel                pub/sub channel; cancel requests (see cancels.py)
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CANCEL_CHANNEL", "LEASE_INDEX_KEY", "SessionKeys", "session_keys"]

LEASE_INDEX_KEY = "relay:leases"
CANCEL_CHANNEL = "relay:cancel"


class SessionKeys(NamedTuple):
    log: str
    meta: str
    lease: str  # exists while the generating instance keeps renewing it


def session_keys(session_id: str) -> SessionKeys:
    """The keys of one session. The braces are a Cluster hash tag."""
    prefix = f"relay:{{{session_id}}}"
    return SessionKeys(log=f"{prefix}:log", meta=f"{prefix}:meta", lease=f"{prefix}:lease")
