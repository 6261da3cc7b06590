"""Every Redis key and channel relay uses, named in one place.

Every key of a session carries the session id as a Cluster hash tag, so that a
session's keys share one slot and a script may touch them all:

    relay:{<session id>}:log    Stream; event N is entry `N-0` (see codec.py)
    relay:{<session id>}:meta   hash; the `SessionRecord` fields, as strings
    relay:{<session id>}:lease  string; the generating instance, while it renews it
    relay:{<session id>}:signals  Stream; signal N is entry `N-0`, its data in field `d`
                                  (made by the first signal; expires with the log)
    relay:{<session id>}:takeover  string; what a takeover needs (relay/takeover.py), for
                                   a session that has it, while it runs

and two names are shared by all sessions:

    relay:leases                sorted set; the lease index (see leases.py)
    relay:cancel                pub/sub channel; cancel requests (see cancels.py)

Every quota key of a client carries `c:<client name>` as its hash tag (see quotas.py),
so the admission script touches one slot; it never touches a session's keys:

    relay:quota:{c:<name>}:slots             sorted set; running sessions, scored by
                                             when they were admitted (ms)
    relay:quota:{c:<name>}:requests:<minute> string; sessions admitted in that minute
    relay:quota:{c:<name>}:tokens:<minute>   string; output tokens counted in it

(`<minute>` is the caller's clock in whole minutes since the epoch; both expire after
`QUOTA_COUNT_TTL_MS`, once the window no longer looks back at them.)

What a chat of the Vercel AI SDK front door streams now (see chats.py) is one key per
chat, named by a digest of its client and its id (the id is the client's own string, of
any length and characters; the digest keeps it out of key names and makes it a tag):

    relay:chat:{<32 hex digits>}             string; the `ChatStream` as JSON
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = [
    "CANCEL_CHANNEL",
    "LEASE_INDEX_KEY",
    "QUOTA_COUNT_TTL_MS",
    "QuotaKeys",
    "SessionKeys",
    "chat_key",
    "quota_keys",
    "session_keys",
]

LEASE_INDEX_KEY = "relay:leases"
CANCEL_CHANNEL = "relay:cancel"
# A minute's count is read during it and the minute after: three minutes is room.
QUOTA_COUNT_TTL_MS = 180_000


class SessionKeys(NamedTuple):
    log: str
    meta: str
    lease: str  # exists while the generating instance keeps renewing it
    signals: str  # exists once a user sent the session's producer a signal
    takeover: str  # exists while a session that another instance may take over runs


def session_keys(session_id: str) -> SessionKeys:
    """The keys of one session. The braces are a Cluster hash tag."""
    prefix = f"relay:{{{session_id}}}"
    return SessionKeys(
        log=f"{prefix}:log",
        meta=f"{prefix}:meta",
        lease=f"{prefix}:lease",
        signals=f"{prefix}:signals",
        takeover=f"{prefix}:takeover",
    )


class QuotaKeys(NamedTuple):
    slots: str
    requests: str  # + ":<minute>"
    tokens: str  # + ":<minute>"

    def requests_in(self, minute: int) -> str:
        return f"{self.requests}:{minute}"

    def tokens_in(self, minute: int) -> str:
        return f"{self.tokens}:{minute}"


def quota_keys(client: str) -> QuotaKeys:
    """The quota keys of one client. The braces are a Cluster hash tag; the `c:` keeps a
    client's tag from ever being a session's."""
    prefix = f"relay:quota:{{c:{client}}}"
    return QuotaKeys(
        slots=f"{prefix}:slots", requests=f"{prefix}:requests", tokens=f"{prefix}:tokens"
    )


def chat_key(client: str, chat_id: str) -> str:
    """The key of one client's chat. Its name's length comes first in what is digested,
    so that no other client and chat id give the same key."""
    digest = hashlib.sha256(f"{len(client)}:{client}:{chat_id}".encode()).hexdigest()[:32]
    return f"relay:chat:{{{digest}}}"
