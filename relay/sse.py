"""Server-Sent Events framing: pure functions from values to bytes, no I/O; and when an
idle stream's first keep-alive comment is due.

The data of every relay event is a one-line JSON document (msgspec never emits a raw
newline), so each event is exactly one `data:` line.

A stream that falls idle (it starts, or its events stop) sends its first `: ping` a
little early: somewhere in the second half of the heartbeat, by its session id
(`first_heartbeat_s`); each later one a heartbeat after the one before. Streams that
fall idle together (a reconnect storm, a burst of subscribers to a few sessions,
sessions that stop at the same moment) would otherwise ping together for as long as
they stay idle, each heartbeat one burst of writes to every idle connection in one turn
of the loop, which stalls the live streams sharing it; spread over the interval, the
same writes go unnoticed. No two pings are further apart than the heartbeat.
"""

from __future__ import annotations

import zlib

PING = b": ping\n\n"
FRAME_END = b"\n\n"
ID_FIELD = b"id: "


def first_heartbeat_s(heartbeat_s: float, session_id: str) -> float:
    """How long a stream of `session_id` that falls idle waits for its first `: ping`:
    between half of `heartbeat_s` and all of it, the same for the same session, spread
    evenly over session ids (see the module docstring)."""
    spread = zlib.crc32(session_id.encode()) / 2**32
    return heartbeat_s * (1 - spread / 2)


def retry_frame(retry_ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % retry_ms


def event_frame(event_id: int, event_type: str, data: bytes) -> bytes:
    """One event: `id`, `event` and a single `data` line holding JSON."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event_type.encode(), data)


def event_head(event_type: str) -> bytes:
    """What follows the id line in every frame of `event_type`, up to its data: made
    once per type, so that a frame costs one formatting (`typed_frame`)."""
    return b"\nevent: %s\ndata: " % event_type.encode()


def typed_frame(event_id: int, head: bytes, data: bytes) -> bytes:
    """`event_frame(event_id, event_type, data)`, with `head = event_head(event_type)`.
    `data` may be any bytes-like object (msgspec.Raw: no copy)."""
    return b"%b%d%b%b%b" % (ID_FIELD, event_id, head, data, FRAME_END)


def data_frame(data: bytes, event_id: int | None = None, event_type: str | None = None) -> bytes:
    """A frame for provider wire formats, where `id` and `event` are optional."""
    head = b"" if event_id is None else b"id: %d\n" % event_id
    if event_type is not None:
        head += b"event: %s\n" % event_type.encode()
    return head + b"data: " + data + b"\n\n"


def event_count(frames: bytes) -> int:
    """The events in whole frames: each ends with a blank line (no frame holds one
    before its end: data is one line), and `: ping` comments are not events."""
    return frames.count(FRAME_END) - frames.count(PING)
