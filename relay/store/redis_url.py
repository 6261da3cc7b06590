"""Redis store URLs: which shape of Redis to use and how to reach it. Pure: no I/O.

    redis://[user:password@]host[:port][/db]                        one server
    unix://[user:password@]/path/to/redis.sock[?db=N]               one server, Unix socket
    redis+sentinel://[user:password@]host[:port][,host[:port]…]/master_name[/db]
    redis+cluster://[user:password@]host[:port][,host[:port]…]

`rediss://`, `rediss+sentinel://` and `rediss+cluster://` are the same over TLS (for
Sentinel, to the Sentinels and the servers alike). A Sentinel URL lists Sentinels, not
servers: they name the current master, so a failover is followed. A Cluster URL lists
startup nodes; the rest of the cluster is discovered from them. Credentials are the
servers'; Sentinels that require a password of their own take it as
`?sentinel_password=`. Ports default to 6379 (26379 for Sentinels); the user, password
and path may be percent-encoded. TLS URLs take `ssl_ca_certs`, `ssl_certfile`,
`ssl_keyfile`, `ssl_cert_reqs` (`required`, `optional`, `none`) and
`ssl_check_hostname` (`true`, `false`) as query options.

Every problem is a `ConfigError` that names the part at fault and never repeats a password.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from relay.errors import ConfigError

__all__ = ["REDIS_SCHEMES", "HostPort", "RedisAddress", "Topology", "parse_redis_url"]


class Topology(enum.StrEnum):
    SERVER = "server"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class HostPort(NamedTuple):
    host: str
    port: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisAddress:
    """Where the store's Redis is: everything its URL says, checked."""

    topology: Topology
    tls: bool = False
    # The server, the Sentinels, or the Cluster's startup nodes; empty for a Unix socket.
    hosts: tuple[HostPort, ...] = ()
    socket_path: str | None = None
    db: int = 0
    master_name: str | None = None  # Sentinel only
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    # In the types redis-py takes: str, or bool for ssl_check_hostname.
    tls_options: Mapping[str, str | bool] = dataclasses.field(default_factory=dict)


# scheme -> (topology, tls)
_SCHEMES: Mapping[str, tuple[Topology, bool]] = {
    "redis": (Topology.SERVER, False),
    "rediss": (Topology.SERVER, True),
    "unix": (Topology.SERVER, False),
    "redis+sentinel": (Topology.SENTINEL, False),
    "rediss+sentinel": (Topology.SENTINEL, True),
    "redis+cluster": (Topology.CLUSTER, False),
    "rediss+cluster": (Topology.CLUSTER, True),
}
REDIS_SCHEMES = tuple(f"{scheme}://" for scheme in _SCHEMES)

_DEFAULT_PORT = 6379
_SENTINEL_PORT = 26379
_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
_CERT_REQS = ("required", "optional", "none")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_EXPECTED = {
    Topology.SERVER: "redis://host:port/db",
    Topology.SENTINEL: "redis+sentinel://host:26379[,host:26379…]/master_name[/db]",
    Topology.CLUSTER: "redis+cluster://host:port[,host:port…]",
}


class _Location(NamedTuple):
    hosts: tuple[HostPort, ...] = ()
    socket_path: str | None = None
    db: int = 0
    master_name: str | None = None


def parse_redis_url(url: str) -> RedisAddress:
    """The address a Redis store URL names; `ConfigError` for anything else."""
    scheme = _scheme(url)
    topology, tls = _SCHEMES[scheme]
    parts = _split(url)
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    options = _options(parts.query, _allowed_options(scheme, topology, tls))
    if scheme == "unix":
        location = _unix_location(netloc, parts.path, options.pop("db", "0"))
    else:
        location = _network_location(netloc, parts.path, topology)
    return RedisAddress(
        topology=topology,
        tls=tls,
        hosts=location.hosts,
        socket_path=location.socket_path,
        db=location.db,
        master_name=location.master_name,
        username=username,
        password=password,
        sentinel_password=options.pop("sentinel_password", None),
        tls_options={name: _tls_option(name, value) for name, value in options.items()},
    )


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() in _SCHEMES:
        return scheme.lower()
    # Only the scheme is repeated: the rest may hold a password.
    problem = f"scheme {scheme + sep!r} is not a Redis scheme" if sep else "has no scheme"
    raise ConfigError(f"store.url {problem}; allowed: {', '.join(REDIS_SCHEMES)}")


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise ConfigError(f"store.url is malformed: {exc}") from exc
    if parts.fragment:
        raise ConfigError("store.url must not have a #fragment")
    return parts


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    username, _, password = userinfo.partition(":")
    return unquote(username) or None, unquote(password) or None


def _network_location(netloc: str, path: str, topology: Topology) -> _Location:
    default_port = _SENTINEL_PORT if topology is Topology.SENTINEL else _DEFAULT_PORT
    hosts = _hosts(netloc, default_port, topology)
    segments = [unquote(segment) for segment in path.split("/") if segment]
    if topology is Topology.SENTINEL:
        return _sentinel_location(hosts, segments)
    if len(segments) > 1:
        raise ConfigError(f"store.url path has too many parts; expected {_EXPECTED[topology]}")
    db = _db(segments[0]) if segments else 0
    if db and topology is Topology.CLUSTER:
        raise ConfigError(f"store.url selects database {db}; Redis Cluster has only database 0")
    return _Location(hosts=hosts, db=db)


def _sentinel_location(hosts: tuple[HostPort, ...], segments: list[str]) -> _Location:
    if not segments:
        raise ConfigError(
            f"store.url names no Sentinel master; expected {_EXPECTED[Topology.SENTINEL]}"
        )
    if len(segments) > 2:
        raise ConfigError(
            f"store.url path has too many parts; expected {_EXPECTED[Topology.SENTINEL]}"
        )
    db = _db(segments[1]) if len(segments) == 2 else 0
    return _Location(hosts=hosts, db=db, master_name=segments[0])


def _hosts(netloc: str, default_port: int, topology: Topology) -> tuple[HostPort, ...]:
    if not netloc:
        raise ConfigError(f"store.url names no host; expected {_EXPECTED[topology]}")
    hosts = tuple(_host_port(item, default_port) for item in netloc.split(","))
    if len(hosts) > 1 and topology is Topology.SERVER:
        raise ConfigError(
            f"store.url lists {len(hosts)} hosts; only redis+sentinel:// and "
            "redis+cluster:// URLs take several (comma-separated)"
        )
    return hosts


def _host_port(item: str, default_port: int) -> HostPort:
    """`host`, `host:port`, `[v6 address]` or `[v6 address]:port`."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ConfigError(f"store.url host {item!r} is malformed")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ConfigError(f"store.url has an empty host in {item!r}")
    return HostPort(unquote(host), _port(port_text, host) if port_text else default_port)


def _port(text: str, host: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"store.url port {text!r} of host {host!r} is not from 1 to 65535")
    return int(text)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"store.url database {text!r} is not a number")
    return int(text)


def _unix_location(netloc: str, path: str, db: str) -> _Location:
    if netloc:
        raise ConfigError("store.url: a unix:// URL takes a socket path, not a host")
    if not path.strip("/"):
        raise ConfigError("store.url names no socket path; expected unix:///path/to/redis.sock")
    return _Location(socket_path=unquote(path), db=_db(db))


def _allowed_options(scheme: str, topology: Topology, tls: bool) -> tuple[str, ...]:
    allowed: tuple[str, ...] = _TLS_OPTIONS if tls else ()
    if topology is Topology.SENTINEL:
        allowed += ("sentinel_password",)
    if scheme == "unix":
        allowed += ("db",)
    return allowed


def _options(query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query options, each one this kind of URL takes, given once."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigError(f"store.url query is malformed: {exc}") from exc
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise ConfigError(_unknown_option(name, allowed))
        if name in options:
            raise ConfigError(f"store.url option {name!r} is given twice")
        options[name] = value
    return options


def _unknown_option(name: str, allowed: tuple[str, ...]) -> str:
    if name in _TLS_OPTIONS:
        return f"store.url option {name!r} needs a TLS scheme (rediss://, rediss+…://)"
    choices = ", ".join(allowed) if allowed else "none"
    return f"store.url option {name!r} is not supported here; allowed: {choices}"


def _tls_option(name: str, value: str) -> str | bool:
    if name == "ssl_check_hostname":
        if value.lower() not in _BOOLEANS:
            raise ConfigError(f"store.url option {name} must be true or false, got {value!r}")
        return _BOOLEANS[value.lower()]
    if name == "ssl_cert_reqs" and value not in _CERT_REQS:
        raise ConfigError(
            f"store.url option {name} must be one of {', '.join(_CERT_REQS)}, got {value!r}"
        )
    if not value:
        raise ConfigError(f"store.url option {name} is empty")
    return value
