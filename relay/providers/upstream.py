"""`UpstreamProvider`: any upstream that answers a POSTed JSON request with an SSE stream.

What differs between upstreams is their `UpstreamFormat`, pure code: the endpoint and
headers, the request body, how one SSE message's data decodes into the format's event
(where an end sentinel such as `[DONE]` is recognised), and the assembler that turns
events into provider items. The provider does the I/O once for every format: one
`SSEClient` (one connection pool) per upstream, each attempt's body read a chunk at a time
into its `AnswerDecoder` (pure: SSE messages → events → assembler), in one loop per
token, and attempts retried by `retry.py`'s `stream_with_retries`.

An attempt raises `UpstreamFailed` (the connection's, or an event that cannot be read) or
`UpstreamError` (an error the assembler found in the stream); anything else is a bug and
propagates unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator
from typing import Generic, Protocol, TypeVar

import msgspec

from relay.config import UpstreamSettings
from relay.off_loop import MANY_MESSAGES, off_loop
from relay.providers.base import Connecting, Provider, ProviderItem, Queued
from relay.providers.failures import UpstreamFailed, bad_response_failure, failure_of
from relay.providers.retry import RetryPolicy, stream_with_retries
from relay.providers.sse_client import SSEClient, read_chunk
from relay.providers.sse_decoder import SSEDecoder, SSEMessage
from relay.vocabulary import GenerationRequest

Event = TypeVar("Event")
EventIn = TypeVar("EventIn", contravariant=True)


class StreamAssembler(Protocol[EventIn]):
    """A format's events → provider items, for one answer. Pure: no I/O."""

    def feed(self, event: EventIn) -> list[ProviderItem]:
        """The items `event` completes; raises `UpstreamError` for an error event."""
        ...

    def finish(self) -> list[ProviderItem]:
        """The items the end of the stream releases; raises when it ended unfinished."""
        ...


class UpstreamFormat(Protocol[Event]):
    """What one upstream API is, as far as relay speaks it. Pure: no I/O."""

    endpoint: str  # the path after the upstream's `base_url`: `/chat/completions`

    def headers(self, api_key: str | None) -> dict[str, str]:
        """The headers that authenticate and version a request."""
        ...

    def encode_request(self, request: GenerationRequest) -> bytes:
        """The JSON body of a streamed request for `request`."""
        ...

    def decode_event(self, data: str) -> Event | None:
        """One SSE message's data as an event; None for the format's end sentinel, after
        which the rest of the body is read but not decoded. Raises `msgspec.DecodeError`
        (with a typed `msgspec.json.Decoder`) for data that is not an event."""
        ...

    def new_assembler(self, request: GenerationRequest) -> StreamAssembler[Event]:
        """A fresh assembler for the answer to `request`."""
        ...


def endpoint_url(base_url: str | None, endpoint: str) -> str:
    """As the SDKs join them: `https://api.openai.com/v1` + `/chat/completions`."""
    return f"{(base_url or '').rstrip('/')}{endpoint}"


class UpstreamProvider(Provider, Generic[Event]):
    """One upstream of one format over HTTP, with retries before the first item."""

    def __init__(
        self,
        upstream_format: UpstreamFormat[Event],
        upstream: UpstreamSettings,
        api_key: str | None,
        *,
        proxy: str | None = None,
    ) -> None:
        self._format = upstream_format
        self._policy = RetryPolicy.for_upstream(upstream)
        self._api_key = api_key
        self._continuation = upstream.continuation_style
        url = endpoint_url(upstream.base_url, upstream_format.endpoint)
        self._client = SSEClient(upstream, url, upstream_format.headers(api_key), proxy=proxy)

    def check_model(self, model: str) -> None:
        if not model.strip():
            raise ValueError("the model name is empty")

    def supports_continuation(self, model: str) -> bool:
        return self._continuation != "none"

    def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        if request.prefill and not self.supports_continuation(request.model):
            raise ValueError("this upstream does not continue answers (its continuation is none)")
        return stream_with_retries(
            lambda: self._attempt(request), failure_of, self._policy, secret=self._api_key
        )

    async def close(self) -> None:
        await self._client.close()

    async def _attempt(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        """One request to the upstream, streamed: its body read a chunk at a time, each
        decoded and assembled in this one loop (a generator per layer would cost a frame
        resume per layer per token). When every connection is taken it says so first
        (`Queued`), and again when it got one (`Connecting`); before any await, so that
        the runner hears it at once."""
        slots = self._client.connection_slots
        queued = slots.locked()
        if queued:
            yield Queued()
        body = await off_loop(
            functools.partial(self._format.encode_request, request),
            large=len(request.messages) > MANY_MESSAGES,
        )
        answer = AnswerDecoder(self._format, self._format.new_assembler(request))
        async with slots:
            if queued:
                yield Connecting()
            # A response read to its end is already back in the pool when it is closed;
            # an unfinished one (closed from the runner) takes its connection with it.
            with contextlib.closing(await self._client.open(body)) as response:
                while chunk := await read_chunk(response):
                    # Each message's items go out before the next is decoded: an error
                    # later in the same read must not take the output before it along.
                    for message in answer.messages(chunk):
                        for item in answer.items(message):
                            yield item
                for message in answer.end_of_body():
                    for item in answer.items(message):
                        yield item
        for item in answer.finish():
            yield item


class AnswerDecoder(Generic[Event]):
    """An answer's body → provider items: its SSE messages, each decoded by the format
    and fed to the assembler. Pure: no I/O.

    After the format's end sentinel the rest of the body is still read (its connection is
    reused) but not decoded."""

    def __init__(
        self, upstream_format: UpstreamFormat[Event], assembler: StreamAssembler[Event]
    ) -> None:
        self._sse = SSEDecoder()
        self._decode = upstream_format.decode_event
        self._assembler = assembler
        self._ended = False

    def messages(self, chunk: bytes) -> list[SSEMessage]:
        """The messages `chunk` of the body completes, none after the end sentinel."""
        return [] if self._ended else self._sse.feed(chunk)

    def end_of_body(self) -> list[SSEMessage]:
        """The body's last message, when no blank line ended it."""
        return [] if self._ended else self._sse.flush()

    def items(self, message: SSEMessage) -> list[ProviderItem]:
        """The items `message` completes; raises `UpstreamFailed` for one that is not an
        event, `UpstreamError` for an error event."""
        if self._ended:
            return []
        try:
            event = self._decode(message.data)
        except msgspec.DecodeError as exc:
            raise UpstreamFailed(bad_response_failure(exc)) from exc
        if event is None:
            self._ended = True
            return []
        return self._assembler.feed(event)

    def finish(self) -> list[ProviderItem]:
        """The items the end of the stream releases; raises when it ended unfinished."""
        return self._assembler.finish()
