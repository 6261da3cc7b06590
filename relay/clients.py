"""Client keys: which frontend a request comes from, and what that frontend may do.

`Clients` is the registry built from `[[clients]]`: the SHA-256 digests of every key,
compared in constant time. A `Client` knows the models it may use, its `max_tokens`
cap, its quotas (relay/quotas.py) and the browser origins whose pages may call relay
for it (CORS, `relay.frontdoors.cors`); a `Caller` is who asks about a session: a client,
or only a session's read token. With no clients configured relay is anonymous: every
request is the anonymous client's (its origins are `[server] cors_origins`), and it may
serve only on a loopback address unless `[server] allow_anonymous` says otherwise
(`check_exposure`). Pure: no I/O (the keys in the environment are read by relay.config).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence

import msgspec

from relay.config import ClientSettings, ServerSettings, Settings, is_loopback, read_client_keys
from relay.errors import ApiError, ConfigError
from relay.quotas import QuotaLimits

__all__ = [
    "ANONYMOUS",
    "CHALLENGE",
    "Caller",
    "Client",
    "Clients",
    "check_exposure",
]

# The header of every 401 (RFC 6750): the scheme relay wants.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="relay"'}


class Client(msgspec.Struct, frozen=True):
    """A frontend. `name` is what its sessions are recorded under ("" when anonymous)."""

    name: str
    models: tuple[str, ...] = ("*",)
    max_tokens: int | None = None
    # As browsers send them in `Origin` (relay.config normalises the configured ones).
    origins: frozenset[str] = frozenset()
    quota: QuotaLimits = QuotaLimits()

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> Client:
        quota = QuotaLimits(
            settings.max_concurrent_sessions,
            settings.requests_per_minute,
            settings.tokens_per_minute,
        )
        origins = frozenset(settings.origins)
        return cls(settings.name, tuple(settings.models), settings.max_tokens, origins, quota)

    def allows_origin(self, origin: str) -> bool:
        """Whether a page on `origin` may call relay as this client."""
        return origin.lower() in self.origins

    def allows(self, upstream: str, model: str) -> bool:
        """Whether the client may have `upstream` generate with `model` (the name it is
        sent). A pattern matches the model, whichever upstream serves it; one written
        `UPSTREAM/MODEL` also matches the upstream and the model each on its own, so that
        no `*` stretches over the `/`: `gpt-*` does not let `gpt-proxy/claude-opus` through."""
        return any(_matches(pattern, upstream, model) for pattern in self.models)

    def check_model(self, model: str, upstream: str, sent_as: str) -> None:
        """Refuse `model` (as the request names it) unless the client may use its route."""
        if not self.allows(upstream, sent_as):
            allowed = ", ".join(self.models)
            raise ApiError(
                403,
                "model_not_allowed",
                f"model {model!r} is not allowed for client {self.name!r}; allowed: {allowed}",
            )

    def capped(self, max_tokens: int | None) -> int | None:
        """The output limit sent upstream: the request's, at most the client's cap."""
        if self.max_tokens is None:
            return max_tokens
        return self.max_tokens if max_tokens is None else min(max_tokens, self.max_tokens)


ANONYMOUS = Client("")


def _matches(pattern: str, upstream: str, model: str) -> bool:
    if fnmatch.fnmatchcase(model, pattern):
        return True
    upstream_pattern, slash, model_pattern = pattern.partition("/")
    return bool(slash) and (
        fnmatch.fnmatchcase(upstream, upstream_pattern)
        and fnmatch.fnmatchcase(model, model_pattern)
    )


class Caller(msgspec.Struct, frozen=True):
    """Who asks about a session: the client its key named (None when it showed only a
    read token), and the read token it showed, if the endpoint takes one."""

    client: Client | None
    read_token: str | None = None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Clients:
    """The key registry: each key's SHA-256 digest and the client it belongs to."""

    def __init__(
        self, keys: Sequence[tuple[bytes, Client]] = (), anonymous_origins: Sequence[str] = ()
    ) -> None:
        self._keys = list(keys)
        self.names = list(dict.fromkeys(client.name for _, client in self._keys))
        # Who a request is when no clients are configured: no key, the open origins.
        self.anonymous_client = Client("", origins=frozenset(anonymous_origins))
        self._by_name = {client.name: client for _, client in self._keys}
        self._origins = frozenset().union(*(c.origins for c in self._by_name.values()))
        self._origins |= self.anonymous_client.origins if self.anonymous else frozenset()

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Clients:
        """The registry of `[[clients]]`, with the keys their `api_key_env` variables hold;
        a key that two clients share is an error (it could not tell them apart)."""
        keys: list[tuple[bytes, Client]] = []
        owners: dict[bytes, int] = {}
        for index, entry in enumerate(settings.clients):
            client = Client.from_settings(entry)
            env_keys = read_client_keys(entry, f"clients[{index}]", environ)
            digests = [bytes.fromhex(d) for d in entry.key_digests] + [_digest(k) for k in env_keys]
            for digest in digests:
                if owners.setdefault(digest, index) != index:
                    message = f"clients[{index}] has a key of clients[{owners[digest]}]"
                    raise ConfigError(message)
                keys.append((digest, client))
        return cls(keys, settings.server.cors_origins)

    @property
    def anonymous(self) -> bool:
        return not self._keys

    def named(self, name: str) -> Client | None:
        """The client that sessions recorded as `name` belong to (`""`: anonymous)."""
        if self.anonymous:
            return self.anonymous_client if name == "" else None
        return self._by_name.get(name)

    def any_allows_origin(self, origin: str) -> bool:
        """Whether some client (or, anonymous, `cors_origins`) lists `origin`: all that
        is known of a request before it has shown a key, such as a CORS preflight."""
        return origin.lower() in self._origins

    def authenticate(self, key: str) -> Client | None:
        """The client whose key this is, else None. The presented key's digest is compared
        with every digest, each in constant time, and the loop never stops early: how long
        it takes says nothing about which key, or how much of one, matched."""
        presented = _digest(key)
        found: Client | None = None
        for digest, client in self._keys:
            if hmac.compare_digest(digest, presented):
                found = client
        return found

    def access_mode(self, server: ServerSettings) -> tuple[int, str]:
        """The startup log's level and line saying who may use relay."""
        if not self.anonymous:
            count = f"{len(self.names)} client" + ("s" if len(self.names) > 1 else "")
            return logging.INFO, f"access: {count} ({', '.join(self.names)}), each with its keys"
        if is_loopback(server.host):
            return logging.INFO, "access: anonymous (no [[clients]]), on loopback only"
        return logging.WARNING, (
            f"access: anonymous (no [[clients]]) on {server.host} (server.allow_anonymous): "
            "anyone who can reach it can use relay"
        )


def check_exposure(server: ServerSettings, clients: Clients) -> None:
    """Refuse to serve anonymously beyond loopback unless `allow_anonymous` says so."""
    if clients.anonymous and not server.allow_anonymous and not is_loopback(server.host):
        raise ConfigError(
            f"server.host {server.host!r} is not a loopback address and no [[clients]] are "
            "configured: add [[clients]] with API keys, or set [server] allow_anonymous = true "
            "to let anyone who can reach it use relay"
        )
