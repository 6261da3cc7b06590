"""The pure rules every store shares (relay/store/base.py), without an event loop; the
contract suites hold each store to them."""

from __future__ import annotations

import pytest

from relay.events import Event, EventType
from relay.store import fits_under_cap
from relay.store.base import check_first

CAP = 4


def event(event_id: int, event_type: EventType = EventType.DELTA) -> Event:
    return Event(event_id, event_type, b'{"text": "x"}')


@pytest.mark.parametrize("last_id", [1, CAP - 1])
def test_events_below_the_last_id_fit(last_id: int) -> None:
    assert fits_under_cap(event(last_id), CAP)


def test_the_last_id_is_kept_for_a_terminal_event() -> None:
    assert not fits_under_cap(event(CAP), CAP)
    assert fits_under_cap(event(CAP, EventType.DONE), CAP)
    assert fits_under_cap(event(CAP, EventType.ERROR), CAP)


def test_nothing_fits_past_the_cap() -> None:
    assert not fits_under_cap(event(CAP + 1, EventType.CANCELLED), CAP)
    assert not fits_under_cap(event(CAP + 1), CAP)


def test_first_events_leave_the_last_id_for_the_end() -> None:
    check_first([event(1), event(2), event(3)], CAP)
    with pytest.raises(ValueError, match="do not fit"):
        check_first([event(i) for i in range(1, CAP + 1)], CAP)
