"""JSON cut short, read as far as it goes (tool-call arguments stopped by max_tokens)."""

from __future__ import annotations

from typing import Any

import pytest

from relay.wire.partial_json import parse_partial


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"city": "Paris", "days": 3}', {"city": "Paris", "days": 3}),
        ("", None),
        ("{", {}),
        ('{"ci', {}),
        ('{"city"', {}),
        ('{"city": ', {}),
        ('{"city": "Par', {"city": "Par"}),
        ('{"city": "Paris"', {"city": "Paris"}),
        ('{"city": "Paris", ', {"city": "Paris"}),
        ('{"city": "Paris", "days": 3', {"city": "Paris"}),
        ('{"city": "Paris", "days": 3,', {"city": "Paris", "days": 3}),
        ('{"ok": tr', {}),
        ('{"ok": true}', {"ok": True}),
        ('{"tags": ["a", "b', {"tags": ["a", "b"]}),
        ('{"tags": [1, 2', {"tags": [1]}),
        ('{"a": {"b": {"c": "d', {"a": {"b": {"c": "d"}}}),
        ('{"text": "a, b and ', {"text": "a, b and "}),
        ('{"text": "line\\', {"text": "line"}),
        ('{"text": "caf\\u00', {"text": "caf"}),
        ('{"text": "caf\\u00e9', {"text": "café"}),
        ('{"text": "say \\"hi', {"text": 'say "hi'}),
        ('["a", {"k": ["v', ["a", {"k": ["v"]}]),
        ("not json", None),
        ("[" * 100_000, None),
    ],
)
def test_cut_json_is_read_as_far_as_it_goes(text: str, value: Any) -> None:
    assert parse_partial(text) == value
