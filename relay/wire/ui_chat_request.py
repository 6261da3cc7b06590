"""The body the Vercel AI SDK's `DefaultChatTransport` POSTs, typed, and its translation
into relay's `GenerationRequest`. Pure code, no I/O.

The transport sends `{...body, id, messages, trigger, messageId}`: `body` is the app's
own (the transport's `body` option, or `sendMessage`'s), so its fields are the app's to
choose; relay reads `model`, `system`, `maxOutputTokens`, `temperature`, `tools` and
`toolChoice` from it (`tools` and `toolChoice` in Chat Completions' shape) and leaves
every other field alone, as the AI SDK's own server helpers do. `messages` are UIMessages
(`{id, role, parts}`); their parts are an open family by `type`:

- `text` parts are the message's text (joined, one per line);
- a user's `file` parts are content parts: images as `image_url`, the rest as `file`;
- a tool part (`tool-<name>` or `dynamic-tool`) that has its output (or its error) is an
  assistant tool call followed by its result, as the model saw them; one still waiting
  for its input or output is left out (an upstream refuses a call without a result);
- `step-start` separates the steps of one assistant message: each step is an assistant
  message, then the results of its tool calls;
- `reasoning`, sources, `data-*` and any other type are for the UI only and left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

import msgspec

from relay.vocabulary import GenerationRequest, Message, ToolChoice, session_suffix
from relay.wire import chat_request
from relay.wire.decoding import (
    Block,
    InvalidBody,
    ModelName,
    TokenLimit,
    Unmodelled,
    invalid_body,
)

# A chat id is the client's own string; it names a key of the store's (as a digest) and
# a path segment of `GET {prefix}/{chatId}/stream`.
CHAT_ID_MAX_LENGTH = 256
ChatId = Annotated[str, msgspec.Meta(min_length=1, max_length=CHAT_ID_MAX_LENGTH)]

# The tool part states whose call has a result the model can be shown.
_ANSWERED = frozenset({"output-available", "output-error", "output-denied"})


class UIPart(Block):
    """A part of a UIMessage (an open family)."""


class TextPart(msgspec.Struct, UIPart, tag="text", kw_only=True):
    text: str


class FilePart(msgspec.Struct, UIPart, tag="file", kw_only=True, rename="camel"):
    media_type: str
    url: str
    filename: str | None = None


class StepStartPart(msgspec.Struct, UIPart, tag="step-start"):
    pass


class DynamicToolPart(msgspec.Struct, UIPart, tag="dynamic-tool", kw_only=True, rename="camel"):
    tool_name: str
    tool_call_id: str
    state: str
    input: Any = None
    output: Any = None
    error_text: str | None = None


class OtherPart(Unmodelled, UIPart):
    """A part of another type: a static tool's (`tool-<name>`), or one for the UI only."""


class ToolPart(msgspec.Struct, kw_only=True, rename="camel"):
    """A `tool-<name>` part, read from an `OtherPart` (its type holds the tool's name)."""

    tool_call_id: str
    state: str
    input: Any = None
    output: Any = None
    error_text: str | None = None


class UIMessage(msgspec.Struct, kw_only=True):
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart]
    id: str = ""


class UIChatRequest(msgspec.Struct, kw_only=True, rename="camel"):
    id: ChatId
    messages: Annotated[list[UIMessage], msgspec.Meta(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    message_id: str | None = None
    # From the transport's `body` option.
    model: ModelName | None = None
    system: str | None = None
    max_output_tokens: TokenLimit | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    tools: list[chat_request.FunctionTool] | None = None
    tool_choice: ToolChoice | None = None


def generation_request(
    body: bytes, request: UIChatRequest, *, default_model: str = ""
) -> GenerationRequest:
    """The request for relay's runner; `model` is the body's, else `default_model`.
    Raises `InvalidBody` naming the path of what relay cannot use."""
    model = request.model or default_model
    if not model:
        problem = (
            "required: send it in the body (DefaultChatTransport's `body: {model: …}`), or set"
            " ui_chat.default_model"
        )
        raise InvalidBody("model", problem)
    system = [Message("system", request.system)] if request.system else []
    return GenerationRequest(
        model=model,
        messages=system + relay_messages(request.messages),
        max_tokens=request.max_output_tokens,
        temperature=request.temperature,
        tools=[msgspec.to_builtins(tool) for tool in request.tools or []] or None,
        tool_choice=request.tool_choice,
    )


def response_message_id(request: UIChatRequest, session_id: str) -> str:
    """The id of the message the answer streams: the last message's when it is the
    assistant's (the answer continues it, after its tool results, as the AI SDK's
    servers do), else one derived from the session (`msg_` + its random part)."""
    last = request.messages[-1]
    if last.role == "assistant" and last.id:
        return last.id
    return "msg_" + session_suffix(session_id)


def relay_messages(messages: list[UIMessage]) -> list[Message]:
    translated: list[Message] = []
    for index, message in enumerate(messages):
        translated += message_as_relays(message, f"messages[{index}]")
    return translated


def message_as_relays(message: UIMessage, path: str) -> list[Message]:
    if message.role == "assistant":
        return list(assistant_messages(message, path))
    if message.role == "system":
        return [Message("system", _text(message.parts))]
    return [Message("user", user_content(message.parts))]


def user_content(parts: list[UIPart]) -> str | list[dict[str, Any]]:
    """Text alone as a string; with files, Chat's content parts (as relay's canonical
    content holds them, `chat_request.parts`)."""
    files = [part for part in parts if isinstance(part, FilePart)]
    if not files:
        return _text(parts)
    text: list[chat_request.ChatPart] = [chat_request.TextPart(text=_text(parts))]
    return chat_request.parts(text + [file_content(part) for part in files])


def file_content(part: FilePart) -> chat_request.ImagePart | chat_request.FilePart:
    if part.media_type.startswith("image/"):
        return chat_request.ImagePart(image_url=chat_request.ImageUrl(part.url))
    file = chat_request.FileRef(file_data=part.url, filename=part.filename or None)
    return chat_request.FilePart(file=file)


def assistant_messages(message: UIMessage, path: str) -> Iterator[Message]:
    """Per step: the assistant's text and tool calls, then the calls' results."""
    for step in _steps(message.parts, path):
        texts = [part for part in step if isinstance(part, TextPart)]
        calls = [call for call in step if isinstance(call, AnsweredCall)]
        if not texts and not calls:
            continue
        tool_calls = [msgspec.to_builtins(call.as_tool_call()) for call in calls]
        yield Message("assistant", _text(texts) or None, tool_calls=tool_calls or None)
        for call in calls:
            yield Message("tool", call.result(), tool_call_id=call.call_id)


class AnsweredCall(msgspec.Struct):
    """A tool call that has its result."""

    call_id: str
    name: str
    input: Any
    state: str
    output: Any
    error_text: str | None

    def as_tool_call(self) -> chat_request.ToolCall:
        arguments = self.input if isinstance(self.input, str) else _json(self.input or {})
        function = chat_request.FunctionCall(self.name, arguments)
        return chat_request.ToolCall(id=self.call_id, function=function)

    def result(self) -> str:
        if self.state == "output-error":
            return self.error_text or "the tool failed"
        if self.state == "output-denied":
            return "the user denied this tool call"
        return self.output if isinstance(self.output, str) else _json(self.output)


StepPart = TextPart | AnsweredCall


def _steps(parts: list[UIPart], path: str) -> Iterator[list[StepPart]]:
    step: list[StepPart] = []
    for index, part in enumerate(parts):
        if isinstance(part, StepStartPart):
            yield step
            step = []
        elif isinstance(part, TextPart):
            step.append(part)
        elif (call := answered_call(part, f"{path}.parts[{index}]")) is not None:
            step.append(call)
    yield step


def answered_call(part: UIPart, path: str) -> AnsweredCall | None:
    """The tool call of a tool part that has its result; None for any other part."""
    tool: DynamicToolPart | ToolPart
    if isinstance(part, DynamicToolPart):
        name, tool = part.tool_name, part
    elif isinstance(part, OtherPart) and part.type.startswith("tool-"):
        name, tool = part.type.removeprefix("tool-"), _tool_part(part, path)
    else:
        return None
    if tool.state not in _ANSWERED:
        return None
    return AnsweredCall(
        tool.tool_call_id, name, tool.input, tool.state, tool.output, tool.error_text
    )


def _tool_part(part: OtherPart, path: str) -> ToolPart:
    try:
        return msgspec.convert(part.fields, ToolPart)
    except msgspec.ValidationError as exc:
        invalid = invalid_body(ToolPart, str(exc), root="")
        where = f"{path}.{invalid.path}" if invalid.path else path
        raise InvalidBody(where, invalid.problem) from None


def _text(parts: Iterable[object]) -> str:
    return "\n".join(part.text for part in parts if isinstance(part, TextPart))


_json_encode = msgspec.json.Encoder().encode


def _json(value: object) -> str:
    return _json_encode(value).decode()
