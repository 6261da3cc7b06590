"""The OpenAI Chat Completions request: its typed body and its translation into relay's
`GenerationRequest`. Pure code, no I/O.

The body follows OpenAI's API reference (the official SDK's `CompletionCreateParams`).
Messages are told apart by `role` (`system`, `developer`, `user`, `assistant`, `tool`,
and the legacy `function`); system, developer and tool messages hold text parts,
assistant messages text and refusal parts and function tool calls (as do `tools` and
`tool_choice`: relay forwards function tools only). A user message's parts are an open
family: `text`, `image_url`, `input_audio` and `file` are checked, and other types
(OpenAI-compatible servers add their own, such as vLLM's `video_url`; an Anthropic
upstream takes its own blocks) go on as they came. Fields of a message that relay's
canonical `Message` has no room for (`refusal`, `audio`, …) are dropped.

Fields relay interprets are `INTERPRETED`; every other field goes to an OpenAI upstream
as the client sent it (`Passthrough(kind="openai")`). Of those, the ones typed below
(`response_format`, `seed`, `top_p`, the penalties, `logprobs`, `logit_bias`, `user`,
`metadata`, …) are checked first, so that a bad value is a 400 naming it rather than the
upstream's refusal. `n` above 1 is refused: relay streams one choice.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from relay.vocabulary import GenerationRequest, Message, ToolChoice
from relay.wire.decoding import (
    Block,
    Int64,
    InvalidBody,
    ModelName,
    Probability,
    TokenLimit,
    Unmodelled,
    as_dict,
    body_fields,
    decode,
    passthrough,
)

INTERPRETED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
    }
)

Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]


class CacheControl(msgspec.Struct, omit_defaults=True):
    """Anthropic's prompt-caching mark, which relay carries to an Anthropic upstream."""

    type: str
    ttl: str | None = None


# Content parts.


class ChatPart(Block):
    """A content part of a user message (an open family)."""


class TextPart(msgspec.Struct, ChatPart, tag="text", kw_only=True, omit_defaults=True):
    text: str
    prompt_cache_breakpoint: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ImageUrl(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class ImagePart(msgspec.Struct, ChatPart, tag="image_url", kw_only=True, omit_defaults=True):
    image_url: ImageUrl
    prompt_cache_breakpoint: dict[str, Any] | None = None


class InputAudio(msgspec.Struct):
    data: str
    format: str


class AudioPart(msgspec.Struct, ChatPart, tag="input_audio", kw_only=True, omit_defaults=True):
    input_audio: InputAudio
    prompt_cache_breakpoint: dict[str, Any] | None = None


class FileRef(msgspec.Struct, omit_defaults=True):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(msgspec.Struct, ChatPart, tag="file", kw_only=True, omit_defaults=True):
    file: FileRef
    prompt_cache_breakpoint: dict[str, Any] | None = None


class OtherPart(Unmodelled, ChatPart):
    """A part of a type relay does not check, passed on as it came."""


class RefusalPart(msgspec.Struct, tag="refusal"):
    refusal: str


# Messages, told apart by `role` (a closed family: errors inside one name what it allows).


class ChatMessage(Block):
    """A message of the conversation."""

    tag_field = "role"


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, tag="function", kw_only=True):
    id: str
    function: FunctionCall


class SystemMessage(msgspec.Struct, ChatMessage, tag="system", tag_field="role", kw_only=True):
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(
    msgspec.Struct, ChatMessage, tag="developer", tag_field="role", kw_only=True
):
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(msgspec.Struct, ChatMessage, tag="user", tag_field="role", kw_only=True):
    content: str | list[ChatPart]
    name: str | None = None


class AssistantMessage(
    msgspec.Struct, ChatMessage, tag="assistant", tag_field="role", kw_only=True
):
    content: str | list[TextPart | RefusalPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(msgspec.Struct, ChatMessage, tag="tool", tag_field="role", kw_only=True):
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(msgspec.Struct, ChatMessage, tag="function", tag_field="role", kw_only=True):
    """The legacy result of a `function_call`; sent on as it is."""

    content: str | None
    name: str


# Tools and the other request fields.


class FunctionDefinition(msgspec.Struct, omit_defaults=True):
    name: ModelName
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, passed on as written
    strict: bool | None = None


class FunctionTool(msgspec.Struct, tag="function"):
    function: FunctionDefinition


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class TextFormat(msgspec.Struct, tag="text"):
    pass


class JsonObjectFormat(msgspec.Struct, tag="json_object"):
    pass


class JsonSchema(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class JsonSchemaFormat(msgspec.Struct, tag="json_schema"):
    json_schema: JsonSchema


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    model: ModelName
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Checked here, then passed on as sent.
    response_format: ResponseFormat | None = None
    seed: Int64 | None = None
    top_p: Probability | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[int, msgspec.Meta(ge=-100, le=100)]] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    store: bool | None = None

    @property
    def output_limit(self) -> int | None:
        """`max_completion_tokens` (the current name) wins over the legacy `max_tokens`."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and bool(self.stream_options.include_usage)

    def stop_list(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


def decode_request(body: bytes) -> ChatCompletionRequest:
    """Raises `InvalidBody` naming the path of a bad field, or `NotJson`."""
    return decode(body, ChatCompletionRequest)


def generation_request(body: bytes, request: ChatCompletionRequest) -> GenerationRequest:
    """The decoded `request` for relay's runner; `body` is what it was decoded from, for
    the fields relay passes on. Raises `InvalidBody` for what relay cannot honour."""
    if request.n is not None and request.n > 1:
        problem = f"relay streams one choice, so n must be 1 or absent; got {request.n}"
        raise InvalidBody("n", problem, "unsupported_parameter")
    return GenerationRequest(
        model=request.model,
        messages=to_relay_messages(request),
        max_tokens=request.output_limit,
        temperature=request.temperature,
        stop=request.stop_list(),
        tools=[msgspec.to_builtins(tool) for tool in request.tools or []] or None,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        passthrough=passthrough("openai", body_fields(body), INTERPRETED),
    )


def to_relay_messages(request: ChatCompletionRequest) -> list[Message]:
    return [relay_message(message) for message in request.messages]


def relay_message(message: ChatMessage) -> Message:
    """One message in relay's canonical shape (which is Chat's)."""
    if isinstance(message, AssistantMessage):
        calls = [msgspec.to_builtins(call) for call in message.tool_calls or []]
        content = None if message.content is None else parts(message.content)
        return Message("assistant", content, message.name, tool_calls=calls or None)
    if isinstance(message, ToolMessage):
        return Message("tool", parts(message.content), tool_call_id=message.tool_call_id)
    if isinstance(message, FunctionMessage):
        return Message("function", message.content, message.name)
    assert isinstance(message, SystemMessage | DeveloperMessage | UserMessage)
    role = str(type(message).__struct_config__.tag)
    return Message(role, parts(message.content), message.name)


def parts(content: str | list[Any]) -> str | list[dict[str, Any]]:
    """Content as relay's canonical content: text, or parts as Chat's dicts."""
    if isinstance(content, str):
        return content
    return [as_dict(part) for part in content]
