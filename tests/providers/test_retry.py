"""The shared retry loop and failure translation, with scripted attempts (no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from relay.errors import UpstreamError
from relay.providers.base import Finish, ProviderItem, Queued, Retrying, TextDelta
from relay.providers.failures import (
    REDACTED,
    Failure,
    parse_retry_after,
    status_failure,
    stream_error_failure,
    upstream_message,
)
from relay.providers.retry import RetryPolicy, stream_with_retries

SECRET = "sk-very-secret-key"


class Boom(Exception):
    """A foreign exception the scripted translator knows."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


def translate(exc: Exception) -> Failure | None:
    return exc.failure if isinstance(exc, Boom) else None


def retryable(retry_after_s: float | None = None) -> Boom:
    error = UpstreamError("upstream_unavailable", "try later", retryable=True, status=503)
    return Boom(Failure(error, retry_after_s))


def fatal(message: str = "bad request") -> Boom:
    return Boom(Failure(UpstreamError("upstream_bad_request", message, status=400)))


class Script:
    """Attempts that fail with the given exceptions, then one that streams `items`."""

    def __init__(self, failures: list[BaseException], items: list[ProviderItem]) -> None:
        self.failures = failures
        self.items = items
        self.attempts = 0
        self.closed = 0

    async def attempt(self) -> AsyncGenerator[ProviderItem, None]:
        self.attempts += 1
        try:
            if self.attempts <= len(self.failures):
                raise self.failures[self.attempts - 1]
            for item in self.items:
                yield item
                await asyncio.sleep(0)
        finally:
            self.closed += 1


def policy(max_retries: int = 2, first_token_timeout_s: float = 5.0) -> RetryPolicy:
    return RetryPolicy(
        upstream="test",
        max_retries=max_retries,
        first_token_timeout_s=first_token_timeout_s,
        backoff_s=0.01,
        max_backoff_s=0.02,
    )


async def run(script: Script, retry_policy: RetryPolicy) -> list[ProviderItem]:
    stream = stream_with_retries(script.attempt, translate, retry_policy, secret=SECRET)
    return [item async for item in stream]


def output(items: list[ProviderItem]) -> list[ProviderItem]:
    return [item for item in items if not isinstance(item, Retrying)]


def retries(items: list[ProviderItem]) -> list[tuple[int, str]]:
    return [(item.attempt, item.code) for item in items if isinstance(item, Retrying)]


ITEMS: list[ProviderItem] = [TextDelta("hello"), TextDelta(" world"), Finish("stop")]


async def test_retryable_failures_before_the_first_item_are_retried() -> None:
    script = Script([retryable(), retryable()], ITEMS)
    assert output(await run(script, policy(max_retries=2))) == ITEMS
    assert (script.attempts, script.closed) == (3, 3)


async def test_each_retry_is_reported_with_its_attempt_and_delay_before_it_is_made() -> None:
    script = Script([retryable(), retryable()], ITEMS)
    items = await run(script, policy(max_retries=2))
    assert items[2:] == ITEMS
    assert retries(items) == [(1, "upstream_unavailable"), (2, "upstream_unavailable")]
    delays = [item.delay_s for item in items if isinstance(item, Retrying)]
    assert 0.005 <= delays[0] <= 0.01 and 0.01 <= delays[1] <= 0.02  # half to all of 0.01 · 2^n


async def test_status_reports_are_not_output_what_fails_after_them_is_retried() -> None:
    async def queued_then_fails() -> AsyncGenerator[ProviderItem, None]:
        attempts.append(1)
        yield Queued()
        if len(attempts) == 1:
            raise retryable()
        yield TextDelta("hello")

    attempts: list[int] = []
    stream = stream_with_retries(queued_then_fails, translate, policy(), secret=None)
    items = [item async for item in stream]
    assert [type(item) for item in items] == [Queued, Retrying, Queued, TextDelta]
    assert attempts == [1, 1]


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    script = Script([retryable()] * 3, ITEMS)
    with pytest.raises(UpstreamError) as caught:
        await run(script, policy(max_retries=2))
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "upstream_unavailable",
        503,
        True,
    )
    assert isinstance(caught.value.__cause__, Boom)
    assert script.attempts == 3


async def test_a_non_retryable_failure_is_raised_at_once() -> None:
    script = Script([fatal()], ITEMS)
    with pytest.raises(UpstreamError) as caught:
        await run(script, policy(max_retries=5))
    assert (caught.value.code, caught.value.retryable, caught.value.status) == (
        "upstream_bad_request",
        False,
        400,
    )
    assert script.attempts == 1


async def test_retry_after_is_honoured() -> None:
    script = Script([retryable(retry_after_s=0.3)], ITEMS)
    started = time.monotonic()
    items = await run(script, policy())
    assert output(items) == ITEMS
    assert [item.delay_s for item in items if isinstance(item, Retrying)] == [0.3]
    assert time.monotonic() - started >= 0.3


async def test_a_retry_that_would_pass_the_first_token_deadline_is_not_made() -> None:
    script = Script([retryable(retry_after_s=10)], ITEMS)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await run(script, policy(first_token_timeout_s=1.0))
    assert caught.value.code == "upstream_unavailable"
    assert time.monotonic() - started < 0.5
    assert script.attempts == 1


async def test_waiting_too_long_for_the_first_item_is_a_retryable_timeout() -> None:
    async def silent() -> AsyncGenerator[ProviderItem, None]:
        try:
            await asyncio.sleep(10)
            yield TextDelta("late")
        finally:
            closed.append(True)

    closed: list[bool] = []
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        stream = stream_with_retries(
            silent, translate, policy(first_token_timeout_s=0.2), secret=None
        )
        await anext(stream)
    assert (caught.value.code, caught.value.retryable) == ("upstream_timeout", True)
    assert "first_token_timeout_s=0.2" in caught.value.message
    assert 0.2 <= time.monotonic() - started < 1.0
    assert closed == [True]


async def test_a_failure_after_the_first_item_is_retryable_and_not_retried() -> None:
    async def breaks() -> AsyncGenerator[ProviderItem, None]:
        attempts.append(1)
        yield TextDelta("partial")
        raise fatal("the stream broke")

    attempts: list[int] = []
    received: list[ProviderItem] = []
    with pytest.raises(UpstreamError) as caught:
        async for item in stream_with_retries(breaks, translate, policy(), secret=None):
            received.append(item)
    assert received == [TextDelta("partial")]
    assert (caught.value.code, caught.value.retryable, caught.value.message) == (
        "upstream_bad_request",
        True,
        "the stream broke",
    )
    assert attempts == [1]


async def test_an_upstream_error_raised_by_the_attempt_passes_through() -> None:
    async def incomplete() -> AsyncGenerator[ProviderItem, None]:
        yield TextDelta("a")
        raise UpstreamError("upstream_incomplete", "cut", retryable=True)

    with pytest.raises(UpstreamError, match="cut") as caught:
        [item async for item in stream_with_retries(incomplete, translate, policy(), secret=None)]
    assert caught.value.code == "upstream_incomplete"


async def test_an_exception_the_translator_does_not_know_propagates_unchanged() -> None:
    script = Script([KeyError("bug")], ITEMS)
    with pytest.raises(KeyError):
        await run(script, policy())
    assert script.attempts == 1


async def test_aclose_closes_the_attempt() -> None:
    script = Script([], [TextDelta(str(n)) for n in range(100)])
    stream = stream_with_retries(script.attempt, translate, policy(), secret=None)
    assert await anext(stream) == TextDelta("0")
    await stream.aclose()
    assert script.closed == 1


async def test_cancelling_the_consumer_closes_the_attempt() -> None:
    started = asyncio.Event()

    async def endless() -> AsyncGenerator[ProviderItem, None]:
        try:
            yield TextDelta("first")
            started.set()
            await asyncio.sleep(10)
            yield TextDelta("never")
        finally:
            closed.append(True)

    async def consume() -> None:
        async for _ in stream_with_retries(endless, translate, policy(), secret=None):
            pass

    closed: list[bool] = []
    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]


async def test_the_api_key_never_appears_in_an_error() -> None:
    script = Script([fatal(f"invalid key {SECRET} for this org")], ITEMS)
    with pytest.raises(UpstreamError) as caught:
        await run(script, policy())
    assert caught.value.message == f"invalid key {REDACTED} for this org"
    assert caught.value.__cause__ is None  # the SDK's exception quotes the key too


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    retry_policy = RetryPolicy(upstream="t", max_retries=9, first_token_timeout_s=60)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (8, 8.0)]:
        delays = [retry_policy.backoff(retry) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


def test_delay_prefers_retry_after_and_gives_up_when_it_does_not_fit() -> None:
    retry_policy = RetryPolicy(upstream="t", max_retries=2, first_token_timeout_s=60)
    assert retry_policy.delay_s(retryable(3.0).failure, 0, time_left_s=10) == 3.0
    assert retry_policy.delay_s(retryable(30.0).failure, 0, time_left_s=10) is None
    assert retry_policy.delay_s(retryable().failure, 2, time_left_s=10) is None
    assert retry_policy.delay_s(fatal().failure, 0, time_left_s=10) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(
    headers: dict[str, str], expected: float | None
) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(headers, now) == expected


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "upstream_bad_request", False),
        (401, "upstream_auth", False),
        (403, "upstream_forbidden", False),
        (404, "upstream_not_found", False),
        (422, "upstream_bad_request", False),
        (418, "upstream_rejected", False),
        (408, "upstream_timeout", True),
        (429, "upstream_rate_limited", True),
        (500, "upstream_unavailable", True),
        (529, "upstream_unavailable", True),
    ],
)
def test_statuses_map_to_codes(status: int, code: str, retryable: bool) -> None:
    body = {"error": {"message": "what the upstream said", "type": "x"}}
    failure = status_failure(status, body, {"retry-after": "3"})
    error = failure.error
    assert (error.code, error.retryable, error.status) == (code, retryable, status)
    assert error.message == "what the upstream said"
    assert failure.retry_after_s == (3.0 if retryable else None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": "openai inner error"}, "openai inner error"),
        ({"type": "error", "error": {"type": "x", "message": "anthropic"}}, "anthropic"),
        ({"error": "plain"}, "plain"),
        ({"detail": "fastapi"}, "fastapi"),
        ("  text body  ", "text body"),
        ({"unrelated": 1}, None),
        (None, None),
    ],
)
def test_upstream_message_is_found_in_common_error_bodies(
    body: object, message: str | None
) -> None:
    assert upstream_message(body) == message


def test_a_status_without_a_message_says_the_status() -> None:
    assert status_failure(502, None, {}).error.message == "the upstream answered HTTP 502"


@pytest.mark.parametrize(
    ("error_type", "code", "retryable"),
    [
        ("overloaded_error", "upstream_overloaded", True),
        ("api_error", "upstream_error", True),
        ("server_error", "upstream_error", True),
        ("invalid_request_error", "upstream_bad_request", False),
        (None, "upstream_error", True),
    ],
)
def test_stream_errors_map_by_type(error_type: str | None, code: str, retryable: bool) -> None:
    error = stream_error_failure(error_type, "it broke").error
    assert (error.code, error.retryable, error.message, error.status) == (
        code,
        retryable,
        "it broke",
        None,
    )
