"""Expiry bookkeeping: what the store knows of the running sessions it appends to.

Both keys of a session get `running_ttl_s` while it runs, then `retention_s` once its
terminal event is in. Appends renew the running expiry so that the keys always outlive
the last append by `running_ttl_s`, but at most about once a second per session: a
renewal gives a second more than that, which covers the appends of the next second
(see `append_ttl_s`). The lease key has its own short expiry, renewed by the
generating instance (see leases.py). `max_sessions` applies to the memory store only:
here Redis's memory policy and these expiries bound the data.

The store also keeps each running session's record from its creation or an earlier
append here, so an append answers with the new last id only: the rest of the record
cannot have changed. For a session it does not know (created elsewhere, or forgotten
past REMEMBERED_SESSIONS) it asks for the whole record. Pure: no I/O.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from relay.session import SessionRecord

__all__ = [
    "EXPIRY_SLACK_S",
    "REMEMBERED_SESSIONS",
    "Appending",
    "AppendingSessions",
    "append_ttl_s",
    "expires_by",
]

# A running session's expiry is renewed at most about once per this many seconds by
# appends here (see `append_ttl_s`).
EXPIRY_SLACK_S = 1.0
# Running sessions whose record the store keeps, so that an append's reply can be the
# new last id instead of the whole record; one not kept just costs the longer reply.
REMEMBERED_SESSIONS = 16_384


class Appending(NamedTuple):
    """What the store knows of a running session it appends to."""

    record: SessionRecord  # as of its last append (or create) here
    expires_by: float | None  # monotonic time its keys live at least until; None: unknown


def append_ttl_s(known: Appending | None, now: float, running_ttl_s: float) -> float:
    """The expiry an append gives a running session's keys, in seconds; 0: none needed.

    After every append the keys live at least `running_ttl_s` more, as when every append
    renewed them. Knowing nothing, an append gives exactly that; one that has renewed
    them before gives EXPIRY_SLACK_S more, so the appends of the next EXPIRY_SLACK_S
    seconds need not renew them again (each renewal costs two writes).
    """
    if known is None or known.expires_by is None:
        return running_ttl_s
    if known.expires_by >= now + running_ttl_s:
        return 0.0
    return running_ttl_s + EXPIRY_SLACK_S


def expires_by(known: Appending | None, sent_at: float, running_ttl_s: float) -> float | None:
    """What the store knows of the keys' expiry after an append sent at `sent_at`: the
    script renews it no earlier than that, and never shortens it."""
    if running_ttl_s:
        return sent_at + running_ttl_s
    return None if known is None else known.expires_by


class AppendingSessions:
    """The running sessions this store appended to or created, least recent first."""

    def __init__(self, limit: int = REMEMBERED_SESSIONS) -> None:
        self._limit = limit
        self._known: collections.OrderedDict[str, Appending] = collections.OrderedDict()

    def get(self, session_id: str) -> Appending | None:
        return self._known.get(session_id)

    def remember(self, record: SessionRecord, expires_by: float | None) -> None:
        """Keep what the next append needs to know; forget ended sessions and, past
        the limit, the least recently appended to (they cost a longer reply)."""
        self._known.pop(record.id, None)
        if record.status.is_final:
            return
        self._known[record.id] = Appending(record, expires_by)
        if len(self._known) > self._limit:
            self._known.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)
