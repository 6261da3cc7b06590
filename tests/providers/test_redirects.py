"""Upstream requests never carry their key to another origin: a redirect is not followed,
for either kind of upstream (the `anthropic` kind sends its key in `x-api-key`, which
aiohttp would have kept on the way to another origin). Two stub upstreams on two
loopback ports: the first redirects to the second, which must receive nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import pytest
from aiohttp import web
from yarl import URL

from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.anthropic import AnthropicProvider
from relay.providers.base import Provider
from relay.providers.openai import OpenAIProvider
from relay.providers.sse_client import redirect_origin
from relay.vocabulary import GenerationRequest, Message
from tests.providers.stub_upstream import Handler, StubUpstream, sse_answer, stub_upstream

Kind = Literal["openai", "anthropic"]
MakeProvider = Callable[[UpstreamSettings, str], Provider]

API_KEY = "sk-Zr4kQ9mW2pT7vX1nB8cL5dF3hJ6s"  # random: a word in it would be redacted
REQUEST = GenerationRequest(model="m", messages=[Message(role="user", content="hi")])
KINDS: dict[Kind, tuple[str, MakeProvider]] = {
    "openai": ("/v1", OpenAIProvider),
    "anthropic": ("", AnthropicProvider),
}
# 301/302/303 would turn the POST into a GET; 307/308 would send the body (and key) again.
REDIRECTS = [301, 302, 303, 307, 308]


async def stream_error(kind: Kind, base_url: str) -> UpstreamError:
    prefix, make_provider = KINDS[kind]
    settings = UpstreamSettings(name="far", kind=kind, base_url=base_url + prefix, max_retries=2)
    provider = make_provider(settings, API_KEY)
    try:
        with pytest.raises(UpstreamError) as caught:
            async for _ in provider.stream(REQUEST):
                pass
    finally:
        await provider.close()
    return caught.value


def redirecting_to(target: StubUpstream, status: int) -> Handler:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": target.url(request.path)})

    return redirect


@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_redirect_to_another_origin_is_not_followed(
    kind: Kind, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        stub_upstream(sse_answer(b"data: [DONE]\n\n")) as second,
        stub_upstream(redirecting_to(second, status)) as first,
    ):
        assert first.server.port != second.server.port
        elsewhere = f"127.0.0.1:{second.server.port}"
        with caplog.at_level(logging.WARNING, "relay.providers.sse_client"):
            error = await stream_error(kind, first.url().rstrip("/"))
    assert second.requests == []  # nothing reached the other origin, key or not
    [(_, headers)] = first.requests  # and a redirect is not retried
    assert API_KEY in headers.get("x-api-key", headers.get("Authorization", ""))
    assert (error.code, error.status, error.retryable) == ("upstream_redirect", status, False)
    assert f"redirect (HTTP {status})" in error.message
    assert "fix the upstream's base_url" in error.message
    assert elsewhere not in error.message  # where it points is the operator's business
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"to http://{elsewhere};" in warning
    assert API_KEY not in warning


@pytest.mark.parametrize(
    ("location", "origin"),
    [
        ("https://elsewhere.example:8443/v1/x?key=secret", "https://elsewhere.example:8443"),
        ("/v2/messages?key=secret", "http://upstream.example"),  # relative: the same origin
        ("http://[bad", "an unreadable location"),
    ],
)
def test_the_redirect_log_names_only_the_origin(location: str, origin: str) -> None:
    assert redirect_origin(URL("http://upstream.example/v1/messages"), location) == origin
