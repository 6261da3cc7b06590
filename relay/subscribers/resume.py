"""Where a subscriber resumes: the id it last got, from `Last-Event-ID` or a query
parameter (`last_event_id` on the native API, `starting_after` on the Responses API).
One parser for every endpoint. Pure code.

A resume id is decimal digits, however many (CONTRACT.md: anything else is a 400).
An id beyond the end of a log is valid: it means "after everything there is", so an id
larger than any id relay can give (`MAX_RESUME_ID`) means the same as that one. It is
read as such without converting its digits, which for thousands of digits Python
refuses (its int-digit limit) and which would cost time quadratic in their number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# No log gets near it: event ids and Responses sequence numbers fit in 64 bits.
MAX_RESUME_ID = 2**63 - 1

_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = len(str(MAX_RESUME_ID))

NamedValue = tuple[str, str | None]  # (what the client calls it, its value if given)


def resume_id(sources: Iterable[NamedValue]) -> int | None:
    """The first given value among `sources`, in their order of precedence; None when
    none is given. An empty or blank value counts as absent. Anything but decimal
    digits (surrounding spaces ignored) raises ValueError naming its source."""
    for source, value in sources:
        if value is None or not value.strip():
            continue
        digits = value.strip()
        if not _DIGITS.fullmatch(digits):
            raise ValueError(f"{source} must be a non-negative integer, got {value[:40]!r}")
        return _bounded(digits)
    return None


def parse_resume_id(header: str | None, query: str | None) -> int:
    """The native API's resume point: the `Last-Event-ID` header, else `?last_event_id=`;
    0 ("from the start") when neither is given."""
    sources = (("Last-Event-ID header", header), ("last_event_id", query))
    found = resume_id(sources)
    return 0 if found is None else found


def _bounded(digits: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return MAX_RESUME_ID
    return min(int(significant or "0"), MAX_RESUME_ID)
