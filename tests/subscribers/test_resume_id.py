from __future__ import annotations

import pytest

from relay.subscribers.resume import parse_resume_id


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (None, None, 0),
        ("5", None, 5),
        (None, "7", 7),
        ("5", "7", 5),  # the header wins
        ("", "7", 7),  # an empty header counts as absent
        ("   ", "7", 7),
        (" 12 ", None, 12),  # surrounding spaces are ignored
        (None, "", 0),
        ("0", None, 0),
        ("123456789012345678901234567890", None, 123456789012345678901234567890),
    ],
)
def test_valid_resume_ids(header: str | None, query: str | None, expected: int) -> None:
    assert parse_resume_id(header, query) == expected


# The last two are a superscript two and a full-width one: digits to str.isdigit().
@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "0x10", "+3", "1 2", "\u00b2", "\uff11"])
def test_anything_but_decimal_digits_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="Last-Event-ID header"):
        parse_resume_id(bad, None)
    with pytest.raises(ValueError, match="last_event_id"):
        parse_resume_id(None, bad)
