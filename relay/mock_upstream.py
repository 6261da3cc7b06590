"""The standalone mock upstream: relay's mock model behind the OpenAI and Anthropic wire formats.

`relay mock-upstream` serves `POST /v1/chat/completions`, `POST /v1/messages` and
`GET /v1/models`, so relay (or any SDK) can be tested against a real HTTP provider. The
words, pacing and `fail_after`/`hang_after` come from `relay.providers.mock`: the same
model string and messages give the same text here as in-process. Tokens are pieces: the
answer's words, or fragments of the tool call's JSON arguments, one per chunk or delta.

Options only this server understands, taken out of the model string before the rest goes
to `parse_mock_model`:
| option | effect |
| --- | --- |
| `status=CODE` | answer that HTTP status at once, with a provider-format error body |
| `retry_after=S` | with a refusal, also send `Retry-After: S` |
| `fail_first=N` | the first N requests for this exact model string are refused (`status`, 503) |
| `disconnect_after=N` | drop the TCP connection after N tokens, without a terminator |
| `reasoning=N` | N reasoning words before the answer (not capped by `max_tokens`) |

`tokens` and `reasoning` are each capped (`--max-tokens`, by default 100,000, as the
in-process mock's `mock_max_tokens`): more is a 400. Words are made as they are sent.

A continuation is asked as the upstreams ask it: a final assistant message (Anthropic's
prefill), or one flagged `continue_final_message` with `add_generation_prompt: false`
(vLLM's). The answer then is the rest of the in-process mock's (`Resume`), with no
reasoning; a prefill Anthropic would refuse (trailing whitespace) or flags vLLM would
refuse (both, or no final assistant message) get the 400 they would.

`GET /_mock/stats` tells tests in other processes what happened, `GET /_mock/requests`
what they asked (the last `RECORDED_REQUESTS` bodies); `POST /_mock/reset` zeroes the
counters, the `fail_first` tallies and the record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import msgspec
from aiohttp import web

from relay.config import MOCK_MAX_TOKENS
from relay.errors import UpstreamError
from relay.off_loop import off_loop
from relay.providers.base import ToolCall
from relay.providers.mock import (
    MOCK_MODEL,
    MockPlan,
    TokenCap,
    large_prompt,
    mock_words,
    pace_tokens,
    plan_generation,
    spaced,
    words_seed,
)
from relay.vocabulary import GenerationRequest, Message, anthropic_stop_reason
from relay.wire import anthropic_messages as anthropic
from relay.wire import anthropic_to_chat, chat_request, messages_request
from relay.wire import openai_chat as openai

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090

LISTED_MODELS = ("mock", "mock:tools", "mock:reasoning=8", "mock:tokens=200,tps=80,ttft_ms=50")

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

# The requests `GET /_mock/requests` keeps, newest last: a testing aid, so a few suffice.
RECORDED_REQUESTS = 32


# --- model options ---------------------------------------------------------------


class UpstreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    """The model options that only the mock upstream understands."""

    status: int | None = None
    retry_after: float | None = None
    fail_first: int = 0
    disconnect_after: int | None = None
    reasoning: int = 0

    def disconnects_at(self, index: int) -> bool:
        return self.disconnect_after is not None and index >= self.disconnect_after


_UPSTREAM_OPTION_NAMES = tuple(UpstreamOptions.__struct_fields__)


class UnknownModel(ValueError):
    """The model is not a mock model: a 404, as a real provider answers."""


def split_model(model: str) -> tuple[str, UpstreamOptions]:
    """The model string for `parse_mock_model`, and the upstream-only options taken out."""
    name, _, spec = model.partition(":")
    if name != MOCK_MODEL:
        raise UnknownModel(f"model {model!r} does not exist; use 'mock' or 'mock:OPTIONS'")
    kept: list[str] = []
    taken: dict[str, float] = {}
    for part in filter(str.strip, spec.split(",")):
        key, _, raw = part.partition("=")
        if key.strip() in _UPSTREAM_OPTION_NAMES:
            taken[key.strip()] = _parse_number(key.strip(), raw)
        else:
            kept.append(part)
    options = msgspec.convert(taken, UpstreamOptions, strict=False)
    _check_ranges(options)
    return name + (":" + ",".join(kept) if kept else ""), options


def _parse_number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"mock option {key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"mock option {key} must be a finite number, got {raw!r}")
    if key != "retry_after" and not value.is_integer():
        raise ValueError(f"mock option {key} must be a whole number, got {raw!r}")
    return value


def _check_ranges(options: UpstreamOptions) -> None:
    if options.status is not None and not 400 <= options.status <= 599:
        raise ValueError(f"mock option status must be 400-599, got {options.status}")
    for key in ("retry_after", "fail_first", "disconnect_after", "reasoning"):
        value = getattr(options, key)
        if value is not None and value < 0:
            raise ValueError(f"mock option {key} must be >= 0, got {value}")


# --- what one generation sends -------------------------------------------------


class PieceKind(enum.Enum):
    REASONING = "reasoning"
    TEXT = "text"
    ARGUMENTS = "arguments"


class Piece(msgspec.Struct, frozen=True):
    """One token on the wire: a reasoning word, an answer word or an arguments fragment."""

    kind: PieceKind
    text: str


class UpstreamPlan(msgspec.Struct):
    """Everything one response will hold, decided before any byte is sent; its words
    are made as they are sent (`pieces`)."""

    mock: MockPlan
    reasoning: int  # reasoning words
    reasoning_seed: bytes
    tool_call: ToolCall | None
    fragments: list[str]  # the tool call's arguments, cut into pieces

    @property
    def output_tokens(self) -> int:
        return self.reasoning + self.mock.count

    @property
    def piece_count(self) -> int:
        return self.reasoning + (self.mock.count if self.tool_call is None else len(self.fragments))

    def pieces(self) -> Iterator[Piece]:
        """Reasoning words, then the answer's words or the arguments' fragments."""
        reasoning = mock_words(self.reasoning_seed)
        for text in islice(spaced(reasoning), self.reasoning):
            yield Piece(PieceKind.REASONING, text)
        if self.tool_call is not None:
            yield from (Piece(PieceKind.ARGUMENTS, part) for part in self.fragments)
            return
        for text in islice(self.mock.tokens(), self.mock.count):
            yield Piece(PieceKind.TEXT, text)


async def plan_upstream(
    mock_model: str,
    options: UpstreamOptions,
    call: UpstreamCall,
    cap: TokenCap,
) -> UpstreamPlan:
    """What the response to `call` will hold; a large prompt is planned off the loop."""
    request = GenerationRequest(
        mock_model, call.messages, max_tokens=call.max_tokens, prefill=call.prefill
    )
    mock, reasoning_seed = await off_loop(
        functools.partial(_plan_words, request, cap),
        large=large_prompt(call.messages, call.prefill),
    )
    cap.check("reasoning", options.reasoning)
    reasoning = 0 if call.prefill else options.reasoning  # a continuation goes on answering
    tool_call = await mock.tool_call() if mock.options.tools else None
    fragments = argument_fragments(tool_call) if tool_call is not None else []
    return UpstreamPlan(mock, reasoning, reasoning_seed, tool_call, fragments)


def _plan_words(request: GenerationRequest, cap: TokenCap) -> tuple[MockPlan, bytes]:
    """The answer's plan, and the reasoning's seed: one no answer uses, so that the
    reasoning is not a copy of the answer's first words."""
    mock = plan_generation(request, cap)
    return mock, words_seed(-1 - mock.options.seed, request.messages)


class Answer:
    """A whole (not streamed) answer's text by kind, gathered as its pieces are paced."""

    def __init__(self) -> None:
        self._texts: dict[PieceKind, list[str]] = {kind: [] for kind in PieceKind}

    def add(self, piece: Piece) -> None:
        self._texts[piece.kind].append(piece.text)

    def text(self, kind: PieceKind) -> str:
        return "".join(self._texts[kind])


def reasoning_signature(digest: str) -> str:
    """A thinking block's signature, from the SHA-256 (hex) of its text."""
    return "mock-signature-" + digest[:32]


def argument_fragments(call: ToolCall) -> list[str]:
    """The arguments JSON cut before each run of spaces: several pieces that join back."""
    return re.findall(r"\s*\S+", call.arguments) or [call.arguments]


# --- rendering, per wire format (pure) -----------------------------------------


class Renderer(Protocol):
    def opening(self) -> list[bytes]: ...

    def piece(self, index: int, piece: Piece) -> list[bytes]: ...

    def closing(self) -> list[bytes]: ...

    def failure(self, message: str) -> list[bytes]: ...

    def body(self, answer: Answer) -> dict[str, Any]: ...


class OpenAIRenderer:
    """A Chat Completions stream (role chunk, one chunk per token, finish, usage, DONE)."""

    def __init__(self, model: str, plan: UpstreamPlan, created: int, include_usage: bool):
        self._head = (openai.new_completion_id(), created, model)
        self._plan = plan
        self._include_usage = include_usage
        self._first_fragment = plan.reasoning

    def opening(self) -> list[bytes]:
        content = None if self._plan.tool_call else ""
        return [openai.chunk_frame(openai.role_chunk(*self._head, content=content))]

    def piece(self, index: int, piece: Piece) -> list[bytes]:
        if piece.kind is PieceKind.REASONING:
            return [openai.chunk_frame(openai.reasoning_chunk(*self._head, piece.text))]
        if piece.kind is PieceKind.TEXT:
            return [openai.chunk_frame(openai.text_chunk(*self._head, piece.text))]
        return [openai.chunk_frame(self._fragment(index, piece.text))]

    def _fragment(self, index: int, arguments: str) -> dict[str, Any]:
        call = self._plan.tool_call
        assert call is not None
        if index > self._first_fragment:
            return openai.tool_call_chunk(*self._head, call.index, arguments=arguments)
        return openai.tool_call_chunk(
            *self._head, call.index, call_id=call.id, name=call.name, arguments=arguments
        )

    def closing(self) -> list[bytes]:
        frames = [
            openai.chunk_frame(openai.finish_chunk(*self._head, self._plan.mock.finish_reason))
        ]
        if self._include_usage:
            usage = openai.usage_chunk(*self._head, *self._usage())
            frames.append(openai.chunk_frame(usage))
        return [*frames, openai.DONE_FRAME]

    def failure(self, message: str) -> list[bytes]:
        # What OpenAI-compatible servers send when a stream breaks; no [DONE] follows.
        return [openai.chunk_frame(openai.error_body(message, "server_error"))]

    def body(self, answer: Answer) -> dict[str, Any]:
        plan = self._plan
        return openai.completion(
            *self._head,
            text=answer.text(PieceKind.TEXT),
            reasoning=answer.text(PieceKind.REASONING) if plan.reasoning else None,
            tool_calls=[plan.tool_call] if plan.tool_call else [],
            finish_reason=plan.mock.finish_reason,
            prompt_tokens=plan.mock.input_tokens,
            completion_tokens=plan.output_tokens,
        )

    def _usage(self) -> tuple[int, int]:
        return self._plan.mock.input_tokens, self._plan.output_tokens


class AnthropicRenderer:
    """A Messages stream: message_start, ping, one content block per piece kind, the end."""

    def __init__(self, model: str, plan: UpstreamPlan):
        self._message_id = anthropic.new_message_id()
        self._model = model
        self._plan = plan
        self._block: PieceKind | None = None
        self._index = -1
        self._thinking = hashlib.sha256()  # of the reasoning sent, for its signature

    def opening(self) -> list[bytes]:
        start = anthropic.message_start(self._message_id, self._model, self._plan.mock.input_tokens)
        return [anthropic.event_frame(start), anthropic.event_frame(anthropic.ping())]

    def piece(self, index: int, piece: Piece) -> list[bytes]:
        if piece.kind is PieceKind.REASONING:
            self._thinking.update(piece.text.encode())
        events = self._enter(piece.kind)
        events.append(self._delta(piece))
        return [anthropic.event_frame(event) for event in events]

    def _enter(self, kind: PieceKind) -> list[dict[str, Any]]:
        if kind is self._block:
            return []
        events = self._leave()
        self._block, self._index = kind, self._index + 1
        return [*events, self._block_start(kind)]

    def _leave(self) -> list[dict[str, Any]]:
        if self._block is None:
            return []
        events = []
        if self._block is PieceKind.REASONING:
            signature = reasoning_signature(self._thinking.hexdigest())
            events.append(anthropic.signature_delta(self._index, signature))
        self._block = None
        return [*events, anthropic.content_block_stop(self._index)]

    def _block_start(self, kind: PieceKind) -> dict[str, Any]:
        if kind is PieceKind.REASONING:
            return anthropic.content_block_start_thinking(self._index)
        if kind is PieceKind.TEXT:
            return anthropic.content_block_start_text(self._index)
        call = self._tool_call()
        return anthropic.content_block_start_tool_use(self._index, call.id, call.name)

    def _delta(self, piece: Piece) -> dict[str, Any]:
        if piece.kind is PieceKind.REASONING:
            return anthropic.thinking_delta(self._index, piece.text)
        if piece.kind is PieceKind.TEXT:
            return anthropic.text_delta(self._index, piece.text)
        return anthropic.input_json_delta(self._index, piece.text)

    def closing(self) -> list[bytes]:
        plan = self._plan
        stop = anthropic_stop_reason(plan.mock.finish_reason)
        end = anthropic.message_delta(stop, plan.output_tokens, plan.mock.input_tokens)
        events = [*self._leave(), end, anthropic.message_stop()]
        return [anthropic.event_frame(event) for event in events]

    def failure(self, message: str) -> list[bytes]:
        return [anthropic.event_frame(anthropic.error_event("api_error", message))]

    def body(self, answer: Answer) -> dict[str, Any]:
        plan = self._plan
        return anthropic.message(
            self._message_id,
            self._model,
            self._content(answer),
            anthropic_stop_reason(plan.mock.finish_reason),
            plan.mock.input_tokens,
            plan.output_tokens,
        )

    def _content(self, answer: Answer) -> list[dict[str, Any]]:
        plan = self._plan
        content = []
        if plan.reasoning:
            thinking = answer.text(PieceKind.REASONING)
            signature = reasoning_signature(hashlib.sha256(thinking.encode()).hexdigest())
            content.append(anthropic.thinking_block(thinking, signature))
        if plan.mock.count and plan.tool_call is None:
            content.append(anthropic.text_block(answer.text(PieceKind.TEXT)))
        if plan.tool_call is not None:
            call = plan.tool_call
            content.append(anthropic.tool_use_block(call.id, call.name, json.loads(call.arguments)))
        return content

    def _tool_call(self) -> ToolCall:
        assert self._plan.tool_call is not None
        return self._plan.tool_call


# --- the two wire formats -------------------------------------------------------


class UpstreamCall(msgspec.Struct):
    """A request in either wire format, reduced to what the mock needs: `prefill` is the
    answer to continue, taken off the end of `messages`."""

    model: str
    messages: list[Message]
    max_tokens: int | None
    stream: bool
    include_usage: bool = False
    prefill: str = ""


class ContinuationFlags(msgspec.Struct):
    """vLLM's chat template flags, as far as the mock reads them (with vLLM's defaults)."""

    continue_final_message: bool = False
    add_generation_prompt: bool = True


CONTINUATION_FLAGS = msgspec.json.Decoder(ContinuationFlags)


@dataclass(frozen=True)
class WireFormat:
    decode: Callable[[bytes], UpstreamCall]
    error_body: Callable[[int, str], dict[str, Any]]
    renderer: Callable[[UpstreamCall, UpstreamPlan, int], Renderer]


def _decode_chat(body: bytes) -> UpstreamCall:
    request = chat_request.decode_request(body)
    messages = chat_request.to_relay_messages(request)
    call = UpstreamCall(
        request.model, messages, request.output_limit, bool(request.stream), request.include_usage
    )
    if CONTINUATION_FLAGS.decode(body).continue_final_message:
        _check_continuation(body, messages)
        call.messages, call.prefill = messages[:-1], messages[-1].text()
    return call


def _check_continuation(body: bytes, messages: list[Message]) -> None:
    """What vLLM refuses of a `continue_final_message` request, refused alike."""
    if CONTINUATION_FLAGS.decode(body).add_generation_prompt:
        raise ValueError(
            "cannot set both add_generation_prompt and continue_final_message to true "
            "(add_generation_prompt defaults to true: send it as false)"
        )
    if messages[-1].role != "assistant":
        raise ValueError("continue_final_message needs the final message to be an assistant's")


def _decode_messages(body: bytes) -> UpstreamCall:
    request = messages_request.decode_request(body)
    messages = anthropic_to_chat.to_relay_messages(request)
    call = UpstreamCall(request.model, messages, request.max_tokens, bool(request.stream))
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and not last.tool_calls:
        prefill = last.text()
        if prefill != prefill.rstrip():  # as the Messages API answers it
            raise ValueError(
                "messages: final assistant content cannot end with trailing whitespace"
            )
        call.messages, call.prefill = messages[:-1], prefill
    return call


def _chat_error(status: int, message: str) -> dict[str, Any]:
    code = "model_not_found" if status == 404 else None
    return openai.error_body(message, openai.error_type_for_status(status), code)


def _messages_error(status: int, message: str) -> dict[str, Any]:
    return anthropic.error_body(anthropic.error_type_for_status(status), message)


OPENAI_CHAT = WireFormat(
    decode=_decode_chat,
    error_body=_chat_error,
    renderer=lambda call, plan, created: OpenAIRenderer(
        call.model, plan, created, call.include_usage
    ),
)
ANTHROPIC_MESSAGES = WireFormat(
    decode=_decode_messages,
    error_body=_messages_error,
    renderer=lambda call, plan, created: AnthropicRenderer(call.model, plan),
)


# --- state shared by the app's handlers -----------------------------------------


class MockUpstreamStats(msgspec.Struct):
    requests: int = 0
    completed: int = 0
    client_disconnects: int = 0
    active: int = 0
    last_request: Any = None


class RecordedRequest(msgspec.Struct):
    """A request as `/_mock/requests` reports it: its path and JSON body (null if none)."""

    path: str
    body: Any


class MockUpstreamState:
    """Counters for `/_mock/stats`, the last requests for `/_mock/requests`, and the
    `fail_first` tally per model string."""

    def __init__(self, cap: TokenCap) -> None:
        self.stats = MockUpstreamStats()
        self.refused: dict[str, int] = {}
        self.recorded: collections.deque[RecordedRequest] = collections.deque(
            maxlen=RECORDED_REQUESTS
        )
        self.cap = cap

    def reset(self) -> None:
        # `active` keeps counting what really runs, so it never goes negative.
        self.stats = MockUpstreamStats(active=self.stats.active)
        self.refused.clear()
        self.recorded.clear()

    def record_request(self, path: str, body: bytes) -> None:
        self.stats.requests += 1
        try:
            self.stats.last_request = json.loads(body)
        except ValueError:
            self.stats.last_request = None
        self.recorded.append(RecordedRequest(path, self.stats.last_request))

    def refusal(self, model: str, options: UpstreamOptions) -> int | None:
        """The status to refuse this request with, if it must be refused."""
        if options.fail_first == 0:
            return options.status
        seen = self.refused.get(model, 0)
        if seen >= options.fail_first:
            return None
        self.refused[model] = seen + 1
        return options.status or 503

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count a response while it runs, and a client that leaves before its end."""
        self.stats.active += 1
        try:
            yield
        except asyncio.CancelledError:
            self.stats.client_disconnects += 1
            raise
        except ConnectionError:
            self.stats.client_disconnects += 1
        finally:
            self.stats.active -= 1


STATE = web.AppKey("mock_upstream_state", MockUpstreamState)


# --- handlers ---------------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, OPENAI_CHAT)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _generate(request, ANTHROPIC_MESSAGES)


async def _generate(request: web.Request, wire: WireFormat) -> web.StreamResponse:
    state = request.app[STATE]
    body = await request.read()
    state.record_request(request.path, body)
    try:
        call = wire.decode(body)
        mock_model, options = split_model(call.model)
        plan = await plan_upstream(mock_model, options, call, state.cap)
    except UnknownModel as exc:
        return _error_response(wire, 404, str(exc))
    except ValueError as exc:
        return _error_response(wire, 400, str(exc))
    refusal = state.refusal(call.model, options)
    if refusal is not None:
        message = f"mock upstream refused the request with {refusal}, as the model asked"
        return _error_response(wire, refusal, message, options.retry_after)
    renderer = wire.renderer(call, plan, int(time.time()))
    with state.serving():
        if call.stream:
            return await _stream(request, renderer, plan, options, state)
        return await _answer(request, wire, renderer, plan, options, state)
    return web.Response()  # reached only when the client has left: aiohttp sends nothing


async def _stream(
    request: web.Request,
    renderer: Renderer,
    plan: UpstreamPlan,
    options: UpstreamOptions,
    state: MockUpstreamState,
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    await _write(response, renderer.opening())
    pieces = plan.pieces()
    try:
        async for index in pace_tokens(plan.mock.options, plan.piece_count, plan.mock.resume):
            if options.disconnects_at(index):
                _abort(request)
                return response
            await _write(response, renderer.piece(index, next(pieces)))
    except UpstreamError as exc:
        await _write(response, renderer.failure(exc.message))
        return response
    await _write(response, renderer.closing())
    await response.write_eof()
    state.stats.completed += 1
    return response


async def _answer(
    request: web.Request,
    wire: WireFormat,
    renderer: Renderer,
    plan: UpstreamPlan,
    options: UpstreamOptions,
    state: MockUpstreamState,
) -> web.StreamResponse:
    """A non-streamed answer: the same pacing and failures, one body at the end."""
    pieces, answer = plan.pieces(), Answer()
    try:
        async for index in pace_tokens(plan.mock.options, plan.piece_count, plan.mock.resume):
            if options.disconnects_at(index):
                _abort(request)
                return web.Response()  # never sent: the connection is gone
            answer.add(next(pieces))
    except UpstreamError as exc:
        return _error_response(wire, 500, exc.message)
    state.stats.completed += 1
    return web.json_response(renderer.body(answer))


async def _write(response: web.StreamResponse, frames: Sequence[bytes]) -> None:
    await response.write(b"".join(frames))


def _abort(request: web.Request) -> None:
    """Drop the connection mid-response, the way a crashed provider or proxy does."""
    if request.transport is not None:
        request.transport.abort()


def _error_response(
    wire: WireFormat, status: int, message: str, retry_after: float | None = None
) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return web.json_response(wire.error_body(status, message), status=status, headers=headers)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response(openai.model_list(LISTED_MODELS, int(time.time()), "mock"))


async def stats(request: web.Request) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(request.app[STATE].stats), content_type="application/json"
    )


async def recorded_requests(request: web.Request) -> web.Response:
    """The last requests asked, oldest first: `{"requests": [{"path", "body"}, …]}`."""
    recorded = {"requests": list(request.app[STATE].recorded)}
    return web.Response(body=msgspec.json.encode(recorded), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(status=204)


def create_mock_upstream_app(max_tokens: int = MOCK_MAX_TOKENS) -> web.Application:
    app = web.Application()
    app[STATE] = MockUpstreamState(TokenCap(max_tokens, "relay mock-upstream --max-tokens"))
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/_mock/stats", stats)
    app.router.add_get("/_mock/requests", recorded_requests)
    app.router.add_post("/_mock/reset", reset)
    return app


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_tokens: int = MOCK_MAX_TOKENS
) -> None:
    """Run until interrupted. A client that goes away cancels its handler, so it is counted."""
    web.run_app(
        create_mock_upstream_app(max_tokens),
        host=host,
        port=port,
        handler_cancellation=True,
        print=lambda message: print(message, file=sys.stderr),
    )
