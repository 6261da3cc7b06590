"""CORS: which other sites' pages may call relay, per client (docs/security.md, CORS).

A request whose `Origin` is relay's own (the demo page at `/`, `/docs`), or that has no
`Origin` (servers, SDKs, curl), is not a cross-origin one and nothing here applies. For
the rest:

- A preflight (`OPTIONS` with `Access-Control-Request-Method`) carries no key, so it
  cannot say which client it is for: it is answered 204 when *some* client lists the
  origin (the methods of the route, the headers relay and the official SDKs send, and
  how long the browser may keep the answer), else 403 `origin_not_allowed`.
- A real request is checked against its own client once it is known
  (`check_origin`: by its key, or for a read token by the client that owns the
  session); an origin its client does not list is a 403 `origin_not_allowed`.
- Every answer to an origin that some client lists carries `Access-Control-Allow-Origin`
  with that origin (never `*`) and exposes relay's headers, errors included, so the page
  can read why it failed: an answer with a session's data is only ever made once the
  request's own client has allowed the origin. The routes that take no key (`/healthz`,
  `/openapi.json`, `/docs` …) answer every origin, readable only by the listed ones.
  `Vary: Origin` is on every answer, for caches.

`Access-Control-Allow-Credentials` is never sent: relay authenticates with a header or
a read token, never a cookie, so a page has no reason to send credentials.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable

from aiohttp import hdrs, web

from relay.clients import Client, Clients
from relay.errors import ApiError
from relay.frontdoors.http import error_response

# What a page may send: relay's own headers, and those the official SDKs send from a
# browser (the Anthropic and OpenAI TypeScript SDKs, Stainless-made: their platform,
# retry and helper headers; the AI SDK's providers add to User-Agent).
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    "X-Request-Id",
    "Accept",
    "User-Agent",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "OpenAI-Organization",
    "OpenAI-Project",
    "OpenAI-Beta",
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Retry-Count",
    "X-Stainless-Timeout",
    "X-Stainless-Helper",
    "X-Stainless-Helper-Method",
    "X-Stainless-Poll-Helper",
    "X-Stainless-Custom-Poll-Interval",
)
# What a page may read of an answer beyond the CORS-safelisted headers.
EXPOSED_HEADERS = (
    "X-Relay-Session-Id", "Location", "Retry-After", "X-Relay-Instance", "X-Request-Id",
)  # fmt: skip
# Chromium keeps a preflight's answer at most 2 hours; every real request is checked
# again, so keeping it long costs nothing when an origin is removed.
PREFLIGHT_MAX_AGE_S = 7200
MAX_QUOTED_ORIGIN_CHARS = 100


def cross_origin(request: web.Request) -> str | None:
    """The request's `Origin` when it is another site's, else None (no `Origin`, or the
    host and port relay was reached at). The scheme is not compared: behind a proxy that
    ends TLS, relay sees plain HTTP for a page that is https."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return None
    host = request.headers.get(hdrs.HOST, "").strip().lower()
    return None if host and _host_of(origin) == host else origin


def _host_of(origin: str) -> str:
    try:
        return urllib.parse.urlsplit(origin.strip()).netloc.lower()
    except ValueError:  # an unclosed `[`: no host relay could have
        return ""


def check_origin(request: web.Request, client: Client | None, *, by_token: bool = False) -> None:
    """Refuse a cross-origin request whose origin `client` does not list (None: no
    client owns what was asked for). `by_token`: a read token let the request in; the
    answer then does not name the session's owner."""
    origin = cross_origin(request)
    if origin is None or (client is not None and client.allows_origin(origin)):
        return
    raise OriginNotAllowed(origin, client, by_token=by_token)


class OriginNotAllowed(ApiError):
    """403: a page on an origin that may not call relay as this client (None: as any)."""

    def __init__(self, origin: str, client: Client | None, *, by_token: bool = False) -> None:
        quoted = repr(origin[:MAX_QUOTED_ORIGIN_CHARS])
        if by_token:
            message = f"pages on {quoted} may not read this session"
        elif client is None:
            message = f"pages on {quoted} may not call relay: no client lists it in its origins"
        elif client.name == "":
            message = f"pages on {quoted} may not call relay: list it in [server] cors_origins"
        else:
            message = f"pages on {quoted} may not call relay as client {client.name!r}"
        super().__init__(403, "origin_not_allowed", message)


def is_preflight(request: web.Request) -> bool:
    return request.method == hdrs.METH_OPTIONS and (
        hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def preflight_answer(clients: Clients) -> Callable[[web.Request], web.Response | None]:
    """The answer to a CORS preflight to a path relay has, else None (the request goes
    on: to its handler, or to the router's 404)."""

    def answer(request: web.Request) -> web.Response | None:
        origin = cross_origin(request) if is_preflight(request) else None
        methods = route_methods(request) if origin is not None else None
        if origin is None or methods is None:
            return None
        if not clients.any_allows_origin(origin):
            anyone = clients.anonymous_client if clients.anonymous else None
            refused = OriginNotAllowed(origin, anyone)
            return error_response(refused.status, refused.code, refused.message)
        return web.Response(status=204, headers=preflight_headers(methods))

    return answer


def route_methods(request: web.Request) -> list[str] | None:
    """The methods of the route the request's path names, else None (no such path). No
    route takes OPTIONS, so the router's answer to one is a 405 that lists them."""
    refusal = getattr(request.match_info, "http_exception", None)
    if not isinstance(refusal, web.HTTPMethodNotAllowed):
        return None
    return sorted(refusal.allowed_methods)


def preflight_headers(methods: Iterable[str]) -> dict[str, str]:
    return {
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(methods),
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
        hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
    }


ResponseHook = Callable[[web.Request, web.StreamResponse], None]


def answer_headers(clients: Clients) -> ResponseHook:
    """What adds the CORS headers to every answer as it is prepared (`on_response_prepare`),
    streams included (they are prepared inside their handlers, after any middleware ran)."""

    def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        _vary_on_origin(response)
        origin = cross_origin(request)
        if origin is not None and clients.any_allows_origin(origin):
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)

    return add_cors_headers


def _vary_on_origin(response: web.StreamResponse) -> None:
    """Add `Origin` to `Vary`: a cache must not hand one site's answer to another."""
    vary = response.headers.get(hdrs.VARY)
    if vary is None:
        response.headers[hdrs.VARY] = "Origin"
    elif "origin" not in (name.strip().lower() for name in vary.split(",")):
        response.headers[hdrs.VARY] = f"{vary}, Origin"
