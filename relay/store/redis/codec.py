"""How records and events are laid out in Redis values, and back. Pure: no I/O.

A record is a hash of its `SessionRecord` fields as strings; event N is Stream entry
`N-0` with one field, named by the event's type, whose value is its data JSON (stored as
given and read back unchanged). One field rather than two (`t`, then `d`, as relay wrote
them until December 2026, and still reads) makes a replay's reply a fifth smaller, with
two objects fewer per entry to parse: hiredis's parse is most of a replay from Redis.

Stream replies are decoded here from the shape the server sends, as hiredis parses it:
the store's client keeps them raw (`relay.store.redis.connect.raw_stream_replies`),
because redis-py's own parsing builds a tuple and a dict per entry, which cost more
than the rest of a 10,000-event replay together. Entry ids of one read are consecutive (the log
has no gaps), so only the first and the last are parsed; a read that breaks the rule
is decoded entry by entry, field by name, as exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from relay.errors import StoreError
from relay.events import Event, EventType
from relay.session import SessionRecord
from relay.vocabulary import session_tag

__all__ = [
    "Fields",
    "RawEntries",
    "decode_entries",
    "decode_record",
    "decode_signal_entries",
    "decode_stream_read",
    "encode_record",
    "entry_id",
    "ms",
    "stream_read_entries",
]

# With decode_responses=False every reply holds bytes; redis-py's types also allow str.
Fields = Mapping[bytes, bytes]
# XRANGE's reply as the server sends it: [[b"N-0", [type, data]], ...].
RawEntries = Sequence[Sequence[Any]]

_EVENT_TYPES = {event_type.value.encode(): event_type for event_type in EventType}


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


def decode_entries(entries: RawEntries) -> list[Event]:
    """Event log entries (raw XRANGE or XREAD entries) as events."""
    if not entries:
        return []
    first = _entry_number(entries[0][0])
    if _entry_number(entries[-1][0]) != first + len(entries) - 1:
        return [_decode_event(_entry_number(entry_id), fields) for entry_id, fields in entries]
    try:
        return [
            Event(event_id, _EVENT_TYPES[type_name], msgspec.Raw(data))
            for event_id, (_, (type_name, data)) in enumerate(entries, first)
        ]
    except (KeyError, ValueError, TypeError):  # not laid out as relay writes it
        numbered = enumerate(entries, first)
        return [_decode_event(event_id, fields) for event_id, (_, fields) in numbered]


def decode_stream_read(reply: Any) -> list[Event]:
    """XREAD's raw reply for one stream as events: a map of the stream's key to its
    entries (RESP3), a list of such pairs (RESP2), or None when the read timed out."""
    return [event for entries in stream_read_entries(reply) for event in decode_entries(entries)]


def stream_read_entries(reply: Any) -> list[RawEntries]:
    """The entries of each stream in XREAD's raw reply (see `decode_stream_read`)."""
    pairs = reply.items() if isinstance(reply, Mapping) else reply or ()
    return [entries for _, entries in pairs]


def decode_signal_entries(entries: RawEntries) -> list[tuple[int, bytes]]:
    """Signal log entries (`N-0`, field `d`) as (id, data) pairs."""
    return [(_entry_number(entry_id), fields[1]) for entry_id, fields in entries]


def _entry_number(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


def _decode_event(event_id: int, fields: Sequence[bytes]) -> Event:
    """One entry, in either layout (see the module docstring)."""
    try:
        named = dict(zip(fields[::2], fields[1::2], strict=True))
        if len(named) == 1:
            ((type_name, data),) = named.items()
        else:  # the two-field layout of earlier relays
            type_name, data = named[b"t"], named[b"d"]
        return Event(event_id, _EVENT_TYPES[type_name], msgspec.Raw(data))
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"event log entry {event_id} in redis is malformed: {exc!r}") from exc


def entry_id(event_id: int) -> str:
    """The Stream entry id of event `event_id`."""
    return f"{event_id}-0"


def ms(seconds: float) -> int:
    """A duration in whole milliseconds, at least 1: Redis refuses an expiry of 0."""
    return max(1, round(seconds * 1000))
