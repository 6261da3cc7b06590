"""The generation runner against the memory store, with scripted providers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence

import pytest

from relay import metrics
from relay.config import GenerationSettings, StoreSettings
from relay.errors import SessionNotFound, StoreUnavailable, UpstreamError
from relay.events import ErrorData, Event, EventType, SessionStatus
from relay.providers.base import (
    Connecting,
    Finish,
    Provider,
    ProviderItem,
    Queued,
    Retrying,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.router import Route
from relay.runner import GenerationRunner
from relay.session import SessionRecord
from relay.store.memory import MemoryStore
from relay.vocabulary import GenerationRequest, Message, session_tag
from relay.writer import end_from_outside

REQUEST = GenerationRequest(model="scripted", messages=[Message(role="user", content="hi")])


class ScriptedProvider(Provider):
    """Yields its script; `None` in the script waits for `release`. Records closing."""

    def __init__(self, script: Sequence[ProviderItem | None], fail: UpstreamError | None = None):
        self.script = script
        self.fail = fail
        self.release = asyncio.Event()
        self.closed = asyncio.Event()

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        try:
            for item in self.script:
                if item is None:
                    await self.release.wait()
                    self.release.clear()
                else:
                    yield item
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed.set()


def make_runner(
    store: MemoryStore, store_settings: StoreSettings | None = None, **overrides: float
) -> GenerationRunner:
    settings = GenerationSettings(**overrides)  # type: ignore[arg-type]
    return GenerationRunner(store, settings, store_settings or StoreSettings(), "test-instance")


async def run_to_end(
    runner: GenerationRunner, store: MemoryStore, provider: Provider
) -> tuple[SessionRecord, list[Event]]:
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    return await wait_until_ended(store, created.record.id)


async def wait_until_ended(
    store: MemoryStore, session_id: str
) -> tuple[SessionRecord, list[Event]]:
    async with asyncio.timeout(5):
        while True:
            record = await store.get(session_id)
            assert record is not None
            if record.status.is_final:
                return record, await store.read(session_id, 0, 10_000)
            await store.wait(session_id, record.last_event_id, 100, 1.0)


def kinds(events: list[Event]) -> list[str]:
    return [event.type.value for event in events]


def texts(events: list[Event], kind: EventType = EventType.DELTA) -> list[str]:
    return [event.decoded_data()["text"] for event in events if event.type is kind]


def statuses(events: list[Event]) -> list[dict[str, object]]:
    return [event.decoded_data() for event in events if event.type is EventType.STATUS]


async def test_a_provider_that_reports_nothing_is_connecting_then_generating() -> None:
    store = MemoryStore(StoreSettings())
    script = [TextDelta("a"), Finish("stop")]
    _, events = await run_to_end(make_runner(store), store, ScriptedProvider(script))
    assert [status["state"] for status in statuses(events)] == ["connecting", "generating"]
    assert kinds(events)[:3] == ["status", "status", "delta"]


async def test_reported_states_are_written_once_each_and_queued_comes_first() -> None:
    store = MemoryStore(StoreSettings())
    script: list[ProviderItem | None] = [
        Queued(),
        Connecting(),
        Retrying(1, 0.25, "upstream_unavailable"),
        Queued(),
        Queued(),  # the same state again is no news
        Connecting(),
        TextDelta("a"),
        Connecting(),  # after the first output: ignored
        Finish("stop"),
    ]
    _, events = await run_to_end(make_runner(store), store, ScriptedProvider(script))
    assert [status["state"] for status in statuses(events)] == [
        "queued",
        "connecting",
        "retrying",
        "queued",
        "connecting",
        "generating",
    ]
    assert statuses(events)[2] == {
        "state": "retrying",
        "message": "the model failed (upstream_unavailable); retry 1 in 0.25 s",
        "attempt": 1,
        "delay_s": 0.25,
    }


async def test_the_store_refusing_past_its_cap_still_ends_the_session() -> None:
    store = MemoryStore(StoreSettings(max_events_per_session=3))
    script = [TextDelta(str(n)) for n in range(20)]
    runner = make_runner(store, StoreSettings(), flush_interval_ms=0)  # unaware of the cap
    record, events = await run_to_end(runner, store, ScriptedProvider(script))
    assert events[-1].decoded_data()["code"] == "event_limit"
    assert record.status is SessionStatus.FAILED


async def test_a_generation_is_logged_with_consecutive_ids_and_one_terminal_event() -> None:
    store = MemoryStore(StoreSettings())
    script = [TextDelta("Hello"), TextDelta(" world"), UsageReport(2, 2), Finish("stop")]
    record, events = await run_to_end(make_runner(store), store, ScriptedProvider(script))
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert kinds(events)[0] == "status" and kinds(events)[-1] == "done"
    assert "".join(texts(events)) == "Hello world"
    assert events[-1].decoded_data() == {
        "finish_reason": "stop",
        "usage": {"input_tokens": 2, "output_tokens": 2},
    }
    assert record.status is SessionStatus.COMPLETED


async def test_the_first_token_is_alone_and_later_tokens_are_coalesced() -> None:
    store = MemoryStore(StoreSettings())
    script = [TextDelta("a"), *[TextDelta(f" {n}") for n in range(50)], Finish("stop")]
    _, events = await run_to_end(
        make_runner(store, flush_interval_ms=1000), store, ScriptedProvider(script)
    )
    deltas = texts(events)
    assert deltas[0] == "a"
    assert len(deltas) == 2  # everything after the first token arrived within one interval
    assert "".join(deltas) == "a" + "".join(f" {n}" for n in range(50))


async def test_the_end_of_the_stream_is_not_held_until_the_flush() -> None:
    """Held text goes out with the end as soon as the upstream has finished: a stream of a
    few tokens does not end a whole flush interval (here a minute) after its last token."""
    store = MemoryStore(StoreSettings())
    script = [TextDelta("a"), TextDelta(" b"), TextDelta(" c"), Finish("stop")]
    runner = make_runner(store, flush_interval_ms=60_000)
    _, events = await run_to_end(runner, store, ScriptedProvider(script))  # within 5 s
    assert kinds(events) == ["status", "status", "delta", "delta", "done"]
    assert texts(events) == ["a", " b c"]


async def test_text_held_past_flush_max_chars_is_split_into_events_of_about_that_size() -> None:
    store = MemoryStore(StoreSettings())
    pieces = [f" {n:02d}" for n in range(60)]  # 3 characters each
    script = [TextDelta("a"), *map(TextDelta, pieces), Finish("stop")]
    runner = make_runner(store, flush_interval_ms=200, flush_max_chars=30)
    _, events = await run_to_end(runner, store, ScriptedProvider(script))
    deltas = texts(events)
    assert "".join(deltas) == "a" + "".join(pieces)
    assert len(deltas) == 1 + len(pieces) * 3 // 30
    assert all(len(text) == 30 for text in deltas[1:])


class BurstProvider(ScriptedProvider):
    """Silent until `release` (as an upstream is while the model starts), then its script
    at once, as chunks decoded from one read; records, as it decodes each chunk after the
    first, the deltas the store already holds."""

    def __init__(self, store: MemoryStore, script: Sequence[ProviderItem]) -> None:
        super().__init__([None, *script])
        self.store = store
        self.session_id = ""
        self.stored_before: list[list[str]] = []

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        decoded = 0
        async for item in super().stream(request):
            if decoded:  # `read` answers without suspending: nothing else runs meanwhile
                events = await self.store.read(self.session_id, 0, 100)
                self.stored_before.append(texts(events))
            decoded += 1
            yield item


async def test_the_rest_of_a_burst_is_decoded_after_the_first_token_is_stored() -> None:
    """The first token reaches the client before the rest of its upstream read costs it
    time, also when a status was stored while the upstream was still silent."""
    store = MemoryStore(StoreSettings())
    provider = BurstProvider(store, [TextDelta("a"), TextDelta(" b"), Finish("stop")])
    runner = make_runner(store, flush_interval_ms=0)
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    provider.session_id = created.record.id
    await asyncio.sleep(0.01)  # the session and its connecting status are stored
    provider.release.set()
    _, events = await wait_until_ended(store, created.record.id)
    assert texts(events) == ["a", " b"]
    # Only the first output is waited for: the rest of the read is decoded at once.
    assert provider.stored_before == [["a"], ["a"]]


class PacedProvider(Provider):
    """Yields each item at its time (seconds after the stream starts)."""

    def __init__(self, script: Sequence[tuple[float, ProviderItem]]) -> None:
        self.script = script

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        start = asyncio.get_running_loop().time()
        for at, item in self.script:
            await asyncio.sleep(max(0.0, start + at - asyncio.get_running_loop().time()))
            yield item


async def test_text_that_arrives_while_held_text_waits_goes_out_at_its_deadline() -> None:
    store = MemoryStore(StoreSettings())
    script = [
        (0.0, TextDelta("a")),  # out at once
        (0.04, TextDelta(" b")),  # held: due at 0.44
        (0.2, TextDelta(" c")),
        (0.36, TextDelta(" d")),  # still before the deadline: goes out with " b c"
        (0.6, TextDelta(" e")),
        (0.8, Finish("stop")),
    ]
    runner = make_runner(store, flush_interval_ms=400)
    _, events = await run_to_end(runner, store, PacedProvider(script))
    assert texts(events) == ["a", " b c d", " e"]


async def test_coalescing_off_writes_one_event_per_chunk() -> None:
    store = MemoryStore(StoreSettings())
    script = [TextDelta(word) for word in "one two three four".split()]
    _, events = await run_to_end(
        make_runner(store, flush_interval_ms=0), store, ScriptedProvider(script)
    )
    assert texts(events) == ["one", "two", "three", "four"]


async def test_held_text_is_flushed_when_the_interval_passes_without_new_tokens() -> None:
    store = MemoryStore(StoreSettings())
    provider = ScriptedProvider([TextDelta("a"), TextDelta(" b"), None, Finish("stop")])
    runner = make_runner(store, flush_interval_ms=20)
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    async with asyncio.timeout(2):
        while texts(events := await store.read(created.record.id, 0, 100)) != ["a", " b"]:
            await store.wait(created.record.id, events[-1].id if events else 0, 100, 0.05)
    provider.release.set()
    await wait_until_ended(store, created.record.id)


async def test_text_is_flushed_before_non_text_events_in_upstream_order() -> None:
    store = MemoryStore(StoreSettings())
    script = [
        TextDelta("x"),
        TextDelta("y"),
        ToolCall(0, "call_1", "search", '{"q": 1}'),
        TextDelta("z"),
        UsageReport(1, 3),
        Finish("tool_calls"),
    ]
    _, events = await run_to_end(
        make_runner(store, flush_interval_ms=1000), store, ScriptedProvider(script)
    )
    assert kinds(events) == [
        "status", "status", "delta", "delta", "tool_call", "delta", "usage", "done",
    ]  # fmt: skip
    assert texts(events) == ["x", "y", "z"]
    assert events[-1].decoded_data()["finish_reason"] == "tool_calls"


async def test_cancel_writes_held_text_then_one_cancelled_and_closes_the_upstream() -> None:
    store = MemoryStore(StoreSettings())
    provider = ScriptedProvider([TextDelta("a"), TextDelta(" b"), TextDelta(" c"), None])
    runner = make_runner(store, flush_interval_ms=60_000)
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    session_id = created.record.id
    async with asyncio.timeout(2):
        while not texts(events := await store.read(session_id, 0, 100)):
            await store.wait(session_id, events[-1].id if events else 0, 100, 0.05)
    await asyncio.sleep(0.01)  # " b c" are now held by the coalescer
    assert runner.cancel(session_id, "client")
    assert runner.cancel(session_id, "client")  # idempotent
    record, events = await wait_until_ended(store, session_id)
    assert "".join(texts(events)) == "a b c"
    assert kinds(events).count("cancelled") == 1 and events[-1].decoded_data() == {
        "reason": "client"
    }
    assert record.status is SessionStatus.CANCELLED
    await asyncio.wait_for(provider.closed.wait(), 1)
    async with asyncio.timeout(1):  # its task ends once the upstream is closed
        while runner.running:
            await asyncio.sleep(0.01)
    assert not runner.cancel(session_id, "client")  # no longer running here


async def test_an_upstream_error_ends_the_session_with_an_error_event() -> None:
    store = MemoryStore(StoreSettings())
    failure = UpstreamError("rate_limited", "slow down", retryable=True, status=429)
    provider = ScriptedProvider([TextDelta("partial")], fail=failure)
    record, events = await run_to_end(make_runner(store), store, provider)
    assert texts(events) == ["partial"]
    assert events[-1].decoded_data() == {
        "code": "rate_limited",
        "message": "slow down",
        "retryable": True,
        "upstream_status": 429,
    }
    assert record.status is SessionStatus.FAILED


async def test_a_silent_upstream_times_out_and_is_closed() -> None:
    store = MemoryStore(StoreSettings())
    provider = ScriptedProvider([TextDelta("a"), None])
    _, events = await run_to_end(make_runner(store, idle_timeout_s=0.2), store, provider)
    assert events[-1].type is EventType.ERROR
    assert events[-1].decoded_data()["code"] == "upstream_timeout"
    await asyncio.wait_for(provider.closed.wait(), 1)


async def test_the_event_cap_fails_the_session_clearly() -> None:
    capped = StoreSettings(max_events_per_session=5)
    store = MemoryStore(capped)
    script = [TextDelta(str(n)) for n in range(20)]
    runner = make_runner(store, capped, flush_interval_ms=0)
    record, events = await run_to_end(runner, store, ScriptedProvider(script))
    assert len(events) == 5  # status, status, "0", "1", then the error at the cap
    assert texts(events) == ["0", "1"]
    assert events[-1].decoded_data()["code"] == "event_limit"
    assert record.status is SessionStatus.FAILED


async def test_shutdown_cancels_running_generations_with_reason_shutdown() -> None:
    store = MemoryStore(StoreSettings())
    providers = [ScriptedProvider([TextDelta("a"), None]) for _ in range(3)]
    runner = make_runner(store)
    created = [
        await runner.create("scripted", Route("test", "scripted", p), REQUEST) for p in providers
    ]
    await asyncio.sleep(0.05)
    await runner.shutdown(timeout=2)
    assert runner.running == 0
    for session in created:
        _, events = await wait_until_ended(store, session.record.id)
        assert events[-1].decoded_data() == {"reason": "shutdown"}
    assert all(p.closed.is_set() for p in providers)


class FlakyStore(MemoryStore):
    """Fails the first `failures` appends; with `lost_replies`, after applying them."""

    def __init__(self, failures: int, lost_replies: bool = False) -> None:
        super().__init__(StoreSettings())
        self.failures = failures
        self.lost_replies = lost_replies

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        if self.failures and events[0].id > 1:
            self.failures -= 1
            if self.lost_replies:
                await super().append(session_id, events)
            raise StoreUnavailable("injected outage")
        return await super().append(session_id, events)


@pytest.mark.parametrize("lost_replies", [False, True])
async def test_appends_are_retried_through_a_store_outage_without_duplicates(
    lost_replies: bool,
) -> None:
    store = FlakyStore(failures=3, lost_replies=lost_replies)
    script = [TextDelta(word) for word in "w1 w2 w3 w4 w5".split()] + [Finish("stop")]
    record, events = await run_to_end(
        make_runner(store, flush_interval_ms=0), store, ScriptedProvider(script)
    )
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert "".join(texts(events)) == "w1w2w3w4w5"
    assert record.status is SessionStatus.COMPLETED


async def test_an_outage_longer_than_store_retry_abandons_the_generation() -> None:
    store = FlakyStore(failures=1_000)
    provider = ScriptedProvider([TextDelta("a"), TextDelta("b")])
    runner = make_runner(store, store_retry_s=0.2, flush_interval_ms=0)
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    async with asyncio.timeout(3):
        while runner.running:
            await asyncio.sleep(0.02)
    assert provider.closed.is_set()
    record = await store.get(created.record.id)
    assert record is not None and record.status is SessionStatus.RUNNING  # the lease reaper's job


async def test_drain_lets_short_generations_finish_and_cancels_the_rest() -> None:
    store = MemoryStore(StoreSettings())
    runner = make_runner(store)
    quick = ScriptedProvider([TextDelta("a"), None, Finish("stop")])
    stuck = ScriptedProvider([TextDelta("b"), None])
    quick_session = await runner.create("scripted", Route("test", "scripted", quick), REQUEST)
    stuck_session = await runner.create("scripted", Route("test", "scripted", stuck), REQUEST)
    await asyncio.sleep(0.05)
    draining = asyncio.create_task(runner.drain(timeout=0.5))
    await asyncio.sleep(0.05)
    quick.release.set()  # finishes during the drain
    await draining
    _, quick_events = await wait_until_ended(store, quick_session.record.id)
    _, stuck_events = await wait_until_ended(store, stuck_session.record.id)
    assert quick_events[-1].type is EventType.DONE
    assert stuck_events[-1].decoded_data() == {"reason": "shutdown"}
    assert runner.running == 0


class SlowCreateStore(MemoryStore):
    """`create` waits for `release`, then fails with `failure` if one is set. Like every
    store (`Store.create`), it orders the appends asked while a creation is on its way
    after it: they wait for it too, and find no session when it failed."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__(StoreSettings())
        self.release = asyncio.Event()
        self.failure = failure
        self.appends_before_release = 0

    async def create(
        self, record: SessionRecord, takeover: bytes | None = None, first: Sequence[Event] = ()
    ) -> SessionRecord:
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return await super().create(record, takeover, first)

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        if not self.release.is_set():
            self.appends_before_release += 1
        await self.release.wait()
        return await super().append(session_id, events)


def sessions_counted() -> tuple[float, float]:
    """All sessions counted as started, and as finished, on this process so far."""
    totals = {"relay_sessions_started_total": 0.0, "relay_sessions_finished_total": 0.0}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["relay_sessions_started_total"], totals["relay_sessions_finished_total"]


class OpeningProvider(ScriptedProvider):
    """Records when its upstream request opens."""

    def __init__(self, script: Sequence[ProviderItem | None]) -> None:
        super().__init__(script)
        self.opened = asyncio.Event()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        self.opened.set()
        async for item in super().stream(request):
            yield item


async def test_the_upstream_request_opens_while_the_session_is_being_stored() -> None:
    store = SlowCreateStore()
    provider = OpeningProvider([TextDelta("early"), Finish("stop")])
    runner = make_runner(store, flush_interval_ms=0)
    creating = asyncio.create_task(
        runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    )
    await asyncio.wait_for(provider.opened.wait(), 1)
    await asyncio.sleep(0.05)
    assert not creating.done()  # the store has not answered yet
    # The generation runs meanwhile: its first token's append is already asked for.
    assert store.appends_before_release == 1
    store.release.set()
    created = await creating
    record, events = await wait_until_ended(store, created.record.id)
    assert kinds(events) == ["status", "status", "delta", "done"]
    assert texts(events) == ["early"] and record.status is SessionStatus.COMPLETED


async def test_a_session_the_store_cannot_create_closes_its_upstream_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SlowCreateStore(failure=StoreUnavailable("injected outage"))
    provider = OpeningProvider([TextDelta("never stored"), None])
    runner = make_runner(store)
    counted_before = sessions_counted()
    creating = asyncio.create_task(
        runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    )
    await asyncio.wait_for(provider.opened.wait(), 1)
    await asyncio.sleep(0.05)  # its generation has asked to append the first token
    assert store.appends_before_release == 1
    store.release.set()
    with pytest.raises(StoreUnavailable):
        await creating
    assert provider.closed.is_set()
    assert runner.running == 0
    # Not a session: neither counted nor logged as one that started and ended.
    assert sessions_counted() == counted_before
    assert not [r for r in caplog.records if r.name == "relay.runner"]


class LosingStore(MemoryStore):
    """Loses every session after its first `keep` appends: later appends find it gone,
    as after a FLUSHALL."""

    def __init__(self, keep: int) -> None:
        super().__init__(StoreSettings())
        self.keep = keep

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        if self.keep <= 0:
            raise SessionNotFound(f"session {session_tag(session_id)}")
        self.keep -= 1
        return await super().append(session_id, events)


async def test_a_session_lost_from_the_store_stops_its_generation_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    store = LosingStore(keep=0)  # its `connecting` status came with the creation
    provider = ScriptedProvider([TextDelta("a"), None])  # then waits: it must be closed
    runner = make_runner(store, flush_interval_ms=0)
    created = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    async with asyncio.timeout(3):
        await provider.closed.wait()
        while runner.running:
            await asyncio.sleep(0.01)
    tag = session_tag(created.record.id)
    reports = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, r.exc_info) for r in reports] == [(logging.WARNING, None)]
    assert (
        reports[0].getMessage()
        == f"session {tag} vanished from the store (data loss); generation stopped"
    )


async def test_ending_a_session_that_vanished_from_outside_writes_nothing() -> None:
    store = MemoryStore(StoreSettings())
    now = time.time()
    never_stored = SessionRecord("s_vanishedvanishedvanish", "mock", now, now, "")
    terminal = (EventType.ERROR, ErrorData("generation_lost", "gone", retryable=True))
    assert not await end_from_outside(store, never_stored, terminal, retry_s=0, max_events=10)
