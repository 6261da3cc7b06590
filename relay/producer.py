"""`relay.producer`: the client helper an agent backend imports to publish into a relay
session through the producer API (docs/api.md "The producer API"). A library, not part
of relay's server: it speaks HTTP to relay through aiohttp's client and shares only the
event shapes (relay.events) and the batch's, the structs relay decodes it with
(relay.wire.producer_request), so what it sends is what relay reads.

    async with Producer.create("http://127.0.0.1:8080", key=KEY) as p:
        await p.status("searching", "Searching knowledge base…")
        await p.delta("Here is what I found…")
        await p.done()

- Events are queued and sent in numbered batches (`seq` 1, 2, 3 …): a batch leaves after
  `flush_interval_s` or once `max_batch` events wait, and always before a terminal event.
  One batch is in flight at a time, so seqs reach relay in order.
- A batch whose answer is lost (a network error, a timeout, a 5xx or 429) is sent again
  with the same seq, with exponential backoff up to `Retry.attempts` tries: relay answers
  a repeated seq with the ids it gave and appends nothing, so a retry never doubles text.
- A 409 it cannot resolve is raised: `SessionEnded` (a cancel, `producer_lost`, or the
  agent already ended it) or `SeqConflict` (another writer, or a `Producer` opened on a
  session that already has batches without `next_seq`). A seq is never guessed: a
  repeated seq is relay's "already appended", so a wrong one would drop a batch.
- While the agent is quiet a keep-alive task calls `POST …/keepalive` every third of the
  session's `producer_idle_timeout_s`, so relay does not end it with `producer_lost`.
- `signals()` reads the user's signals (`GET …/signals`, SSE) and reconnects with
  `Last-Event-ID` after a dropped connection.
- Leaving the `async with` on an exception ends the session with `error`
  (code `agent_error`; `cancelled` `{"reason": "producer"}` when the agent's task was
  cancelled) and re-raises; leaving it normally without a terminal event ends it with
  `done` (`finish_reason` `stop`). A session relay already ended is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from relay.events import (
    CancelledData,
    DoneData,
    ErrorData,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
)
from relay.tasks import cancel_and_wait
from relay.wire.producer_request import (
    TERMINAL_EVENTS,
    CancelledEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    EventsBody,
    ProducerEvent,
    ReasoningEvent,
    StatusEvent,
    ToolCallEvent,
    UsageEvent,
)

__all__ = [
    "Producer",
    "ProducerError",
    "RelayRefused",
    "RelayUnavailable",
    "Retry",
    "SeqConflict",
    "SessionEnded",
    "Signal",
]

AGENT_ERROR = "agent_error"


class ProducerError(Exception):
    """Anything `relay.producer` raises about relay's answers."""


class RelayRefused(ProducerError):
    """relay answered with an error that retrying cannot change (a 4xx)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"relay answered {status} {code}: {message}")
        self.status = status
        self.code = code


class SessionEnded(RelayRefused):
    """409 `session_ended`: the session has its terminal event; it takes nothing more."""


class SeqConflict(RelayRefused):
    """409 `seq_conflict`: relay expected another batch (`expected_seq`)."""

    def __init__(self, status: int, code: str, message: str, expected_seq: int) -> None:
        super().__init__(status, code, message)
        self.expected_seq = expected_seq


class RelayUnavailable(ProducerError):
    """relay could not be reached, or kept failing, for every attempt of `Retry`."""


@dataclass(frozen=True)
class Retry:
    """How often and how long a request is retried: `attempts` tries in all, waiting
    `first_delay_s`, doubling, at most `max_delay_s` between them."""

    attempts: int = 6
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (from 1)."""
        return float(min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s))


class Signal(msgspec.Struct, frozen=True):
    """A signal from the user: its id in the session's signal log and its data object
    as the user sent it (`{"kind": "cancel"}` for a cancel)."""

    id: int
    data: dict[str, Any]

    @property
    def kind(self) -> str | None:
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else None


class _Created(msgspec.Struct):
    id: str
    producer_token: str
    token: str
    producer_idle_timeout_s: float


class _Refusal(msgspec.Struct):
    code: str = "unknown"
    message: str = ""
    expected_seq: int | None = None


class _RefusalBody(msgspec.Struct):
    error: _Refusal


class _KeptAlive(msgspec.Struct):
    idle_timeout_s: float | None = None


class _Transient(Exception):
    """A try that may succeed if repeated (network error, timeout, 5xx, 429)."""


_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError)
_encode = msgspec.json.Encoder().encode


class Producer:
    """One external session's producer (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        session_id: str,
        producer_token: str,
        *,
        idle_timeout_s: float | None = None,
        read_token: str | None = None,
        flush_interval_s: float = 0.05,
        max_batch: int = 200,
        coalesce: bool = True,
        next_seq: int = 1,
        retry: Retry = Retry(),
        request_timeout_s: float = 10.0,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session_id = session_id
        self.read_token = read_token  # for a browser's EventSource, when created here
        self.idle_timeout_s = idle_timeout_s
        self.producer_token = producer_token  # to hand the session to another process
        self._auth = {"Authorization": f"Bearer {producer_token}"}
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._coalesce = coalesce
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._http = http
        self._owns_http = http is None
        self._pending: list[ProducerEvent] = []
        # The batch being sent: kept until relay answers it, so that a send cut short
        # (a cancelled flush) is sent again with the same seq, never renumbered.
        self._in_flight: list[ProducerEvent] = []
        self._seq = next_seq - 1  # the last batch relay accepted
        self._sent_lock = asyncio.Lock()
        self._queued = asyncio.Event()
        self._last_contact = time.monotonic()
        self._failure: BaseException | None = None
        self.ended = False  # the session has its terminal event (sent here, or relay's)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def create(
        cls,
        base_url: str,
        *,
        key: str | None = None,
        idle_timeout_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[Producer]:
        """A new external session, produced into inside the `async with`."""
        http = aiohttp.ClientSession()
        try:
            created = await _create_session(http, base_url, key, idle_timeout_s, metadata)
            producer = cls(
                base_url,
                created.id,
                created.producer_token,
                idle_timeout_s=created.producer_idle_timeout_s,
                read_token=created.token,
                http=http,
                **options,
            )
            async with producer:
                yield producer
        finally:
            await http.close()

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/v1/sessions/{self.session_id}/events"

    # The events, as CONTRACT.md's table defines them.

    async def status(self, state: str, message: str = "") -> None:
        await self._emit(StatusEvent(StatusData(state, message)))

    async def delta(self, text: str) -> None:
        await self._emit(DeltaEvent(TextData(text)))

    async def reasoning(self, text: str) -> None:
        await self._emit(ReasoningEvent(TextData(text)))

    async def tool_call(self, index: int, call_id: str, name: str, arguments: str) -> None:
        await self._emit(ToolCallEvent(ToolCallData(index, call_id, name, arguments)))

    async def usage(self, input_tokens: int, output_tokens: int) -> None:
        await self._emit(UsageEvent(Usage(input_tokens, output_tokens)))

    async def done(
        self, finish_reason: str = "stop", usage: Usage | Mapping[str, int] | None = None
    ) -> None:
        """`usage` is a `Usage`, or a mapping as the event's JSON has it
        (`{"input_tokens": n, "output_tokens": n}`)."""
        await self._emit(DoneEvent(DoneData(finish_reason, _usage_of(usage))))

    async def error(self, code: str, message: str, *, retryable: bool = False) -> None:
        await self._emit(ErrorEvent(ErrorData(code, message, retryable)))

    async def cancelled(self, reason: str = "client") -> None:
        await self._emit(CancelledEvent(CancelledData(reason)))

    # Lifecycle.

    async def __aenter__(self) -> Producer:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        if self.idle_timeout_s is None:  # opened on a session created elsewhere
            await self.keepalive()
        self._tasks = [asyncio.create_task(self._flush_when_queued())]
        if self.idle_timeout_s:
            self._tasks.append(asyncio.create_task(self._keep_alive(self.idle_timeout_s / 3)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await cancel_and_wait(self._tasks)
            if not self.ended and not isinstance(exc, SessionEnded):
                await self._end_for(exc)
        except SessionEnded:
            pass  # ended from elsewhere (a cancel, producer_lost): what leaving asks for
        except ProducerError:
            if exc is None:
                raise
            # The agent's own exception is the one to see; relay ends the session with
            # producer_lost once the idle timeout passes.
        finally:
            if self._owns_http and self._http is not None:
                await self._http.close()

    async def _end_for(self, exc: BaseException | None) -> None:
        """The terminal event for leaving the `async with` with `exc` (or without one)."""
        if exc is None:
            await self.done()
        elif isinstance(exc, asyncio.CancelledError):
            await self.cancelled("producer")
        else:
            await self.error(AGENT_ERROR, f"the agent failed: {type(exc).__name__}")

    async def flush(self) -> None:
        """Send every queued event now, in batches of at most `max_batch`."""
        async with self._sent_lock:
            self._raise_failure()
            while self._in_flight or self._pending:
                if not self._in_flight:
                    self._in_flight = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                await self._send_batch(self._in_flight)
                self._in_flight = []

    async def keepalive(self) -> None:
        """Tell relay the producer is alive (the keep-alive task does this while idle)."""
        answer = await self._request("keepalive", None)
        self.idle_timeout_s = msgspec.json.decode(answer, type=_KeptAlive).idle_timeout_s

    async def _emit(self, event: ProducerEvent) -> None:
        self._raise_failure()
        if self.ended:
            raise SessionEnded(409, "session_ended", "this producer already ended the session")
        self._pending.append(event)
        if isinstance(event, TERMINAL_EVENTS) or len(self._pending) >= self._max_batch:
            await self.flush()
        else:
            self._queued.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _send_batch(self, events: list[ProducerEvent]) -> None:
        try:
            await self._send_numbered(events)
        except SessionEnded as exc:
            self.ended = True
            self._failure = exc
            raise
        except (RelayRefused, RelayUnavailable) as exc:
            self._failure = exc
            raise
        if isinstance(events[-1], TERMINAL_EVENTS):
            self.ended = True

    async def _send_numbered(self, events: list[ProducerEvent]) -> None:
        """Send `events` as the next batch, under the same seq until relay answers."""
        await self._request("events", EventsBody(self._seq + 1, events, self._coalesce))
        self._seq += 1

    async def _flush_when_queued(self) -> None:
        """The batching task: a short wait once an event is queued, then one flush."""
        while True:
            await self._queued.wait()
            await asyncio.sleep(self._flush_interval_s)
            self._queued.clear()
            with contextlib.suppress(ProducerError):  # kept in _failure, raised to the agent
                await self.flush()

    async def _keep_alive(self, every_s: float) -> None:
        """The keep-alive task: a keep-alive whenever nothing reached relay for `every_s`."""
        while True:
            await asyncio.sleep(max(0.0, self._last_contact + every_s - time.monotonic()))
            if time.monotonic() - self._last_contact < every_s:
                continue
            try:
                await self.keepalive()
            except SessionEnded as exc:
                self.ended, self._failure = True, exc
                return
            except ProducerError as exc:
                self._failure = exc
                return

    # HTTP, with retries.

    async def _request(self, action: str, body: EventsBody | None) -> bytes:
        """POST `…/{session}/{action}` until it is answered; the answer's body."""
        url = f"{self.base_url}/v1/sessions/{self.session_id}/{action}"
        payload = None if body is None else _encode(body)
        for attempt in itertools.count(1):
            try:
                answer = await self._post(url, payload)
            except _Transient as exc:
                if attempt >= self._retry.attempts:
                    raise RelayUnavailable(f"POST {url}: {exc}") from exc
                await asyncio.sleep(self._retry.delay_s(attempt))
                continue
            self._last_contact = time.monotonic()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, url: str, payload: bytes | None) -> bytes:
        assert self._http is not None, "use the Producer inside `async with`"
        headers = {**self._auth, "Content-Type": "application/json"}
        try:
            async with self._http.post(
                url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                return _answer_body(response.status, await response.read())
        except _NETWORK_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc

    # Signals.

    async def signals(self) -> AsyncGenerator[Signal, None]:
        """The user's signals to this session, in order; reconnects with `Last-Event-ID`
        after a dropped connection, and ends once the session has ended."""
        last_id: int | None = None
        failures = 0
        while not self.ended:
            try:
                async for signal in self._signal_stream(last_id):
                    last_id, failures = signal.id, 0
                    yield signal
            except _Transient as exc:
                failures += 1
                if failures >= self._retry.attempts:
                    raise RelayUnavailable(f"the session's signals: {exc}") from exc
                await asyncio.sleep(self._retry.delay_s(failures))
            except (_StreamOver, SessionEnded):
                return

    async def _signal_stream(self, last_id: int | None) -> AsyncIterator[Signal]:
        assert self._http is not None, "use the Producer inside `async with`"
        url = f"{self.base_url}/v1/sessions/{self.session_id}/signals"
        headers = dict(self._auth)
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        try:
            async with self._http.get(url, headers=headers, timeout=_STREAM_TIMEOUT) as response:
                if response.status == 204:
                    raise _StreamOver
                if response.status >= 300:
                    _answer_body(response.status, await response.read())
                parser = _SignalParser()
                async for chunk in response.content.iter_any():
                    for signal in parser.feed(chunk):
                        yield signal
        except _NETWORK_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        raise _Transient("the signal stream closed")  # the session may still run: reconnect


def _usage_of(usage: Usage | Mapping[str, int] | None) -> Usage | None:
    """`usage` as the struct; a mapping's bad value raises `msgspec.ValidationError`
    naming its key (`$.input_tokens`)."""
    if usage is None or isinstance(usage, Usage):
        return usage
    return msgspec.convert(dict(usage), Usage)


class _StreamOver(Exception):
    """relay answered 204: the session has ended and no signal will come."""


# A signal stream is idle for as long as the user is; only connecting is bounded.
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0)


def _answer_body(status: int, body: bytes) -> bytes:
    """`body` of a successful answer; else the exception that `status` means."""
    if status < 300:
        return body
    if status in _TRANSIENT_STATUSES:
        raise _Transient(f"HTTP {status}")
    try:
        refusal = msgspec.json.decode(body, type=_RefusalBody).error
    except msgspec.DecodeError:
        refusal = _Refusal(message=body[:200].decode("utf-8", "replace"))
    if refusal.code == "session_ended":
        raise SessionEnded(status, refusal.code, refusal.message)
    if refusal.code == "seq_conflict" and refusal.expected_seq is not None:
        raise SeqConflict(status, refusal.code, refusal.message, refusal.expected_seq)
    raise RelayRefused(status, refusal.code, refusal.message)


class _SignalParser:
    """The signal stream's SSE, bytes in, signals out (see `signal_of`); comments
    (`: ping`), `retry:` and frames without data are skipped. Lines end in LF or CRLF."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fields: dict[str, str] = {}

    def feed(self, chunk: bytes) -> list[Signal]:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        signals = []
        for raw in lines:
            line = raw.removesuffix(b"\r").decode("utf-8", "replace")
            name, _, value = line.partition(":")
            if name:
                self._fields[name] = value.removeprefix(" ")
            elif not line:
                if (signal := signal_of(self._fields)) is not None:
                    signals.append(signal)
                self._fields = {}
        return signals


def signal_of(fields: Mapping[str, str]) -> Signal | None:
    """The signal of one SSE frame (`id: N`, `event: signal`, `data: <the signal's
    JSON>`), or None for a frame that is not one."""
    if fields.get("event", "signal") != "signal" or "id" not in fields or "data" not in fields:
        return None
    return Signal(int(fields["id"]), msgspec.json.decode(fields["data"], type=dict[str, Any]))


async def _create_session(
    http: aiohttp.ClientSession,
    base_url: str,
    key: str | None,
    idle_timeout_s: float | None,
    metadata: Mapping[str, Any] | None,
) -> _Created:
    """`POST /v1/sessions` `{"producer": "external"}`, once: a creation is no safe retry."""
    body: dict[str, Any] = {"producer": "external"}
    if idle_timeout_s is not None:
        body["producer_idle_timeout_s"] = idle_timeout_s
    if metadata:
        body["metadata"] = dict(metadata)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{base_url.rstrip('/')}/v1/sessions"
    try:
        async with http.post(url, data=_encode(body), headers=headers) as response:
            answer = _answer_body(response.status, await response.read())
    except (*_NETWORK_ERRORS, _Transient) as exc:
        raise RelayUnavailable(f"POST {url}: {exc}") from exc
    return msgspec.json.decode(answer, type=_Created)
