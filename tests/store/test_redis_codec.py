"""Stream replies decoded from the shape the server sends (`relay.store.redis.codec`):
the fast path for a read laid out as relay writes it, and the exact one for anything
else. Pure: no Redis (the contract suite reads real servers through it)."""

from __future__ import annotations

import pytest

from relay.errors import StoreError
from relay.events import EventType
from relay.store.redis.codec import decode_entries, decode_signal_entries, decode_stream_read


def entry(event_id: int, kind: bytes = b"delta", data: bytes = b'{"text":"w"}') -> list[object]:
    return [b"%d-0" % event_id, [kind, data]]


def two_field_entry(event_id: int, kind: bytes = b"delta", data: bytes = b'{"text":"w"}'):
    """An entry as relay wrote them until December 2026: fields `t` and `d`."""
    return [b"%d-0" % event_id, [b"t", kind, b"d", data]]


def test_a_read_of_consecutive_entries_decodes_each_as_written() -> None:
    events = decode_entries([entry(7), entry(8, b"done", b'{"finish_reason":"stop"}')])
    assert [(event.id, event.type, bytes(event.data)) for event in events] == [
        (7, EventType.DELTA, b'{"text":"w"}'),
        (8, EventType.DONE, b'{"finish_reason":"stop"}'),
    ]


def test_ids_that_are_not_consecutive_are_each_read() -> None:
    events = decode_entries([entry(1), entry(3), entry(4)])
    assert [event.id for event in events] == [1, 3, 4]


def test_entries_of_the_earlier_two_field_layout_are_read() -> None:
    events = decode_entries([two_field_entry(1), entry(2), two_field_entry(3, b"done", b"{}")])
    assert [(event.id, event.type, bytes(event.data)) for event in events] == [
        (1, EventType.DELTA, b'{"text":"w"}'),
        (2, EventType.DELTA, b'{"text":"w"}'),
        (3, EventType.DONE, b"{}"),
    ]


def test_fields_in_another_order_are_read_by_name() -> None:
    swapped = [b"2-0", [b"d", b'{"text":"x"}', b"t", b"delta"]]
    events = decode_entries([entry(1), swapped])
    assert [(event.id, bytes(event.data)) for event in events] == [
        (1, b'{"text":"w"}'),
        (2, b'{"text":"x"}'),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        [b"delta"],
        [b"no-such-type", b"{}"],
        [b"delta", b"{}", b"done"],
        [b"t", b"no-such-type", b"d", b"{}"],
        [b"t", b"delta", b"x", b"{}"],
    ],
    ids=["no data", "unknown type", "odd fields", "unknown type, two fields", "no d field"],
)
def test_a_malformed_entry_is_a_store_error(fields: list[bytes]) -> None:
    with pytest.raises(StoreError, match="malformed"):
        decode_entries([entry(1), [b"2-0", fields]])


def test_an_xread_reply_in_either_protocol() -> None:
    resp3 = {b"relay:{s}:log": [entry(5), entry(6)]}
    resp2 = [[b"relay:{s}:log", [entry(5), entry(6)]]]
    assert [event.id for event in decode_stream_read(resp3)] == [5, 6]
    assert decode_stream_read(resp2) == decode_stream_read(resp3)
    assert decode_stream_read(None) == []


def test_signal_entries() -> None:
    assert decode_signal_entries([[b"1-0", [b"d", b"{}"]], [b"2-0", [b"d", b"[]"]]]) == [
        (1, b"{}"),
        (2, b"[]"),
    ]
