"""Per-client quotas: the limits of `[[clients]]`, the sliding-window arithmetic every
store shares, and the 429 a refused request is answered.

A client may hold `max_concurrent_sessions` running sessions, start
`requests_per_minute` sessions, and have `tokens_per_minute` output tokens generated
for it. The stores keep the counts (relay/store/base.py `Quotas`); this module decides
what the counts mean, so that the memory store and Redis's scripts agree exactly.

The per-minute limits are sliding-window counters: a count per calendar minute (by
the caller's clock), and the window's estimate is this minute's count plus the
previous minute's, weighted by how much of the previous minute the last 60 s still
cover. Fixed windows were not chosen because a client could spend its whole limit at
the end of one minute and again at the start of the next (2x in a few seconds); a log
of every request's time was not chosen because it costs memory (and Redis entries)
per request. The estimate assumes the previous minute's requests were spread evenly,
which is how Cloudflare's and Nginx's limiters count too: never 2x, and two numbers
per client and limit.

- requests: a request is admitted when the estimate plus itself fits the limit; a
  refused request is not counted.
- tokens: output tokens are counted as usage arrives; a client whose estimate has
  reached the limit is refused new sessions until the window lets it in. A generation
  already running is never cut.
- concurrency: a slot per running session, taken at admission, given back when the
  session's terminal event is written. Its `Retry-After` is `CONCURRENCY_RETRY_S`,
  since when a session ends cannot be known.
"""

from __future__ import annotations

import math

import msgspec

from relay.errors import ApiError

__all__ = [
    "CONCURRENCY_RETRY_S",
    "STALE_SLOT_GRACE_S",
    "WINDOW_S",
    "QuotaLimits",
    "QuotaRefusal",
    "Window",
    "minute_of",
    "refuse_by_concurrency",
    "refuse_by_windows",
    "weight_at",
]

WINDOW_S = 60
# The Retry-After of a refusal for concurrency: a short wait, then ask again.
CONCURRENCY_RETRY_S = 2
# A slot whose session record is not there yet may be a session being created (the slot
# is taken before the record is written); it is given back as stale only after this.
STALE_SLOT_GRACE_S = 30.0


class QuotaLimits(msgspec.Struct, frozen=True):
    """One client's limits; None is no limit."""

    max_concurrent_sessions: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    @property
    def any(self) -> bool:
        return any(
            limit is not None
            for limit in (
                self.max_concurrent_sessions,
                self.requests_per_minute,
                self.tokens_per_minute,
            )
        )


def minute_of(now: float) -> int:
    """The calendar minute `now` falls in, as a number: the window's buckets."""
    return int(now // WINDOW_S)


class Window(msgspec.Struct, frozen=True):
    """A sliding-window counter's two buckets, read at `now`."""

    previous: int
    current: int
    now: float

    @property
    def weight(self) -> float:
        """How much of the previous minute the last 60 s still cover."""
        return weight_at(self.now)

    @property
    def estimate(self) -> float:
        return self.previous * self.weight + self.current

    def admits(self, limit: int, need: int) -> bool:
        """Whether `need` more fits under `limit` (need 0: whether it has not reached it)."""
        return self.estimate + need <= limit if need else self.estimate < limit

    def retry_after(self, limit: int, need: int) -> int:
        """Whole seconds (at least 1) until the window, if nothing more is counted, admits."""
        wait = max(1, math.ceil(self._admits_from(limit - need) - self.now))
        # Where the estimate only reaches the bound, `admits` may still refuse (below it,
        # for need 0; or by a rounding): then the second after.
        return wait if self.later(self.now + wait).admits(limit, need) else wait + 1

    def _admits_from(self, bound: int) -> float:
        """When the estimate falls to `bound`, if nothing more is counted."""
        minute_start = minute_of(self.now) * WINDOW_S
        if self.current <= bound and self.previous > 0:
            return minute_start + WINDOW_S * (1 - (bound - self.current) / self.previous)
        # Only next minute, once this minute's count weighs little enough.
        fraction = 1.0 if self.current <= 0 else 1 - max(bound, 0) / self.current
        return minute_start + WINDOW_S * (1 + fraction)

    def later(self, at: float) -> Window:
        """The window at `at` (not before `now`), if nothing more is counted."""
        shift = minute_of(at) - minute_of(self.now)
        if shift == 0:
            return Window(self.previous, self.current, at)
        return Window(self.current if shift == 1 else 0, 0, at)


def weight_at(now: float) -> float:
    """The previous minute's weight at `now` (Redis's scripts are handed it)."""
    return 1 - (now - minute_of(now) * WINDOW_S) / WINDOW_S


class QuotaRefusal(msgspec.Struct, frozen=True):
    """Why a client was not admitted: the limit's name, its value, when to ask again."""

    limit: str
    value: int
    retry_after_s: int

    def error(self, client: str) -> ApiError:
        """The 429 answered for it, with `Retry-After`."""
        message = (
            f"client {client!r} is over {self.limit} = {self.value}; "
            f"retry in {self.retry_after_s} s"
        )
        headers = {"Retry-After": str(self.retry_after_s)}
        return ApiError(429, "rate_limited", message, headers=headers)


def refuse_by_windows(limits: QuotaLimits, requests: Window, tokens: Window) -> QuotaRefusal | None:
    """The refusal of the per-minute limits, the tokens' first; None when both admit."""
    if limits.tokens_per_minute is not None and not tokens.admits(limits.tokens_per_minute, 0):
        wait = tokens.retry_after(limits.tokens_per_minute, 0)
        return QuotaRefusal("tokens_per_minute", limits.tokens_per_minute, wait)
    rpm = limits.requests_per_minute
    if rpm is not None and not requests.admits(rpm, 1):
        return QuotaRefusal("requests_per_minute", rpm, requests.retry_after(rpm, 1))
    return None


def refuse_by_concurrency(limits: QuotaLimits, running: int) -> QuotaRefusal | None:
    """The refusal of the concurrency limit when `running` sessions fill it."""
    limit = limits.max_concurrent_sessions
    if limit is not None and running >= limit:
        return QuotaRefusal("max_concurrent_sessions", limit, CONCURRENCY_RETRY_S)
    return None
