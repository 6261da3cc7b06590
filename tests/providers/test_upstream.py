"""`UpstreamProvider` with a format of the tests' own, against the stub upstream; and the
passthrough merge every format's request body goes through (pure)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.base import Finish, ProviderItem, TextDelta
from relay.providers.passthrough import encode_body
from relay.providers.upstream import UpstreamProvider, endpoint_url
from relay.vocabulary import GenerationRequest, Message, Passthrough
from tests.providers.stub_upstream import sse_answer, stub_upstream


class Word(msgspec.Struct):
    text: str


WORD = msgspec.json.Decoder(Word)


class WordsAssembler:
    """Each word is text; `!` in a word is a bug of the assembler's."""

    def feed(self, event: Word) -> list[ProviderItem]:
        if "!" in event.text:
            raise ZeroDivisionError("a bug, not an upstream failure")
        return [TextDelta(event.text)]

    def finish(self) -> list[ProviderItem]:
        return [Finish("stop")]


class WordsFormat:
    """A format of JSON words, ended by `END`."""

    endpoint = "/words"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-key": api_key or ""}

    def encode_request(self, request: GenerationRequest) -> bytes:
        return msgspec.json.encode({"model": request.model})

    def decode_event(self, data: str) -> Word | None:
        return None if data == "END" else WORD.decode(data)

    def new_assembler(self, request: GenerationRequest) -> WordsAssembler:
        return WordsAssembler()


def words_provider(base_url: str, max_retries: int = 0) -> UpstreamProvider[Word]:
    settings = UpstreamSettings(name="w", kind="openai", base_url=base_url, max_retries=max_retries)
    return UpstreamProvider(WordsFormat(), settings, "k1")


REQUEST = GenerationRequest(model="m", messages=[Message(role="user", content="hi")])


async def collect(provider: UpstreamProvider[Word]) -> list[ProviderItem]:
    return [item async for item in provider.stream(REQUEST)]


async def collect_once(base_url: str, max_retries: int = 0) -> list[ProviderItem]:
    provider = words_provider(base_url, max_retries)
    try:
        return await collect(provider)
    finally:
        await provider.close()


async def test_a_format_is_posted_decoded_and_assembled() -> None:
    frames = (b'data: {"text": "a"}\n\ndata: {"text": "b"}\n\n', b"data: END\n\n")
    async with stub_upstream(sse_answer(*frames)) as stub:
        items = await collect_once(stub.url("/api/"))
    assert items == [TextDelta("a"), TextDelta("b"), Finish("stop")]
    [(path, headers)] = stub.requests
    assert (path, headers["x-key"]) == ("/api/words", "k1")
    assert stub.bodies == [b'{"model":"m"}']


async def test_after_the_end_sentinel_nothing_is_decoded_and_the_connection_is_reused() -> None:
    frames = (b'data: {"text": "a"}\n\ndata: END\n\ndata: not json\n\n', b"data: {oops\n\n")
    async with stub_upstream(sse_answer(*frames)) as stub:
        provider = words_provider(stub.url())
        try:
            for _ in range(2):
                assert await collect(provider) == [TextDelta("a"), Finish("stop")]
        finally:
            await provider.close()
    assert len(set(stub.client_ports)) == 1


async def test_an_event_that_cannot_be_read_is_a_bad_response() -> None:
    async with stub_upstream(sse_answer(b'data: {"text": 5}\n\n')) as stub:
        with pytest.raises(UpstreamError) as caught:
            await collect_once(stub.url())
    assert (caught.value.code, caught.value.retryable) == ("upstream_bad_response", True)
    assert "$.text" in caught.value.message


@pytest.mark.parametrize(
    "frames",
    [
        (b'data: {"text": "!"}\n\n',),  # before the first item
        (b'data: {"text": "a"}\n\n', b'data: {"text": "!"}\n\n'),  # after it
    ],
)
async def test_a_bug_in_a_format_propagates_and_is_not_retried(frames: tuple[bytes, ...]) -> None:
    async with stub_upstream(sse_answer(*frames)) as stub:
        with pytest.raises(ZeroDivisionError):
            await collect_once(stub.url(), max_retries=2)
    assert len(stub.requests) == 1


@pytest.mark.parametrize(
    ("base_url", "url"),
    [("http://h/v1", "http://h/v1/words"), ("http://h/v1/", "http://h/v1/words"), (None, "/words")],
)
def test_the_endpoint_is_joined_to_the_base_url(base_url: str | None, url: str) -> None:
    assert endpoint_url(base_url, "/words") == url


# --- passthrough fields in a request body (pure) -------------------------------------


class Body(msgspec.Struct, omit_defaults=True):
    model: str
    stream: bool
    max_tokens: int | None = None


def raw_fields(**fields: bytes) -> dict[str, msgspec.Raw]:
    return {name: msgspec.Raw(value) for name, value in fields.items()}


def keys_in_order(body: bytes) -> list[str]:
    pairs: list[tuple[str, Any]] = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    return [key for key, _ in pairs]


def test_passthrough_fields_are_written_verbatim_after_relays() -> None:
    passthrough = Passthrough("openai", raw_fields(top_k=b"40", logit_bias=b'{"50": -100 }'))
    body = encode_body(Body("m", True), passthrough, "openai")
    assert body == b'{"model":"m","stream":true,"top_k":40,"logit_bias":{"50": -100 }}'


def test_relay_owns_every_name_its_request_declares_sent_or_not() -> None:
    fields = raw_fields(model=b'"other"', stream=b"false", max_tokens=b"1", seed=b"7")
    body = encode_body(Body("m", True), Passthrough("openai", fields), "openai")
    assert keys_in_order(body) == ["model", "stream", "seed"]
    assert msgspec.json.decode(body) == {"model": "m", "stream": True, "seed": 7}


@pytest.mark.parametrize(
    "passthrough",
    [
        None,
        Passthrough("anthropic", raw_fields(top_k=b"40")),
        Passthrough("openai", {}),
        Passthrough("openai", raw_fields(model=b'"other"')),
    ],
)
def test_without_passthrough_fields_for_the_kind_the_body_is_relays_alone(
    passthrough: Passthrough | None,
) -> None:
    assert encode_body(Body("m", True), passthrough, "openai") == b'{"model":"m","stream":true}'
