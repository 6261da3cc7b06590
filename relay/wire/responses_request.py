"""The OpenAI Responses API request: its typed body and its translation into relay's
`GenerationRequest`. Pure code, no I/O.

The body follows OpenAI's API reference (the official SDK's `ResponseCreateParams`).
relay keeps no conversation state and its upstreams speak Chat Completions or Anthropic
Messages, so a request must carry its whole conversation: `previous_response_id`,
`conversation`, `prompt` (a prompt stored at OpenAI) and `item_reference` items are
refused with a 400 `unsupported_parameter` that says so.

`instructions` and `input` become chat messages. Input items are a closed family (a
message needs no `type`): messages, `function_call` (calls in a row are one assistant
message) and `function_call_output` (a `tool` message); `reasoning` items are dropped, as
Anthropic's thinking blocks are. Content parts: `input_text` and `output_text` are text
parts, `refusal` a refusal part, `input_image` by URL an `image_url` part, `input_file`
by id or data a `file` part. Only function tools are supported (OpenAI runs the others),
and `tool_choice` names functions only.

Of the fields relay does not interpret, those that mean the same in Chat Completions
(`SAME_IN_CHAT`) go on to an OpenAI upstream, and so do `reasoning.effort` (as
`reasoning_effort`), `text.format` (as `response_format`) and `text.verbosity` (as
`verbosity`). The rest (`include`, `truncation`, `max_tool_calls`, …) is accepted and
not used; `store` is moot, as relay keeps every response for its retention.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from relay.vocabulary import (
    GenerationRequest,
    Message,
    NamedFunction,
    NamedToolChoice,
    Passthrough,
)
from relay.vocabulary import ToolChoice as ChatToolChoice
from relay.wire.decoding import (
    Block,
    InvalidBody,
    ModelName,
    Probability,
    TokenLimit,
    body_fields,
    decode,
    raw,
)

UNSUPPORTED = "unsupported_parameter"
SAME_IN_CHAT = (
    "top_p",
    "user",
    "metadata",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
)

# Roles of the Responses API; `developer` is what OpenAI now calls `system`.
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}

Part = dict[str, Any]


# Content parts.


class InputText(msgspec.Struct, tag="input_text"):
    text: str


class OutputText(msgspec.Struct, tag="output_text"):
    """Text of an earlier answer, as the SDK's output message items hold it."""

    text: str


class Refusal(msgspec.Struct, tag="refusal"):
    refusal: str


class InputImage(msgspec.Struct, tag="input_image", kw_only=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, tag="input_file", kw_only=True):
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


InputPart = InputText | OutputText | Refusal | InputImage | InputFile


# Input items (a closed family: a message needs no `type`).


class InputItem(Block):
    default_tag = "message"


class MessageItem(msgspec.Struct, InputItem, tag="message", kw_only=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]


class FunctionCallItem(msgspec.Struct, InputItem, tag="function_call", kw_only=True):
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(msgspec.Struct, InputItem, tag="function_call_output", kw_only=True):
    call_id: str
    output: str | list[InputPart]


class ReasoningItem(msgspec.Struct, InputItem, tag="reasoning", kw_only=True):
    summary: list[Any] | None = None


class ItemReference(msgspec.Struct, InputItem, tag="item_reference"):
    id: str


# Tools and the other request fields.


class Tool(msgspec.Struct, kw_only=True):
    """Any tool, so that one of a kind relay cannot run is refused by name."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, passed on as written


class FunctionChoice(msgspec.Struct, tag="function"):
    name: str


class TextFormat(msgspec.Struct, tag="text"):
    pass


class JsonObjectFormat(msgspec.Struct, tag="json_object"):
    pass


class JsonSchemaFormat(msgspec.Struct, tag="json_schema", kw_only=True, omit_defaults=True):
    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat | JsonObjectFormat | JsonSchemaFormat | None = None
    verbosity: str | None = None


class Reasoning(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: ModelName
    input: str | Annotated[list[InputItem], msgspec.Meta(min_length=1)]
    instructions: str | None = None
    max_output_tokens: TokenLimit | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Probability | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = False
    background: bool | None = False
    store: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    service_tier: str | None = None
    # Server-side state, which relay does not keep: refused when present.
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


def decode_request(body: bytes) -> ResponsesRequest:
    """Raises `InvalidBody` naming the path of a bad field, or `NotJson`."""
    return decode(body, ResponsesRequest)


def generation_request(body: bytes, request: ResponsesRequest) -> GenerationRequest:
    """The decoded `request` for relay's runner; `body` is what it was decoded from, for
    the fields relay passes on. Raises `InvalidBody` for what relay cannot honour."""
    refuse_server_state(request)
    return GenerationRequest(
        model=request.model,
        messages=to_messages(request),
        max_tokens=request.max_output_tokens,
        temperature=request.temperature,
        tools=chat_tools(request.tools),
        tool_choice=chat_tool_choice(request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls,
        passthrough=chat_passthrough(body, request),
    )


def refuse_server_state(request: ResponsesRequest) -> None:
    if request.previous_response_id is not None:
        problem = (
            "relay keeps no conversation state, so it cannot continue a response;"
            " send the earlier turns in `input`"
        )
        raise InvalidBody("previous_response_id", problem, UNSUPPORTED)
    if request.conversation is not None:
        problem = "relay keeps no conversations; send the earlier turns in `input`"
        raise InvalidBody("conversation", problem, UNSUPPORTED)
    if request.prompt is not None:
        problem = "relay cannot use a prompt stored at OpenAI; send its text as `instructions`"
        raise InvalidBody("prompt", problem, UNSUPPORTED)


# Messages.


def to_messages(request: ResponsesRequest) -> list[Message]:
    """`instructions` and `input` as chat messages; `InvalidBody` names a bad item."""
    messages = (
        [Message(role="system", content=request.instructions)] if request.instructions else []
    )
    if isinstance(request.input, str):
        return [*messages, Message(role="user", content=request.input)]
    for index, item in enumerate(request.input):
        _add_item(messages, item, f"input[{index}]")
    if not messages:
        raise InvalidBody(
            "input", "holds only reasoning items, which relay drops: nothing to answer"
        )
    return messages


def _add_item(messages: list[Message], item: InputItem, where: str) -> None:
    if isinstance(item, FunctionCallItem):
        _add_call(messages, item)
    elif isinstance(item, FunctionCallOutputItem):
        output = _output(item.output, f"{where}.output")
        messages.append(Message(role="tool", tool_call_id=item.call_id, content=output))
    elif isinstance(item, MessageItem):
        content = _content(item.content, f"{where}.content")
        messages.append(Message(role=_ROLES[item.role], content=content))
    elif isinstance(item, ItemReference):
        problem = f"relay keeps no items, so it cannot resolve {item.id!r}; send the item itself"
        raise InvalidBody(where, problem, UNSUPPORTED)
    # A reasoning item has no place in a chat conversation.


def _add_call(messages: list[Message], item: FunctionCallItem) -> None:
    function = {"name": item.name, "arguments": item.arguments}
    call = {"id": item.call_id, "type": "function", "function": function}
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and last.tool_calls is not None:
        last.tool_calls.append(call)  # parallel calls are one chat message
    else:
        messages.append(Message(role="assistant", tool_calls=[call]))


def _content(content: str | list[InputPart], where: str) -> str | list[Part]:
    if isinstance(content, str):
        return content
    return [_part(part, f"{where}[{index}]") for index, part in enumerate(content)]


def _output(output: str | list[InputPart], where: str) -> str | list[Part]:
    """A function's output: Chat's tool messages hold text only."""
    for index, part in enumerate(output if isinstance(output, list) else []):
        if not isinstance(part, InputText | OutputText):
            problem = "relay passes text only in a function_call_output (Chat's tool messages)"
            raise InvalidBody(f"{where}[{index}].type", problem, UNSUPPORTED)
    return _content(output, where)


def _part(part: InputPart, where: str) -> Part:
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "refusal", "refusal": part.refusal}
    if isinstance(part, InputImage):
        return _image_part(part, where)
    return _file_part(part, where)


def _image_part(part: InputImage, where: str) -> Part:
    if part.image_url is None:
        problem = "required, as relay sends images by URL (or data: URL), not by OpenAI file id"
        raise InvalidBody(f"{where}.image_url", problem, UNSUPPORTED)
    image = {"url": part.image_url} | ({"detail": part.detail} if part.detail else {})
    return {"type": "image_url", "image_url": image}


def _file_part(part: InputFile, where: str) -> Part:
    if part.file_url is not None:
        problem = "relay cannot fetch files; send file_data or file_id"
        raise InvalidBody(f"{where}.file_url", problem, UNSUPPORTED)
    fields = {"file_id": part.file_id, "file_data": part.file_data, "filename": part.filename}
    return {"type": "file", "file": {k: v for k, v in fields.items() if v is not None}}


# Tools, tool choice and the fields passed on.


def chat_tools(tools: list[Tool] | None) -> list[Part] | None:
    """Function tools in the Chat Completions shape that every provider reads."""
    if not tools:
        return None
    return [_chat_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]


def _chat_tool(tool: Tool, where: str) -> Part:
    if tool.type != "function":
        problem = f"only 'function' tools are supported, got {tool.type!r}"
        raise InvalidBody(f"{where}.type", problem, UNSUPPORTED)
    if tool.name is None:
        raise InvalidBody(f"{where}.name", "required in a function tool")
    function: Part = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def chat_tool_choice(
    choice: Literal["none", "auto", "required"] | FunctionChoice | None,
) -> ChatToolChoice | None:
    if isinstance(choice, FunctionChoice):
        return NamedToolChoice(NamedFunction(choice.name))
    return choice


def chat_passthrough(body: bytes, request: ResponsesRequest) -> Passthrough | None:
    """The fields an OpenAI (Chat) upstream takes as they are, or renamed."""
    sent = body_fields(body)
    fields = {name: sent[name] for name in SAME_IN_CHAT if name in sent}
    if request.reasoning is not None and request.reasoning.effort is not None:
        fields["reasoning_effort"] = raw(request.reasoning.effort)
    if request.text is not None and request.text.format is not None:
        fields["response_format"] = raw(response_format(request.text.format))
    if request.text is not None and request.text.verbosity is not None:
        fields["verbosity"] = raw(request.text.verbosity)
    return Passthrough("openai", fields) if fields else None


def response_format(format: TextFormat | JsonObjectFormat | JsonSchemaFormat) -> Part:
    """`text.format` as Chat's `response_format`, which nests the schema's fields."""
    if isinstance(format, JsonSchemaFormat):
        schema = msgspec.to_builtins(format)
        schema.pop("type")
        return {"type": "json_schema", "json_schema": schema}
    converted: Part = msgspec.to_builtins(format)
    return converted
