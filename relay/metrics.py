"""Prometheus metrics: every metric relay exposes at `/metrics`, and the one module that
imports prometheus_client.

Names and labels are stable (docs/operations.md lists them); label values are bounded:
upstream names and client names come from the config, models are the names the config
routes (`model_label`), statuses, reasons and outcomes are relay's own words. No session
id is ever a label.

The code that generates, stores and delivers calls the functions here where the events
happen, once per coalesced event (a batch, a write, a session's end), never per byte.
Tokens are counted when a generation ends, however it ends (a client that went away
does not stop it): from the upstream's usage, else estimated (`source="estimated"`).

With `relay serve --workers N` each worker writes its values to files in the directory
the supervisor made for the run (prometheus_client's multiprocess mode, switched on by
`PROMETHEUS_MULTIPROC_DIR` in the worker's environment before this module is imported);
`/metrics` on any worker adds up every worker's, and the supervisor drops the live
gauges of a worker that exited (`worker_exited`).

`Timeline` keeps, per session generating here, when its batches were appended and when
its first token came, so that a subscriber on this instance can tell how long relay took
to deliver them (`relay_delivery_lag_seconds`, `relay_overhead_seconds`). A subscriber
on another instance does not know those times: its deliveries are not observed.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import functools
import math
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from relay import __version__
from relay.config import metrics_directory

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4  # the format generate_latest writes
UNROUTED = "unrouted"  # the model label of a name the config does not route
ANONYMOUS_LABEL = "anonymous"  # the client label without [[clients]]

# `_created` series are not relay's metrics (and multiprocess mode has none).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
MULTIPROCESS_DIR = metrics_directory()

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STORE = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_TTFT = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
_GENERATION = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_RATE = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
_TOKENS = ("upstream", "model", "client", "source")

OUTPUT_TOKENS = Counter(
    "relay_output_tokens", "Output tokens generated", _TOKENS, registry=REGISTRY
)
INPUT_TOKENS = Counter("relay_input_tokens", "Input (prompt) tokens", _TOKENS, registry=REGISTRY)
SESSIONS_STARTED = Counter(
    "relay_sessions_started",
    "Sessions whose generation started",
    ("upstream", "model", "client"),
    registry=REGISTRY,
)
SESSIONS_FINISHED = Counter(
    "relay_sessions_finished",
    "Generations that ended, by the session's status and why",
    ("status", "reason"),
    registry=REGISTRY,
)
SESSIONS_RUNNING = Gauge(
    "relay_sessions_running",
    "Generations running",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
SUBSCRIBERS = Gauge(
    "relay_subscribers",
    "Open streams to clients",
    ("transport", "format"),
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
RESUMES = Counter(
    "relay_resumes", "Reconnections with a resume id, by outcome", ("outcome",), registry=REGISTRY
)
TIME_TO_FIRST_TOKEN = Histogram(
    "relay_time_to_first_token_seconds",
    "From the request to the upstream's first token",
    ("upstream", "model"),
    buckets=_TTFT,
    registry=REGISTRY,
)
OVERHEAD = Histogram(
    "relay_overhead_seconds",
    "From the upstream's first token to its delivery to a subscriber",
    buckets=_FAST,
    registry=REGISTRY,
)
GENERATION = Histogram(
    "relay_generation_seconds",
    "From the request to the generation's end",
    buckets=_GENERATION,
    registry=REGISTRY,
)
TOKENS_PER_SECOND = Histogram(
    "relay_output_tokens_per_second",
    "Output tokens per second of one generation, from its first token to its end",
    buckets=_RATE,
    registry=REGISTRY,
)
DELIVERY_LAG = Histogram(
    "relay_delivery_lag_seconds",
    "From a live event's append to its write to a subscriber",
    buckets=_FAST,
    registry=REGISTRY,
)
TAKEOVERS = Counter(
    "relay_takeovers",
    "Generations this instance took over from a lost one, by upstream and how",
    ("upstream", "policy"),
    registry=REGISTRY,
)
UPSTREAM_REQUESTS = Counter(
    "relay_upstream_requests",
    "Generations' upstream requests, by how they ended",
    ("upstream", "outcome"),
    registry=REGISTRY,
)
UPSTREAM_RETRIES = Counter(
    "relay_upstream_retries", "Upstream requests retried", ("upstream",), registry=REGISTRY
)
STORE_OPERATION = Histogram(
    "relay_store_operation_seconds",
    "Store operations, by operation",
    ("op",),
    buckets=_STORE,
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "relay_store_errors", "Store operations that failed", ("op",), registry=REGISTRY
)
HTTP_REQUESTS = Counter(
    "relay_http_requests",
    "HTTP responses, by route template and status",
    ("route", "status"),
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "relay_build_info",
    "Always 1, labelled with relay's version",
    ("version",),
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
BUILD_INFO.labels(__version__).set(1)


def exposition() -> bytes:
    """The text format of every metric: this process's, or every worker's added up."""
    if MULTIPROCESS_DIR is None:
        return prometheus_client.generate_latest(REGISTRY)
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return prometheus_client.generate_latest(merged)


def worker_exited(pid: int, directory: str) -> None:
    """Drop the live gauges of a worker that is gone; its counts stay counted."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


@functools.cache
def _child(metric: Counter | Gauge | Histogram, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: prometheus_client's `labels()` checks the
    values and takes a lock on every call, and several run on every request. The cache
    is as bounded as the label values are (see the module docstring)."""
    return metric.labels(*values)


def client_label(name: str) -> str:
    return name or ANONYMOUS_LABEL


def session_started(upstream: str, model: str, client: str) -> None:
    _child(SESSIONS_STARTED, upstream, model, client_label(client)).inc()
    SESSIONS_RUNNING.inc()


def session_finished(status: str, reason: str) -> None:
    _child(SESSIONS_FINISHED, status, reason).inc()
    SESSIONS_RUNNING.dec()


def session_ended_from_outside(status: str, reason: str) -> None:
    """A session this instance ended for a generator that is gone (the lease reaper's
    `generation_lost`, a cancel that no instance answered): it finished, but it was not
    running here, so the running gauge does not move."""
    _child(SESSIONS_FINISHED, status, reason).inc()


def taken_over(upstream: str, policy: str) -> None:
    """A lost generation this instance took over (relay/takeover.py): `continue`, or
    `restart`."""
    _child(TAKEOVERS, upstream, policy).inc()


def first_token(upstream: str, model: str, seconds: float) -> None:
    _child(TIME_TO_FIRST_TOKEN, upstream, model).observe(seconds)


def tokens(upstream: str, model: str, client: str, counted: TokenCount) -> None:
    """A generation's tokens, once, when it ends."""
    labels = (upstream, model, client_label(client), counted.source)
    if counted.output:
        _child(OUTPUT_TOKENS, *labels).inc(counted.output)
    if counted.input:
        _child(INPUT_TOKENS, *labels).inc(counted.input)


def generation_ended(seconds: float, output_tokens: int, generating_s: float | None) -> None:
    GENERATION.observe(seconds)
    if output_tokens and generating_s:
        TOKENS_PER_SECOND.observe(output_tokens / generating_s)


def upstream_request(upstream: str, outcome: str) -> None:
    _child(UPSTREAM_REQUESTS, upstream, outcome).inc()


def upstream_retry(upstream: str) -> None:
    _child(UPSTREAM_RETRIES, upstream).inc()


def resumed(outcome: str) -> None:
    _child(RESUMES, outcome).inc()


def http_response(route: str, status: int) -> None:
    _child(HTTP_REQUESTS, route, str(status)).inc()


@contextlib.contextmanager
def subscribed(transport: str, wire_format: str) -> Iterator[None]:
    """One open stream to a client, for as long as it is open."""
    gauge = _child(SUBSCRIBERS, transport, wire_format)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


class StoreTimer:
    """The timing and error count of one kind of store operation (its children bound
    once: a store call costs two clock reads and an observation)."""

    def __init__(self, op: str) -> None:
        self.seconds = _child(STORE_OPERATION, op)
        self.errors = _child(STORE_ERRORS, op)


class TokenCount:
    """A generation's tokens: the upstream's usage, or estimated from what it streamed."""

    __slots__ = ("input", "output", "source")

    def __init__(self, input_tokens: int, output_tokens: int, source: str) -> None:
        self.input, self.output, self.source = input_tokens, output_tokens, source

    @classmethod
    def estimated(cls, prompt_chars: int, deltas: int) -> TokenCount:
        """Without usage: one output token per streamed text delta (upstreams stream
        about one token per delta), and a prompt token per 4 characters (OpenAI's rule
        of thumb for English)."""
        return cls(math.ceil(prompt_chars / 4), deltas, "estimated")


# Sessions whose times are kept: more than run on one instance at once (store.max_sessions).
TIMELINE_SESSIONS = 16_384
# Appended batches remembered per session: a live subscriber is never further behind.
TIMELINE_BATCHES = 64


class SessionTimes:
    __slots__ = ("first_output_id", "first_token_at", "ids", "times")

    def __init__(self) -> None:
        self.ids: collections.deque[int] = collections.deque(maxlen=TIMELINE_BATCHES)
        self.times: collections.deque[float] = collections.deque(maxlen=TIMELINE_BATCHES)
        self.first_token_at: float | None = None
        self.first_output_id: int | None = None  # cleared once its delivery is observed

    def appended_at(self, event_id: int, now: float) -> float | None:
        """When the batch holding `event_id` was appended, if it is remembered; `now`
        for a batch whose append this instance has not heard back about yet: a feed
        can read the log, and write its subscribers, before the append's own reply
        arrives (on Redis they come on different connections), and such a delivery
        had no lag to speak of."""
        index = bisect.bisect_left(self.ids, event_id)
        if index == len(self.ids):
            return now
        forgotten = index == 0 and len(self.ids) == self.ids.maxlen  # older batches were
        return None if forgotten else self.times[index]


class Timeline:
    """When this instance appended each session's recent batches and got its first token,
    for the subscribers here; the oldest sessions are forgotten first."""

    def __init__(self, capacity: int = TIMELINE_SESSIONS) -> None:
        self._capacity = capacity
        self._sessions: collections.OrderedDict[str, SessionTimes] = collections.OrderedDict()
        # The live batch last looked up, (session id, last id, its append's time): its
        # other subscribers here are written it next, and each write is observed.
        self._batch: tuple[str, int, float] | None = None

    def start(self, session_id: str) -> None:
        self._sessions[session_id] = SessionTimes()
        if len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)

    def appended(self, session_id: str, last_id: int, first_token_at: float | None) -> None:
        """A batch up to `last_id` is in the log; `first_token_at`, once the upstream's
        first output has come (the first batch after it carries it: the coalescer lets
        the first text out at once)."""
        times = self._sessions.get(session_id)
        if times is None:
            return
        times.ids.append(last_id)
        times.times.append(time.monotonic())
        if first_token_at is not None and times.first_token_at is None:
            times.first_token_at, times.first_output_id = first_token_at, last_id

    def delivered(self, session_id: str, last_id: int, *, live: bool) -> None:
        """A subscriber here was written the events up to `last_id`: a live delivery's
        lag, and the session's first output's overhead, once."""
        now = time.monotonic()
        batch = self._batch
        if live and batch is not None and batch[1] == last_id and batch[0] == session_id:
            DELIVERY_LAG.observe(now - batch[2])  # the first output was observed already
            return
        times = self._sessions.get(session_id)
        if times is None:
            return
        if live and (appended := times.appended_at(last_id, now)) is not None:
            DELIVERY_LAG.observe(now - appended)
            self._batch = (session_id, last_id, appended)
        first = times.first_output_id
        if first is not None and last_id >= first and times.first_token_at is not None:
            OVERHEAD.observe(now - times.first_token_at)
            times.first_output_id = None
        elif first is not None:
            self._batch = None  # its first output is still to be observed


TIMELINE = Timeline()
