"""`create_app(settings, store=…, providers=…)`: boundaries handed in are the ones used."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import pytest

from relay.config import StoreSettings
from relay.errors import StoreUnavailable
from relay.events import Event
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta
from relay.session import SessionRecord
from relay.store.memory import MemoryStore
from relay.vocabulary import GenerationRequest
from tests.frontdoors.conftest import MESSAGES, StartRelay

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)


class ScriptedProvider(Provider):
    """Answers every request with the same words, and remembers the requests."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.requests: list[GenerationRequest] = []

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        self.requests.append(request)
        for word in self.words:
            yield TextDelta(word)
        yield Finish("stop")


async def test_an_injected_provider_answers_for_its_upstream(start_relay: StartRelay) -> None:
    provider = ScriptedProvider(["injected ", "words"])
    relay = await start_relay(with_providers={"mock": provider})
    created = await relay.create("mock", MESSAGES)
    snapshot = await relay.wait_until_ended(created["id"])
    assert snapshot["text"] == "injected words"
    assert [request.model for request in provider.requests] == ["mock"]


async def test_an_injected_store_holds_the_sessions(start_relay: StartRelay) -> None:
    store = MemoryStore(StoreSettings())
    relay = await start_relay(with_store=store)
    created = await relay.create()
    await relay.wait_until_ended(created["id"])
    record = await store.get(created["id"])
    assert record is not None and record.status.is_final


class UnreachableStore(MemoryStore):
    """A store that cannot create sessions: as if Redis were down."""

    async def create(
        self, record: SessionRecord, takeover: bytes | None = None, first: Sequence[Event] = ()
    ) -> SessionRecord:
        raise StoreUnavailable("injected: the store is down")


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/v1/sessions", {"model": "mock", "messages": MESSAGES}, "relay"),
        ("/v1/chat/completions", {"model": "mock", "messages": MESSAGES}, "openai"),
        ("/v1/responses", {"model": "mock", "input": "hi"}, "openai"),
        ("/v1/messages", {"model": "mock", "max_tokens": 5, "messages": MESSAGES}, "anthropic"),
    ],
)
async def test_a_store_outage_is_answered_in_each_front_doors_shape(
    start_relay: StartRelay, path: str, body: dict[str, object], shape: str
) -> None:
    relay = await start_relay(with_store=UnreachableStore(StoreSettings()))
    async with relay.http.post(relay.url(path), json=body) as response:
        assert response.status == 503
        answer = await response.json()
    if shape == "anthropic":
        assert answer["type"] == "error"
        assert "unreachable" in answer["error"]["message"]
    else:
        assert answer["error"]["code"] == "store_unavailable"
        assert ("type" in answer["error"]) == (shape == "openai")
