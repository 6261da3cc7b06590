"""`SSEClient`: the HTTP boundary to one upstream. POST a JSON request, read an SSE answer.

One `aiohttp.ClientSession` (one connection pool, aiohttp's C HTTP parser) per upstream,
reused by every generation; built by `client_session`, the one place that decides how
relay reaches upstreams:

- a request holds one of the upstream's `connection_slots` (`max_connections` of them)
  from before it goes out until its response is closed. A request that finds none free
  waits for one, and its provider can tell first (`connection_slots.locked()`); the
  slot outlives the pooled connection it stands for (aiohttp returns that at the end of
  the body, before the response is closed), so aiohttp's own limit, the same number,
  never makes a request wait unseen;
- only connecting is bounded (`connect_timeout_s`, waiting for a free pool slot not
  included): the first item is bounded by `retry.py`'s `first_token_timeout_s`, and the
  silence between items by the runner's `idle_timeout_s`, so a long answer is never cut;
- redirects are not followed: a redirect is an `upstream_redirect` failure, so the
  upstream's key never travels to another origin (docs/security.md says why);
- requests go through `proxy` when the environment names one for the upstream
  (`relay.config.upstream_proxy`, read once). aiohttp's own `trust_env` is off: it would
  look the proxy up again on every request, in a thread, and it also reads `~/.netrc`,
  whose entries clash with the upstream's own credentials.

aiohttp's exceptions are translated here, once, into `UpstreamFailed` (chained with
`raise … from exc`), as are non-2xx answers, with the upstream's own message and its
`Retry-After`. The answer's body is read by its reader (`UpstreamProvider`), a chunk at a
time (`read_chunk`), into its own `SSEDecoder`: one loop per token, not a stack of async
generators. Closing the response (`open`'s) of an unfinished answer closes its
connection, so the upstream stops generating, not returned to the pool.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping

import aiohttp
import msgspec
from yarl import URL

from relay.config import UpstreamSettings
from relay.providers.failures import (
    REDIRECT_STATUSES,
    ConnectionFault,
    Failure,
    UpstreamFailed,
    connection_failure,
    redirect_failure,
    status_failure,
    timeout_failure,
)

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024  # of an error answer: enough for any message worth showing

_TRANSPORT_ERRORS = (aiohttp.ClientError, ssl.SSLError)

JSON_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}


def client_session(upstream: UpstreamSettings, proxy: str | None = None) -> aiohttp.ClientSession:
    """The upstream's one connection pool (`max_connections`), through `proxy` if given."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=upstream.max_connections),
        # Not `connect=`: aiohttp's connect timeout includes waiting for a pool slot.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_s),
        proxy=proxy,
    )


class SSEClient:
    """POSTs to one URL of one upstream, with that upstream's headers."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        url: str,
        headers: Mapping[str, str],
        *,
        proxy: str | None = None,
    ) -> None:
        self._upstream = upstream
        self._proxy = proxy
        self._url = URL(url)
        self._headers = {**JSON_HEADERS, **headers}
        self._session: aiohttp.ClientSession | None = None  # made in the running event loop
        # Held by the caller from before `open()` until its response is closed: see the
        # module's docstring.
        self.connection_slots = asyncio.Semaphore(upstream.max_connections)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, body: bytes) -> aiohttp.ClientResponse:
        """The answer to `body`, its status checked: its body is read with `read_chunk`
        and closing it closes the connection. Raises `UpstreamFailed`."""
        if self._session is None:
            self._session = client_session(self._upstream, self._proxy)
        try:
            response = await self._session.post(
                self._url, data=body, headers=self._headers, allow_redirects=False
            )
        except _TRANSPORT_ERRORS as exc:
            raise UpstreamFailed(transport_failure(exc)) from exc
        if response.status in REDIRECT_STATUSES:
            response.close()
            self._log_redirect(response)
            raise UpstreamFailed(redirect_failure(response.status))
        if not 200 <= response.status < 300:
            try:
                raise UpstreamFailed(await _status_failure(response))
            finally:
                response.close()
        return response

    def _log_redirect(self, response: aiohttp.ClientResponse) -> None:
        log.warning(
            "upstream %s answered a redirect (HTTP %d) to %s; relay does not follow "
            "redirects: fix its base_url",
            self._upstream.name,
            response.status,
            redirect_origin(response.url, response.headers.get("Location", "")),
        )


def redirect_origin(url: URL, location: str) -> str:
    """Where a redirect points, for the operator: only its origin, which holds no secret."""
    try:
        return str(url.join(URL(location)).origin())
    except ValueError:
        return "an unreadable location"


def transport_failure(exc: Exception) -> Failure:
    """What an aiohttp (or TLS) exception means; its text is not repeated: it may name
    the upstream's address."""
    if isinstance(exc, aiohttp.ServerTimeoutError):  # only connecting has a timeout
        return timeout_failure()
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return connection_failure(ConnectionFault.CONNECT)
    return connection_failure(ConnectionFault.READ)


async def read_chunk(response: aiohttp.ClientResponse) -> bytes:
    """The next bytes of the body as they arrive; b"" at its end. Raises `UpstreamFailed`."""
    try:
        return await response.content.readany()
    except _TRANSPORT_ERRORS as exc:
        raise UpstreamFailed(transport_failure(exc)) from exc


async def _status_failure(response: aiohttp.ClientResponse) -> Failure:
    """A non-2xx answer, with the message of its body (JSON, else text)."""
    raw = await _bounded_body(response, MAX_ERROR_BODY_BYTES)
    body: object
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = raw.decode("utf-8", "replace")
    return status_failure(response.status, body, response.headers)


async def _bounded_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await read_chunk(response)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]
