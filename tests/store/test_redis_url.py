"""Redis store URLs: every form parses to the address it names, every mistake is named.

Pure: no server, no event loop.
"""

from __future__ import annotations

import pytest

from relay.config import StoreSettings
from relay.errors import ConfigError
from relay.store import open_store
from relay.store.redis_url import HostPort, RedisAddress, Topology, parse_redis_url

LOCAL = HostPort("127.0.0.1", 6379)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress(topology=Topology.SERVER, hosts=(LOCAL,))),
        ("redis://127.0.0.1", RedisAddress(topology=Topology.SERVER, hosts=(LOCAL,))),
        (
            "REDISS://user:p%40ss@[::1]:7000/3",
            RedisAddress(
                topology=Topology.SERVER,
                tls=True,
                hosts=(HostPort("::1", 7000),),
                db=3,
                username="user",
                password="p@ss",
            ),
        ),
        (
            "redis://:secret@cache.internal/2",
            RedisAddress(
                topology=Topology.SERVER,
                hosts=(HostPort("cache.internal", 6379),),
                db=2,
                password="secret",
            ),
        ),
        (
            "unix:///run/redis/redis.sock?db=4",
            RedisAddress(topology=Topology.SERVER, socket_path="/run/redis/redis.sock", db=4),
        ),
        (
            "unix://:secret@/tmp/redis.sock",
            RedisAddress(
                topology=Topology.SERVER, socket_path="/tmp/redis.sock", password="secret"
            ),
        ),
        (
            "redis+cluster://a:7000,b:7001,c",
            RedisAddress(
                topology=Topology.CLUSTER,
                hosts=(HostPort("a", 7000), HostPort("b", 7001), HostPort("c", 6379)),
            ),
        ),
        (
            "rediss+cluster://app:pw@a:7000/?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false",
            RedisAddress(
                topology=Topology.CLUSTER,
                tls=True,
                hosts=(HostPort("a", 7000),),
                username="app",
                password="pw",
                tls_options={"ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": False},
            ),
        ),
        (
            "redis+sentinel://s1,s2:26380/mymaster",
            RedisAddress(
                topology=Topology.SENTINEL,
                hosts=(HostPort("s1", 26379), HostPort("s2", 26380)),
                master_name="mymaster",
            ),
        ),
        (
            "rediss+sentinel://:pw@s1/mymaster/5?sentinel_password=spw&ssl_cert_reqs=none",
            RedisAddress(
                topology=Topology.SENTINEL,
                tls=True,
                hosts=(HostPort("s1", 26379),),
                master_name="mymaster",
                db=5,
                password="pw",
                sentinel_password="spw",
                tls_options={"ssl_cert_reqs": "none"},
            ),
        ),
    ],
)
def test_url_forms(url: str, address: RedisAddress) -> None:
    assert parse_redis_url(url) == address


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis:/host", "has no scheme"),
        ("redis+foo://host", "'redis+foo://' is not a Redis scheme"),
        ("redis://", "names no host; expected redis://host:port/db"),
        ("redis://a,b", "lists 2 hosts"),
        ("redis://host:0", "port '0' of host 'host'"),
        ("redis://host:http", "port 'http' of host 'host'"),
        ("redis://host/zero", "database 'zero' is not a number"),
        ("redis://host/0/1", "path has too many parts"),
        ("redis://[::1/0", "malformed"),
        ("redis://host/0#frag", "#fragment"),
        ("redis://host?socket_timeout=1", "option 'socket_timeout' is not supported"),
        ("redis://host?ssl_ca_certs=/ca.pem", "'ssl_ca_certs' needs a TLS scheme"),
        ("rediss://host?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("rediss://host?ssl_check_hostname=perhaps", "ssl_check_hostname must be true or"),
        ("rediss://host?ssl_certfile=", "ssl_certfile is empty"),
        ("rediss://host?ssl_cert_reqs=none&ssl_cert_reqs=none", "given twice"),
        ("unix://host/redis.sock", "takes a socket path, not a host"),
        ("unix://", "names no socket path"),
        ("redis+cluster://a:7000/1", "Redis Cluster has only database 0"),
        ("redis+cluster://a:7000,,b:7001", "empty host"),
        ("redis+sentinel://s1:26379", "names no Sentinel master"),
        ("redis+sentinel://s1/master/0/x", "path has too many parts"),
        ("redis+sentinel://s1/master/x", "database 'x'"),
        ("redis://host?sentinel_password=x", "'sentinel_password' is not supported"),
    ],
)
def test_mistakes_are_named(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=r"^store\.url") as raised:
        parse_redis_url(url)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@host:bad/0",
        "redis+cluster://user:hunter2@a:7000/3",
        "redis+sentinel://:hunter2@s1",
        "user:hunter2@host:6379",
        "rediss://:hunter2@host?ssl_cert_reqs=maybe",
    ],
)
def test_errors_never_repeat_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        open_store(StoreSettings(url=url))
    assert "hunter2" not in str(raised.value)


def test_the_address_repr_hides_passwords() -> None:
    address = parse_redis_url("redis+sentinel://:hunter2@s1/m?sentinel_password=hunter3")
    assert "hunter" not in repr(address)


def test_open_store_names_the_allowed_schemes() -> None:
    with pytest.raises(ConfigError) as raised:
        open_store(StoreSettings(url="postgres://db/relay"))
    message = str(raised.value)
    for scheme in ("memory://", "redis://", "rediss://", "unix://"):
        assert scheme in message
    for scheme in ("redis+sentinel://", "rediss+sentinel://", "redis+cluster://"):
        assert scheme in message
