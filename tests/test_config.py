from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import LogLevel, UpstreamSettings, load_settings, upstream_proxy
from relay.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(None, environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.store.url == "memory://"
    assert settings.generation.flush_interval_ms == 25
    assert [upstream.kind for upstream in settings.upstreams] == ["mock"]


def test_example_config_is_valid_and_matches_the_defaults() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    assert load_settings(example, environ={}) == load_settings(None, environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 9000\n[log]\nlevel = "debug"\n')
    environ = {"RELAY_PORT": "9100", "RELAY_HOST": "0.0.0.0", "RELAY_STORE_URL": "redis://r:6380/1"}
    settings = load_settings(path, environ=environ)
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)
    assert settings.store.url == "redis://r:6380/1"
    assert settings.log.level is LogLevel.DEBUG
    assert load_settings(None, environ={"RELAY_LOG_LEVEL": "WARNING"}).log.level is LogLevel.WARNING


def test_overrides_win_and_are_validated() -> None:
    assert load_settings(None, environ={}, overrides={"server": {"port": 1234}}).server.port == 1234
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(None, environ={}, overrides={"server": {"port": -1}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[serve]\n", "unknown field `serve`; allowed: server, store"),
        ("[server]\nprot = 1\n", "unknown field `prot` - at `server`; allowed: host, port"),
        ('[server]\nport = "x"\n', "Expected `int`, got `str` - at `server.port`"),
        ("[server]\nport = 70000\n", "<= 65535 - at `server.port`"),
        ('[log]\nformat = "xml"\n', "at `log.format`; allowed: text, json"),
        ('[log]\nlevel = "loud"\n', "at `log.level`; allowed: debug, info, warning, error"),
        (
            '[[upstreams]]\nname = "a"\nkind = "b"\n',
            "`upstreams[0].kind`; allowed: openai, anthropic",
        ),
        ('[[upstreams]]\nname = "a/b"\nkind = "mock"\n', "upstreams[0].name must not contain '/'"),
        ("[generation]\nflush_interval_ms = -1\n", "generation.flush_interval_ms"),
        (
            '[[upstreams]]\nname = "m"\nkind = "mock"\nmock_max_tokens = 0\n',
            ">= 1 - at `upstreams[0].mock_max_tokens`",
        ),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), environ={})
    assert message in str(error.value)


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match="RELAY_PORT"):
        load_settings(None, environ={"RELAY_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"log\.level"):
        load_settings(None, environ={"RELAY_LOG_LEVEL": "chatty"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def proxy_for(base_url: str, **environ: str) -> str | None:
    return upstream_proxy(UpstreamSettings(name="u", kind="openai", base_url=base_url), environ)


def test_the_proxy_comes_from_the_variable_of_the_upstream_scheme() -> None:
    assert proxy_for("https://api.example.com/v1", HTTPS_PROXY="http://p:3128") == "http://p:3128"
    assert proxy_for("https://api.example.com/v1", HTTP_PROXY="http://p:3128") is None
    assert proxy_for("http://10.0.0.5:8000/v1", http_proxy="http://p:3128") == "http://p:3128"
    assert proxy_for("https://api.example.com/v1") is None


def test_lower_case_proxy_variables_win_and_blank_ones_do_not_count() -> None:
    both = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}
    assert proxy_for("https://a.example/v1", **both) == "http://lower:2"
    assert proxy_for("https://a.example/v1", HTTPS_PROXY="http://upper:1", https_proxy=" ") == (
        "http://upper:1"
    )


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("*", True),
        ("example.com", True),
        (".example.com", True),
        ("api.example.com:443", True),
        ("other.com, example.com", True),
        ("ample.com", False),
        ("other.com", False),
        ("", False),
    ],
)
def test_no_proxy_names_hosts_and_domains_that_go_direct(no_proxy: str, bypassed: bool) -> None:
    proxy = proxy_for("https://api.example.com/v1", HTTPS_PROXY="http://p:1", NO_PROXY=no_proxy)
    assert (proxy is None) == bypassed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", ["localhost", "127.0.0.1", "[::1]"]),
        ("localhost", ["localhost", "127.0.0.1", "[::1]"]),
        ("::1", ["localhost", "127.0.0.1", "[::1]"]),
        ("127.0.0.2", ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"]),
        ("0.0.0.0", ["*"]),
        ("", ["*"]),
        ("10.0.0.5", ["*"]),
        ("relay.internal", ["*"]),  # a name is not resolved: it may be reachable
    ],
)
def test_allowed_hosts_default_to_the_loopback_names_on_loopback(
    host: str, allowed: list[str]
) -> None:
    settings = load_settings(None, environ={}, overrides={"server": {"host": host}})
    assert settings.server.allowed_hosts == allowed


def test_allowed_hosts_from_the_file_replace_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "0.0.0.0"\nallowed_hosts = ["relay.example.com"]\n')
    assert load_settings(path, environ={}).server.allowed_hosts == ["relay.example.com"]


@pytest.mark.parametrize("entry", ["relay.example.com:443", "[::1]:8080", "a/b", "", "*x", "a.*"])
def test_an_allowed_host_with_a_port_or_not_a_host_names_the_entry(
    tmp_path: Path, entry: str
) -> None:
    path = write(tmp_path, f'[server]\nallowed_hosts = ["*", {entry!r}]\n'.replace("'", '"'))
    with pytest.raises(ConfigError, match=r"server\.allowed_hosts\[1\] .* without a port"):
        load_settings(path, environ={})


def test_no_allowed_hosts_at_all_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.allowed_hosts is empty"):
        load_settings(write(tmp_path, "[server]\nallowed_hosts = []\n"), environ={})


@pytest.mark.parametrize(
    ("kind", "continuation", "style"),
    [
        ("openai", None, "none"),
        ("openai", "continue_final_message", "continue_final_message"),
        ("openai", "assistant_prefill", "assistant_prefill"),
        ("anthropic", None, "assistant_prefill"),
        ("anthropic", "none", "none"),
        ("mock", None, "assistant_prefill"),
    ],
)
def test_an_upstreams_continuation_defaults_to_what_its_kind_can_do(
    tmp_path: Path, kind: str, continuation: str | None, style: str
) -> None:
    line = f'continuation = "{continuation}"\n' if continuation else ""
    text = f'[[upstreams]]\nname = "u"\nkind = "{kind}"\nbase_url = "http://h"\n{line}'
    [upstream] = load_settings(write(tmp_path, text), environ={}).upstreams
    assert upstream.continuation_style == style


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("anthropic", "continue_final_message", "upstreams[0].continuation 'continue_final_"),
        ("mock", "continue_final_message", "kind 'mock' allows 'assistant_prefill' or 'none'"),
        ("openai", "vllm", "at `upstreams[0].continuation`; allowed: assistant_prefill"),
    ],
)
def test_a_continuation_the_kind_cannot_do_names_the_key(
    tmp_path: Path, kind: str, value: str, message: str
) -> None:
    text = f'[[upstreams]]\nname = "u"\nkind = "{kind}"\nbase_url = "http://h"\n'
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text + f'continuation = "{value}"\n'), environ={})
    assert message in str(error.value)


def test_on_instance_loss_defaults_to_fail_once() -> None:
    [upstream] = load_settings(None, environ={}).upstreams
    assert (upstream.on_instance_loss, upstream.max_takeovers) == ("fail", 1)
    assert load_settings(None, environ={}).generation.takeover_max_request_bytes == 256 * 1024


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'on_instance_loss = "retry"',
            "at `upstreams[1].on_instance_loss`; allowed: fail, continue, restart",
        ),
        ("max_takeovers = -1", "at `upstreams[1].max_takeovers`"),
        ("max_takeovers = 1.5", "at `upstreams[1].max_takeovers`"),
    ],
)
def test_a_bad_takeover_setting_names_its_path_and_what_is_allowed(
    tmp_path: Path, line: str, message: str
) -> None:
    text = (
        '[[upstreams]]\nname = "mock"\nkind = "mock"\n'
        f'[[upstreams]]\nname = "u"\nkind = "anthropic"\nbase_url = "http://h"\n{line}\n'
    )
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), environ={})
    assert message in str(error.value)


def test_takeover_max_request_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "[generation]\ntakeover_max_request_bytes = 0\n"), environ={})
    assert "generation.takeover_max_request_bytes" in str(error.value)
