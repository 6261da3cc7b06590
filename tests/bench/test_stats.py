"""The benchmark's statistics: quantiles, schedule lag, gaps and the steady-state rate.

Times are multiples of 1/4 s and rates are 4 tokens/s, so every expected value is exact.
"""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    cdf_points,
    gaps,
    quantile,
    schedule_origin,
    steady_rate,
    summary,
    token_lags,
)
from bench.wire import Arrival

TPS = 4.0  # a token every 0.25 s


def on_schedule(origin: float, count: int) -> list[Arrival]:
    """One token per frame, each exactly when the schedule that starts at `origin` says."""
    return [Arrival(origin + i / TPS, 1) for i in range(count)]


def every_second(first: int, last: int, tokens: int = 1) -> list[Arrival]:
    return [Arrival(float(at), tokens) for at in range(first, last + 1)]


# --- quantile, summary, cdf_points ----------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.0, 1), (0.25, 1), (0.5, 2), (0.51, 3), (0.75, 3), (0.9, 4), (1.0, 4)],
)
def test_quantile_is_the_nearest_rank_of_the_sorted_values(q: float, expected: float) -> None:
    assert quantile([4, 1, 3, 2], q) == expected


def test_quantile_p90_and_p99_pick_the_rank_at_or_above_the_fraction() -> None:
    assert quantile(range(1, 11), 0.9) == 9
    assert quantile(range(1, 11), 0.99) == 10
    assert quantile(range(1, 101), 0.99) == 99
    assert quantile(range(1, 1001), 0.99) == 990


def test_quantile_of_one_value_is_that_value_at_every_q() -> None:
    assert [quantile([7.5], q) for q in (0.0, 0.5, 1.0)] == [7.5, 7.5, 7.5]


def test_quantile_of_no_values_is_nan() -> None:
    assert math.isnan(quantile([], 0.5))


def test_summary_is_count_p50_p90_p99_and_max_scaled() -> None:
    values = [10, 3, 7, 1, 9, 2, 8, 4, 6, 5]
    assert summary(values, scale=1000) == {
        "n": 10,
        "p50": 5000,
        "p90": 9000,
        "p99": 10000,
        "max": 10000,
    }


def test_summary_of_no_values_has_a_zero_count_and_no_numbers() -> None:
    assert summary([], scale=1000) == {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}


def test_cdf_points_are_evenly_spaced_ranks_from_min_to_max() -> None:
    assert cdf_points([4, 0, 3, 1, 2], points=5) == [0, 1, 2, 3, 4]
    assert cdf_points([4, 0, 3, 1, 2], points=3) == [0, 2, 4]
    assert cdf_points([0.5, 0.25], scale=1000, points=2) == [250, 500]


def test_cdf_points_repeat_values_when_there_are_fewer_values_than_points() -> None:
    assert cdf_points([20, 10], points=4) == [10, 10, 20, 20]
    assert cdf_points([3], points=3) == [3, 3, 3]


def test_cdf_points_default_to_200_from_min_to_max() -> None:
    points = cdf_points(range(1000))
    assert len(points) == 200
    assert (points[0], points[-1]) == (0, 999)
    assert points == sorted(points)


def test_cdf_points_of_no_values_is_empty() -> None:
    assert cdf_points([]) == []


# --- schedule origin and token lags ---------------------------------------------------


def test_a_stream_exactly_on_schedule_has_its_start_as_origin_and_no_lag() -> None:
    stream = on_schedule(5.0, 8)
    origin = schedule_origin([stream], TPS)
    assert origin == 5.0
    assert token_lags(stream, TPS, origin) == [0.0] * 8


def test_a_late_coalesced_frame_gives_its_oldest_token_the_most_lag() -> None:
    # Token 0 on time at 5.0; tokens 1-3 were due at 5.25, 5.5, 5.75 and came together at 6.0.
    stream = [Arrival(5.0, 1), Arrival(6.0, 3)]
    origin = schedule_origin([stream], TPS)
    assert origin == 5.0
    assert token_lags(stream, TPS, origin) == [0.0, 0.75, 0.5, 0.25]


def test_the_origin_is_fitted_to_the_newest_token_of_a_frame() -> None:
    # Four tokens in one frame at 6.0: the newest (token 3) is the best served.
    stream = [Arrival(6.0, 4)]
    origin = schedule_origin([stream], TPS)
    assert origin == 5.25
    assert token_lags(stream, TPS, origin) == [0.75, 0.5, 0.25, 0.0]


def test_the_origin_across_streams_is_set_by_the_best_served_token_of_any() -> None:
    late_by_half = on_schedule(5.5, 3)
    # 6.0 - 0 / 4, 6.0 - 2 / 4 and 6.0 - 3 / 4: token 3 fits the earliest origin, 5.25.
    catching_up = [Arrival(6.0, 1), Arrival(6.0, 2), Arrival(6.0, 1)]
    origin = schedule_origin([late_by_half, catching_up], TPS)
    assert origin == 5.25
    assert token_lags(late_by_half, TPS, origin) == [0.25, 0.25, 0.25]
    assert token_lags(catching_up, TPS, origin) == [0.75, 0.5, 0.25, 0.0]


def test_one_origin_for_all_streams_keeps_the_spread_between_them() -> None:
    first, second = on_schedule(5.0, 2), on_schedule(5.5, 2)
    assert schedule_origin([first, second], TPS) == 5.0
    assert token_lags(second, TPS, 5.0) == [0.5, 0.5]


def test_streams_with_no_arrivals_have_no_origin_and_no_lags() -> None:
    assert schedule_origin([[], []], TPS) == math.inf
    assert token_lags([], TPS, 5.0) == []


# --- gaps -----------------------------------------------------------------------------


def test_gaps_are_the_times_between_consecutive_frames() -> None:
    stream = [Arrival(1.0, 1), Arrival(1.25, 3), Arrival(2.0, 1)]
    assert gaps(stream) == [0.25, 0.75]


def test_a_stream_of_one_frame_has_no_gaps() -> None:
    assert gaps([Arrival(1.0, 5)]) == []


# --- steady rate ----------------------------------------------------------------------


def test_one_steady_stream_runs_at_its_own_rate() -> None:
    # 11 frames of 2 tokens, one a second from 0 to 10 s: 2 tokens/s, 1 frame/s.
    assert steady_rate([every_second(0, 10, tokens=2)]) == (2.0, 1.0, 10.0)


def test_the_window_runs_from_the_last_streams_first_frame_to_the_first_streams_last() -> None:
    early = every_second(0, 10)  # 1 token/s from 0 to 10 s
    late = every_second(2, 12, tokens=3)  # 3 tokens/s from 2 to 12 s
    # Both run from 2 to 10 s: 8 s at 1 + 3 tokens/s and 2 frames/s.
    assert steady_rate([early, late]) == (4.0, 2.0, 8.0)


def test_streams_that_barely_overlap_are_measured_over_the_whole_run() -> None:
    first = [Arrival(0.0, 1), Arrival(1.0, 2), Arrival(2.0, 1)]
    second = [Arrival(1.75, 1), Arrival(3.0, 2), Arrival(4.0, 3)]
    # Together for 0.25 s (1.75 to 2.0), under the 0.5 s minimum: the window is 0 to 4 s,
    # whose frames after its start carry 2 + 1 + 1 + 2 + 3 tokens.
    assert steady_rate([first, second]) == (9 / 4, 5 / 4, 4.0)


def test_an_overlap_of_half_a_second_is_long_enough_to_be_the_window() -> None:
    first = [Arrival(0.0, 1), Arrival(2.0, 1)]
    second = [Arrival(1.5, 1), Arrival(1.75, 1), Arrival(4.0, 1)]
    assert steady_rate([first, second]) == (2 / 0.5, 2 / 0.5, 0.5)


def test_empty_streams_are_left_out_of_the_rate() -> None:
    assert steady_rate([[], every_second(0, 4), []]) == (1.0, 1.0, 4.0)


def test_no_arrivals_at_all_is_a_zero_rate() -> None:
    assert steady_rate([]) == (0.0, 0.0, 0.0)
    assert steady_rate([[], []]) == (0.0, 0.0, 0.0)
