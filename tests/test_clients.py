"""Client keys, model patterns, the max_tokens cap and the anonymous exposure rule:
pure code, no event loop; and `[[clients]]` in the config."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from relay.clients import ANONYMOUS, Client, Clients, check_exposure
from relay.config import ServerSettings, Settings, is_loopback, load_settings
from relay.errors import ApiError, ConfigError

WEB_KEY = "web-key-0123456789abcdef"
WEB_NEXT_KEY = "web-key-next-0123456789"
MOBILE_KEY = "mobile-key-0123456789ab"
TOML_LINE = re.compile(r"^# (\[\[clients\]\]$|\w+ = )")


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def settings(*clients: dict[str, Any], **server: Any) -> Settings:
    overrides: dict[str, Any] = {"clients": list(clients), "server": server}
    return load_settings(None, environ={}, overrides=overrides)


def two_clients(environ: dict[str, str] | None = None) -> Clients:
    configured = settings(
        {"name": "web", "api_key_sha256": [sha256(WEB_KEY), sha256(WEB_NEXT_KEY)]},
        {"name": "mobile", "api_key_env": "MOBILE_KEY"},
    )
    return Clients.from_settings(configured, {"MOBILE_KEY": MOBILE_KEY, **(environ or {})})


# --- keys -------------------------------------------------------------------------------


def test_each_key_names_its_client() -> None:
    clients = two_clients()
    assert clients.names == ["web", "mobile"]
    named = [c.name if c else None for c in map(clients.authenticate, (WEB_KEY, MOBILE_KEY))]
    assert named == ["web", "mobile"]


def test_every_listed_key_is_accepted_during_a_rotation() -> None:
    clients = two_clients()
    for key in (WEB_KEY, WEB_NEXT_KEY):
        client = clients.authenticate(key)
        assert client is not None and client.name == "web"


@pytest.mark.parametrize("key", ["", "web", WEB_KEY + " ", WEB_KEY.upper(), sha256(WEB_KEY)])
def test_any_other_key_is_no_client(key: str) -> None:
    assert two_clients().authenticate(key) is None


def test_a_digest_may_be_upper_case_hex() -> None:
    configured = settings({"name": "web", "api_key_sha256": sha256(WEB_KEY).upper()})
    client = Clients.from_settings(configured, {}).authenticate(WEB_KEY)
    assert client is not None and client.name == "web"


def test_api_key_env_may_name_several_variables() -> None:
    configured = settings({"name": "web", "api_key_env": ["WEB_KEY", "WEB_KEY_NEXT"]})
    clients = Clients.from_settings(configured, {"WEB_KEY": WEB_KEY, "WEB_KEY_NEXT": "k2" * 9})
    assert [bool(clients.authenticate(k)) for k in (WEB_KEY, "k2" * 9, "k3")] == [True, True, False]


def test_a_key_variable_that_is_not_set_is_a_config_error_naming_it() -> None:
    configured = settings({"name": "web", "api_key_env": "RELAY_WEB_KEY"})
    for environ in ({}, {"RELAY_WEB_KEY": "  "}):
        with pytest.raises(ConfigError) as raised:
            Clients.from_settings(configured, environ)
        assert str(raised.value) == (
            "clients[0].api_key_env: the variable RELAY_WEB_KEY is not set or empty"
        )


def test_two_clients_cannot_share_a_key() -> None:
    configured = settings(
        {"name": "web", "api_key_sha256": sha256(WEB_KEY)},
        {"name": "mobile", "api_key_env": "MOBILE_KEY"},
    )
    with pytest.raises(ConfigError, match=r"clients\[1\] has a key of clients\[0\]"):
        Clients.from_settings(configured, {"MOBILE_KEY": WEB_KEY})


def test_the_startup_line_says_which_mode_relay_runs_in() -> None:
    loopback = ServerSettings()
    assert two_clients().access_mode(loopback) == (
        logging.INFO,
        "access: 2 clients (web, mobile), each with its keys",
    )
    assert Clients().access_mode(loopback) == (
        logging.INFO,
        "access: anonymous (no [[clients]]), on loopback only",
    )
    level, line = Clients().access_mode(ServerSettings(host="0.0.0.0", allow_anonymous=True))
    assert level == logging.WARNING and "anyone who can reach it" in line


# --- models and max_tokens --------------------------------------------------------------


def test_models_are_glob_patterns_on_the_model_or_on_upstream_slash_model() -> None:
    client = Client("web", models=("mock:*", "openai/*", "meta-llama/*"))
    assert client.allows("mock", "mock:tokens=3")
    assert client.allows("openai", "gpt-4o")
    assert client.allows("openrouter", "meta-llama/llama-3")  # a model name with a slash
    assert not client.allows("mock", "mock")
    assert not client.allows("anthropic", "claude-3")


def test_no_star_stretches_over_the_slash() -> None:
    client = Client("web", models=("gpt-*", "claude/claude-3-*"))
    assert client.allows("openai", "gpt-4o")
    assert client.allows("any-upstream", "gpt-4o")  # a model pattern: whichever upstream
    # What `gpt-proxy/claude-opus` routes to: upstream gpt-proxy, sent claude-opus.
    assert not client.allows("gpt-proxy", "claude-opus")
    assert client.allows("claude", "claude-3-haiku")
    assert not client.allows("claude", "claude-opus")
    assert not client.allows("claude-eu", "claude-3-haiku")


def test_by_default_a_client_may_use_every_model() -> None:
    assert Client("web").allows("up", "anything")
    assert ANONYMOUS.allows("up", "any/thing")


def test_a_model_not_allowed_is_a_403_naming_the_model_and_the_patterns() -> None:
    with pytest.raises(ApiError) as raised:
        Client("web", models=("mock:*",)).check_model("gpt-4o", "openai", "gpt-4o")
    error = raised.value
    assert (error.status, error.code) == (403, "model_not_allowed")
    assert error.message == "model 'gpt-4o' is not allowed for client 'web'; allowed: mock:*"


@pytest.mark.parametrize(
    ("cap", "asked", "sent"),
    [(None, None, None), (None, 500, 500), (100, None, 100), (100, 500, 100), (100, 20, 20)],
)
def test_max_tokens_is_capped_never_refused(
    cap: int | None, asked: int | None, sent: int | None
) -> None:
    assert Client("web", max_tokens=cap).capped(asked) == sent


# --- anonymous exposure -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "relay.internal"])
def test_addresses_reachable_from_elsewhere(host: str) -> None:
    assert not is_loopback(host)


def test_anonymous_beyond_loopback_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        check_exposure(ServerSettings(host="0.0.0.0"), Clients())
    assert str(raised.value).startswith(
        "server.host '0.0.0.0' is not a loopback address and no [[clients]] are configured"
    )
    assert "allow_anonymous = true" in str(raised.value)


def test_clients_or_allow_anonymous_let_relay_serve_beyond_loopback() -> None:
    check_exposure(ServerSettings(host="0.0.0.0"), two_clients())
    check_exposure(ServerSettings(host="0.0.0.0", allow_anonymous=True), Clients())
    check_exposure(ServerSettings(), Clients())


# --- the config section -----------------------------------------------------------------


def test_a_client_entry_with_every_option() -> None:
    entry = {
        "name": "web",
        "api_key_sha256": sha256(WEB_KEY),
        "origins": ["https://chat.example.com"],
        "models": ["mock:*"],
        "max_concurrent_sessions": 20,
        "requests_per_minute": 600,
        "tokens_per_minute": 100_000,
        "max_tokens": 4096,
    }
    (client,) = settings(entry).clients
    assert client.key_digests == [sha256(WEB_KEY)]
    assert (client.origins, client.models) == (["https://chat.example.com"], ["mock:*"])
    quotas = (client.max_concurrent_sessions, client.requests_per_minute, client.tokens_per_minute)
    assert quotas == (20, 600, 100_000)
    assert client.max_tokens == 4096


def test_a_client_entry_has_defaults() -> None:
    (client,) = settings({"name": "web", "api_key_env": "WEB_KEY"}).clients
    assert client.models == ["*"] and client.origins == [] and client.max_tokens is None
    assert client.key_variables == ["WEB_KEY"] and client.key_digests == []
    assert settings().clients == [] and settings().server.allow_anonymous is False


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "web"}, "clients[0] needs api_key_sha256 or api_key_env"),
        ({"name": "web", "api_key_sha256": "abc"}, "at `clients[0].api_key_sha256`"),
        (
            {"name": "web", "api_key_sha256": [sha256("a"), "xyz"]},
            "at `clients[0].api_key_sha256[1]`",
        ),
        ({"name": "web", "api_key_env": "not a name"}, "at `clients[0].api_key_env`"),
        ({"name": "", "api_key_env": "K"}, "at `clients[0].name`"),
        ({"name": "web", "api_key_env": "K", "max_tokens": 0}, "at `clients[0].max_tokens`"),
        ({"name": "web", "api_key_env": "K", "key": "x"}, "unknown field `key` - at `clients[0]`"),
    ],
)
def test_a_bad_client_entry_names_its_toml_path(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(entry)
    assert message in str(raised.value)


def test_client_names_are_unique() -> None:
    with pytest.raises(ConfigError, match=r"clients\[1\]\.name 'web' is used twice"):
        settings({"name": "web", "api_key_env": "A"}, {"name": "web", "api_key_env": "B"})


def test_the_toml_file_reads_a_two_client_setup(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(
        "[server]\nallow_anonymous = false\n"
        f'[[clients]]\nname = "web"\napi_key_sha256 = ["{sha256(WEB_KEY)}"]\n'
        '[[clients]]\nname = "mobile"\napi_key_env = "MOBILE_KEY"\nmodels = ["mock:*"]\n'
    )
    loaded = load_settings(path, environ={})
    assert [client.name for client in loaded.clients] == ["web", "mobile"]
    assert loaded.clients[1].models == ["mock:*"]


def test_the_example_config_shows_a_two_client_setup_that_loads(tmp_path: Path) -> None:
    """config.example.toml keeps the defaults, so its clients are commented out: uncommented,
    they are a valid two-client setup."""
    example = (Path(__file__).parent.parent / "config.example.toml").read_text()
    _, _, setup = example.partition("a two-client setup:\n")
    toml = [line[2:] for line in setup.splitlines() if TOML_LINE.match(line)]
    path = tmp_path / "clients.toml"
    path.write_text("\n".join(toml) + "\n")
    loaded = load_settings(path, environ={})
    assert [client.name for client in loaded.clients] == ["web", "mobile"]
    assert loaded.clients[0].origins == ["https://chat.example.com", "http://localhost:3000"]
    registry = Clients.from_settings(loaded, {"RELAY_MOBILE_KEY": MOBILE_KEY})
    assert registry.names == ["web", "mobile"]


# --- origins (CORS) ---------------------------------------------------------------------


def test_origins_are_kept_as_browsers_send_them() -> None:
    entry = {
        "name": "web",
        "api_key_sha256": sha256(WEB_KEY),
        "origins": [
            "HTTPS://Chat.Example.com/",
            "https://chat.example.com:443",
            "http://[::1]:3000",
        ],
    }
    (client,) = settings(entry).clients
    assert client.origins == ["https://chat.example.com"] * 2 + ["http://[::1]:3000"]
    registered = Client.from_settings(client)
    assert registered.allows_origin("https://chat.example.com")
    assert registered.allows_origin("HTTPS://CHAT.EXAMPLE.COM")
    assert not registered.allows_origin("https://chat.example.com:8443")
    assert not registered.allows_origin("http://chat.example.com")


@pytest.mark.parametrize(
    "origin", ["*", "null", "chat.example.com", "https://chat.example.com/app", "ftp://a.b"]
)
def test_an_origin_that_is_not_one_names_its_toml_path(origin: str) -> None:
    entry = {"name": "web", "api_key_env": "K", "origins": ["https://ok.example.com", origin]}
    with pytest.raises(ConfigError, match=r"clients\[0\]\.origins\[1\] .* is not an origin"):
        settings(entry)


def test_any_client_listing_an_origin_is_all_a_preflight_can_know() -> None:
    configured = settings(
        {"name": "web", "api_key_sha256": sha256(WEB_KEY), "origins": ["https://a.example"]},
        {"name": "mobile", "api_key_sha256": sha256(MOBILE_KEY), "origins": ["https://b.example"]},
    )
    clients = Clients.from_settings(configured)
    assert clients.any_allows_origin("https://a.example")
    assert clients.any_allows_origin("https://b.example")
    assert not clients.any_allows_origin("https://c.example")
    mobile = clients.named("mobile")
    assert mobile is not None and mobile.origins == frozenset({"https://b.example"})
    assert clients.named("") is None and clients.named("gone") is None


def test_an_anonymous_relay_allows_the_cors_origins_only() -> None:
    assert not Clients.from_settings(settings()).any_allows_origin("http://localhost:3000")
    clients = Clients.from_settings(settings(cors_origins=["http://localhost:3000"]))
    assert clients.any_allows_origin("http://localhost:3000")
    anonymous = clients.named("")
    assert anonymous is clients.anonymous_client and anonymous.name == ANONYMOUS.name
    assert anonymous.allows_origin("http://localhost:3000")


def test_cors_origins_are_refused_beside_clients() -> None:
    with pytest.raises(ConfigError, match=r"server\.cors_origins is for relay without"):
        settings({"name": "web", "api_key_env": "K"}, cors_origins=["http://localhost:3000"])
    with pytest.raises(ConfigError, match=r"server\.cors_origins\[0\] 'null' is not an origin"):
        settings(cors_origins=["null"])
