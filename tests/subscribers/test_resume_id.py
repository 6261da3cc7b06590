from __future__ import annotations

import pytest

from relay.subscribers.resume import MAX_RESUME_ID, parse_resume_id, resume_id


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
        ("00042", None, 42),
        ("9223372036854775807", None, MAX_RESUME_ID),
        # Beyond any id relay gives, however long: the same as the largest one.
        ("123456789012345678901234567890", None, MAX_RESUME_ID),
        ("9223372036854775808", None, MAX_RESUME_ID),
        ("0" * 5000 + "7", None, 7),
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


@pytest.mark.parametrize("digits", [4301, 10_000, 1_000_000])
def test_thousands_of_digits_mean_beyond_any_id_without_converting_them(digits: int) -> None:
    # Python refuses int() of more than 4,300 digits; the parser never asks it to.
    assert parse_resume_id("9" * digits, None) == MAX_RESUME_ID
    assert parse_resume_id(None, "1" + "0" * digits) == MAX_RESUME_ID


def test_one_parser_names_each_endpoints_sources() -> None:
    sources = [("Last-Event-ID header", None), ("starting_after", "x")]
    with pytest.raises(ValueError, match="starting_after must be a non-negative integer"):
        resume_id(sources)
    assert resume_id([("Last-Event-ID header", " "), ("starting_after", None)]) is None
    assert resume_id([("Last-Event-ID header", "0"), ("starting_after", "9")]) == 0
