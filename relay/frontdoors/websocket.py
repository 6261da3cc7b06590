"""The WebSocket API: `GET /v1/ws`, several sessions on one socket (docs/api.md, WebSocket).

A socket carries JSON text frames both ways (CONTRACT.md, "WebSocket messages"): a
client starts sessions (`start`, the fields of `POST /v1/sessions`; the starter is
subscribed), follows them (`subscribe` from an event id: the same replay, then live,
then the terminal event as the SSE endpoint, through the same feeds), stops following
(`unsubscribe`), cancels them (`cancel`: the `cancelled` event reaches every subscriber,
on every instance, through the log) and checks the socket (`ping` → `pong`). A bad
message is answered with an `error` message naming its problem; the socket stays usable.

Who asks is decided as for HTTP: the `Authorization` header of the upgrade, else (a
browser cannot set headers on a WebSocket) a first message `{"type": "auth", "key"}`,
or a read token on `subscribe`. Another client's session is "not found"; a page on an
origin that its client does not list is refused.

The socket is bounded like an SSE stream: a frame larger than
`limits.ws_max_message_bytes` closes it with 1009 (aiohttp's `max_msg_size`); a client
that reads nothing is dropped once relay holds `limits.subscriber_buffer_bytes` for one
of its subscriptions, or its socket took nothing for `limits.send_timeout_s` while bytes
waited; server pings every `server.heartbeat_s` find dead peers. Closing the socket
ends only its subscriptions, never a generation. At shutdown a socket delivers what its
sessions wrote (their `cancelled` events), then closes with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Annotated, Any

import msgspec
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from relay import metrics
from relay.clients import Caller, Client
from relay.errors import ApiError, StoreError
from relay.events import Event
from relay.frontdoors.auth import check_owner_origin, client_of
from relay.frontdoors.cors import OriginNotAllowed, check_origin, cross_origin
from relay.frontdoors.http import decode_json, translated
from relay.frontdoors.native import CreateSessionBody
from relay.off_loop import LARGE_BODY_BYTES, off_loop
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers.sse import ResponseConnection, StallWatch
from relay.tasks import cancel_and_wait
from relay.vocabulary import GenerationRequest, session_tag

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# At shutdown, how long a socket waits for its subscriptions to deliver their last
# events before it closes with 1001: within the app's grace (`SUBSCRIBER_GRACE_S`).
DRAIN_WAIT_S = 0.5
# What the encoder puts between two messages in a feed's chunk: JSON has no raw newline.
SEPARATOR = b"\n"


# --- client → relay ----------------------------------------------------------------


class Envelope(msgspec.Struct):
    """What every message has: its type (the rest is decoded once the type is known)."""

    type: str


class StartMessage(CreateSessionBody, tag="start", tag_field="type"):
    """`start`: the body of `POST /v1/sessions`, flat."""


class SubscribeMessage(
    msgspec.Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True
):
    session: str
    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    token: str | None = None


class UnsubscribeMessage(
    msgspec.Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True
):
    session: str


class CancelMessage(msgspec.Struct, tag="cancel", tag_field="type", forbid_unknown_fields=True):
    session: str


class SignalMessage(msgspec.Struct, tag="signal", tag_field="type", forbid_unknown_fields=True):
    """`signal`: as `POST /v1/sessions/{id}/signals`, for the socket's client or a token."""

    session: str
    data: dict[str, Any]
    token: str | None = None


class PingMessage(msgspec.Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    pass


class AuthMessage(msgspec.Struct, tag="auth", tag_field="type", forbid_unknown_fields=True):
    key: str


ClientMessage = (
    StartMessage
    | SubscribeMessage
    | UnsubscribeMessage
    | CancelMessage
    | SignalMessage
    | PingMessage
    | AuthMessage
)
MESSAGE_TYPES: dict[str, type[ClientMessage]] = {
    "start": StartMessage,
    "subscribe": SubscribeMessage,
    "unsubscribe": UnsubscribeMessage,
    "cancel": CancelMessage,
    "signal": SignalMessage,
    "ping": PingMessage,
    "auth": AuthMessage,
}


def decode_message(raw: bytes) -> ClientMessage:
    """A client's frame as its message; an `ApiError` that names what is wrong."""
    envelope = decode_json(raw, Envelope)
    message_type = MESSAGE_TYPES.get(envelope.type)
    if message_type is None:
        allowed = ", ".join(MESSAGE_TYPES)
        raise ApiError(
            400, "unknown_type", f"type must be one of {allowed}, got {envelope.type[:100]!r}"
        )
    return decode_json(raw, message_type)


# --- relay → client ----------------------------------------------------------------


class SessionMessage(msgspec.Struct, tag="session", tag_field="type"):
    session: str


class EventMessage(msgspec.Struct, tag="event", tag_field="type"):
    session: str
    id: int
    event: str
    data: msgspec.Raw


class ErrorMessage(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    session: str | None = None


class PongMessage(msgspec.Struct, tag="pong", tag_field="type"):
    pass


_encode = msgspec.json.Encoder().encode


def _generation_request(raw: bytes, message: StartMessage) -> GenerationRequest:
    return message.generation_request(message.model)


def error_message(exc: ApiError, session_id: str | None = None) -> ErrorMessage:
    return ErrorMessage(exc.code, exc.message, session_id)


class EventFrames:
    """The feed encoder of one session's events on a socket: each event as its `event`
    message, ended by `SEPARATOR` (a feed joins the frames of a batch in one chunk)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    def __call__(self, event: Event) -> bytes:
        message = EventMessage(self.session_id, event.id, event.type.value, event.data)
        return _encode(message) + SEPARATOR


def messages_in(chunk: bytes) -> list[bytes]:
    """The messages of a feed's chunk; a feed's idle beat (an SSE `: ping`) is none."""
    return [line for line in chunk.split(SEPARATOR) if line and not line.startswith(b":")]


def upgrade_required() -> ApiError:
    return ApiError(
        426,
        "upgrade_required",
        "/v1/ws is a WebSocket: open it with Upgrade: websocket (a browser's new WebSocket(url))",
        headers={"Upgrade": "websocket"},
    )


MISSING_KEY = (
    'this socket has no API key: send {"type": "auth", "key": <key>} first, or open it'
    " with Authorization: Bearer <key>"
)


# --- the socket --------------------------------------------------------------------


class Socket:
    """One client's socket: who it is, its subscriptions (a task per session) and the
    tasks its messages started; it owns them all and ends them when it closes."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, client: Client | None):
        self.request = request
        self.ws = ws
        self.client = client
        self.services: Services = request.app[SERVICES]
        self.connection = ResponseConnection(request.transport)
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # Cancels asked for: they go through even when the socket closes meanwhile.
        self.cancels: set[asyncio.Task[None]] = set()
        self._watch: StallWatch | None = None

    async def run(self) -> None:
        limits = self.services.settings.limits
        self._watch = StallWatch(self.connection, limits.send_timeout_s)
        self._start(self._close_when_draining())
        try:
            async for frame in self.ws:
                await self._receive(frame)
        except ConnectionError:  # dropped while answering a message
            log.debug("a websocket went away while relay answered it")
        finally:
            self._watch.stop()
            await cancel_and_wait({*self.subscriptions.values(), *self.tasks})
            if self.cancels:  # each waits at most `cancel_wait_s`
                await asyncio.wait(set(self.cancels))

    async def _receive(self, frame: WSMessage) -> None:
        if frame.type is WSMsgType.BINARY:
            await self.send(ErrorMessage("invalid_message", "send JSON in text frames, not binary"))
            return
        if frame.type is not WSMsgType.TEXT:
            return
        raw = frame.data.encode()
        try:
            # A large `start` is decoded in a worker thread, as a large HTTP body is.
            message = await off_loop(
                lambda: decode_message(raw), large=len(raw) >= LARGE_BODY_BYTES
            )
        except ApiError as exc:
            await self.send(error_message(exc))
            return
        try:
            await self._handle(message)
        except ApiError as exc:
            await self.send(error_message(exc, getattr(message, "session", None)))

    async def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, StartMessage):
            await self._start_session(message)
        elif isinstance(message, SubscribeMessage):
            await self._subscribe(message)
        elif isinstance(message, UnsubscribeMessage):
            await self._unsubscribe(message.session)
        elif isinstance(message, CancelMessage):
            self._start(self._cancel(message.session), self.cancels)
        elif isinstance(message, SignalMessage):
            record = await self._readable(message.session, message.token)
            await self.services.sessions.external.signal(record, message.data)
        elif isinstance(message, AuthMessage):
            await self._authenticate(message.key)
        else:
            await self.send(PongMessage())

    # --- messages ----------------------------------------------------------------

    async def _start_session(self, message: StartMessage) -> None:
        client = self._client()
        generation = translated(_generation_request, b"", message)
        created = await self.services.sessions.create(message.model, generation, client)
        await self.send(SessionMessage(created.record.id))
        self._follow(created.record, 0)

    async def _subscribe(self, message: SubscribeMessage) -> None:
        if message.session in self.subscriptions:
            raise ApiError(409, "already_subscribed", "this socket already follows this session")
        record = await self._readable(message.session, message.token)
        after = min(message.after, self.services.settings.store.max_events_per_session)
        if record.status.is_final and after >= record.last_event_id:
            ended = (
                f"the session ended with event {record.last_event_id}: nothing comes after {after}"
            )
            await self.send(ErrorMessage("session_ended", ended, record.id))
            return
        self._follow(record, after)

    async def _unsubscribe(self, session_id: str) -> None:
        task = self.subscriptions.pop(session_id, None)
        if task is None:
            raise ApiError(
                404, "not_subscribed", f"this socket does not follow {session_id[:100]!r}"
            )
        await cancel_and_wait({task})

    async def _cancel(self, session_id: str) -> None:
        sessions = self.services.sessions
        try:
            record = await sessions.find(session_id, caller=Caller(self._client()))
            await sessions.cancel(record)
        except ApiError as exc:
            await self._send_quietly(error_message(exc, session_id))

    async def _authenticate(self, key: str) -> None:
        if self.client is not None:
            raise ApiError(409, "already_authenticated", "this socket has its client already")
        client = self.services.clients.authenticate(key)
        try:
            if client is None:
                raise ApiError(401, "invalid_api_key", "the API key is not valid")
            check_origin(self.request, client)
        except ApiError as exc:
            await self.send(error_message(exc))
            await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=exc.code.encode())
            return
        self.client = client

    def _client(self) -> Client:
        if self.client is None:
            raise ApiError(401, "missing_api_key", MISSING_KEY)
        return self.client

    async def _readable(self, session_id: str, token: str | None) -> SessionRecord:
        """The session, if this socket's client owns it or `token` is its read token."""
        if self.client is None and token is None:
            raise ApiError(401, "missing_api_key", MISSING_KEY)
        caller = Caller(self.client, token)
        record = await self.services.sessions.find(session_id, caller=caller)
        check_owner_origin(self.request, caller, record.client)
        return record

    # --- subscriptions -----------------------------------------------------------

    def _follow(self, record: SessionRecord, after: int) -> None:
        task = asyncio.create_task(
            self._subscription(record.id, after), name=f"relay-ws-{session_tag(record.id)}"
        )
        self.subscriptions[record.id] = task
        task.add_done_callback(lambda done: self._forget(record.id, done))

    def _forget(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self.subscriptions.get(session_id) is task:
            del self.subscriptions[session_id]

    async def _subscription(self, session_id: str, after: int) -> None:
        """The session's events after `after` to this socket, up to its terminal one."""
        try:
            async with self.services.counted_stream(session_id):
                with metrics.subscribed("websocket", "native"):
                    await self._deliver(session_id, after)
        except ApiError as exc:  # too many subscribers
            await self._send_quietly(error_message(exc, session_id))
        except StoreError as exc:
            log.warning(
                "websocket subscription to %s ended early: %s", session_tag(session_id), exc
            )
            ended = ErrorMessage(
                "store_unavailable",
                "relay could not read this session; subscribe again with after",
                session_id,
            )
            await self._send_quietly(ended)
        except ConnectionError:
            log.debug("websocket subscriber of %s went away", session_tag(session_id))

    async def _deliver(self, session_id: str, after: int) -> None:
        frames = self.services.feeds.frames(
            session_id, after, EventFrames(session_id), connection=self.connection
        )
        async with contextlib.aclosing(frames):
            async for chunk in frames:
                for message in messages_in(chunk):
                    await self._send_frame(message)
                    if self._watch is not None:
                        self._watch.wrote()

    # --- sending, tasks, shutdown ------------------------------------------------

    async def send(self, message: msgspec.Struct) -> None:
        await self._send_frame(_encode(message))

    async def _send_frame(self, frame: bytes) -> None:
        """Send one message, unless the socket's client left more than the bound
        (`limits.subscriber_buffer_bytes`) unread: the socket is then dropped. The
        subscriptions' feeds bound what waits in their inboxes; this bounds the socket,
        whose writes aiohttp buffers without waiting for most of them."""
        unsent = self.connection.unsent()
        if unsent >= self.services.settings.limits.subscriber_buffer_bytes:
            log.info(
                "disconnected a websocket that reads too slowly: %d bytes waited for it"
                " (limits.subscriber_buffer_bytes)",
                unsent,
            )
            self.connection.drop()
            raise ConnectionResetError("the client read too slowly")
        await self.ws.send_frame(frame, WSMsgType.TEXT)

    async def _send_quietly(self, message: msgspec.Struct) -> None:
        with contextlib.suppress(ConnectionError):
            await self.send(message)

    def _start(
        self, work: Coroutine[object, object, None], owner: set[asyncio.Task[None]] | None = None
    ) -> None:
        tasks = self.tasks if owner is None else owner
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _close_when_draining(self) -> None:
        """At shutdown: let subscriptions deliver the last events, then close with 1001."""
        await self.services.shutting_down.wait()
        if self.subscriptions:
            await asyncio.wait(set(self.subscriptions.values()), timeout=DRAIN_WAIT_S)
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"relay is shutting down")


def upgrade_client(request: web.Request) -> Client | None:
    """The client the upgrade's `Authorization` header names (or the anonymous one);
    None when the socket is to authenticate in a message. Such a socket from another
    site's page is refused at once unless some client lists that page's origin."""
    clients = request.app[SERVICES].clients
    if clients.anonymous or "Authorization" in request.headers:
        return client_of(request)
    origin = cross_origin(request)
    if origin is not None and not clients.any_allows_origin(origin):
        raise OriginNotAllowed(origin, None)
    return None


@routes.get("/v1/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    client = upgrade_client(request)
    ws = web.WebSocketResponse(
        heartbeat=services.settings.server.heartbeat_s,
        compress=False,
        max_msg_size=services.settings.limits.ws_max_message_bytes,
    )
    if not ws.can_prepare(request).ok:
        raise upgrade_required()
    await ws.prepare(request)
    async with services.subscriber(request):
        await Socket(request, ws, client).run()
    return ws
