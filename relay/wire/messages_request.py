"""The Anthropic Messages request body, typed. Pure code, no I/O.

It follows Anthropic's API reference (the official SDK's `MessageCreateParams`). Content
blocks are an open family: the blocks relay converts (text, image, document, tool_use,
tool_result, thinking, redacted_thinking) are checked, and every other type (server-tool
blocks such as `server_tool_use` and `web_search_tool_result`, search results, and types
Anthropic adds later) goes on to an Anthropic upstream as it came. Tools are open too: a
client tool has no `type` or `custom`, any other `type` is a server tool, passed on.
Messages are told apart by `role`: `user`, `assistant`, and `system` (instructions in the
course of the conversation, which the SDK's `MessageParam` allows).

Fields relay interprets are `INTERPRETED`; every other field goes to an Anthropic upstream
as the client sent it (`Passthrough(kind="anthropic")`). Of those, `top_k`, `top_p`,
`thinking`, `metadata` and `service_tier` are checked first, so that a bad value is a 400
naming it rather than the upstream's refusal. `relay.wire.anthropic_to_chat` translates
the request into relay's canonical shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from relay.wire.decoding import (
    Block,
    ModelName,
    Probability,
    TokenLimit,
    Unmodelled,
    decode,
)


class CacheControl(msgspec.Struct, omit_defaults=True):
    type: str
    ttl: str | None = None


# Content blocks.


class ContentBlock(Block):
    """A block of a message's content, or of a tool result's (an open family)."""


class TextBlock(msgspec.Struct, ContentBlock, tag="text", kw_only=True, omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(msgspec.Struct, tag="base64"):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlSource(msgspec.Struct, tag="url"):
    url: str


class FileSource(msgspec.Struct, tag="file"):
    file_id: str


class ImageBlock(msgspec.Struct, ContentBlock, tag="image", kw_only=True, omit_defaults=True):
    source: Base64ImageSource | UrlSource | FileSource
    cache_control: CacheControl | None = None


class Base64DocumentSource(msgspec.Struct, tag="base64"):
    media_type: str
    data: str


class TextDocumentSource(msgspec.Struct, tag="text"):
    media_type: str
    data: str


class ContentDocumentSource(msgspec.Struct, tag="content"):
    content: str | list[ContentBlock]


DocumentSource = (
    Base64DocumentSource | TextDocumentSource | ContentDocumentSource | UrlSource | FileSource
)


class DocumentBlock(msgspec.Struct, ContentBlock, tag="document", kw_only=True, omit_defaults=True):
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(msgspec.Struct, ContentBlock, tag="tool_use", kw_only=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(msgspec.Struct, ContentBlock, tag="tool_result", kw_only=True):
    tool_use_id: str
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(msgspec.Struct, ContentBlock, tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingBlock(msgspec.Struct, ContentBlock, tag="redacted_thinking"):
    data: str


class OtherBlock(Unmodelled, ContentBlock):
    """A block of a type relay does not convert, passed on as it came."""


Content = str | list[ContentBlock]


# Messages, told apart by `role` (a closed family: errors inside one name what it allows).


class InputMessage(Block):
    tag_field = "role"


class UserMessage(msgspec.Struct, InputMessage, tag="user", tag_field="role"):
    content: Content


class AssistantMessage(msgspec.Struct, InputMessage, tag="assistant", tag_field="role"):
    content: Content


class SystemMessage(msgspec.Struct, InputMessage, tag="system", tag_field="role"):
    """Instructions in the conversation's course (the SDK's `SystemMessageParam`)."""

    content: str | list[TextBlock]


# Tools and tool choice.


class Tool(Block):
    """A tool: a client tool (no `type`, or `custom`) or a server tool (an open family)."""

    default_tag = "custom"


class ClientTool(msgspec.Struct, Tool, tag="custom", kw_only=True):
    name: ModelName
    input_schema: dict[str, Any]  # a JSON Schema, passed on as written
    description: str | None = None


class ServerTool(Unmodelled, Tool):
    """A tool Anthropic runs (`web_search_20250305`, `bash_20250124`, …), passed on."""


class AutoChoice(msgspec.Struct, tag="auto"):
    disable_parallel_tool_use: bool | None = None


class AnyChoice(msgspec.Struct, tag="any"):
    disable_parallel_tool_use: bool | None = None


class ToolNameChoice(msgspec.Struct, tag="tool", kw_only=True):
    name: str
    disable_parallel_tool_use: bool | None = None


class NoneChoice(msgspec.Struct, tag="none"):
    pass


ToolChoice = AutoChoice | AnyChoice | ToolNameChoice | NoneChoice


class ThinkingConfig(msgspec.Struct, kw_only=True):
    """Checked for its shape only: Anthropic adds kinds (`enabled`, `adaptive`, …)."""

    type: str
    budget_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, kw_only=True):
    model: ModelName
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    max_tokens: TokenLimit
    system: str | list[TextBlock] | None = None
    stream: bool | None = None
    temperature: Probability | None = None
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    # Checked here, then passed on as sent.
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    top_p: Probability | None = None
    thinking: ThinkingConfig | None = None
    metadata: Metadata | None = None
    service_tier: str | None = None


INTERPRETED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "temperature",
        "stop_sequences",
        "tools",
        "tool_choice",
    }
)


def decode_request(body: bytes) -> MessagesRequest:
    """Raises `InvalidBody` naming the path of a bad field, or `NotJson`."""
    return decode(body, MessagesRequest)
