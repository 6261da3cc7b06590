"""Taking over the generation of a session whose instance was lost.

Each upstream says what happens when the instance generating one of its sessions dies
(`[[upstreams]] on_instance_loss`): `fail` ends the session with `generation_lost`, as
it always did; `continue` and `restart` let another instance call the upstream again,
at most `max_takeovers` times per session, and the reader's stream goes on.

What a takeover needs is kept from the start: for an upstream whose policy is not
`fail`, the session's normalised request (`TakeoverRequest`: the upstream, and the
request as the provider is handed it; never a client's key, which a request does not
hold) is encoded once at creation and kept by the store beside the record
(`takeover_ticket`, `Store.create`), so that reading a record costs no more. A request
larger than `generation.takeover_max_request_bytes` is not kept: its session is not
eligible, and the log says so once.

When the lease reaper finds a lapsed lease (`Takeovers.take_over`), an eligible session
is claimed in the store (`Store.claim_lease`: atomic, so exactly one instance takes it
over, and it counts the takeover in the record). The new owner reads what the log holds
so far and runs the generation here, its log going on at the next id after the status
`taken_over` (and, for `restart`, `restarted`, so that a UI can clear the partial text):
`continue` asks the upstream to continue the stored text (`GenerationRequest.prefill`:
only text; the tool calls stored stay, and new ones are numbered after them), where its
provider can (`Provider.supports_continuation`; elsewhere it restarts); `restart` asks
again from the start. The usage of the session adds up every call's (as far as
each reported it) and says how many takeovers there were (`TakenOverUsage`).
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import msgspec

from relay import metrics
from relay.clients import Client, Clients
from relay.config import Settings, UpstreamSettings
from relay.errors import UnknownModel
from relay.events import RESTARTED, TAKEN_OVER, Event, EventType, StatusData, Usage
from relay.off_loop import MANY_MESSAGES, off_loop
from relay.providers.router import ModelRouter, Route
from relay.runner import GenerationRunner, ResumePoint
from relay.session import SessionRecord
from relay.store import Store
from relay.vocabulary import GenerationRequest, session_tag

log = logging.getLogger(__name__)

Policy = Literal["fail", "continue", "restart"]

_SEAM_MESSAGES = {
    "continue": "the instance generating this session stopped; another continues the answer",
    "restart": "the instance generating this session stopped; another answers again from the start",
}


class TakeoverRequest(msgspec.Struct):
    """What a session keeps for a takeover: its upstream and the request it was sent."""

    upstream: str
    request: GenerationRequest


_decode_request = msgspec.json.Decoder(TakeoverRequest).decode
_decode_usage = msgspec.json.Decoder(Usage).decode  # a `TakenOverUsage`'s count is the claim's


def upstream_settings(settings: Settings, name: str) -> UpstreamSettings | None:
    return next((upstream for upstream in settings.upstreams if upstream.name == name), None)


def policy_of(upstream: UpstreamSettings | None) -> Policy:
    """What a loss of its instance does to a session of `upstream`."""
    if upstream is None or upstream.max_takeovers == 0:
        return "fail"
    return upstream.on_instance_loss


async def takeover_ticket(
    settings: Settings, upstream: str, request: GenerationRequest, session_id: str
) -> bytes | None:
    """What the store keeps for a takeover of a new session of `upstream` (None: not
    eligible, or its upstream's policy is `fail`)."""
    if policy_of(upstream_settings(settings, upstream)) == "fail":
        return None
    encode = functools.partial(msgspec.json.encode, TakeoverRequest(upstream, request))
    encoded = await off_loop(encode, large=len(request.messages) > MANY_MESSAGES)
    cap = settings.generation.takeover_max_request_bytes
    if len(encoded) > cap:
        log.info(
            "session %s cannot be taken over should its instance be lost: its request is "
            "%d bytes, over generation.takeover_max_request_bytes (%d)",
            session_tag(session_id), len(encoded), cap,
        )  # fmt: skip
        return None
    return encoded


class LogSoFar:
    """What a lost generation had stored: its text, tool calls and the usage reported."""

    def __init__(self) -> None:
        self.last_event_id = 0
        self.pieces: list[str] = []
        self.tool_calls = 0
        self.usage = Usage()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, events: list[Event]) -> None:
        for event in events:
            if event.type is EventType.DELTA:
                self.pieces.append(str(event.decoded_data()["text"]))
            elif event.type is EventType.TOOL_CALL:
                self.tool_calls += 1
            elif event.type is EventType.USAGE:  # the totals so far: the last one counts
                self.usage = _decode_usage(event.data)
        if events:
            self.last_event_id = events[-1].id


def continuation(request: GenerationRequest, so_far: LogSoFar, route: Route) -> GenerationRequest:
    """The lost call's request, asking for the rest of `so_far`'s text. `max_tokens` caps
    what a continuation adds, so it is what the client allowed less what was stored (the
    lost call's usage, else the provider's estimate); at least 1, an upstream refuses 0."""
    text = so_far.text
    limit = request.max_tokens
    if limit is not None:
        used = so_far.usage.output_tokens or route.provider.tokens_in(text)
        limit = max(limit - used, 1)
    return msgspec.structs.replace(request, prefill=text, max_tokens=limit)


def seam(policy: Policy) -> list[StatusData]:
    """The statuses that mark where a taken-over generation joins its log."""
    statuses = [StatusData(TAKEN_OVER, _SEAM_MESSAGES[policy])]
    if policy == "restart":
        statuses.append(StatusData(RESTARTED, "the answer starts again from the beginning"))
    return statuses


def _feasible(policy: Policy, route: Route, session_id: str) -> Policy:
    """`continue` where the upstream can continue an answer, else `restart`."""
    if policy == "continue" and not route.provider.supports_continuation(route.model):
        log.warning(
            "session %s: upstream %s cannot continue an answer (its `continuation` is "
            "none); restarting it instead",
            session_tag(session_id), route.upstream,
        )  # fmt: skip
        return "restart"
    return policy


class Takeovers:
    """The lease reaper's other way out (relay/leases.py): take a lost generation over."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        runner: GenerationRunner,
        router: ModelRouter,
        clients: Clients,
    ) -> None:
        self._settings = settings
        self._store = store
        self._runner = runner
        self._router = router
        self._clients = clients

    async def take_over(self, record: SessionRecord) -> bool:
        """Take the lost generation of `record` over, if its upstream's policy allows it
        and it has takeovers left. True when the session is taken care of (this instance
        took it over, or another won the claim); False: end it with `generation_lost`."""
        if record.is_external:
            return False
        ticket = await self._ticket(record)
        if ticket is None:
            return False
        upstream = upstream_settings(self._settings, ticket.upstream)
        policy = policy_of(upstream)
        if policy == "fail" or upstream is None or record.takeovers >= upstream.max_takeovers:
            return False
        started = self._starting_parts(record, ticket)
        if started is None:
            return False
        takeovers = await self._store.claim_lease(
            record.id, self._runner.instance_id, upstream.max_takeovers
        )
        if takeovers:
            await self._run_here(record, ticket, policy, takeovers, started)
        return True

    async def _ticket(self, record: SessionRecord) -> TakeoverRequest | None:
        kept = await self._store.read_takeover(record.id)
        if kept is None:
            return None
        try:
            return _decode_request(kept)
        except msgspec.DecodeError:  # written by another version of relay
            log.warning("session %s: its takeover request is unreadable", session_tag(record.id))
            return None

    def _starting_parts(
        self, record: SessionRecord, ticket: TakeoverRequest
    ) -> tuple[Route, Client] | None:
        """The route and client to run it with; None when the configuration no longer
        has them (the session is then lost)."""
        client = self._clients.named(record.client)
        try:
            route = self._router.resolve(f"{ticket.upstream}/{ticket.request.model}")
        except UnknownModel:
            route = None
        if client is None or route is None:
            tag = session_tag(record.id)
            log.warning("session %s: its upstream or client is no longer configured", tag)
            return None
        return route, client

    async def _run_here(
        self,
        record: SessionRecord,
        ticket: TakeoverRequest,
        policy: Policy,
        takeovers: int,
        started: tuple[Route, Client],
    ) -> None:
        route, client = started
        policy = _feasible(policy, route, record.id)
        so_far = await self._log_so_far(record.id)
        request = ticket.request
        if policy == "continue":
            request = continuation(request, so_far, route)
        resume = ResumePoint(
            last_event_id=so_far.last_event_id,
            seam=seam(policy),
            usage_before=so_far.usage,
            tool_calls_before=so_far.tool_calls,
            takeovers=takeovers,
        )
        self._runner.take_over(record, route, request, resume, client=client)
        metrics.taken_over(route.upstream, policy)

    async def _log_so_far(self, session_id: str) -> LogSoFar:
        """The lost generation's log, folded a batch at a time."""
        so_far = LogSoFar()
        batch = self._settings.store.read_batch
        while events := await self._store.read(session_id, so_far.last_event_id, batch):
            so_far.add(events)
            if len(events) < batch:
                break
        return so_far
