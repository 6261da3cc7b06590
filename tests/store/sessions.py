"""Sessions and events for the store tests to write."""

from __future__ import annotations

import time

import msgspec

from relay.events import Event, EventType
from relay.session import SessionRecord, hash_token, new_session_id
from relay.store import Store


def new_record() -> SessionRecord:
    now = time.time()
    return SessionRecord(
        id=new_session_id(),
        model="mock:tokens=3",
        created_at=now,
        updated_at=now,
        token_sha256=hash_token("read-token"),
        owner="instance-a",
    )


def delta(event_id: int, text: str = "word") -> Event:
    return Event(event_id, EventType.DELTA, msgspec.Raw(msgspec.json.encode({"text": text})))


def terminal(event_id: int, event_type: EventType = EventType.DONE) -> Event:
    return Event(event_id, event_type, msgspec.Raw(b'{"finish_reason":"stop"}'))


async def new_session(store: Store, events: int = 0) -> str:
    record = new_record()
    await store.create(record)
    if events:
        await store.append(record.id, [delta(n) for n in range(1, events + 1)])
    return record.id
