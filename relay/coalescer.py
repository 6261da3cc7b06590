"""Text coalescing: when buffered model text becomes an event. Pure code, no I/O.

The first piece of text goes out at once (time to first token is what users feel);
after that, text is held until `interval_s` has passed since the first held piece (`due`)
or `max_chars` are held (`add`). `add` never flushes because time has passed: the
runner adds every piece that arrived while it waited, then asks what is `due`, so text
that arrived before a deadline goes out with it and does not start a new interval.
A change of kind (delta ↔ reasoning) or any non-text event flushes what is held first,
so the log keeps the upstream's order. An interval of 0 turns coalescing off.
"""

from __future__ import annotations

from relay.events import EventType

Flush = tuple[EventType, str]


class TextCoalescer:
    def __init__(self, interval_s: float, max_chars: int) -> None:
        self._interval_s = interval_s
        self._max_chars = max_chars
        self._kind: EventType | None = None
        self._parts: list[str] = []
        self._size = 0
        self._held_since = 0.0
        self._sent_first = False

    @property
    def deadline(self) -> float | None:
        """When the held text is due, or None when nothing is held."""
        return self._held_since + self._interval_s if self._parts else None

    def add(self, kind: EventType, text: str, now: float) -> list[Flush]:
        """Hold `text`; returns what must be written now."""
        flushes = self.take() if self._kind not in (None, kind) else []
        if not self._parts:
            self._kind, self._held_since = kind, now
        self._parts.append(text)
        self._size += len(text)
        if not (self._sent_first and self._interval_s) or self._size >= self._max_chars:
            self._sent_first = True
            flushes += self.take()
        return flushes

    def due(self, now: float) -> list[Flush]:
        """What must be written because its time has come."""
        deadline = self.deadline
        return self.take() if deadline is not None and now >= deadline else []

    def take(self) -> list[Flush]:
        """Everything held, to be written before a non-text event."""
        if not self._parts or self._kind is None:
            return []
        flush = (self._kind, "".join(self._parts))
        self._parts, self._size, self._kind = [], 0, None
        return [flush]
