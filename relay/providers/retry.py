"""How the HTTP providers retry: before the first item, within the first-token deadline.
Written once, used by every HTTP provider (their connection pool is `sse_client`'s).

A provider hands `stream_with_retries` an *attempt* (an async generator that opens one
upstream stream, yields `ProviderItem`s and closes the stream in `finally`) and a
*translate* function that says which exceptions are upstream failures (for the HTTP
providers, `failures.failure_of`: the boundary has already translated aiohttp's). Then:

- an attempt that fails before its first item (its status reports, `Queued` and
  `Connecting`, are not items of output) is retried when the failure is retryable
  (429, 5xx, connection errors, timeouts), at most `max_retries` times, after an
  exponential backoff with jitter, or after what the upstream's `Retry-After` asks;
- the wait for the first item, retries and backoff included, is bounded by
  `first_token_timeout_s`: a retry that would not fit is not made; each retry is
  reported first, as a `Retrying` item (attempt, delay), so the runner can say so;
- after the first item nothing is retried (the text already went out); any failure is
  a retryable `UpstreamError`, never a silent end.

Failures become `UpstreamError`s here, chained with `raise … from exc`; an exception
`translate` does not recognise is a bug and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import NoReturn, TypeVar

import msgspec

from relay import metrics
from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.base import ProviderItem, Retrying, StatusReport
from relay.providers.failures import Failure, first_token_timeout, scrubbed

log = logging.getLogger(__name__)

T = TypeVar("T")

Attempt = Callable[[], AsyncGenerator[ProviderItem, None]]
Translate = Callable[[Exception], Failure | None]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    upstream: str  # its name, for logs and metrics
    max_retries: int
    first_token_timeout_s: float
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    @classmethod
    def for_upstream(cls, upstream: UpstreamSettings) -> RetryPolicy:
        return cls(
            upstream=upstream.name,
            max_retries=upstream.max_retries,
            first_token_timeout_s=upstream.first_token_timeout_s,
        )

    def backoff(self, retry: int) -> float:
        """Retry `retry` (0-based) waits between half and all of 0.5 s · 2^retry, capped."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2**retry)
        return random.uniform(ceiling / 2, ceiling)

    def delay_s(self, failure: Failure, retry: int, time_left_s: float) -> float | None:
        """How long to wait before retry `retry`, or None to give up."""
        if not failure.error.retryable or retry >= self.max_retries:
            return None
        delay = failure.retry_after_s
        if delay is None:
            delay = self.backoff(retry)
        return delay if delay < time_left_s else None


async def stream_with_retries(
    attempt: Attempt, translate: Translate, policy: RetryPolicy, *, secret: str | None
) -> AsyncGenerator[ProviderItem, None]:
    """The items of the first attempt that yields output, after the status reports of the
    attempts before it (a failed one's last is its `Retrying`). Every error leaves
    `scrubbed`: `secret` never appears in it, and its message is cut to a bounded length."""
    loop = asyncio.get_running_loop()
    timeout_s = policy.first_token_timeout_s
    deadline = loop.time() + timeout_s
    for retry in itertools.count():
        stream = attempt()
        async with contextlib.aclosing(stream):
            try:
                # Status reports are not output: what comes after them may still be retried.
                item = await _by_deadline(anext(stream, None), deadline, timeout_s)
                while isinstance(item, StatusReport):
                    yield item
                    item = await _by_deadline(anext(stream, None), deadline, timeout_s)
            except Exception as exc:
                retrying = _retrying(exc, translate, policy, retry, deadline - loop.time(), secret)
            else:
                if item is None:
                    return
                yield item
                try:  # after the first output nothing is retried
                    async for item in stream:
                        yield item
                except Exception as exc:
                    _raise(_retryable(_failure(exc, translate).error), exc, secret)
                return
        yield retrying
        await asyncio.sleep(retrying.delay_s)
    raise AssertionError("unreachable")  # pragma: no cover


def _retrying(
    exc: Exception,
    translate: Translate,
    policy: RetryPolicy,
    retry: int,
    time_left_s: float,
    secret: str | None,
) -> Retrying:
    """The retry after the failure `exc`; raises it as an `UpstreamError` when it is not
    retried (not retryable, no retries left, or no time left for one)."""
    failure = _failure(exc, translate)
    delay = policy.delay_s(failure, retry, time_left_s)
    if delay is None:
        _raise(failure.error, exc, secret)
    _log_retry(policy, failure, retry, delay, secret)
    metrics.upstream_retry(policy.upstream)
    return Retrying(retry + 1, delay, failure.error.code)


async def _by_deadline(awaitable: Awaitable[T], deadline: float, timeout_s: float) -> T:
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError as exc:
        if timeout.expired():
            raise first_token_timeout(timeout_s) from exc
        raise


def _failure(exc: Exception, translate: Translate) -> Failure:
    """What `exc` means; an exception that is not an upstream failure is re-raised."""
    if isinstance(exc, UpstreamError):
        return Failure(exc)
    failure = translate(exc)
    if failure is None:
        raise exc
    return failure


def _retryable(error: UpstreamError) -> UpstreamError:
    """After the first item every failure may be retried by the client: it is not the
    request's fault that the answer broke off."""
    if error.retryable:
        return error
    return UpstreamError(error.code, error.message, retryable=True, status=error.status)


def _raise(error: UpstreamError, exc: Exception, secret: str | None) -> NoReturn:
    clean = scrubbed(error, secret)
    if clean is not error:
        raise clean from None  # the chained exception may quote the same answer
    if error is exc:
        raise error
    raise error from exc


def _log_retry(
    policy: RetryPolicy, failure: Failure, retry: int, delay: float, secret: str | None
) -> None:
    error = scrubbed(failure.error, secret)
    log.warning(
        "upstream %s: %s (%s); retry %d of %d in %.2f s",
        policy.upstream,
        error.code,
        error.message,
        retry + 1,
        policy.max_retries,
        delay,
    )
