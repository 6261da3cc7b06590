"""A finished session folded into what a non-streaming answer needs. Pure code; a long
log is folded a batch at a time (`TranscriptFold`, see `relay.subscribers.slices`)."""

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


class TranscriptFold:
    """A transcript folded from a log a batch at a time: `add` each, then `result()`."""

    def __init__(self) -> None:
        self._transcript = Transcript()
        self._text: list[str] = []
        self._reasoning: list[str] = []

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: Event) -> None:
        transcript = self._transcript
        if event.type is EventType.DELTA:
            self._text.append(event.decoded_data()["text"])
        elif event.type is EventType.REASONING:
            self._reasoning.append(event.decoded_data()["text"])
        elif event.type is EventType.TOOL_CALL:
            transcript.tool_calls.append(event.decoded_data())
        elif event.type in (EventType.USAGE, EventType.DONE):
            _fold_end(transcript, event)
        elif event.type is EventType.ERROR:
            transcript.error = event.decoded_data()
        elif event.type is EventType.CANCELLED:
            transcript.cancelled = True

    def result(self) -> Transcript:
        transcript = self._transcript
        transcript.text, transcript.reasoning = "".join(self._text), "".join(self._reasoning)
        return transcript


def fold_transcript(events: Iterable[Event]) -> Transcript:
    fold = TranscriptFold()
    fold.add(events)
    return fold.result()


def _fold_end(transcript: Transcript, event: Event) -> None:
    data = event.decoded_data()
    usage = data if event.type is EventType.USAGE else data.get("usage")
    if event.type is EventType.DONE:
        transcript.finish_reason = data["finish_reason"]
    if usage:
        transcript.input_tokens = usage["input_tokens"]
        transcript.output_tokens = usage["output_tokens"]
