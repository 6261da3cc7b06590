"""Liveness and readiness probes, Prometheus metrics, and the demo page.

`/metrics` is served without a key, like the probes: it is for the scraper, on the
public port only while `[server] metrics_port` is unset (then the route template of
every answered request is counted, `relay_http_requests_total`, never its raw path).
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

from aiohttp import web

from relay import metrics
from relay.errors import StoreUnavailable
from relay.frontdoors.http import json_response
from relay.services import SERVICES

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# How long `/readyz` waits for the store's answer: within the 1 s a probe usually allows,
# with room to spare, whatever the store does (a frozen Redis holds a ping for as long as
# the client's socket timeout).
READINESS_PING_S = 0.5


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers; `instance` tells instances apart."""
    return json_response({"status": "ok", "instance": request.app[SERVICES].instance_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """This instance can serve: not draining, and its store answers within
    READINESS_PING_S. The answer never names the store's address."""
    services = request.app[SERVICES]
    if services.draining:
        return json_response({"status": "draining"}, status=503)
    try:
        async with asyncio.timeout(READINESS_PING_S):
            await services.store.ping()
    except TimeoutError:
        return _store_unavailable(f"the event store did not answer within {READINESS_PING_S:g} s")
    except StoreUnavailable as exc:
        log.debug("not ready: %s", exc)  # the reason may name the store's host
        return _store_unavailable("the event store is unreachable")
    return json_response({"status": "ready"})


def _store_unavailable(message: str) -> web.Response:
    return json_response({"status": "store_unavailable", "message": message}, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    """Every metric in Prometheus's text format (docs/operations.md lists them)."""
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


METRICS_ROUTE = web.get("/metrics", metrics_page)

# The route label of a request that matched no route (its path is never a label).
UNMATCHED_ROUTE = "unmatched"


def count_response(request: web.Request, response: web.StreamResponse) -> None:
    """Count an answer by its route's template (`/v1/sessions/{session_id}`) and status,
    when its headers go out (a stream's too)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED_ROUTE
    metrics.http_response(route, response.status)


def demo_page_route() -> web.RouteDef:
    page = resources.files("relay.web").joinpath("index.html").read_bytes()

    async def demo_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    return web.get("/", demo_page)
