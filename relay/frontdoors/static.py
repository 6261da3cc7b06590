"""The demo page's static files at `/static/{name}`: every file of the `relay.web`
package whose suffix is listed in CONTENT_TYPES (`relay-client.js`, its `.d.ts`, the
page's scripts and styles), read once when the app is built.

Only those names are served: a name is looked up in that table, never joined to a
path, so nothing outside the package can be reached. Like the demo page, the files
need no key; they are the same for everyone and hold no secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from relay.errors import ApiError

PACKAGE = "relay.web"

# Longest suffix first: `.d.ts` is TypeScript declarations, shown as text in a browser.
CONTENT_TYPES = {
    ".d.ts": "text/plain; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def content_type_of(name: str) -> str | None:
    return next((kind for suffix, kind in CONTENT_TYPES.items() if name.endswith(suffix)), None)


def package_files() -> dict[str, StaticFile]:
    """Every servable file of the package, by name."""
    files = {}
    for entry in resources.files(PACKAGE).iterdir():
        content_type = content_type_of(entry.name)
        if content_type is not None and entry.is_file():
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            files[entry.name] = StaticFile(body, content_type, etag)
    return files


def static_route() -> web.RouteDef:
    files = package_files()

    async def static_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = files.get(name)
        if found is None:
            raise ApiError(404, "not_found", f"no static file {name[:100]!r}")
        # no-cache: a browser revalidates each time (a 304 by the ETag), so a new
        # relay's files are never mixed with an old cached one.
        headers = {"Cache-Control": "no-cache", "ETag": found.etag}
        if found.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = found.content_type
        return web.Response(body=found.body, headers=headers)

    return web.get("/static/{name}", static_file)
