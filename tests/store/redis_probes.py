"""What the Redis store tests watch on the wire."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import AbstractConnection

from relay.store.redis import group_commit


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every write of a command (or pipeline) to Redis from now until `monkeypatch.undo()`:
    one per round trip, whether redis-py writes it or the append sender on the socket it
    drives itself."""
    sent: list[object] = []
    send = AbstractConnection.send_packed_command
    write = group_commit._Link.write

    async def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent.append(command)
        await send(self, command, check_health)

    def counted_write(self: group_commit._Link, data: bytes) -> None:
        sent.append(data)
        write(self, data)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    monkeypatch.setattr(group_commit._Link, "write", counted_write)
    return sent
