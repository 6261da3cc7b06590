"""The `[limits]` settings and the pure checks behind them (no server): defaults, errors
that name the key, the request-size check after translation, the connection gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import LimitsSettings, load_settings
from relay.errors import ApiError, ConfigError
from relay.frontdoors.connections import REFUSALS_LOGGED_EVERY_S, ConnectionGate, timeout_answer
from relay.sessions import prompt_chars, refuse_oversized
from relay.vocabulary import GenerationRequest, Message


def test_the_defaults_are_safe_for_real_chats() -> None:
    limits = load_settings(None, environ={}).limits
    assert (limits.max_messages, limits.max_prompt_chars) == (100_000, 4_000_000)
    assert (limits.max_request_line_bytes, limits.max_header_bytes, limits.max_headers) == (
        8190, 8190, 128,
    )  # fmt: skip
    assert (limits.header_timeout_s, limits.body_timeout_s) == (10.0, 30.0)
    assert (limits.max_connections, limits.max_connections_per_ip) == (10_000, 1000)
    assert limits.max_subscribers_per_session == 1000
    assert limits.subscriber_buffer_bytes == 1 << 20
    assert limits.send_timeout_s == 60.0


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("max_messages = 0", "limits.max_messages"),
        ("header_timeout_s = 0", "limits.header_timeout_s"),
        ('max_connections = "many"', "limits.max_connections"),
        ("subscriber_buffer_bytes = 100", "limits.subscriber_buffer_bytes"),
        ("max_conections = 5", "limits"),
    ],
)
def test_a_bad_limit_names_its_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f"[limits]\n{toml}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert f"at `{key}`" in str(error.value)


def request_of(*messages: Message) -> GenerationRequest:
    return GenerationRequest(model="mock", messages=list(messages))


def test_prompt_chars_count_text_and_tool_arguments_not_images() -> None:
    parts = [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x" * 99}}]
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    request = request_of(
        Message(role="system", content="12345"),
        Message(role="user", content=parts),
        Message(role="assistant", content=None, tool_calls=[call]),
    )
    assert prompt_chars(request) == 5 + 3 + 7


def test_a_request_within_the_limits_passes() -> None:
    limits = LimitsSettings(max_messages=2, max_prompt_chars=4)
    refuse_oversized(
        request_of(Message(role="user", content="ab"), Message(role="user", content="cd")), limits
    )


def test_too_many_messages_is_a_400_naming_the_setting() -> None:
    limits = LimitsSettings(max_messages=2)
    with pytest.raises(ApiError) as error:
        refuse_oversized(request_of(*[Message(role="user", content="x")] * 3), limits)
    assert (error.value.status, error.value.code) == (400, "too_many_messages")
    assert error.value.message == (
        "messages has 3 entries; at most 2 are allowed (limits.max_messages)"
    )


def test_too_much_prompt_text_is_a_400_naming_the_setting() -> None:
    limits = LimitsSettings(max_prompt_chars=4)
    with pytest.raises(ApiError) as error:
        refuse_oversized(request_of(Message(role="user", content="hello")), limits)
    assert (error.value.status, error.value.code) == (400, "prompt_too_long")
    assert error.value.message == (
        "the messages hold 5 characters of text; at most 4 are allowed (limits.max_prompt_chars)"
    )


def test_the_gate_counts_in_total_and_per_address() -> None:
    gate = ConnectionGate(max_total=3, max_per_ip=2)
    assert [gate.admit("10.0.0.1"), gate.admit("10.0.0.1")] == [None, None]
    assert gate.admit("10.0.0.1") == "limits.max_connections_per_ip"
    assert gate.admit("10.0.0.2") is None
    assert gate.admit("10.0.0.3") == "limits.max_connections"
    assert gate.total == 3  # refusals are not counted
    gate.release("10.0.0.1")
    assert gate.admit("10.0.0.3") is None
    gate.release("10.0.0.2")
    gate.release("10.0.0.3")
    gate.release("10.0.0.1")
    assert gate.total == 0
    assert [gate.admit("10.0.0.1"), gate.admit("10.0.0.1")] == [None, None]


def test_refusals_are_reported_at_most_once_per_interval() -> None:
    gate = ConnectionGate(max_total=1, max_per_ip=1)
    assert gate.refused(now=100.0) == 1
    assert [gate.refused(now=100.0 + i) for i in range(1, 4)] == [0, 0, 0]
    assert gate.refused(now=100.0 + REFUSALS_LOGGED_EVERY_S) == 4


def test_the_timeout_answer_is_a_whole_json_408() -> None:
    answer = timeout_answer("too slow")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"Connection: close" in head
    assert body == b'{"error":{"code":"request_timeout","message":"too slow"}}'
