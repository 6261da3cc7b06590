from __future__ import annotations

import secrets

import msgspec

from relay import sse
from relay.events import Event, EventType, TextData, make_event, sse_frames


def test_event_frame_is_id_event_and_one_data_line() -> None:
    frame = sse.event_frame(7, "delta", b'{"text":"a\\nb"}')
    assert frame == b'id: 7\nevent: delta\ndata: {"text":"a\\nb"}\n\n'


def test_an_event_frame_holds_its_id_type_and_data() -> None:
    event = make_event(3, EventType.DELTA, TextData("line one\nline two"))
    lines = event.sse.decode().split("\n")
    assert lines[:2] == ["id: 3", "event: delta"]
    assert msgspec.json.decode(lines[2].removeprefix("data: ")) == {"text": "line one\nline two"}
    assert lines[3:] == ["", ""]


def test_frames_made_together_are_each_events_frame_joined() -> None:
    events = [
        Event(event_id, event_type, msgspec.Raw(b'{"n":%d}' % event_id))
        for event_id, event_type in enumerate(EventType, start=98)  # ids of 2 and 3 digits
    ]
    assert sse_frames(events) == b"".join(event.sse for event in events)
    assert sse_frames(events[:1]) == b'id: 98\nevent: status\ndata: {"n":98}\n\n'
    assert sse_frames([]) == b""


def test_retry_ping_and_data_frames() -> None:
    assert sse.retry_frame(1000) == b"retry: 1000\n\n"
    assert sse.PING == b": ping\n\n"
    assert sse.data_frame(b"[DONE]") == b"data: [DONE]\n\n"
    assert sse.data_frame(b"{}", 4, "message_stop") == b"id: 4\nevent: message_stop\ndata: {}\n\n"


def test_a_first_heartbeat_falls_in_the_second_half_of_the_interval_by_session() -> None:
    ids = [f"s_{secrets.token_urlsafe(16)}" for _ in range(2000)]
    beats = [sse.first_heartbeat_s(10.0, session_id) for session_id in ids]
    assert all(5.0 <= beat <= 10.0 for beat in beats)
    assert sse.first_heartbeat_s(10.0, ids[0]) == beats[0]  # the same session, the same beat
    per_second = [sum(1 for beat in beats if 5 + k <= beat < 6 + k) for k in range(5)]
    assert min(per_second) > 300, per_second  # 400 each if even: no clump, no empty second
