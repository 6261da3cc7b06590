"""Settings: decoded from TOML into typed structs, then overridden from the environment.

This is the one place that reads configuration files and `os.environ`. Every option
and its default is documented in config.example.toml and docs/configuration.md.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from relay.errors import ConfigError

Port = Annotated[int, Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
PositiveSeconds = Annotated[float, Meta(gt=0)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]

# The most tokens a `mock:tokens=N` model may ask for, unless an upstream says otherwise.
MOCK_MAX_TOKENS = 100_000


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A TOML table: unknown keys are errors that name the key."""


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    # Serve `/metrics` on this port only (on `host`), not on the public one; unset: on `port`.
    metrics_port: Port | None = None
    workers: PositiveInt = 1
    max_body_bytes: PositiveInt = 1024 * 1024
    heartbeat_s: PositiveSeconds = 15.0
    retry_ms: NonNegativeInt = 1000
    # On SIGTERM: how long running generations may go on before they are cancelled.
    drain_timeout_s: Annotated[float, Meta(ge=0)] = 30.0
    demo_page: bool = True
    # Serve without [[clients]] on an address other than loopback: anyone who can reach
    # relay may then use it (see docs/security.md).
    allow_anonymous: bool = False
    # The Host headers answered (others get 421, `relay.frontdoors.hosts`). Unset: the
    # loopback names when `host` is a loopback address, else `*` (with a startup warning).
    allowed_hosts: list[str] | None = None
    # Without [[clients]]: the browser origins whose pages may call relay (CORS); none by
    # default, so no page on another site can use an open relay. With clients, each
    # client lists its own (`[[clients]] origins`).
    cors_origins: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.cors_origins = normal_origins(self.cors_origins, "server.cors_origins")
        if self.metrics_port is not None and self.metrics_port == self.port != 0:
            raise ConfigError(
                f"server.metrics_port {self.metrics_port} is server.port: leave metrics_port "
                "unset to serve /metrics on the public port, or give it a port of its own"
            )
        if self.allowed_hosts is None:
            self.allowed_hosts = default_allowed_hosts(self.host)
        if not self.allowed_hosts:
            raise ConfigError("server.allowed_hosts is empty: no browser could reach relay")
        for index, pattern in enumerate(self.allowed_hosts):
            if not HOST_PATTERN.fullmatch(pattern):
                raise ConfigError(
                    f"server.allowed_hosts[{index}] {pattern!r} is not a host: write `*`, a "
                    "name (relay.example.com), `*.example.com` for its subdomains, or an IP "
                    "address ([::1] for IPv6), without a port (any port is allowed)"
                )


# What `allowed_hosts` lists: `*`, a name, `*.` and a domain, an IPv4 or a bracketed IPv6.
HOST_PATTERN = re.compile(r"\*|(\*\.)?[^:/\s\[\]*]+|\[[0-9A-Fa-f:.]+\]")
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]


def default_allowed_hosts(host: str) -> list[str]:
    """On loopback, the names a local client sends (and `host` itself, e.g. 127.0.0.2):
    a page on another site that rebinds its DNS name to 127.0.0.1 sends its own name,
    and is refused. Beyond loopback the names clients use are not known here."""
    if not is_loopback(host):
        return ["*"]
    own = f"[{host.strip('[]')}]" if ":" in host else host.lower()
    return LOOPBACK_NAMES + ([own] if own not in LOOPBACK_NAMES else [])


# A browser's `Origin`: a scheme, a host and perhaps a port; no path, no `*`, not `null`.
ORIGIN_PATTERN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[^:/\s\[\]*?#@]+)(:[0-9]{1,5})?")


def normal_origins(origins: list[str], path: str) -> list[str]:
    """The origins as browsers send them (lower case, no trailing `/`, no default port),
    each checked."""
    normal = [_normal_origin(origin) for origin in origins]
    for index, origin in enumerate(normal):
        if not ORIGIN_PATTERN.fullmatch(origin):
            raise ConfigError(
                f"{path}[{index}] {origins[index]!r} is not an origin: write the scheme, the "
                "host and the port if it is not the scheme's default, as the browser's address "
                "bar shows them (https://chat.example.com, http://localhost:3000); no path, "
                "no `*`, not `null`"
            )
    return normal


def _normal_origin(origin: str) -> str:
    normal = origin.strip().lower().removesuffix("/")
    default_port = {"http": ":80", "https": ":443"}.get(normal.partition(":")[0], "")
    return normal.removesuffix(default_port) if default_port else normal


def is_loopback(host: str) -> bool:
    """Whether a listen address is loopback only; "" and 0.0.0.0 (every interface) or a
    name other than `localhost` (not resolved here) count as reachable from elsewhere."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class UIChatSettings(Section):
    """The Vercel AI SDK front door (relay/frontdoors/ui_chat.py)."""

    # Where its routes are: `POST {prefix}`, `GET {prefix}/{chatId}/stream`,
    # `POST {prefix}/{chatId}/stop`.
    prefix: str = "/v1/ui/chat"
    # The model of a request whose body names none; "": the body must name one.
    default_model: str = ""

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ConfigError(
                f"ui_chat.prefix {self.prefix!r} is not a path prefix: write `/` and path "
                "segments of letters, digits and `-._~`, without a trailing `/` "
                "(e.g. /v1/ui/chat or /api/chat)"
            )


PREFIX_PATTERN = re.compile(r"(/[A-Za-z0-9._~-]+)+")


class StoreSettings(Section):
    url: NonEmptyStr = "memory://"
    retention_s: PositiveSeconds = 3600.0
    max_events_per_session: Annotated[int, Meta(ge=2)] = 100_000
    max_sessions: PositiveInt = 10_000
    running_ttl_s: PositiveSeconds = 86_400.0
    # A generating instance renews its sessions' leases every lease_ttl_s / 3; a session
    # whose lease lapses (its instance died) ends with `generation_lost`.
    lease_ttl_s: PositiveSeconds = 10.0
    # Redis only: commands in flight at once, and live-tail reads at once (one per session
    # followed on this instance, however many subscribers). Connections per Redis server
    # stay within their sum, whatever the number of subscribers.
    max_connections: PositiveInt = 64
    max_blocking_reads: PositiveInt = 32
    read_batch: PositiveInt = 2000
    # The signals users send a session's producer (POST /v1/sessions/{id}/signals): past
    # this many a session takes no more (409 `signal_limit`); none is ever trimmed.
    max_signals_per_session: PositiveInt = 1000


class GenerationSettings(Section):
    flush_interval_ms: NonNegativeInt = 25
    flush_max_chars: PositiveInt = 2048
    idle_timeout_s: PositiveSeconds = 60.0
    store_retry_s: Annotated[float, Meta(ge=0)] = 10.0
    # An external producer silent this long loses its session (`producer_lost`); a
    # session may ask for its own, up to the max.
    producer_idle_timeout_s: PositiveSeconds = 60.0
    producer_idle_timeout_max_s: PositiveSeconds = 3600.0
    # A cancel reaches an external producer as a `cancel` signal; a session its producer
    # has not ended this long after it ends with `cancelled` from relay.
    producer_cancel_grace_s: PositiveSeconds = 5.0
    # A session whose upstream takes over lost generations (`[[upstreams]]
    # on_instance_loss`) keeps its request in the store for that, unless its JSON is
    # larger than this: such a session is not eligible, and ends with `generation_lost`.
    takeover_max_request_bytes: PositiveInt = 256 * 1024


class LogSettings(Section):
    level: LogLevel = LogLevel.INFO
    format: Literal["text", "json"] = "text"


ContinuationStyle = Literal["assistant_prefill", "continue_final_message", "none"]


class UpstreamSettings(Section):
    name: NonEmptyStr
    kind: Literal["openai", "anthropic", "mock"]
    base_url: str = ""
    api_key_env: str = ""
    models: list[NonEmptyStr] = msgspec.field(default_factory=list)
    # Establishing the connection; then waiting for the first streamed item.
    connect_timeout_s: PositiveSeconds = 10.0
    first_token_timeout_s: PositiveSeconds = 60.0
    # Retries of 429, 5xx and connection errors that happen before the first token.
    max_retries: NonNegativeInt = 2
    max_connections: PositiveInt = 100
    # kind openai: the name the output limit goes under. OpenAI's reasoning models (o-series,
    # gpt-5) refuse `max_tokens`; compatible servers (vLLM, Ollama) may not know the other.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # kind mock: the most tokens a model may ask for (`mock:tokens=N`); more is a 400.
    mock_max_tokens: PositiveInt = MOCK_MAX_TOKENS
    # When the instance generating a session dies: end it with `generation_lost` (`fail`),
    # or let another instance call the upstream again to continue the partial answer
    # (`continue`) or to answer again from the start (`restart`), at most
    # `max_takeovers` times per session (relay/takeover.py).
    on_instance_loss: Literal["fail", "continue", "restart"] = "fail"
    max_takeovers: NonNegativeInt = 1
    # How this upstream continues an answer relay hands it (a takeover's `continue`): the
    # answer as a final assistant message (`assistant_prefill`), the same with vLLM's flags
    # (`continue_final_message`), or not at all (`none`). Unset: what the kind can do.
    continuation: ContinuationStyle | None = None

    @property
    def continuation_style(self) -> ContinuationStyle:
        """`continuation`, or the kind's default: `openai` servers differ, so `none`."""
        if self.continuation is not None:
            return self.continuation
        return "none" if self.kind == "openai" else "assistant_prefill"


Sha256Hex = Annotated[str, Meta(pattern="^[0-9a-fA-F]{64}$")]
EnvName = Annotated[str, Meta(pattern="^[A-Za-z_][A-Za-z0-9_]*$")]


class ClientSettings(Section):
    """One frontend. Its keys: the hex SHA-256 of each (`api_key_sha256`), or the names of
    environment variables that hold one each (`api_key_env`); either may be one string or
    a list, and every key listed is accepted, which is how a key is rotated."""

    name: NonEmptyStr
    api_key_sha256: Sha256Hex | list[Sha256Hex] = msgspec.field(default_factory=list)
    api_key_env: EnvName | list[EnvName] = msgspec.field(default_factory=list)
    origins: list[NonEmptyStr] = msgspec.field(default_factory=list)
    models: list[NonEmptyStr] = msgspec.field(default_factory=lambda: ["*"])
    max_concurrent_sessions: PositiveInt | None = None
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    max_tokens: PositiveInt | None = None

    @property
    def key_digests(self) -> list[str]:
        listed = self.api_key_sha256
        return [d.lower() for d in ([listed] if isinstance(listed, str) else listed)]

    @property
    def key_variables(self) -> list[str]:
        listed = self.api_key_env
        return [listed] if isinstance(listed, str) else list(listed)


class LimitsSettings(Section):
    """Bounds on what one client may make relay hold: a hostile or broken client meets
    them, a real chat never does."""

    # One request, counted after translation, whatever the front door. Agent loops send
    # thousands of messages; 100,000 is the Anthropic API's own ceiling, and 4,000,000
    # characters fill the largest context windows (1M tokens).
    max_messages: PositiveInt = 100_000
    max_prompt_chars: PositiveInt = 4_000_000
    # `relay serve` only: what its HTTP parser reads of a request's head, and how long
    # a client may take to send the head and then the body.
    max_request_line_bytes: PositiveInt = 8190
    max_header_bytes: PositiveInt = 8190
    max_headers: PositiveInt = 128
    header_timeout_s: PositiveSeconds = 10.0
    body_timeout_s: PositiveSeconds = 30.0
    max_connections: PositiveInt = 10_000
    max_connections_per_ip: PositiveInt = 1000
    # Per instance: a session's SSE streams, and the bytes one may have waiting for its
    # socket before it is disconnected (it resumes with Last-Event-ID), or the time its
    # socket may take nothing while bytes wait.
    max_subscribers_per_session: PositiveInt = 1000
    subscriber_buffer_bytes: Annotated[int, Meta(ge=4096)] = 1 << 20
    send_timeout_s: PositiveSeconds = 60.0
    # A WebSocket frame larger than this closes the socket with 1009 (message too big).
    ws_max_message_bytes: Annotated[int, Meta(ge=1024)] = 1 << 20
    # A signal's `data` (one JSON object), as its JSON text.
    max_signal_bytes: Annotated[int, Meta(ge=64)] = 16_384


def _default_upstreams() -> list[UpstreamSettings]:
    return [UpstreamSettings(name="mock", kind="mock", models=["mock", "mock:*"])]


class Settings(Section):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    generation: GenerationSettings = msgspec.field(default_factory=GenerationSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)
    ui_chat: UIChatSettings = msgspec.field(default_factory=UIChatSettings)
    upstreams: list[UpstreamSettings] = msgspec.field(default_factory=_default_upstreams)
    clients: list[ClientSettings] = msgspec.field(default_factory=list)


# environment variable -> (section, key)
ENV_OVERRIDES = {
    "RELAY_HOST": ("server", "host"),
    "RELAY_PORT": ("server", "port"),
    "RELAY_STORE_URL": ("store", "url"),
    "RELAY_LOG_LEVEL": ("log", "level"),
}


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from a TOML file (or the defaults), then `RELAY_*` variables, then
    `overrides` (command-line flags), each validated like the file."""
    raw = _read_toml(Path(path)) if path is not None else {}
    environ = os.environ if environ is None else environ
    for variable, (section, key) in ENV_OVERRIDES.items():
        if environ.get(variable):
            raw.setdefault(section, {})[key] = _env_value(variable, environ[variable])
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping):
            raw.setdefault(section, {}).update(values)
        else:  # a whole array of tables, such as `upstreams`
            raw[section] = values
    settings = _convert(raw)
    _check_upstreams(settings.upstreams)
    _check_clients(settings.clients)
    if settings.clients and settings.server.cors_origins:
        raise ConfigError(
            "server.cors_origins is for relay without [[clients]]: with clients, list each "
            "one's browser origins in its own `origins`"
        )
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw: dict[str, Any] = msgspec.toml.decode(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return raw


def _env_value(variable: str, value: str) -> Any:
    if variable == "RELAY_PORT":
        if not value.strip().isdigit():
            raise ConfigError(f"RELAY_PORT must be a port number, got {value!r}")
        return int(value)
    if variable == "RELAY_LOG_LEVEL":
        return value.strip().lower()
    return value


def _convert(raw: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(raw, type=Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc))) from exc


_PATH = re.compile(r"at `\$((?:\.\w+|\[\d+\])*)`")


def _explain(message: str) -> str:
    """msgspec's message, with the key in TOML spelling and the allowed values or keys."""
    match = _PATH.search(message)
    dotted = match.group(1).lstrip(".") if match else ""
    allowed = _allowed_values(dotted)
    message = _PATH.sub(f"at `{dotted}`", message)
    return f"{message}; allowed: {', '.join(allowed)}" if allowed else message


def _allowed_values(dotted: str) -> list[str]:
    """For a path such as `log.format` or `upstreams[0].kind`, the values an enum allows."""
    annotation: Any = Settings
    for part in re.split(r"\.|\[\d+\]", dotted) if dotted else []:
        if not part:
            annotation = _list_item(annotation)
            continue
        hints = (
            typing.get_type_hints(annotation, include_extras=True) if _is_struct(annotation) else {}
        )
        if part not in hints:
            return []
        annotation = hints[part]
    if _is_struct(annotation):
        return list(annotation.__struct_fields__)
    return _choices(annotation)


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _list_item(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else annotation


def _choices(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # optional: unset
        return [c for arg in typing.get_args(annotation) for c in _choices(arg)]
    if typing.get_origin(annotation) is Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return []


def _check_upstreams(upstreams: list[UpstreamSettings]) -> None:
    names = [upstream.name for upstream in upstreams]
    for index, name in enumerate(names):
        if "/" in name:
            raise ConfigError(f"upstreams[{index}].name must not contain '/', got {name!r}")
        if names.index(name) != index:
            raise ConfigError(f"upstreams[{index}].name {name!r} is used twice")
    for index, upstream in enumerate(upstreams):
        if upstream.kind != "mock" and not upstream.base_url:
            raise ConfigError(f"upstreams[{index}].base_url is required for kind {upstream.kind!r}")
        if upstream.kind != "openai" and upstream.continuation == "continue_final_message":
            raise ConfigError(
                f"upstreams[{index}].continuation 'continue_final_message' is for kind 'openai'; "
                f"kind {upstream.kind!r} allows 'assistant_prefill' or 'none'"
            )


def _check_clients(clients: list[ClientSettings]) -> None:
    """Names are unique and every client has a key; that no two share one is checked
    where the keys from the environment are known too (`relay.clients.Clients`)."""
    names = [client.name for client in clients]
    for index, client in enumerate(clients):
        if names.index(client.name) != index:
            raise ConfigError(f"clients[{index}].name {client.name!r} is used twice")
        if not client.key_digests and not client.key_variables:
            raise ConfigError(f"clients[{index}] needs api_key_sha256 or api_key_env")
        client.origins = normal_origins(client.origins, f"clients[{index}].origins")


def read_client_keys(
    client: ClientSettings, path: str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The keys held by the variables the client's `api_key_env` names (`path` is the
    client's, e.g. `clients[0]`). Like upstream keys they are never part of the settings;
    a variable that is unset or blank is an error: its client could not authenticate."""
    environ = os.environ if environ is None else environ
    keys: list[str] = []
    for variable in client.key_variables:
        key = environ.get(variable, "").strip()
        if not key:
            raise ConfigError(f"{path}.api_key_env: the variable {variable} is not set or empty")
        keys.append(key)
    return keys


def read_api_key(
    upstream: UpstreamSettings, environ: Mapping[str, str] | None = None
) -> str | None:
    """The upstream's API key, from the variable its `api_key_env` names.

    None when `api_key_env` is empty or the variable is unset or blank. The key is a
    secret: it is never part of the settings, so `dump_settings` cannot print it.
    """
    if not upstream.api_key_env:
        return None
    environ = os.environ if environ is None else environ
    return environ.get(upstream.api_key_env, "").strip() or None


def upstream_proxy(
    upstream: UpstreamSettings, environ: Mapping[str, str] | None = None
) -> str | None:
    """The HTTP proxy for the upstream's `base_url`, from the environment as curl and the
    official SDKs read it: `https_proxy`/`http_proxy` by the URL's scheme (lower case wins
    over upper case), unless `no_proxy` covers its host. None: connect directly.

    Read once, here, when the provider is built. Like an API key it is never part of the
    settings: a proxy URL may carry credentials.
    """
    environ = os.environ if environ is None else environ
    proxies: dict[str, str] = {}
    for name in sorted(environ, key=str.islower):  # upper case first, lower case overrides
        if name.lower().endswith("_proxy") and environ[name].strip():
            proxies[name.lower().removesuffix("_proxy")] = environ[name].strip()
    url = urllib.parse.urlsplit(upstream.base_url)
    proxy = proxies.get(url.scheme)
    if proxy is None or _bypasses_proxy(url.hostname or "", proxies.get("no", "")):
        return None
    return proxy


def _bypasses_proxy(host: str, no_proxy: str) -> bool:
    """`no_proxy` lists `*`, or hosts and domains (`example.com` and `.example.com` both
    cover its subdomains), optionally with a port, which is ignored."""
    host = host.lower()
    for entry in no_proxy.lower().replace(" ", "").split(","):
        domain = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        domain = domain.strip("[]").lstrip(".")
        if entry == "*" or (domain and (host == domain or host.endswith("." + domain))):
            return True
    return False


# Where prometheus_client's multiprocess mode keeps the values of `--workers` (its name).
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_directory(environ: Mapping[str, str] | None = None) -> str | None:
    """The directory the workers of `relay serve --workers N` share their metrics in, set
    by the supervisor in each worker's environment; None in a single process."""
    environ = os.environ if environ is None else environ
    return environ.get(METRICS_DIR_VARIABLE) or None


def worker_environment(metrics_dir: str) -> dict[str, str]:
    """A worker's environment: this process's, with the run's metrics directory."""
    return {**os.environ, METRICS_DIR_VARIABLE: metrics_dir}


def dump_settings(settings: Settings) -> str:
    """The effective settings as indented JSON, for `relay check-config`."""
    return msgspec.json.format(msgspec.json.encode(settings), indent=2).decode()
