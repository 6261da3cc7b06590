"""The `Quotas` contract: every store passes the same tests.

Requests per minute and tokens per minute are sliding windows (relay/quotas.py); a
client's running sessions hold a slot each, given back by `release`, and slots of
sessions that ended or are gone are given back when the slots look full. Admission is
atomic across instances (peers on one backend), and the counts are the backend's, so
a new store object on it (an instance restarted) finds them. Times are the caller's.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from relay.quotas import CONCURRENCY_RETRY_S, STALE_SLOT_GRACE_S, QuotaLimits, QuotaRefusal
from relay.session import new_session_id
from relay.store import Store
from tests.store.conftest import PeerFactory
from tests.store.sessions import new_session, terminal

# The start of a minute: 1_800_000_000 s is minute 30,000,000.
MINUTE = 1_800_000_000.0

RPM = QuotaLimits(requests_per_minute=3)
TPM = QuotaLimits(tokens_per_minute=100)
TWO_AT_ONCE = QuotaLimits(max_concurrent_sessions=2)


def a_client() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


async def admitted(store: Store, client: str, limits: QuotaLimits, now: float) -> bool:
    return await store.admit(client, new_session_id(), limits, now) is None


async def admit_many(store: Store, client: str, limits: QuotaLimits, now: float, n: int) -> int:
    return sum([await admitted(store, client, limits, now) for _ in range(n)])


# --- requests per minute ------------------------------------------------------------------


async def test_requests_are_admitted_up_to_the_limit(store: Store) -> None:
    client = a_client()
    assert await admit_many(store, client, RPM, MINUTE + 10, 3) == 3
    refusal = await store.admit(client, new_session_id(), RPM, MINUTE + 10)
    assert refusal is not None
    assert (refusal.limit, refusal.value) == ("requests_per_minute", 3)
    assert refusal.retry_after_s >= 1


async def test_a_refused_request_does_not_count(store: Store) -> None:
    client = a_client()
    await admit_many(store, client, RPM, MINUTE + 59, 3)
    for _ in range(20):  # refused: none of these counts
        assert not await admitted(store, client, RPM, MINUTE + 59.5)
    # Next minute, half-way: the previous minute's 3 weigh 1.5, so one more fits (2.5).
    assert await admit_many(store, client, RPM, MINUTE + 90, 3) == 1


async def test_the_window_slides_over_the_minute_boundary(store: Store) -> None:
    client = a_client()
    await admit_many(store, client, RPM, MINUTE + 59, 3)
    # A fixed window would admit 3 more a second later; the sliding one admits none.
    assert await admit_many(store, client, RPM, MINUTE + 61, 3) == 0
    # 45 s into the next minute the 3 weigh 0.75: two more fit.
    assert await admit_many(store, client, RPM, MINUTE + 105, 3) == 2


async def test_retry_after_is_when_the_window_admits(store: Store) -> None:
    client = a_client()
    await admit_many(store, client, RPM, MINUTE + 30, 3)
    refusal = await store.admit(client, new_session_id(), RPM, MINUTE + 30)
    assert refusal is not None
    # 3 in this minute: next minute they weigh 3 * (1 - f), 2 (room for one) at f = 1/3.
    assert refusal.retry_after_s == 50
    assert not await admitted(store, client, RPM, MINUTE + 30 + refusal.retry_after_s - 1)
    assert await admitted(store, client, RPM, MINUTE + 30 + refusal.retry_after_s)


async def test_the_counts_are_per_client(store: Store) -> None:
    web, mobile = a_client(), a_client()
    await admit_many(store, web, RPM, MINUTE, 3)
    assert not await admitted(store, web, RPM, MINUTE)
    assert await admit_many(store, mobile, RPM, MINUTE, 3) == 3


# --- tokens per minute --------------------------------------------------------------------


async def test_a_client_whose_tokens_reached_the_limit_is_refused(store: Store) -> None:
    client = a_client()
    await store.count_tokens(client, 60, MINUTE + 5)
    assert await admitted(store, client, TPM, MINUTE + 6)
    await store.count_tokens(client, 40, MINUTE + 7)
    refusal = await store.admit(client, new_session_id(), TPM, MINUTE + 8)
    assert refusal is not None
    assert (refusal.limit, refusal.value) == ("tokens_per_minute", 100)
    # 100 in this minute: they weigh under 100 just after the next minute starts.
    assert refusal.retry_after_s == 53
    assert not await admitted(store, client, TPM, MINUTE + 8 + refusal.retry_after_s - 1)
    assert await admitted(store, client, TPM, MINUTE + 8 + refusal.retry_after_s)


async def test_tokens_slide_like_requests(store: Store) -> None:
    client = a_client()
    await store.count_tokens(client, 200, MINUTE + 50)
    assert not await admitted(store, client, TPM, MINUTE + 60 + 29)  # 200 * 31/60 > 100
    assert await admitted(store, client, TPM, MINUTE + 60 + 31)  # 200 * 29/60 < 100


# --- concurrent sessions ------------------------------------------------------------------


async def test_slots_are_held_until_released(store: Store) -> None:
    client = a_client()
    first, second = new_session_id(), new_session_id()
    now = time.time()
    assert await store.admit(client, first, TWO_AT_ONCE, now) is None
    assert await store.admit(client, second, TWO_AT_ONCE, now) is None
    refusal = await store.admit(client, new_session_id(), TWO_AT_ONCE, now)
    assert refusal == QuotaRefusal("max_concurrent_sessions", 2, CONCURRENCY_RETRY_S)
    await store.release(client, first)
    await store.release(client, first)  # twice is harmless
    assert await admitted(store, client, TWO_AT_ONCE, now)
    assert not await admitted(store, client, TWO_AT_ONCE, now)


async def test_releasing_a_session_without_a_slot_is_harmless(store: Store) -> None:
    await store.release(a_client(), new_session_id())


async def test_the_slot_of_an_ended_session_is_given_back_when_full(store: Store) -> None:
    client = a_client()
    now = time.time()
    ended = await new_session(store, events=1)
    assert await store.admit(client, ended, TWO_AT_ONCE, now) is None
    assert await admitted(store, client, TWO_AT_ONCE, now)
    await store.append(ended, [terminal(2)])  # its releaser crashed before it released
    assert await admitted(store, client, TWO_AT_ONCE, now)
    assert not await admitted(store, client, TWO_AT_ONCE, now)


async def test_a_running_session_keeps_its_slot(store: Store) -> None:
    client = a_client()
    now = time.time()
    for _ in range(2):
        assert await store.admit(client, await new_session(store), TWO_AT_ONCE, now) is None
    assert not await admitted(store, client, TWO_AT_ONCE, now)


async def test_a_slot_without_a_record_is_stale_only_after_the_grace(store: Store) -> None:
    client = a_client()
    now = time.time()
    # Slots taken for sessions whose record never came (or expired): a session being
    # created has its slot before its record, so a young one is not stale.
    assert await store.admit(client, new_session_id(), TWO_AT_ONCE, now - 10) is None
    assert await store.admit(client, new_session_id(), TWO_AT_ONCE, now) is None
    assert not await admitted(store, client, TWO_AT_ONCE, now + STALE_SLOT_GRACE_S - 15)
    assert await admitted(store, client, TWO_AT_ONCE, now + STALE_SLOT_GRACE_S - 5)
    assert not await admitted(store, client, TWO_AT_ONCE, now + STALE_SLOT_GRACE_S - 5)


async def test_a_refusal_for_concurrency_does_not_count_the_request(store: Store) -> None:
    client = a_client()
    both = QuotaLimits(max_concurrent_sessions=1, requests_per_minute=2)
    held = new_session_id()
    assert await store.admit(client, held, both, MINUTE) is None
    refusal = await store.admit(client, new_session_id(), both, MINUTE)
    assert refusal is not None and refusal.limit == "max_concurrent_sessions"
    await store.release(client, held)
    assert await admitted(store, client, both, MINUTE)  # the second request of the minute


# --- across instances ---------------------------------------------------------------------


async def test_two_instances_never_both_take_the_last_slot(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    client = a_client()
    limits = QuotaLimits(max_concurrent_sessions=3)
    now = time.time()
    tries = [admitted(s, client, limits, now) for s in (store, peer) for _ in range(10)]
    assert sum(await asyncio.gather(*tries)) == 3


async def test_two_instances_never_both_take_the_last_request(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    client = a_client()
    tries = [admitted(s, client, RPM, MINUTE) for s in (store, peer) for _ in range(10)]
    assert sum(await asyncio.gather(*tries)) == 3


async def test_another_instance_finds_the_counts(store: Store, open_peer: PeerFactory) -> None:
    client = a_client()
    both = QuotaLimits(max_concurrent_sessions=1, tokens_per_minute=100)
    held = new_session_id()
    assert await store.admit(client, held, both, MINUTE) is None
    peer = await open_peer(store)  # an instance restarted, or another one
    assert not await admitted(peer, client, both, MINUTE)
    await peer.release(client, held)
    await peer.count_tokens(client, 100, MINUTE)
    refusal = await store.admit(client, new_session_id(), both, MINUTE)
    assert refusal is not None and refusal.limit == "tokens_per_minute"
