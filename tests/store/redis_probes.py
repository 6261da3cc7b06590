"""What the Redis store tests watch on the wire."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import AbstractConnection


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every write of a command (or pipeline) to Redis from now until `monkeypatch.undo()`:
    one per round trip."""
    sent: list[object] = []
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent.append(command)
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent
