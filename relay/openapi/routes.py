"""`GET /openapi.json` and `GET /docs`: the API description and its page.

Both are built once, on the first request, and then served as the same bytes.
"""

from __future__ import annotations

import functools

import msgspec
from aiohttp import web

from relay.openapi import docs_page, spec

routes = web.RouteTableDef()


@functools.cache
def document() -> bytes:
    return msgspec.json.encode(spec.build())


@functools.cache
def page() -> bytes:
    return docs_page.render(msgspec.json.decode(document())).encode()


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(body=page(), content_type="text/html", charset="utf-8")
