"""An Anthropic Messages request in relay's canonical (OpenAI Chat-shaped) form. Pure: no I/O.

The Anthropic front door converts a request here, once, so that every provider sees one
shape: `system` becomes a system message; assistant `tool_use` blocks become `tool_calls`
(the text blocks its `content`); user `tool_result` blocks become `tool` messages holding
their text, in order, ahead of the user's other content (images inside a result, which
Chat's tool messages cannot hold, join that content; other result blocks are dropped);
`image` blocks become `image_url` parts; `thinking` blocks are dropped; client tools
become function tools. A single plain text block is the content string itself. Blocks
with no Chat counterpart (documents, images by file id, server-tool blocks) and server
tools pass through, and the Anthropic provider, which turns this shape back into
Anthropic's, sends them on as they came.

`tool_choice` takes Chat's words (`any` is `required`, `tool` names a function) and
`disable_parallel_tool_use` becomes `parallel_tool_calls`. The fields relay does not
interpret (`top_k`, `thinking`, `metadata`, …) go to an Anthropic upstream as sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from relay.vocabulary import GenerationRequest, Message, NamedFunction, NamedToolChoice
from relay.vocabulary import ToolChoice as ChatToolChoice
from relay.wire.decoding import as_dict, body_fields, passthrough
from relay.wire.messages_request import (
    INTERPRETED,
    AnyChoice,
    AssistantMessage,
    AutoChoice,
    Base64ImageSource,
    ClientTool,
    Content,
    ContentBlock,
    ImageBlock,
    InputMessage,
    MessagesRequest,
    NoneChoice,
    RedactedThinkingBlock,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
    UserMessage,
)

Part = dict[str, Any]
B = TypeVar("B", bound=ContentBlock)

DROPPED = (ThinkingBlock, RedactedThinkingBlock)


def generation_request(body: bytes, request: MessagesRequest) -> GenerationRequest:
    """The decoded `request` for relay's runner; `body` is what it was decoded from, for
    the fields relay passes on."""
    tool_choice, parallel_tool_calls = chat_tool_choice(request.tool_choice)
    return GenerationRequest(
        model=request.model,
        messages=to_relay_messages(request),
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        stop=request.stop_sequences,
        tools=chat_tools(request.tools),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        passthrough=passthrough("anthropic", body_fields(body), INTERPRETED),
    )


def to_relay_messages(request: MessagesRequest) -> list[Message]:
    """The conversation in relay's canonical (Chat) shape, `system` first."""
    return chat_messages(request.system, request.messages)


def chat_messages(
    system: str | list[TextBlock] | None, messages: Iterable[InputMessage]
) -> list[Message]:
    """The conversation as relay's `Message`s, with `system` as the first message."""
    head = [Message(role="system", content=_content(system))] if system else []
    return head + [message for raw in messages for message in _converted(raw)]


def chat_tools(tools: Iterable[Tool] | None) -> list[Part] | None:
    """Client tools as Chat function tools, server tools as they came; None if none."""
    return [_chat_tool(tool) for tool in tools or []] or None


def chat_tool_choice(choice: ToolChoice | None) -> tuple[ChatToolChoice | None, bool | None]:
    """Anthropic's `tool_choice` as Chat's, and `parallel_tool_calls`."""
    if choice is None or isinstance(choice, NoneChoice):
        return (None if choice is None else "none"), None
    disabled = choice.disable_parallel_tool_use
    parallel = None if disabled is None else not disabled
    if isinstance(choice, AutoChoice):
        return "auto", parallel
    if isinstance(choice, AnyChoice):
        return "required", parallel
    return NamedToolChoice(NamedFunction(choice.name)), parallel


def _converted(message: InputMessage) -> list[Message]:
    assert isinstance(message, UserMessage | AssistantMessage | SystemMessage)
    role = str(type(message).__struct_config__.tag)
    if isinstance(message.content, str):
        return [Message(role=role, content=message.content)]
    blocks = [block for block in message.content if not isinstance(block, DROPPED)]
    if role == "assistant":
        return [_assistant(blocks)]
    return _user(role, blocks)


def _assistant(blocks: list[ContentBlock]) -> Message:
    calls = [_tool_call(block) for block in blocks if isinstance(block, ToolUseBlock)]
    content = _content([block for block in blocks if not isinstance(block, ToolUseBlock)])
    # Chat wants `content` on an assistant message unless it has tool calls.
    return Message(
        role="assistant", content=content or (None if calls else ""), tool_calls=calls or None
    )


def _user(role: str, blocks: list[ContentBlock]) -> list[Message]:
    results = [block for block in blocks if isinstance(block, ToolResultBlock)]
    rest = [block for block in blocks if not isinstance(block, ToolResultBlock)]
    images = [block for result in results for block in _result_blocks(result, ImageBlock)]
    tool_messages = [_tool_message(result) for result in results]
    if results and not (images or rest):
        return tool_messages
    return [*tool_messages, Message(role=role, content=_content(images + rest))]


def _content(content: Content | list[TextBlock] | None) -> str | list[Part]:
    """Blocks as Chat content parts; one plain text part is its string."""
    if not isinstance(content, list):
        return content or ""
    parts = [_part(block) for block in content]
    if len(parts) == 1 and parts[0].keys() == {"type", "text"} and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _part(block: ContentBlock) -> Part:
    if isinstance(block, TextBlock):
        part: Part = {"type": "text", "text": block.text}
        if block.cache_control is not None:  # for the Anthropic round trip
            part["cache_control"] = msgspec.to_builtins(block.cache_control)
        return part
    if isinstance(block, ImageBlock):
        return _image_part(block)
    return as_dict(block)


def _image_part(block: ImageBlock) -> Part:
    source = block.source
    if isinstance(source, Base64ImageSource):
        url = f"data:{source.media_type};base64,{source.data}"
    elif isinstance(source, UrlSource):
        url = source.url
    else:  # a Files API id: Chat has no counterpart, Anthropic takes it as it is
        return as_dict(block)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call(block: ToolUseBlock) -> Part:
    function = {"name": block.name, "arguments": json.dumps(block.input)}
    return {"id": block.id, "type": "function", "function": function}


def _tool_message(result: ToolResultBlock) -> Message:
    texts = [block.text for block in _result_blocks(result, TextBlock)]
    return Message(role="tool", tool_call_id=result.tool_use_id, content="\n".join(texts))


def _result_blocks(result: ToolResultBlock, kind: type[B]) -> list[B]:
    """The blocks of type `kind` in a tool result's content (a string is one text block)."""
    content = result.content
    if isinstance(content, str):
        content = [TextBlock(text=content)]
    return [block for block in content or [] if isinstance(block, kind)]


def _chat_tool(tool: Tool) -> Part:
    """A client tool as a function tool; a server tool passes through."""
    if not isinstance(tool, ClientTool):
        return as_dict(tool)
    function: Part = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
