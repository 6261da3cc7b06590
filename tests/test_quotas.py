"""The quotas' arithmetic (relay/quotas.py), without a store: the sliding window's
estimate and when it admits again, and the 429 a refusal is answered."""

from __future__ import annotations

import pytest

from relay.quotas import (
    CONCURRENCY_RETRY_S,
    QuotaLimits,
    QuotaRefusal,
    Window,
    refuse_by_concurrency,
    refuse_by_windows,
)

MINUTE = 1_800_000_000.0  # the start of a minute


def test_the_previous_minute_weighs_what_the_last_60_s_still_cover() -> None:
    assert Window(60, 10, MINUTE).estimate == 70
    assert Window(60, 10, MINUTE + 15).estimate == 55
    assert Window(60, 10, MINUTE + 45).estimate == 25


@pytest.mark.parametrize(
    ("window", "limit", "need", "retry_after_s"),
    [
        # This minute alone is over: it must weigh little enough next minute.
        (Window(0, 3, MINUTE + 30), 3, 1, 50),
        (Window(0, 10, MINUTE + 59), 10, 1, 7),
        (Window(0, 1, MINUTE + 59), 1, 1, 61),
        # The previous minute must weigh less: later in this one.
        (Window(10, 1, MINUTE), 10, 1, 12),
        # need 0 (tokens): refused while the estimate has reached the limit.
        (Window(0, 100, MINUTE + 8), 100, 0, 53),
        (Window(200, 0, MINUTE + 29), 100, 0, 2),
    ],
)
def test_retry_after_is_the_first_second_the_window_admits(
    window: Window, limit: int, need: int, retry_after_s: int
) -> None:
    assert not window.admits(limit, need)
    assert window.retry_after(limit, need) == retry_after_s
    assert window.later(window.now + retry_after_s).admits(limit, need)
    assert not window.later(window.now + retry_after_s - 1).admits(limit, need)


def test_a_window_under_its_limit_admits() -> None:
    assert Window(0, 2, MINUTE).admits(3, 1)
    assert Window(0, 99, MINUTE).admits(100, 0)
    assert not Window(0, 3, MINUTE).admits(3, 1)


def test_tokens_are_refused_before_requests() -> None:
    limits = QuotaLimits(requests_per_minute=1, tokens_per_minute=10)
    refusal = refuse_by_windows(limits, Window(0, 5, MINUTE), Window(0, 10, MINUTE))
    assert refusal is not None and refusal.limit == "tokens_per_minute"
    assert refuse_by_windows(QuotaLimits(), Window(0, 5, MINUTE), Window(0, 10, MINUTE)) is None


def test_concurrency_refuses_with_a_short_fixed_wait() -> None:
    limits = QuotaLimits(max_concurrent_sessions=2)
    assert refuse_by_concurrency(limits, 1) is None
    refusal = QuotaRefusal("max_concurrent_sessions", 2, CONCURRENCY_RETRY_S)
    assert refuse_by_concurrency(limits, 2) == refusal


def test_a_refusal_is_a_429_naming_the_limit_and_the_client() -> None:
    error = QuotaRefusal("requests_per_minute", 60, 12).error("web")
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.message == "client 'web' is over requests_per_minute = 60; retry in 12 s"
    assert error.headers == {"Retry-After": "12"}


def test_quota_limits_say_whether_there_are_any() -> None:
    assert not QuotaLimits().any
    assert QuotaLimits(tokens_per_minute=1).any
