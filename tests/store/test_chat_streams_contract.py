"""The `ChatStreams` contract: every store (tests/store/conftest.py) passes the same tests.

What a chat streams is kept per client, replaced by the chat's next stream, seen from
every instance on the backend, and gone once its session is (or, on Redis, once the
longest a session can be kept has passed).
"""

from __future__ import annotations

import asyncio
import time

from relay.store import ChatStream, Store
from relay.store.redis.keys import chat_key
from tests.store.conftest import PeerFactory, StoreFactory
from tests.store.sessions import new_session, terminal

ODD_CHAT_ID = "chat {with} braces, spaces/slashes and ünïcode ✓"


async def test_a_chat_streams_what_was_set_last(store: Store) -> None:
    first = ChatStream(await new_session(store), "msg_1")
    second = ChatStream(await new_session(store), "msg_2")
    assert await store.chat_stream("web", "chat-1") is None
    await store.set_chat_stream("web", "chat-1", first)
    assert await store.chat_stream("web", "chat-1") == first
    await store.set_chat_stream("web", "chat-1", second)
    assert await store.chat_stream("web", "chat-1") == second


async def test_chats_are_each_clients_own(store: Store) -> None:
    web = ChatStream(await new_session(store), "msg_web")
    mobile = ChatStream(await new_session(store), "msg_mobile")
    await store.set_chat_stream("web", ODD_CHAT_ID, web)
    await store.set_chat_stream("mobile", ODD_CHAT_ID, mobile)
    assert await store.chat_stream("web", ODD_CHAT_ID) == web
    assert await store.chat_stream("mobile", ODD_CHAT_ID) == mobile
    assert await store.chat_stream("web", ODD_CHAT_ID + " ") is None
    # The client's name and the chat id cannot be shifted into each other.
    assert await store.chat_stream("web:", ODD_CHAT_ID) is None


async def test_every_instance_sees_a_chats_stream(store: Store, open_peer: PeerFactory) -> None:
    peer = await open_peer(store)
    stream = ChatStream(await new_session(store), "msg_1")
    await store.set_chat_stream("web", "chat-1", stream)
    assert await peer.chat_stream("web", "chat-1") == stream


async def test_an_ended_sessions_chat_stream_stays_until_the_session_expires(
    make_store: StoreFactory,
) -> None:
    store = await make_store(retention_s=0.3)
    session_id = await new_session(store, events=1)
    stream = ChatStream(session_id, "msg_1")
    await store.set_chat_stream("web", "chat-1", stream)
    await store.append(session_id, [terminal(2)])
    assert await store.chat_stream("web", "chat-1") == stream  # ended: the caller's to see
    await wait_until_gone(store, session_id)
    record = await store.get(session_id)
    assert record is None
    if await store.chat_stream("web", "chat-1") is not None:
        # Redis keeps it for running_ttl_s + retention_s: its record is gone already.
        assert await store.get(stream.session_id) is None


async def test_a_chat_stream_lasts_at_most_as_long_as_a_session_can(
    make_store: StoreFactory,
) -> None:
    store = await make_store(running_ttl_s=0.2, retention_s=0.2)
    await store.set_chat_stream("web", "chat-1", ChatStream(await new_session(store), "m"))
    assert await store.chat_stream("web", "chat-1") is not None
    await asyncio.sleep(0.6)
    assert await store.chat_stream("web", "chat-1") is None


def test_chat_keys_are_cluster_tags_that_no_two_chats_share() -> None:
    keys = {chat_key(client, chat) for client in ("web", "web:", "we") for chat in ("1", ":1")}
    assert len(keys) == 6
    assert all(key.startswith("relay:chat:{") and key.endswith("}") for key in keys)
    assert len(chat_key("web", "x" * 100_000)) == len(chat_key("web", "x"))


async def wait_until_gone(store: Store, session_id: str) -> None:
    deadline = time.monotonic() + 5
    while await store.get(session_id) is not None:
        assert time.monotonic() < deadline, "the session did not expire"
        await asyncio.sleep(0.05)
