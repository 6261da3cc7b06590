"""The `[limits]` settings and the pure checks behind them (no server): defaults, errors
that name the key, the request-size check after translation, the connection gate, and
what `relay serve`'s event loop does with accepts that fail out of descriptors."""

from __future__ import annotations

import errno
import logging
import socket
from asyncio import trsock
from pathlib import Path
from typing import Any

import pytest

from relay.config import LimitsSettings, load_settings
from relay.errors import ApiError, ConfigError
from relay.frontdoors.connections import (
    REFUSALS_LOGGED_EVERY_S,
    ConnectionGate,
    OutOfDescriptors,
    timeout_answer,
)
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


class ReportingLoop:
    """What the handler needs of a loop: its default handler, recording what reaches it."""

    def __init__(self) -> None:
        self.reported: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.reported.append(context)


def test_accepts_out_of_descriptors_refuse_the_waiting_connections_in_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, handler = ReportingLoop(), OutOfDescriptors(ConnectionGate(10, 10))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)  # as the event loop's listening sockets are
        waiting = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        out = {"message": "socket.accept() out of system resource",
               "exception": OSError(errno.EMFILE, "Too many open files"),
               "socket": trsock.TransportSocket(listener)}  # fmt: skip
        with caplog.at_level(logging.DEBUG, logger="relay.frontdoors.connections"):
            handler(loop, out)  # type: ignore[arg-type]
            handler(loop, out)  # type: ignore[arg-type]  # nothing waits now; reported later
        assert listener.fileno() != -1  # the loop's socket is still open, still its own
        for client in waiting:
            client.settimeout(2)
            assert client.recv(1) == b""  # closed by relay at once, not left to time out
            client.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "refused 3 connection(s): out of file descriptors (EMFILE); "
        "the 0 open connection(s) are still served"
    ]
    assert loop.reported == []


def test_other_reports_reach_the_default_handler_and_a_stale_retry_none() -> None:
    loop, handler = ReportingLoop(), OutOfDescriptors(ConnectionGate(10, 10))
    bug = {"message": "Exception in callback print()", "exception": RuntimeError("bug")}
    stale_retry = {
        "message": "Exception in callback BaseSelectorEventLoop._start_serving(<function>)",
        "exception": ValueError("Invalid file descriptor: -1"),
    }
    handler(loop, bug)  # type: ignore[arg-type]
    handler(loop, stale_retry)  # type: ignore[arg-type]
    assert loop.reported == [bug]
