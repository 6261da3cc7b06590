"""The shared vocabulary: finish reasons across formats, session id prefixes and tags."""

from __future__ import annotations

import hashlib
import re

import pytest

from relay.session import new_session_id
from relay.vocabulary import (
    SESSION_ID_PREFIX,
    anthropic_stop_reason,
    finish_from_anthropic,
    openai_finish_reason,
    session_suffix,
    session_tag,
)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "something_new"),
    ],
)
def test_anthropic_stop_reasons_in_relay_words(stop_reason: str, finish_reason: str) -> None:
    assert finish_from_anthropic(stop_reason) == finish_reason


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_relay_finish_reasons_as_anthropic_stop_reasons(
    finish_reason: str | None, stop_reason: str
) -> None:
    assert anthropic_stop_reason(finish_reason) == stop_reason


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons_as_openai_names_them(reason: str | None, expected: str) -> None:
    assert openai_finish_reason(reason) == expected


def test_session_ids_carry_the_prefix_and_a_random_suffix() -> None:
    session_id = new_session_id()
    assert session_id.startswith(SESSION_ID_PREFIX)
    assert SESSION_ID_PREFIX + session_suffix(session_id) == session_id
    assert len(session_suffix(session_id)) == 22


def test_a_session_tag_is_a_short_hash_of_the_ids_random_part() -> None:
    session_id = new_session_id()
    tag = session_tag(session_id)
    assert re.fullmatch(r"#[0-9a-f]{12}", tag)
    assert tag == "#" + hashlib.sha256(session_suffix(session_id).encode()).hexdigest()[:12]
    assert session_tag(session_id) == tag  # an operator holding the id finds its lines
    assert session_suffix(session_id)[:6] not in tag
    assert len({session_tag(new_session_id()) for _ in range(1000)}) == 1000
