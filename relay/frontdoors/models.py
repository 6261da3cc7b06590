"""`GET /v1/models`: the models a client can name, in OpenAI's list format.

OpenAI-compatible clients (SDKs, chat UIs) call it to fill their model pickers. It lists
every model an upstream names literally that the client may use; glob patterns
(`gpt-4o*`) and the explicit `NAME/MODEL` form route too, but cannot be enumerated.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.frontdoors.auth import client_of
from relay.frontdoors.http import json_response
from relay.providers.router import ModelEntry
from relay.services import SERVICES

routes = web.RouteTableDef()


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    client = client_of(request)
    entries = request.app[SERVICES].router.list_models()
    allowed = [e for e in entries if client.allows(e.upstream, e.id)]
    return json_response({"object": "list", "data": [model_object(e) for e in allowed]})


def model_object(entry: ModelEntry) -> dict[str, Any]:
    # `created` is required by the format; relay does not know when a model was made.
    return {"id": entry.id, "object": "model", "created": 0, "owned_by": entry.upstream}
