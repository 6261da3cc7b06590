"""`create_app(settings, store=…, providers=…)`: boundaries handed in are the ones used."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from relay.config import StoreSettings
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta
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
