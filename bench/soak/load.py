"""The soak's clients, all through nginx but one: each scenario creates a session (or sends a bad
body) and reads it to its end the way one kind of client would, recording what it saw.

Scenarios:
- `native`: one or two readers of the events endpoint that hang up at random points and
  resume with `Last-Event-ID` (nginx sends each request to either instance);
- `openai`, `anthropic`: a front door's stream, resumed with `?format=` after a hang-up;
- `cancel`: a native reader, and a `DELETE` while it reads;
- `slow`: a reader that takes 256 bytes at a time, with a pause between;
- `stalled`: a client with a 4 KiB receive buffer that reads nothing, then hangs up, while
  a native reader checks the session; it connects to a relay directly;
- `bad`: a malformed or refused request, which must get a 4xx.
Every wait is bounded: a read that gets nothing (not even a ping) for READ_TIMEOUT_S ends
that connection, and a reader that has not reached the end in READER_LIMIT_S gives up.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import msgspec

from bench.soak import frames
from bench.soak.configs import HEARTBEAT_S
from bench.soak.traces import Answer, Connection, ReaderTrace, SessionTrace

READ_TIMEOUT_S = 3 * HEARTBEAT_S + 5
READER_LIMIT_S = 120.0
SCENARIO_LIMIT_S = 2 * READER_LIMIT_S
SETTLE_LIMIT_S = 30.0
MAX_CONNECTIONS = 30
MAX_HANG_UPS = 4  # deliberate hang-ups per reader
RESUME_PAUSE_S = 0.2
REFUSED_PAUSE_S = 1.0  # after a request that got a 5xx (during a fault)
SLOW_READ_BYTES, SLOW_PAUSE_S = 256, 0.05
UNREAD_BUFFER_BYTES = 4096
ANSWER_BODY_CHARS = 300  # of an answer that was not 2xx, kept to explain it
MESSAGES = [{"role": "user", "content": "Tell me about rivers."}]

SCENARIOS = {
    "native": 30,
    "openai": 15,
    "anthropic": 15,
    "cancel": 10,
    "slow": 10,
    "stalled": 5,
    "bad": 15,
}


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int = 10
    model: str = "mock:tokens=200,tps=50"
    # Enough to fill the socket buffers of a client that reads nothing and relay's buffer
    # for it (about 120 KiB in 10 s), so that relay's writes block.
    stalled_model: str = "mock:tokens=20000,tps=2000"
    weights: Mapping[str, int] = field(default_factory=lambda: dict(SCENARIOS))
    seed: int = 0


class Load:
    """The clients, and what they recorded."""

    def __init__(
        self,
        base_url: str,
        instances: Mapping[str, str],
        relays: Sequence[tuple[str, int]],
        settings: LoadSettings,
    ) -> None:
        self.base = base_url
        self.relays = relays  # their addresses, for the one client that goes around nginx
        self.settings = settings
        self._instances = instances  # X-Relay-Instance → relay name, kept current
        self.sessions: list[SessionTrace] = []
        self.answers: list[Answer] = []
        self.bad_bodies = 0
        self.rng = random.Random(settings.seed)
        self._serial = 0
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    async def run(self, until: float) -> None:
        """`concurrency` clients, each running scenarios one after another until `until`
        (wall clock); returns when the last one has ended."""
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as self._http:
            await asyncio.gather(*(self._client(until) for _ in range(self.settings.concurrency)))

    async def _client(self, until: float) -> None:
        names, weights = zip(*self.settings.weights.items(), strict=True)
        while time.time() < until:
            scenario = self.rng.choices(names, weights)[0]
            try:
                async with asyncio.timeout(SCENARIO_LIMIT_S):
                    await SCENARIO_RUNNERS[scenario](self)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # No answer at all (nginx never goes away), or a scenario that never ended.
                self.answers.append(Answer(time.time(), "", f"{scenario}: {exc!r}", 0, ""))

    # --- recording --------------------------------------------------------------------

    def relay_of(self, response: aiohttp.ClientResponse) -> str:
        instance = response.headers.get("X-Relay-Instance", "")
        return self._instances.get(instance, instance)

    async def record(
        self, method: str, route: str, response: aiohttp.ClientResponse, *, bad: bool = False
    ) -> None:
        if 200 <= response.status < 300 and not bad:
            return
        body = await response.read()
        answer = Answer(time.time(), method, route, response.status, self.relay_of(response))
        answer.code, answer.expected_4xx = frames.error_code(body), bad
        answer.body = body[:ANSWER_BODY_CHARS].decode(errors="replace")
        self.answers.append(answer)

    def model(self, options: str = "") -> str:
        """The mock model with `options` (the settings' by default), each session its own
        seed, so that no two texts are the same."""
        self._serial += 1
        return f"{options or self.settings.model},seed={self._serial}"

    # --- sessions ---------------------------------------------------------------------

    async def create(self, scenario: str, model: str = "") -> SessionTrace | None:
        body = {"model": model or self.model(), "messages": MESSAGES}
        async with self.http.post(self.base + "/v1/sessions", json=body) as response:
            await self.record("POST", "POST /v1/sessions", response)
            if response.status != 201:
                await asyncio.sleep(REFUSED_PAUSE_S)  # as a client backs off
                return None
            session_id = str((await response.json())["id"])
        trace = SessionTrace(session_id, scenario, time.time(), self.relay_of(response))
        self.sessions.append(trace)
        return trace

    def events_url(self, session_id: str, kind: str) -> str:
        query = f"?format={kind}" if kind in ("openai", "anthropic") else ""
        return f"{self.base}/v1/sessions/{session_id}/events{query}"

    async def read(
        self,
        trace: SessionTrace,
        kind: str,
        first: aiohttp.ClientResponse | None = None,
        hang_ups: int = MAX_HANG_UPS,
    ) -> ReaderTrace:
        """One reader, from the start (or from `first`, a stream already open) to the end."""
        reader = ReaderTrace(kind)
        trace.readers.append(reader)
        deadline = time.monotonic() + READER_LIMIT_S
        response = first
        if first is not None:
            reader.connections.append(Connection(self.relay_of(first), time.time(), status=200))
        while not reader.terminal and not reader.gave_up:
            if len(reader.connections) >= MAX_CONNECTIONS or time.monotonic() > deadline:
                reader.gave_up = f"no end after {len(reader.connections)} connections"
                break
            if response is None:
                response = await self._resume(trace, reader)
            pause = REFUSED_PAUSE_S
            if response is not None:
                budget = self._hang_up_point() if hang_ups > 0 else None
                ended = await self._consume(reader, response, budget)
                hang_ups -= ended == "deliberate"
                response, pause = None, RESUME_PAUSE_S
            if not reader.terminal:
                await asyncio.sleep(pause)
        return reader

    def _hang_up_point(self) -> int | None:
        """After how many messages this connection hangs up: none half the time."""
        return self.rng.randint(1, 40) if self.rng.random() < 0.5 else None

    async def _resume(
        self, trace: SessionTrace, reader: ReaderTrace
    ) -> aiohttp.ClientResponse | None:
        headers = {"Last-Event-ID": str(reader.ids[-1])} if reader.ids else {}
        connection = Connection("", time.time())
        reader.connections.append(connection)
        try:
            response = await self.http.get(self.events_url(trace.id, reader.kind), headers=headers)
        except aiohttp.ClientError as exc:
            connection.ended, connection.detail = "failed", repr(exc)
            connection.ended_at = time.time()
            return None
        connection.instance, connection.status = self.relay_of(response), response.status
        if response.status == 200:
            return response
        await self.record("GET", "GET /v1/sessions/{id}/events", response)
        response.release()
        connection.ended, connection.ended_at = "status", time.time()
        if response.status < 500:  # 204, 404 …: the session cannot be read to its end
            reader.gave_up = f"a resume after {reader.ids[-1:]} got {response.status}"
        return None

    async def _consume(
        self, reader: ReaderTrace, response: aiohttp.ClientResponse, budget: int | None
    ) -> str:
        """Read one stream until its terminal event, the hang-up point, or its end."""
        connection = reader.connections[-1]
        reading = frames.StreamReading(reader, connection, budget)
        ended = ""
        try:
            while not ended:
                data = await asyncio.wait_for(self._chunk(reader, response), READ_TIMEOUT_S)
                ended = reading.feed(data) if data else "eof"
        except TimeoutError:
            ended = "stalled"
        except (aiohttp.ClientError, ConnectionError) as exc:
            ended, connection.detail = "failed", repr(exc)
        finally:
            response.close()
        connection.ended, connection.ended_at = ended, time.time()
        return ended

    @staticmethod
    async def _chunk(reader: ReaderTrace, response: aiohttp.ClientResponse) -> bytes:
        if reader.kind != "slow":
            return await response.content.readany()
        await asyncio.sleep(SLOW_PAUSE_S)
        return await response.content.read(SLOW_READ_BYTES)

    # --- the end ------------------------------------------------------------------------

    async def settle_all(self, at_once: int) -> None:
        """`settle` every session, `at_once` at a time."""
        gate = asyncio.Semaphore(at_once)

        async def one(trace: SessionTrace) -> None:
            async with gate:
                await self.settle(trace)

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as self._http:
            await asyncio.gather(*(one(trace) for trace in self.sessions))

    async def settle(self, trace: SessionTrace) -> None:
        """The session's whole log (a native replay from the start, which ends after the
        terminal event) and then its snapshot, into `trace`."""
        try:
            async with asyncio.timeout(SETTLE_LIMIT_S):
                trace.fetch_error = await self._read_back(trace)
        except TimeoutError:
            trace.fetch_error = f"the session had not ended {SETTLE_LIMIT_S:g} s after the load"
        except aiohttp.ClientError as exc:
            trace.fetch_error = f"the final replay failed: {exc!r}"

    async def _read_back(self, trace: SessionTrace) -> str:
        """An empty string once `trace` has the log and the snapshot, else why not."""
        async with self.http.get(self.events_url(trace.id, "native")) as response:
            if response.status != 200:
                return f"the final replay got {response.status}"
            trace.log = frames.log_events(await response.read())
        async with self.http.get(f"{self.base}/v1/sessions/{trace.id}") as response:
            if response.status != 200:
                return f"the snapshot got {response.status}"
            snapshot = await response.json()
        trace.snapshot_status, trace.snapshot_text = snapshot["status"], snapshot["text"]
        trace.snapshot_last_event_id = snapshot["last_event_id"]
        return ""


# --- scenarios -------------------------------------------------------------------------


async def native(load: Load) -> None:
    trace = await load.create("native")
    if trace is None:
        return
    second = load.rng.random() < 0.5

    async def later_reader() -> None:
        await asyncio.sleep(load.rng.uniform(0, 2))
        await load.read(trace, "native")

    await asyncio.gather(load.read(trace, "native"), *([later_reader()] if second else []))


async def front_door(load: Load, kind: str) -> None:
    path = "/v1/chat/completions" if kind == "openai" else "/v1/messages"
    body: dict[str, object] = {"model": load.model(), "messages": MESSAGES, "stream": True}
    if kind == "anthropic":
        body["max_tokens"] = 4096
    opened_at = time.time()
    response = await load.http.post(load.base + path, json=body)
    if response.status != 200:
        await load.record("POST", f"POST {path}", response)
        response.release()
        await asyncio.sleep(REFUSED_PAUSE_S)
        return
    session_id = response.headers["X-Relay-Session-Id"]
    trace = SessionTrace(session_id, kind, opened_at, load.relay_of(response))
    load.sessions.append(trace)
    await load.read(trace, kind, first=response)


async def cancel(load: Load) -> None:
    trace = await load.create("cancel")
    if trace is None:
        return

    async def cancel_soon() -> None:
        await asyncio.sleep(load.rng.uniform(0.2, 3.0))
        trace.cancelled_at = time.time()
        async with load.http.delete(f"{load.base}/v1/sessions/{trace.id}") as response:
            trace.cancel_status = response.status
            if response.status != 202:
                await load.record("DELETE", "DELETE /v1/sessions/{id}", response)

    await asyncio.gather(load.read(trace, "native"), cancel_soon())


async def slow(load: Load) -> None:
    trace = await load.create("slow")
    if trace is not None:
        await load.read(trace, "slow", hang_ups=0)


async def stalled(load: Load) -> None:
    trace = await load.create("stalled", load.model(load.settings.stalled_model))
    if trace is None:
        return
    kind = load.rng.choice(["native", "openai"])
    hold_s = load.rng.uniform(3, 15)
    await asyncio.gather(load.read(trace, "native"), _hold_unread(load, trace, kind, hold_s))


async def _hold_unread(load: Load, trace: SessionTrace, kind: str, hold_s: float) -> None:
    """A client that asks a relay for the stream and then reads nothing, with a small
    receive buffer, then hangs up: relay's writes to it block, and it goes away while they
    do. It goes to a relay directly, since nginx would take what it does not read (a
    300 KB stream went through whole into such a client)."""
    host, port = load.rng.choice(load.relays)
    request = f"GET {load.events_url(trace.id, kind).removeprefix(load.base)} HTTP/1.1\r\n"
    request += f"Host: {host}:{port}\r\n\r\n"
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UNREAD_BUFFER_BYTES)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
        except ConnectionRefusedError:  # that relay is down (a fault): nothing to hold
            return
        await loop.sock_sendall(sock, request.encode())
        await asyncio.sleep(hold_s)


async def bad(load: Load) -> None:
    wrong, method, path, content_type, body = load.rng.choice(BAD_REQUESTS)
    headers = {"Content-Type": content_type} if content_type else {}
    load.bad_bodies += 1
    async with load.http.request(method, load.base + path, data=body, headers=headers) as response:
        await load.record(method, f"{method} {path} ({wrong})", response, bad=True)
    if response.status >= 500:
        await asyncio.sleep(REFUSED_PAUSE_S)


JSON = "application/json"
_encode = msgspec.json.encode
_HI = [{"role": "user", "content": "hi"}]
_MOCK_HI = {"model": "mock", "messages": _HI}
_WIZARD = [{"role": "wizard", "content": "hi"}]
_UNKNOWN = "/v1/sessions/s_AAAAAAAAAAAAAAAAAAAAAA"
_S, _CHAT, _MESSAGES = "/v1/sessions", "/v1/chat/completions", "/v1/messages"
# (what is wrong, method, path, content type, body): each one refused with a 4xx.
BAD_REQUESTS: list[tuple[str, str, str, str, bytes]] = [
    ("not JSON", "POST", _S, JSON, b"{not json"),
    ("model not a string", "POST", _S, JSON, _encode({"model": 5, "messages": []})),
    ("unknown model", "POST", _S, JSON, _encode({"model": "nope", "messages": _HI})),
    ("max_tokens 0", "POST", _S, JSON, _encode({**_MOCK_HI, "max_tokens": 0})),
    ("text/plain", "POST", _S, "text/plain", b"hello"),
    ("over 1 MiB", "POST", _S, JSON, _encode({"model": "mock", "pad": "x" * (1 << 20)})),
    ("no messages", "POST", _CHAT, JSON, _encode({"model": "mock", "messages": []})),
    ("unknown role", "POST", _CHAT, JSON, _encode({"model": "mock", "messages": _WIZARD})),
    ("no messages", "POST", _MESSAGES, JSON, b'{"model": "mock", "stream": true}'),
    ("unknown session", "GET", _UNKNOWN + "/events", "", b""),
    ("unknown session", "DELETE", _UNKNOWN, "", b""),
]  # fmt: skip

SCENARIO_RUNNERS: dict[str, Callable[[Load], Awaitable[None]]] = {
    "native": native,
    "openai": lambda load: front_door(load, "openai"),
    "anthropic": lambda load: front_door(load, "anthropic"),
    "cancel": cancel,
    "slow": slow,
    "stalled": stalled,
    "bad": bad,
}
