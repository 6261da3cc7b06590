"""The Host check: relay answers only for the names in `[server] allowed_hosts`.

A page on any site can rebind its DNS name to an address relay listens on (127.0.0.1, a
LAN address) and have the browser send it requests whose answers the page may read: they
are same-origin to it. The browser still sends the page's own name in `Host`, so refusing
the names relay does not serve closes that route to an open relay. Every route is
checked, `/healthz` too: a load balancer whose health check sends another name lists it.
A request without a Host header (HTTP/1.0) is not a browser's and passes.

Refusals are 421 Misdirected Request in relay's JSON error shape, code `host_not_allowed`,
answered (by `relay.app`'s one middleware, `host_refusal` first) before any route runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aiohttp import hdrs, web

from relay.config import ServerSettings, is_loopback
from relay.frontdoors.http import error_response

MAX_QUOTED_HOST_CHARS = 100


class AllowedHosts:
    """`*`; names (`relay.example.com`, `127.0.0.1`, `[::1]`); `*.example.com`, which is
    any subdomain of example.com. Any port; case and a trailing dot do not matter."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = list(patterns)
        self.any = "*" in self.patterns
        names = [_normal(pattern) for pattern in self.patterns if not pattern.startswith("*")]
        self._names = frozenset(names)
        self._domains = tuple(_normal(p[1:]) for p in self.patterns if p.startswith("*."))

    @classmethod
    def of(cls, server: ServerSettings) -> AllowedHosts:
        return cls(server.allowed_hosts or [])  # never None once the settings are made

    def allows(self, host_header: str) -> bool:
        if self.any:
            return True
        name = host_of(host_header)
        return name in self._names or name.endswith(self._domains)


def host_of(host_header: str) -> str:
    """The host of a Host header, without its port: `[::1]:8080` → `[::1]`."""
    header = host_header.strip()
    if header.startswith("["):
        return _normal(header[: header.find("]") + 1])  # "" when the bracket is unclosed
    return _normal(header.partition(":")[0])


def _normal(name: str) -> str:
    return name.lower().removesuffix(".")


def host_refusal(allowed: AllowedHosts) -> Callable[[web.Request], web.Response | None]:
    """The 421 for a request whose Host `allowed` does not list, else None."""

    def refusal(request: web.Request) -> web.Response | None:
        host = request.headers.get(hdrs.HOST)
        if host is None or allowed.allows(host):
            return None
        quoted = repr(host[:MAX_QUOTED_HOST_CHARS])
        message = f"relay does not answer for the host {quoted}: it is not in server.allowed_hosts"
        return error_response(421, "host_not_allowed", message)

    return refusal


def exposure(server: ServerSettings) -> tuple[int, str]:
    """The startup log's level and line saying who can reach relay, by which names."""
    allowed = AllowedHosts.of(server)
    hosts = "any" if allowed.any else ", ".join(allowed.patterns)
    if is_loopback(server.host):
        return logging.INFO, f"listening on loopback only; Host headers answered: {hosts}"
    line = f"listening on {server.host or 'every interface'}, reachable from other machines"
    if allowed.any:
        advice = "set [server] allowed_hosts to the names clients use"
        return logging.WARNING, f"{line}; any Host header is answered: {advice}"
    return logging.INFO, f"{line}; Host headers answered: {hosts}"
