from __future__ import annotations

import re

from relay.events import (
    DoneData,
    ErrorData,
    EventType,
    SessionStatus,
    StatusData,
    TextData,
    Usage,
    make_event,
)
from relay.session import (
    SessionRecord,
    hash_token,
    new_session_id,
    new_token,
    snapshot,
    token_matches,
)


def record(status: SessionStatus = SessionStatus.COMPLETED, last: int = 5) -> SessionRecord:
    return SessionRecord(
        id="s_x", model="mock", created_at=0.0, updated_at=1.5, token_sha256="", status=status,
        last_event_id=last,
    )  # fmt: skip


def test_session_ids_are_unguessable_and_url_safe() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"s_[A-Za-z0-9_-]{22}", session_id) for session_id in ids)


def test_tokens_are_checked_by_hash() -> None:
    token = new_token("rt_")
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))


def test_snapshot_folds_text_usage_and_finish_reason() -> None:
    events = [
        make_event(1, EventType.STATUS, StatusData("connecting")),
        make_event(2, EventType.DELTA, TextData("Hello")),
        make_event(3, EventType.REASONING, TextData("(thinking)")),
        make_event(4, EventType.DELTA, TextData(" world")),
        make_event(5, EventType.DONE, DoneData("stop", Usage(3, 2))),
    ]
    result = snapshot(record(), events)
    assert result.text == "Hello world"
    assert result.finish_reason == "stop"
    assert result.usage == {"input_tokens": 3, "output_tokens": 2}
    assert result.error is None
    assert (result.created_at, result.updated_at) == (
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:01.500Z",
    )


def test_snapshot_of_a_failed_session_carries_the_error() -> None:
    events = [
        make_event(1, EventType.USAGE, Usage(1, 1)),
        make_event(2, EventType.ERROR, ErrorData("upstream_error", "boom", True)),
    ]
    result = snapshot(record(SessionStatus.FAILED, 2), events)
    assert result.error == {"code": "upstream_error", "message": "boom", "retryable": True}
    assert result.usage == {"input_tokens": 1, "output_tokens": 1}
    assert result.finish_reason is None
