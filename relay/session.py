"""A session's record and its snapshot. Pure code, no I/O.

The record is the small, mutable metadata a store keeps beside the event log; the
snapshot is what `GET /v1/sessions/{id}` answers, folded from the log.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

import msgspec

from relay.events import (
    STATUS_AFTER_TERMINAL,
    Event,
    EventType,
    SessionStatus,
    ToolCallData,
)
from relay.vocabulary import SESSION_ID_PREFIX

# The `producer` of a session whose events an agent backend appends (relay/external.py).
EXTERNAL_PRODUCER = "external"


def new_session_id() -> str:
    """`s_` and 22 base64url characters: 128 random bits, unguessable and URL-safe."""
    return SESSION_ID_PREFIX + _random_b64(16)


def new_token(prefix: str) -> str:
    """A bearer token with 192 random bits."""
    return prefix + _random_b64(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_sha256: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_sha256)


def _random_b64(nbytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode()


class SessionRecord(msgspec.Struct):
    """What a store keeps about a session besides its events.

    Times are seconds since the epoch. `status` and `last_event_id` change only
    through the store's append, which keeps them consistent with the log. `client` is
    whom the session belongs to: no other client can see it (`relay.sessions`).
    """

    id: str
    model: str
    created_at: float
    updated_at: float
    token_sha256: str
    status: SessionStatus = SessionStatus.RUNNING
    last_event_id: int = 0
    owner: str = ""  # the instance generating it
    client: str = ""  # the name of the client that created it ("" when anonymous)
    # An external producer's session (relay/external.py): `producer` is "external", the
    # digest of its producer token, how long it may stay silent, and the last batch it
    # had accepted (`producer_seq`) with the event ids that batch was given.
    producer: str = ""
    producer_token_sha256: str = ""
    producer_idle_timeout_s: float = 0.0
    producer_seq: int = 0
    producer_first_id: int = 0
    producer_last_id: int = 0
    # How many times another instance took the generation over from a lost one
    # (relay/takeover.py); only the store's lease claim changes it.
    takeovers: int = 0

    @property
    def is_external(self) -> bool:
        return self.producer == EXTERNAL_PRODUCER

    def after_append(self, events: list[Event], now: float) -> SessionRecord:
        """The record once `events` are appended (they are assumed valid)."""
        last = events[-1]
        status = STATUS_AFTER_TERMINAL[last.type] if last.is_terminal else self.status
        return msgspec.structs.replace(self, last_event_id=last.id, status=status, updated_at=now)

    def after_batch(self, seq: int, events: list[Event], now: float) -> SessionRecord:
        """The record once an external producer's batch `seq` is appended as `events`."""
        appended = self.after_append(events, now)
        return msgspec.structs.replace(
            appended,
            producer_seq=seq,
            producer_first_id=events[0].id,
            producer_last_id=events[-1].id,
        )


def rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Snapshot(msgspec.Struct):
    """The JSON answer of `GET /v1/sessions/{id}`."""

    id: str
    status: SessionStatus
    model: str
    text: str
    tool_calls: list[ToolCallData]
    last_event_id: int
    finish_reason: str | None
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: str
    updated_at: str


_decode_tool_call = msgspec.json.Decoder(ToolCallData).decode


def snapshot(record: SessionRecord, events: Iterable[Event]) -> Snapshot:
    """Fold a session's log into its snapshot (see `SnapshotFold`)."""
    fold = SnapshotFold()
    fold.add(events)
    return fold.snapshot(record)


class SnapshotFold:
    """A snapshot folded from a log a batch at a time: `add` each, then `snapshot()`.
    `usage` is the latest a `usage`, `done` or `cancelled` event reported: a cancelled
    session keeps the usage it had."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._tool_calls: list[ToolCallData] = []
        self._usage: dict[str, Any] | None = None
        self._finish_reason: str | None = None
        self._error: dict[str, Any] | None = None

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: Event) -> None:
        if event.type is EventType.DELTA:
            self._text.append(event.decoded_data()["text"])
        elif event.type is EventType.TOOL_CALL:
            self._tool_calls.append(_decode_tool_call(event.data))
        elif event.type is EventType.USAGE:
            self._usage = event.decoded_data()
        elif event.type in (EventType.DONE, EventType.CANCELLED):
            ending = event.decoded_data()
            self._finish_reason = ending.get("finish_reason")
            self._usage = ending.get("usage") or self._usage
        elif event.type is EventType.ERROR:
            self._error = event.decoded_data()

    def snapshot(self, record: SessionRecord) -> Snapshot:
        return Snapshot(
            id=record.id,
            status=record.status,
            model=record.model,
            text="".join(self._text),
            tool_calls=self._tool_calls,
            last_event_id=record.last_event_id,
            finish_reason=self._finish_reason,
            usage=self._usage,
            error=self._error,
            created_at=rfc3339(record.created_at),
            updated_at=rfc3339(record.updated_at),
        )
