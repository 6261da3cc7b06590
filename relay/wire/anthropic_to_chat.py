"""Anthropic Messages input in relay's canonical (OpenAI Chat-shaped) form. Pure: no I/O.

The Anthropic front door converts a request here, once, so that every provider sees one
shape: `system` becomes a system message; assistant `tool_use` blocks become `tool_calls`
(the text blocks its `content`); user `tool_result` blocks become `tool` messages holding
their text, in order, ahead of the user's other content (images inside a result, which
Chat's tool messages cannot hold, join that content; other result blocks are dropped);
`image` blocks become `image_url` parts; `thinking` blocks are dropped; tools with an
`input_schema` become function tools. A single plain text block is the content string
itself. Blocks with no Chat counterpart (documents, server tools) pass through, and the
Anthropic provider, which turns this shape back into Anthropic's, sends them on as they
came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from relay.vocabulary import Message

Block = dict[str, Any]
Content = str | list[Block]

DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
TEXT_PART_FIELDS = ("type", "text", "cache_control")  # cache_control: the Anthropic round trip


def chat_messages(system: Content | None, messages: Iterable[Block]) -> list[Message]:
    """The conversation as relay's `Message`s, with `system` as the first message."""
    head = [Message(role="system", content=_content(system))] if system else []
    return head + [message for raw in messages for message in _converted(raw)]


def chat_tools(tools: Iterable[Block] | None) -> list[Block] | None:
    """Anthropic tools as Chat function tools; None when there are none."""
    return [_chat_tool(tool) for tool in tools or []] or None


def _converted(raw: Block) -> list[Message]:
    role = str(raw.get("role", ""))
    content = raw.get("content")
    if not isinstance(content, list):
        return [Message(role=role, content=content)]
    blocks = [b for b in content if isinstance(b, dict) and b.get("type") not in DROPPED_BLOCKS]
    if role == "assistant":
        return [_assistant(blocks)]
    return _user(role, blocks)


def _assistant(blocks: list[Block]) -> Message:
    calls = [_tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    content = _content([block for block in blocks if block.get("type") != "tool_use"])
    # Chat wants `content` on an assistant message unless it has tool calls.
    return Message(
        role="assistant", content=content or (None if calls else ""), tool_calls=calls or None
    )


def _user(role: str, blocks: list[Block]) -> list[Message]:
    results = [block for block in blocks if block.get("type") == "tool_result"]
    rest = [block for block in blocks if block.get("type") != "tool_result"]
    images = [block for result in results for block in _result_blocks(result, "image")]
    tool_messages = [_tool_message(result) for result in results]
    if results and not (images or rest):
        return tool_messages
    return [*tool_messages, Message(role=role, content=_content(images + rest))]


def _content(content: Content | None) -> Content:
    """Blocks as Chat content parts; one plain text part is its string."""
    if not isinstance(content, list):
        return content or ""
    parts = [_part(block) for block in content]
    if len(parts) == 1 and parts[0].keys() == {"type", "text"} and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _part(block: Block) -> Block:
    kind = block.get("type")
    if kind == "text":
        return {key: block[key] for key in TEXT_PART_FIELDS if key in block}
    if kind == "image":
        return _image_part(block)
    return block


def _image_part(block: Block) -> Block:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:  # e.g. a Files API id: Chat has no counterpart, Anthropic takes it as it is
        return block
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call(block: Block) -> Block:
    function = {"name": str(block.get("name", "")), "arguments": json.dumps(block.get("input", {}))}
    return {"id": str(block.get("id", "")), "type": "function", "function": function}


def _tool_message(result: Block) -> Message:
    texts = [str(block.get("text", "")) for block in _result_blocks(result, "text")]
    tool_call_id = str(result.get("tool_use_id", ""))
    return Message(role="tool", tool_call_id=tool_call_id, content="\n".join(texts))


def _result_blocks(result: Block, kind: str) -> list[Block]:
    """The blocks of type `kind` in a tool result's content (a string is one text block)."""
    content = result.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict) and b.get("type") == kind]


def _chat_tool(tool: Block) -> Block:
    """A client tool as a function tool; a server tool (no `input_schema`) passes through."""
    if "input_schema" not in tool:
        return tool
    function = {"name": tool.get("name", ""), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}
