"""The append sender's own packing of commands (`relay.store.redis.connect.pack_commands`):
byte for byte what redis-py sends for the same commands. Pure: no Redis (every test of
the Redis store sends its appends and creations through it)."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio.connection import Connection

from relay.store.redis.connect import pack_commands


def redis_py_packs(commands: list[tuple[object, ...]]) -> bytes:
    return b"".join(bytes(part) for part in Connection().pack_commands(commands))


def test_every_argument_type_the_store_sends_packs_as_redis_py_packs_it() -> None:
    data = msgspec.Raw(b'{"text":"h\xc3\xa9llo"}')
    large = b"x" * 100_000  # redis-py sends a value this size as a buffer of its own
    commands: list[tuple[object, ...]] = [
        ("EVALSHA", "a" * 40, 2, "relay:{s_x}:meta", "relay:{s_x}:log", repr(1.5), 17, ""),
        ("XADD", "relay:{s_x}:log", "1-0", "delta", memoryview(data), -3, 2.25),
        ("SET", "relay:{s_x}:takeover", large, "PX", 600_000, "näive"),
    ]
    assert pack_commands(commands) == redis_py_packs(commands)


def test_no_commands_pack_to_nothing() -> None:
    assert pack_commands([]) == b""


@pytest.mark.parametrize("argument", [True, None, ["a"], object()])
def test_an_argument_of_another_type_is_refused(argument: object) -> None:
    with pytest.raises(TypeError, match="a Redis command argument must be"):
        pack_commands([("SET", "k", argument)])
