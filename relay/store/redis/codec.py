"""How records and events are laid out in Redis values, and back. Pure: no I/O.

A record is a hash of its `SessionRecord` fields as strings; event N is Stream entry
`N-0` with the fields `t` (its type) and `d` (its data JSON, stored as given and read
back unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from relay.errors import StoreError
from relay.events import Event, EventType
from relay.session import SessionRecord
from relay.vocabulary import session_tag

__all__ = [
    "Entries",
    "Fields",
    "decode_entries",
    "decode_record",
    "encode_record",
    "entry_id",
    "ms",
]

# With decode_responses=False every reply holds bytes; redis-py's types also allow str.
Fields = Mapping[bytes, bytes]
Entries = list[tuple[bytes, Fields]]


def encode_record(record: SessionRecord) -> dict[str, str]:
    # str() of a float is its shortest exact repr, so times survive the round trip.
    return {name: str(value) for name, value in msgspec.to_builtins(record).items()}


def decode_record(fields: Fields) -> SessionRecord:
    text = {name.decode(): value.decode() for name, value in fields.items()}
    try:
        # strict=False parses the numbers that a hash can only hold as strings.
        return msgspec.convert(text, SessionRecord, strict=False)
    except msgspec.ValidationError as exc:
        tag = session_tag(text.get("id", ""))
        raise StoreError(f"session record {tag} in redis is malformed: {exc}") from exc


def decode_entries(entries: Entries) -> list[Event]:
    return [_decode_event(entry_id, fields) for entry_id, fields in entries]


def _decode_event(entry_id: bytes, fields: Fields) -> Event:
    event_id = int(entry_id.partition(b"-")[0])
    return Event(event_id, EventType(fields[b"t"].decode()), msgspec.Raw(fields[b"d"]))


def entry_id(event_id: int) -> str:
    """The Stream entry id of event `event_id`."""
    return f"{event_id}-0"


def ms(seconds: float) -> int:
    """A duration in whole milliseconds, at least 1: Redis refuses an expiry of 0."""
    return max(1, round(seconds * 1000))
