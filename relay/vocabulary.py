"""The words every layer shares: messages, the generation request, finish reasons, ids.

Pure code, no I/O. Front doors translate their wire formats into these types, the runner
hands them to providers, and the renderers translate them back, so each word has this
one home. relay's canonical conversation is OpenAI Chat-shaped (roles `system`, `user`,
`assistant`, `tool`), and its finish reasons are OpenAI's: `stop`, `length`,
`tool_calls`, `content_filter`.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

import msgspec

# Ids. A session id is a capability: `SESSION_ID_PREFIX` + 128 random bits; wire formats
# derive their own ids (`chatcmpl-…`, `msg_…`, `resp_…`) from the random part.
SESSION_ID_PREFIX = "s_"
READ_TOKEN_PREFIX = "rt_"
# An external producer's token: it may append to its one session (relay/external.py).
PRODUCER_TOKEN_PREFIX = "pt_"


SESSION_TAG_HEX = 12


def session_suffix(session_id: str) -> str:
    """The random part of a session id, from which wire formats derive their ids."""
    return session_id.removeprefix(SESSION_ID_PREFIX)


@functools.lru_cache(maxsize=4096)  # asked for by every log line and task name of a session
def session_tag(session_id: str) -> str:
    """How logs name a session: `#` and the first 12 hex digits of the SHA-256 of the
    id's random part (which its wire ids share: the access log tags `resp_…` alike).
    Logs must not hold ids, which are capabilities; a plain hash of 128 random bits
    cannot be reversed, and an operator holding an id computes its tag to find its lines."""
    digest = hashlib.sha256(session_suffix(session_id).encode()).hexdigest()
    return "#" + digest[:SESSION_TAG_HEX]


# Messages and the request a provider is handed.


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One chat message. `content` is text, a list of content parts, or absent."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, with the text of every text part joined."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return " ".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))


class NamedFunction(msgspec.Struct, frozen=True):
    name: str


class NamedToolChoice(msgspec.Struct, frozen=True):
    """`tool_choice` naming the one function the model must call (Chat's shape)."""

    function: NamedFunction
    type: Literal["function"] = "function"


# Chat's `tool_choice`: `auto`, `none`, `required` (some tool), or one named function.
ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice

UpstreamKind = Literal["openai", "anthropic"]


class Passthrough(msgspec.Struct, frozen=True):
    """Request fields relay does not interpret (`top_k`, `seed`, `service_tier`, …), as
    the client sent them. Only an upstream of `kind`, which speaks the format they came
    in, is sent them: another format may not know them, or mean something else."""

    kind: UpstreamKind
    fields: dict[str, msgspec.Raw]


class GenerationRequest(msgspec.Struct, omit_defaults=True):
    """A generation as the runner hands it to a provider; `model` is the upstream's name."""

    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    passthrough: Passthrough | None = None
    # The answer so far, for a provider to continue (a takeover, relay/takeover.py).
    prefill: str = ""


# Finish reasons: relay speaks OpenAI's vocabulary.

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

# Anthropic's stop reasons in relay's words; a reason not listed keeps its own name.
ANTHROPIC_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# relay's finish reasons as Anthropic's stop reasons.
_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def finish_from_anthropic(stop_reason: str) -> str:
    """An Anthropic stop reason in relay's vocabulary; an unknown one keeps its name."""
    return ANTHROPIC_STOP_REASONS.get(stop_reason, stop_reason)


def anthropic_stop_reason(finish_reason: str | None) -> str:
    """relay's finish reason as an Anthropic stop reason; anything unknown is `end_turn`."""
    return _TO_ANTHROPIC_STOP.get(finish_reason or "", "end_turn")


def openai_finish_reason(finish_reason: str | None) -> str:
    """relay's finish reason as OpenAI names it; anything unknown reads as `stop`."""
    if finish_reason in FINISH_REASONS:
        return finish_reason
    return ANTHROPIC_STOP_REASONS.get(finish_reason or "", "stop")


def prompt_chars(request: GenerationRequest) -> int:
    """The characters of text in the messages: string contents, the `text` of content
    parts, and tool-call arguments (not images or other binary parts)."""
    return sum(_message_chars(message) for message in request.messages)


def _message_chars(message: Message) -> int:
    content = message.content
    chars = len(content) if isinstance(content, str) else 0
    for part in content if isinstance(content, list) else ():
        chars += len(text) if isinstance(text := part.get("text"), str) else 0
    for call in message.tool_calls or ():
        function = call.get("function")
        arguments = function.get("arguments") if isinstance(function, dict) else None
        chars += len(arguments) if isinstance(arguments, str) else 0
    return chars
