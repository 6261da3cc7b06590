"""Who is asking: the client key a request carries, or the read token it shows, read
once here for every front door.

Keys come as `Authorization: Bearer <key>` on every route, and as `x-api-key: <key>`
(what the Anthropic SDK sends) where the front door says so; `Authorization` wins when
both are sent. With `[[clients]]` configured a request without a key is a 401
`missing_api_key`, one with a key that no client has a 401 `invalid_api_key`; raised
inside a provider-format handler, the 401 is in that format's error shape. With no
clients every request is the anonymous client's. Whether the caller may see a session
is decided in one place, `relay.sessions.Sessions.find`.

Once the client is known, so is whether the request's page may call relay for it: a
cross-origin request from an origin the client does not list is a 403
`origin_not_allowed` (`relay.frontdoors.cors.check_origin`), raised here so that it
too is in the front door's shape.
"""

from __future__ import annotations

from aiohttp import web

from relay import log_context
from relay.clients import CHALLENGE, Caller, Client
from relay.errors import ApiError
from relay.frontdoors.cors import check_origin
from relay.services import SERVICES


def client_of(request: web.Request, *, x_api_key: bool = False) -> Client:
    """The client whose key the request carries (`x_api_key`: also in that header)."""
    client = _authenticated(request, x_api_key=x_api_key)
    log_context.note(client=client.name)
    check_origin(request, client)
    return client


def _authenticated(request: web.Request, *, x_api_key: bool) -> Client:
    clients = request.app[SERVICES].clients
    if clients.anonymous:
        return clients.anonymous_client
    key = presented_key(request, x_api_key=x_api_key)
    if key is None:
        header = "Authorization: Bearer <key>" + (" or x-api-key: <key>" if x_api_key else "")
        message = f"this request needs an API key: send {header}"
        raise ApiError(401, "missing_api_key", message, headers=CHALLENGE)
    client = clients.authenticate(key)
    if client is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid", headers=CHALLENGE)
    return client


def caller_of(request: web.Request, *, read_token: bool = False) -> Caller:
    """Who asks about a session: a client by its key, or (where `read_token` says the
    endpoint takes one) whoever shows `?token=` and no key: the page's origin is then
    checked once the session, and so its owner, is known (`check_owner_origin`)."""
    token = request.query.get("token") if read_token else None
    clients = request.app[SERVICES].clients
    if not clients.anonymous and token is not None and presented_key(request) is None:
        return Caller(None, token)
    return Caller(client_of(request), token)


def check_owner_origin(request: web.Request, caller: Caller, owner: str) -> None:
    """For a caller that only a read token let in: the page must be on an origin of the
    client that owns the session (`owner`, its name), so that a leaked token cannot be
    used by another site's page."""
    if caller.client is None:
        check_origin(request, request.app[SERVICES].clients.named(owner), by_token=True)


def presented_key(request: web.Request, *, x_api_key: bool = False) -> str | None:
    """The key sent, else None. An `Authorization` header that is not `Bearer <key>`
    is an invalid key, never a missing one: it was meant as a credential."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            message = "Authorization must be 'Bearer <key>'"
            raise ApiError(401, "invalid_api_key", message, headers=CHALLENGE)
        return key.strip()
    if x_api_key:
        return request.headers.get("x-api-key", "").strip() or None
    return None
