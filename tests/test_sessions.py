"""`Sessions` against the memory store: lookups, creation, and every way a cancel ends.

Two `Sessions` on one store stand for two instances; the store's cancel bus is made to
reach every listener in the process, as Redis's reaches every instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import msgspec
import pytest

from relay import sessions as sessions_module
from relay.clients import ANONYMOUS, Caller, Client
from relay.config import Settings
from relay.errors import ApiError, StoreUnavailable
from relay.events import (
    DoneData,
    ErrorData,
    Event,
    EventType,
    SessionStatus,
    StatusData,
    make_event,
)
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta, UsageReport
from relay.providers.router import ModelRouter
from relay.runner import GenerationRunner
from relay.session import SessionRecord, hash_token, new_session_id
from relay.sessions import Sessions
from relay.store.memory import MemoryStore
from relay.vocabulary import GenerationRequest, Message

REQUEST = GenerationRequest(model="mock", messages=[Message(role="user", content="hi")])


class Bus(MemoryStore):
    """A memory store whose cancel bus reaches every listener in the process; the first
    listen may fail, as it does while Redis is down."""

    def __init__(self, *, first_listen_fails: bool = False) -> None:
        super().__init__(Settings().store)
        self.published: list[str] = []
        self._listeners: list[asyncio.Queue[str]] = []
        self._first_listen_fails = first_listen_fails

    async def publish_cancel(self, session_id: str) -> None:
        self.published.append(session_id)
        for listener in self._listeners:
            listener.put_nowait(session_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        if self._first_listen_fails:
            self._first_listen_fails = False
            raise StoreUnavailable("the store is down")
        listener: asyncio.Queue[str] = asyncio.Queue()
        self._listeners.append(listener)
        while True:
            yield await listener.get()


class Talker(Provider):
    """Reports usage, says one word, then talks on until it is closed (or finishes)."""

    def __init__(self, *, finish: bool = False) -> None:
        self.finish = finish
        self.models: list[str] = []

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        self.models.append(request.model)
        yield UsageReport(3, 1)
        yield TextDelta("hello")
        if not self.finish:
            await asyncio.Future()
        yield Finish("stop")


Instance = Callable[..., Sessions]


@pytest.fixture
async def instance() -> AsyncIterator[Instance]:
    """`instance(store, provider, cancel_wait_s=…)`: one instance's `Sessions`, its
    cancel listener started; stopped, and its generations cancelled, at the end."""
    started: list[tuple[Sessions, GenerationRunner]] = []

    def start(store: MemoryStore, provider: Provider | None = None, **options: float) -> Sessions:
        settings = Settings()
        router = ModelRouter(settings.upstreams, {"mock": provider or Talker()})
        runner = GenerationRunner(store, settings.generation, settings.store, f"i_{len(started)}")
        sessions = Sessions(settings, store, router, runner, **options)
        sessions.start()
        started.append((sessions, runner))
        return sessions

    yield start
    for sessions, runner in started:
        await sessions.stop()
        await runner.shutdown(timeout=1.0)


async def orphan(store: MemoryStore) -> SessionRecord:
    """A running session whose generator is gone (its instance was killed)."""
    now = time.time()
    record = SessionRecord(new_session_id(), "mock", now, now, hash_token("t"), owner="i_gone")
    await store.create(record)
    return await store.append(
        record.id, [make_event(1, EventType.STATUS, StatusData("generating"))]
    )


async def until(store: MemoryStore, session_id: str, done: Callable[[list[Event]], bool]) -> None:
    async with asyncio.timeout(5):
        while not done(await store.read(session_id, 0, 1000)):
            await asyncio.sleep(0.005)


def has_text(events: list[Event]) -> bool:
    return any(event.type is EventType.DELTA for event in events)


def ended(events: list[Event]) -> bool:
    return bool(events) and events[-1].is_terminal


async def running_session(sessions: Sessions, store: MemoryStore) -> SessionRecord:
    """A session generating on `sessions`' instance, its first word written."""
    created = await sessions.create("mock", REQUEST)
    await until(store, created.record.id, has_text)
    return created.record


async def last_event(store: MemoryStore, session_id: str) -> tuple[EventType, object]:
    events = await store.read(session_id, 0, 1000)
    return events[-1].type, events[-1].decoded_data()


# --- find, create, snapshot -------------------------------------------------------------


async def test_find_answers_the_record_or_404(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store)
    record = await orphan(store)
    assert await sessions.find(record.id) == record
    with pytest.raises(ApiError) as raised:
        await sessions.find("s_AAAAAAAAAAAAAAAAAAAAAA")
    assert (raised.value.status, raised.value.code) == (404, "session_not_found")
    assert "s_AAAAAAAAAAAAAAAAAAAAAA" in raised.value.message


async def test_find_raises_the_front_doors_own_error(instance: Instance) -> None:
    sessions = instance(Bus())
    not_found = ApiError(404, "response_not_found", "no such response")
    for untranslatable_or_unknown in (None, "s_AAAAAAAAAAAAAAAAAAAAAA"):
        with pytest.raises(ApiError) as raised:
            await sessions.find(untranslatable_or_unknown, not_found)
        assert raised.value is not_found


async def test_a_session_is_found_only_by_its_client(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store, Talker(finish=True))
    created = await sessions.create("mock", REQUEST, Client("web"))
    assert created.record.client == "web" and (await store.get(created.record.id)) is not None
    assert await sessions.find(created.record.id, caller=Caller(Client("web"))) == created.record
    # Another client, a caller with no client, and one that names none (the default: the
    # anonymous client) get the error an unknown id gets.
    for caller in (Caller(Client("mobile")), Caller(None), Caller(ANONYMOUS)):
        with pytest.raises(ApiError) as raised:
            await sessions.find(created.record.id, caller=caller)
        assert (raised.value.status, raised.value.code) == (404, "session_not_found")
    with pytest.raises(ApiError):
        await sessions.find(created.record.id)


async def test_a_read_token_alone_finds_its_session_and_nothing_else(instance: Instance) -> None:
    sessions = instance(Bus(), Talker(finish=True))
    first = await sessions.create("mock", REQUEST, Client("web"))
    second = await sessions.create("mock", REQUEST, Client("web"))
    found = await sessions.find(first.record.id, caller=Caller(None, first.token))
    assert (found.id, found.client) == (first.record.id, "web")  # its events go on meanwhile
    for session_id, token in [
        (second.record.id, first.token),
        (first.record.id, "rt_forged"),
        ("s_AAAAAAAAAAAAAAAAAAAAAA", first.token),
        (None, first.token),
    ]:
        with pytest.raises(ApiError) as raised:
            await sessions.find(session_id, caller=Caller(None, token))
        assert (raised.value.status, raised.value.code) == (401, "invalid_token")


class LimitRecorder(Talker):
    """A Talker that records the output limit each request is sent with."""

    def __init__(self) -> None:
        super().__init__(finish=True)
        self.max_tokens: list[int | None] = []

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        self.max_tokens.append(request.max_tokens)
        async for item in super().stream(request):
            yield item


async def test_create_checks_the_clients_models_and_caps_max_tokens(instance: Instance) -> None:
    store, provider = Bus(), LimitRecorder()
    sessions = instance(store, provider)
    client = Client("web", models=("mock/inner",), max_tokens=7)
    with pytest.raises(ApiError) as raised:
        await sessions.create("mock:other", REQUEST, client)
    assert (raised.value.status, raised.value.code) == (403, "model_not_allowed")
    asking = msgspec.structs.replace(REQUEST, max_tokens=100)
    created = await sessions.create("mock/inner", asking, client)
    await until(store, created.record.id, ended)
    assert provider.max_tokens == [7]


async def test_create_sends_the_model_its_route_names(instance: Instance) -> None:
    store, provider = Bus(), Talker(finish=True)
    sessions = instance(store, provider)
    created = await sessions.create("mock/inner", REQUEST)
    await until(store, created.record.id, ended)
    assert created.record.model == "mock/inner"  # what the client named
    assert provider.models == ["inner"]  # what the upstream is sent


async def test_create_refuses_while_draining(instance: Instance) -> None:
    provider = Talker()
    sessions = instance(Bus(), provider)
    sessions.draining = True
    with pytest.raises(ApiError) as raised:
        await sessions.create("mock", REQUEST)
    assert (raised.value.status, raised.value.code) == (503, "draining")
    assert provider.models == []


async def test_the_snapshot_folds_the_log(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store, Talker(finish=True))
    created = await sessions.create("mock", REQUEST)
    await until(store, created.record.id, ended)
    snapshot = await sessions.snapshot(await sessions.find(created.record.id))
    assert snapshot.status is SessionStatus.COMPLETED
    assert snapshot.text == "hello"
    assert snapshot.usage == {"input_tokens": 3, "output_tokens": 1}
    assert snapshot.tool_calls == []


# --- cancel -------------------------------------------------------------------------------


async def test_cancel_here(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store)
    record = await running_session(sessions, store)
    assert await sessions.cancel(record) is SessionStatus.CANCELLED
    assert store.published == []  # it ran here: nobody else needed to hear it
    usage = {"input_tokens": 3, "output_tokens": 1}
    assert await last_event(store, record.id) == (
        EventType.CANCELLED,
        {"reason": "client", "usage": usage},
    )


async def test_cancel_here_answers_running_while_the_generation_ends(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store, cancel_wait_s=0.0)
    record = await running_session(sessions, store)
    assert await sessions.cancel(record) is SessionStatus.RUNNING
    await until(store, record.id, ended)
    assert (await last_event(store, record.id))[0] is EventType.CANCELLED


@pytest.mark.parametrize("first_listen_fails", [False, True])
async def test_cancel_on_another_instance_is_obeyed_there(
    instance: Instance, monkeypatch: pytest.MonkeyPatch, first_listen_fails: bool
) -> None:
    monkeypatch.setattr(sessions_module, "RELISTEN_AFTER_S", 0.01)
    store = Bus(first_listen_fails=first_listen_fails)
    owner, other = instance(store), instance(store)
    record = await running_session(owner, store)
    if first_listen_fails:
        await asyncio.sleep(0.05)  # the owner's listener is back
    assert await other.cancel(record) is SessionStatus.CANCELLED
    assert store.published == [record.id]
    # The usage is the owner's to know: it wrote `cancelled`.
    kind, data = await last_event(store, record.id)
    assert (kind, data) == (
        EventType.CANCELLED,
        {"reason": "client", "usage": {"input_tokens": 3, "output_tokens": 1}},
    )


async def test_cancel_with_no_generator_ends_the_log_from_here(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store, cancel_wait_s=0.05)
    record = await orphan(store)
    assert await sessions.cancel(record) is SessionStatus.CANCELLED
    assert store.published == [record.id]
    assert await last_event(store, record.id) == (EventType.CANCELLED, {"reason": "client"})
    assert [event.id for event in await store.read(record.id, 0, 10)] == [1, 2]


async def test_cancel_answers_how_the_session_ended_if_it_ended_otherwise(
    instance: Instance,
) -> None:
    """The generator finished while the cancel was on its way: the answer says so."""
    store = Bus()
    sessions = instance(store)
    record = await orphan(store)
    done = make_event(2, EventType.DONE, DoneData("stop"))

    async def finish_soon() -> None:
        await asyncio.sleep(0.05)
        await store.append(record.id, [done])

    finishing = asyncio.create_task(finish_soon())
    assert await sessions.cancel(record) is SessionStatus.COMPLETED
    await finishing


@pytest.mark.parametrize(
    "stale_by", [pytest.param(1, id="its-end-unseen"), pytest.param(0, id="up-to-its-end")]
)
async def test_cancel_with_a_stale_record_of_an_ended_session(
    instance: Instance, stale_by: int
) -> None:
    """The record was read before the session failed: the answer says so, and nothing is
    appended after the end (the id fence refuses it when the wait saw nothing new)."""
    store = Bus()
    sessions = instance(store, cancel_wait_s=0.05)
    record = await orphan(store)
    failure = ErrorData("upstream_error", "the upstream failed", retryable=True)
    await store.append(record.id, [make_event(2, EventType.ERROR, failure)])
    stale = msgspec.structs.replace(record, last_event_id=2 - stale_by)
    assert await sessions.cancel(stale) is SessionStatus.FAILED
    assert [event.id for event in await store.read(record.id, 0, 10)] == [1, 2]


async def test_cancel_of_an_ended_session_changes_nothing(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store, Talker(finish=True))
    created = await sessions.create("mock", REQUEST)
    await until(store, created.record.id, ended)
    record = await sessions.find(created.record.id)
    before = await store.read(record.id, 0, 1000)
    assert await sessions.cancel(record) is SessionStatus.COMPLETED
    assert await store.read(record.id, 0, 1000) == before
    assert store.published == []


async def test_stop_ends_the_cancel_listener(instance: Instance) -> None:
    store = Bus()
    sessions = instance(store)
    await sessions.stop()
    await sessions.stop()  # idempotent
    record = await running_session(sessions, store)
    await store.publish_cancel(record.id)  # nobody listens any more
    await asyncio.sleep(0.05)
    assert (await store.get(record.id)) is not None
    assert not (await store.read(record.id, 0, 1000))[-1].is_terminal
