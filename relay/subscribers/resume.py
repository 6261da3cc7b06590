"""Where a subscriber resumes: parsing `Last-Event-ID` and `?last_event_id=`. Pure code."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]+")


def parse_resume_id(header: str | None, query: str | None) -> int:
    """The id of the last event the client has; 0 means "from the start".

    The header wins when both are given; an empty or blank value counts as absent.
    Anything but decimal digits (surrounding spaces ignored) raises ValueError that
    names the offending source.
    """
    for source, value in (("Last-Event-ID header", header), ("last_event_id", query)):
        if value is None or not value.strip():
            continue
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise ValueError(f"{source} must be a non-negative integer, got {value[:40]!r}")
        return int(text)
    return 0
