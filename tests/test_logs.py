"""Logs, pure: the access log's redaction of secrets in request targets (read tokens, keys,
session ids), which request ids are logged as sent, how a stream's events are counted,
and the text and JSON lines with their request's fields."""

from __future__ import annotations

import contextvars
import json
import logging
import sys

import pytest

from relay import log_context, sse
from relay.log_context import Fields
from relay.logs import (
    ACCESS_ATTRIBUTE,
    FIELDS_ATTRIBUTE,
    Access,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    redact_secrets,
)
from relay.session import new_session_id, new_token
from relay.vocabulary import READ_TOKEN_PREFIX, session_suffix, session_tag

REDACTIONS = [
    ("/v1/sessions/s_1/events?token=rt_abc", "/v1/sessions/s_1/events?token=***"),
    ("/e?last_event_id=3&token=rt_abc&format=openai", "/e?last_event_id=3&token=***&format=openai"),
    ("/e?access_token=a&ID_TOKEN=b&x=1", "/e?access_token=***&ID_TOKEN=***&x=1"),
    ("/e?%74oken=rt_abc", "/e?%74oken=***"),  # a percent-encoded name is still `token`
    ("/e?token=", "/e?token=***"),
    ("/e?token", "/e?token"),  # no value to hide
    ("/e?tokens_used=5", "/e?tokens_used=***"),  # any name containing `token`
    ("/v1/models?api_key=rk_abc&x=1", "/v1/models?api_key=***&x=1"),  # a key, where none is read
    ("/e?key=rk_abc", "/e?key=***"),
    ("/e?X-API-KEY=rk_abc", "/e?X-API-KEY=***"),
    ("/v1/sessions/s_token/events?last_event_id=2", "/v1/sessions/s_token/events?last_event_id=2"),
    ("/v1/sessions", "/v1/sessions"),
    ("/e?x=%41&y=token", "/e?x=%41&y=token"),  # only names decide, not values
]


@pytest.mark.parametrize(("target", "logged"), REDACTIONS)
def test_query_values_of_token_and_key_parameters_are_redacted(target: str, logged: str) -> None:
    assert redact_secrets(target) == logged


SESSION_ID = new_session_id()
TAG = session_tag(SESSION_ID)
RANDOM = session_suffix(SESSION_ID)
TAGGED = [
    (f"/v1/sessions/{SESSION_ID}", f"/v1/sessions/{TAG}"),
    (f"/v1/sessions/{SESSION_ID}/events?token=rt_x", f"/v1/sessions/{TAG}/events?token=***"),
    (f"/v1/responses/resp_{RANDOM}/cancel", f"/v1/responses/{TAG}/cancel"),
    (f"/v1/x/msg_{RANDOM}", f"/v1/x/{TAG}"),
    (f"/v1/x/chatcmpl-{RANDOM}", f"/v1/x/{TAG}"),
    (f"/v1/sessions/s%5F{RANDOM}/events", f"/v1/sessions/{TAG}/events"),  # decoded, as routed
    (f"/v1/sessions/{SESSION_ID}x", f"/v1/sessions/{SESSION_ID}x"),  # not an id: 23 characters
    (f"/v1/sessions/{RANDOM}", f"/v1/sessions/{RANDOM}"),  # no prefix: not an id either
    (f"/e?session={SESSION_ID}", f"/e?session={SESSION_ID}"),  # the query is not a path
]


@pytest.mark.parametrize(("target", "logged"), TAGGED)
def test_session_ids_in_paths_are_logged_as_their_tag(target: str, logged: str) -> None:
    assert redact_secrets(target) == logged


SANE_REQUEST_IDS = [
    "req_0123456789abcdef",
    "550e8400-e29b-41d4-a716-446655440000",  # a UUID
    "0123456789abcdef0123456789abcdef",  # nginx's $request_id
    "Root=1-67891233-abcdef012345678912345678",  # AWS's X-Amzn-Trace-Id
    "a.b:c+d/e=f_g-h",
    "start_123",  # `rt_` inside a word is no read token
    "x" * 128,
]
INSANE_REQUEST_IDS = [
    "",
    "x" * 129,
    "two words",
    'quote"d',
    "tab\tsep",
    "naïve",
    "a\r\nInjected: header",
    new_token(READ_TOKEN_PREFIX),
    f"trace-{new_token(READ_TOKEN_PREFIX)}",
    SESSION_ID,
    f"trace:{SESSION_ID}",
    f"resp_{RANDOM}",
    f"chatcmpl-{RANDOM}",
]


@pytest.mark.parametrize("request_id", SANE_REQUEST_IDS)
def test_a_sane_request_id_is_logged_as_sent(request_id: str) -> None:
    assert log_context.sane_request_id(request_id)


@pytest.mark.parametrize("request_id", INSANE_REQUEST_IDS)
def test_a_request_id_too_long_odd_or_holding_a_capability_is_not(request_id: str) -> None:
    assert not log_context.sane_request_id(request_id)


def test_made_request_ids_are_sane_and_distinct() -> None:
    made = {log_context.new_request_id() for _ in range(100)}
    assert len(made) == 100
    assert all(log_context.sane_request_id(i) and i.startswith("req_") for i in made)


EVENT = sse.event_frame(3, "delta", b'{"text":"a: ping\\n\\n"}')
WIRE_EVENT = sse.data_frame(b"[DONE]")


@pytest.mark.parametrize(
    ("frames", "events"),
    [
        (EVENT, 1),
        (EVENT * 3, 3),
        (sse.PING, 0),
        (EVENT + sse.PING + WIRE_EVENT + sse.PING, 2),
        (b"", 0),
    ],
)
def test_a_streams_events_are_its_frames_less_its_pings(frames: bytes, events: int) -> None:
    assert sse.event_count(frames) == events


def record(message: str = "session %s created", *, exc: bool = False) -> logging.LogRecord:
    """A record as `log.info(message, "#1")` makes it."""
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    args = ("#1",) if "%s" in message else ()
    return logging.LogRecord("relay.runner", logging.INFO, __file__, 1, message, args, exc_info)


FIELDS = Fields(request_id="req_1", session="#abc", client="web team", upstream="openai")


def with_fields(entry: logging.LogRecord, fields: Fields | None = FIELDS) -> logging.LogRecord:
    setattr(entry, FIELDS_ATTRIBUTE, fields)
    return entry


def test_a_text_line_ends_with_its_known_fields_as_key_value() -> None:
    line = TextFormatter().format(with_fields(record()))
    assert line.endswith(
        "INFO relay.runner: session #1 created request_id=req_1 session=#abc"
        ' client="web team" upstream=openai'
    )
    partial = Fields(request_id="req_2")
    assert (
        TextFormatter().format(with_fields(record(), partial)).endswith("created request_id=req_2")
    )
    assert (
        TextFormatter()
        .format(with_fields(record(), None))
        .endswith("relay.runner: session #1 created")
    )


def test_a_text_lines_traceback_comes_after_its_fields() -> None:
    line = TextFormatter().format(with_fields(record(exc=True)))
    first, *traceback = line.splitlines()
    assert first.endswith("upstream=openai")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"


def test_a_json_line_holds_the_known_fields_and_the_exception() -> None:
    entry = json.loads(JsonFormatter().format(with_fields(record(exc=True))))
    assert entry.pop("time").endswith("Z")
    assert entry.pop("exception").endswith("ValueError: boom")
    assert entry == {
        "level": "info",
        "logger": "relay.runner",
        "message": "session #1 created",
        "request_id": "req_1",
        "session": "#abc",
        "client": "web team",
        "upstream": "openai",
    }
    plain = json.loads(JsonFormatter().format(with_fields(record(), None)))
    assert set(plain) == {"time", "level", "logger", "message"}


def test_a_json_access_line_holds_the_access_fields() -> None:
    access = Access("127.0.0.1", "GET", "/v1/sessions/#abc/events", 200, 0.25, 512, 7)
    entry = with_fields(record("the line"), Fields(request_id="req_3", session="#abc"))
    setattr(entry, ACCESS_ATTRIBUTE, access)
    line = json.loads(JsonFormatter().format(entry))
    assert {k: v for k, v in line.items() if k not in ("time", "level", "logger")} == {
        "message": "the line",
        "request_id": "req_3",
        "session": "#abc",
        "remote": "127.0.0.1",
        "method": "GET",
        "path": "/v1/sessions/#abc/events",
        "status": 200,
        "duration_s": 0.25,
        "bytes": 512,
        "events": 7,
    }
    not_a_stream = Access("127.0.0.1", "GET", "/healthz", 200, 0.001, 2)
    setattr(entry, ACCESS_ATTRIBUTE, not_a_stream)
    assert "events" not in json.loads(JsonFormatter().format(entry))


def test_the_filter_puts_the_current_context_on_records_and_note_tags_sessions() -> None:
    def logged() -> Fields | None:
        entry = record()
        ContextFilter().filter(entry)
        fields = getattr(entry, FIELDS_ATTRIBUTE)
        assert fields is None or isinstance(fields, Fields)
        return fields

    def in_a_request() -> tuple[Fields | None, Fields | None]:
        log_context.begin("req_4")
        before = logged()
        log_context.note(session_id=SESSION_ID, client="")  # the anonymous client: no name
        log_context.note(client="web", upstream="openai")
        return before, logged()

    assert logged() is None  # outside any request
    before, after = contextvars.Context().run(in_a_request)
    assert before == Fields(request_id="req_4")
    assert after == Fields("req_4", TAG, "web", "openai")
    assert logged() is None  # the request's context stayed its own
