"""An upstream's message reaches clients redacted first and cut second: the key, whole or
any 8 of its characters in a row, never survives, wherever the cut falls (pure); and the
same through a real provider whose upstream echoes the key in a long 401."""

from __future__ import annotations

import pytest
from aiohttp import web

from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.failures import (
    MAX_MESSAGE_CHARS,
    REDACTED,
    SECRET_PIECE_CHARS,
    scrubbed,
    status_failure,
    without_secret,
)
from relay.providers.openai import OpenAIProvider
from relay.vocabulary import GenerationRequest, Message
from tests.providers.stub_upstream import stub_upstream

KEY = "sk-proj-Zq81RvTn0pXy4LkW2mHs"
CUT = MAX_MESSAGE_CHARS - 1  # the clipped message keeps this many characters, then "…"


def pieces(secret: str, width: int = SECRET_PIECE_CHARS) -> set[str]:
    return {secret[start : start + width] for start in range(len(secret) - width + 1)}


def leaked(text: str, secret: str = KEY) -> set[str]:
    return {piece for piece in pieces(secret) if piece in text}


def error_with(message: str) -> UpstreamError:
    return status_failure(401, {"error": {"message": message}}, {}).error


@pytest.mark.parametrize("offset", range(CUT - len(KEY) - 2, CUT + 3))
def test_the_key_is_redacted_wherever_the_cut_falls(offset: int) -> None:
    message = "x" * offset + KEY + " was rejected" + "y" * 50
    shown = scrubbed(error_with(message), KEY)
    assert leaked(shown.message) == set()
    assert len(shown.message) <= MAX_MESSAGE_CHARS
    assert shown.message.startswith("x" * min(offset, CUT))


def test_a_short_message_is_redacted_and_not_cut() -> None:
    shown = scrubbed(error_with(f"invalid key {KEY} for this org"), KEY)
    assert shown.message == f"invalid key {REDACTED} for this org"
    assert (shown.code, shown.status, shown.retryable) == ("upstream_auth", 401, False)


def test_a_long_message_without_the_key_is_cut() -> None:
    shown = scrubbed(error_with("z" * 5000), KEY)
    assert shown.message == "z" * CUT + "…"
    assert scrubbed(error_with("fine"), KEY).message == "fine"
    assert scrubbed(error_with("z" * 5000), None).message == "z" * CUT + "…"


@pytest.mark.parametrize(
    "echoed",
    [
        KEY[:14],  # an upstream that cut its own message through the key
        KEY[-12:],
        KEY[5 : 5 + SECRET_PIECE_CHARS],
        KEY + KEY,
    ],
)
def test_pieces_of_the_key_are_redacted(echoed: str) -> None:
    shown = without_secret(f"Incorrect API key provided: {echoed}. See the docs.", KEY)
    assert shown == f"Incorrect API key provided: {REDACTED}. See the docs."


def test_fewer_characters_of_the_key_than_a_piece_stay() -> None:
    masked = f"Incorrect API key provided: sk-proj-****{KEY[-4:]}"  # as OpenAI masks keys
    assert without_secret(masked, KEY) == masked.replace("sk-proj-", REDACTED)
    assert without_secret(f"tail {KEY[-7:]}", KEY) == f"tail {KEY[-7:]}"


def test_a_secret_shorter_than_a_piece_is_redacted_whole() -> None:
    assert without_secret("k1 and k2 and k1", "k1") == f"{REDACTED} and k2 and {REDACTED}"


async def test_a_401_that_echoes_the_key_across_the_cut_reaches_no_client() -> None:
    async def rejecting(request: web.Request) -> web.Response:
        presented = request.headers["Authorization"].removeprefix("Bearer ")
        message = "x" * (CUT - 10) + presented + " is not a valid key"
        return web.json_response({"error": {"message": message}}, status=401)

    async with stub_upstream(rejecting) as stub:
        settings = UpstreamSettings(name="s", kind="openai", base_url=stub.url("/v1"))
        provider = OpenAIProvider(settings, KEY)
        request = GenerationRequest(model="m", messages=[Message(role="user", content="hi")])
        try:
            with pytest.raises(UpstreamError) as caught:
                async for _ in provider.stream(request):
                    pass
        finally:
            await provider.close()
    assert caught.value.code == "upstream_auth"
    assert leaked(caught.value.message) == set()
    assert caught.value.__cause__ is None  # the chained exception may quote the answer
