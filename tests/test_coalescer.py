from __future__ import annotations

from relay.coalescer import TextCoalescer
from relay.events import EventType

DELTA, REASONING = EventType.DELTA, EventType.REASONING


def test_first_text_goes_out_at_once() -> None:
    coalescer = TextCoalescer(interval_s=0.025, max_chars=100)
    assert coalescer.add(DELTA, "Hello", now=0.0) == [(DELTA, "Hello")]
    assert coalescer.deadline is None


def test_later_text_is_held_until_the_interval_passes() -> None:
    coalescer = TextCoalescer(interval_s=0.025, max_chars=100)
    coalescer.add(DELTA, "a", now=0.0)
    assert coalescer.add(DELTA, " b", now=0.001) == []
    assert coalescer.add(DELTA, " c", now=0.010) == []
    assert coalescer.deadline == 0.001 + 0.025
    assert coalescer.due(now=0.020) == []
    assert coalescer.due(now=0.027) == [(DELTA, " b c")]
    assert coalescer.deadline is None


def test_text_arriving_after_the_deadline_flushes_with_it() -> None:
    coalescer = TextCoalescer(interval_s=0.025, max_chars=100)
    coalescer.add(DELTA, "a", now=0.0)
    coalescer.add(DELTA, " b", now=0.001)
    assert coalescer.add(DELTA, " c", now=0.5) == []  # what is due is the caller's to ask
    assert coalescer.add(DELTA, " d", now=0.5) == []
    assert coalescer.due(now=0.5) == [(DELTA, " b c d")]


def test_max_chars_flushes_early() -> None:
    coalescer = TextCoalescer(interval_s=10, max_chars=5)
    coalescer.add(DELTA, "a", now=0)
    assert coalescer.add(DELTA, "bcd", now=0) == []
    assert coalescer.add(DELTA, "ef", now=0) == [(DELTA, "bcdef")]


def test_a_change_of_kind_flushes_the_held_text_first() -> None:
    coalescer = TextCoalescer(interval_s=10, max_chars=100)
    coalescer.add(REASONING, "think", now=0)
    coalescer.add(REASONING, "ing", now=0)
    assert coalescer.add(DELTA, "answer", now=0) == [(REASONING, "ing")]
    assert coalescer.take() == [(DELTA, "answer")]


def test_take_empties_and_returns_nothing_when_empty() -> None:
    coalescer = TextCoalescer(interval_s=10, max_chars=100)
    assert coalescer.take() == []
    coalescer.add(DELTA, "x", now=0)
    coalescer.add(DELTA, "y", now=0)
    assert coalescer.take() == [(DELTA, "y")]
    assert coalescer.take() == []


def test_interval_zero_turns_coalescing_off() -> None:
    coalescer = TextCoalescer(interval_s=0, max_chars=100)
    flushed = [coalescer.add(DELTA, word, now=0) for word in ("a", "b", "c")]
    assert flushed == [[(DELTA, "a")], [(DELTA, "b")], [(DELTA, "c")]]
