"""A finished session folded into what a non-streaming answer needs. Pure code."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from relay.events import Event, EventType


class Transcript(msgspec.Struct):
    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, object]] = msgspec.field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: dict[str, object] | None = None
    cancelled: bool = False


def fold_transcript(events: Iterable[Event]) -> Transcript:
    transcript = Transcript()
    text: list[str] = []
    reasoning: list[str] = []
    for event in events:
        if event.type is EventType.DELTA:
            text.append(event.decoded_data()["text"])
        elif event.type is EventType.REASONING:
            reasoning.append(event.decoded_data()["text"])
        elif event.type is EventType.TOOL_CALL:
            transcript.tool_calls.append(event.decoded_data())
        elif event.type in (EventType.USAGE, EventType.DONE):
            _fold_end(transcript, event)
        elif event.type is EventType.ERROR:
            transcript.error = event.decoded_data()
        elif event.type is EventType.CANCELLED:
            transcript.cancelled = True
    transcript.text, transcript.reasoning = "".join(text), "".join(reasoning)
    return transcript


def _fold_end(transcript: Transcript, event: Event) -> None:
    data = event.decoded_data()
    usage = data if event.type is EventType.USAGE else data.get("usage")
    if event.type is EventType.DONE:
        transcript.finish_reason = data["finish_reason"]
    if usage:
        transcript.input_tokens = usage["input_tokens"]
        transcript.output_tokens = usage["output_tokens"]
