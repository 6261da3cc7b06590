"""`/static/{name}`: the files of `relay.web` with a listed suffix, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relay.app import create_app
from relay.config import load_settings
from relay.frontdoors.static import content_type_of


@pytest.fixture
async def http() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    client = TestClient(TestServer(create_app(load_settings(None, environ={}))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("relay-client.js", "text/javascript; charset=utf-8"),
        ("relay-client.d.ts", "text/plain; charset=utf-8"),
    ],
)
async def test_a_listed_file_is_served_as_it_is(
    http: TestClient,  # type: ignore[type-arg]
    name: str,
    content_type: str,
) -> None:
    response = await http.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.read() == resources.files("relay.web").joinpath(name).read_bytes()


async def test_an_unchanged_file_is_a_304_by_its_etag(http: TestClient) -> None:  # type: ignore[type-arg]
    first = await http.get("/static/relay-client.js")
    etag = first.headers["ETag"]
    again = await http.get("/static/relay-client.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert await again.read() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",  # in the package, but not a listed suffix: `/` serves it
        "/static/__init__.py",
        "/static/missing.js",
        "/static/..%2F__init__.py",
        "/static/%2e%2e/config.py",
        "/static/../app.py",
        "/static/",
    ],
)
async def test_anything_else_is_a_404(http: TestClient, path: str) -> None:  # type: ignore[type-arg]
    response = await http.get(path)
    assert response.status == 404
    assert "error" in await response.json()


def test_the_suffixes_decide_what_is_served() -> None:
    assert content_type_of("chat.css") == "text/css; charset=utf-8"
    assert content_type_of("chat.js") == "text/javascript; charset=utf-8"
    assert content_type_of("x.d.ts") == "text/plain; charset=utf-8"
    assert content_type_of("x.ts") is None
    assert content_type_of("index.html") is None


async def test_no_static_files_without_the_demo_page() -> None:
    settings = load_settings(None, environ={}, overrides={"server": {"demo_page": False}})
    async with TestClient(TestServer(create_app(settings))) as client:
        assert (await client.get("/static/relay-client.js")).status == 404
