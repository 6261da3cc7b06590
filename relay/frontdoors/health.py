"""Liveness and readiness probes, and the demo page."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from relay.errors import StoreUnavailable
from relay.frontdoors.http import json_response
from relay.services import SERVICES

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers; `instance` tells instances apart."""
    return json_response({"status": "ok", "instance": request.app[SERVICES].instance_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """This instance can serve: not draining, and its store answers."""
    services = request.app[SERVICES]
    if services.draining:
        return json_response({"status": "draining"}, status=503)
    try:
        await services.store.ping()
    except StoreUnavailable as exc:
        return json_response({"status": "store_unavailable", "message": str(exc)}, status=503)
    return json_response({"status": "ready"})


def demo_page_route() -> web.RouteDef:
    page = resources.files("relay.web").joinpath("index.html").read_bytes()

    async def demo_page(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    return web.get("/", demo_page)
