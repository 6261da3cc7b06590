"""What the soak records while it runs: sessions, their readers' connections, the answers
that were not 2xx, the faults it injected, and relay's memory.

Plain data, no I/O: the load fills these in, the checks (`bench.soak.checks`) read them.
Times are wall-clock seconds (`time.time()`), so they compare with the timestamps in the
processes' logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TERMINAL_TYPES = ("done", "error", "cancelled")


@dataclass
class LogEvent:
    """One event of a session's log, as its final native replay gave it."""

    id: int
    type: str
    code: str = ""  # an `error` event's code, a `cancelled` event's reason
    text: str = ""  # a `delta` event's text


@dataclass
class Connection:
    """One HTTP request of a reader: where it went and how it ended.

    `ended` is `terminal` (the stream ended after its terminal event), `deliberate` (the
    reader hung up on purpose, to resume), `eof` (the stream ended without a terminal
    event), `stalled` (nothing arrived for the read timeout), `status` (not a 200) or
    `failed` (a connection error; `detail` says which).
    """

    instance: str  # the X-Relay-Instance that answered, "" when nginx answered itself
    started_at: float
    ended_at: float = 0.0
    ended: str = ""
    status: int = 0
    detail: str = ""


@dataclass
class ReaderTrace:
    """One client reading one session to its end, across its resumes.

    `kind` is `native` (the events endpoint: every event has an id), `openai` or
    `anthropic` (a front door's stream, resumed with `?format=`: only the last frame of
    an event carries its id, so ids only increase), or `slow`.
    """

    kind: str
    ids: list[int] = field(default_factory=list)
    text: str = ""
    terminal: str = ""  # the terminal the reader saw: done, error, cancelled, or ""
    connections: list[Connection] = field(default_factory=list)
    gave_up: str = ""  # why the reader stopped before the end, if it did

    @property
    def resumes(self) -> int:
        return max(0, len(self.connections) - 1)


@dataclass
class SessionTrace:
    """One session the soak created, and what it saw of it."""

    id: str
    scenario: str  # native, openai, anthropic, cancel, slow, stalled
    created_at: float
    created_on: str  # the instance that created it, which runs its generation
    readers: list[ReaderTrace] = field(default_factory=list)
    cancelled_at: float = 0.0  # when the soak sent DELETE, 0 if it did not
    cancel_status: int = 0
    log: list[LogEvent] = field(default_factory=list)
    snapshot_status: str = ""
    snapshot_text: str = ""
    snapshot_last_event_id: int = 0
    fetch_error: str = ""  # why the final replay or snapshot failed, if it did


@dataclass
class Answer:
    """A response that was not 2xx (or a request that got none): kept to check 5xx."""

    at: float
    method: str
    route: str  # e.g. "POST /v1/sessions"
    status: int
    instance: str  # "" when nginx answered itself
    code: str = ""  # relay's error code, when the body had one
    expected_4xx: bool = False  # a bad body sent on purpose
    body: str = ""  # its start


@dataclass
class Fault:
    """One injected fault: from the signal to when the target answered again."""

    kind: str  # drain, kill, freeze, redis-restart
    target: str  # relay-a, relay-b, redis
    started_at: float
    recovered_at: float = 0.0
    exit_status: int | None = None  # a drained relay's or a stopped Redis's
    note: str = ""


@dataclass
class RssSample:
    process: str  # relay-a, relay-b (each incarnation under the same name)
    at: float
    bytes: int


@dataclass
class Traceback:
    """A traceback found in a process's log."""

    log: str  # the log file's name
    line: int  # its first line, 1-based
    at: float | None  # the timestamp of the log record it belongs to
    headline: str  # that record's line
    exception: str  # the traceback's last line
    through_redis: bool  # a frame of the redis client library is in it


@dataclass
class Violation:
    kind: str
    subject: str  # a session id, a log file, a process
    detail: str
    at: float | None = None


@dataclass
class SoakRun:
    """Everything one soak recorded: what the checks and the report read."""

    started_at: float
    ended_at: float
    load_s: float
    concurrency: int
    model: str
    rss_bound_bytes: int
    commit: str = ""
    sessions: list[SessionTrace] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    bad_bodies: int = 0
    faults: list[Fault] = field(default_factory=list)
    rss: list[RssSample] = field(default_factory=list)
    tracebacks: list[Traceback] = field(default_factory=list)
    error_lines: dict[str, int] = field(default_factory=dict)  # per log file
    exit_statuses: dict[str, int | None] = field(default_factory=dict)  # at the final stop
