"""`/metrics` after known mock generations: the exact tokens (the mock's tokens are words),
one time to first token per generation, each end with its status, each resume by its
outcome, and label values that are bounded (no session id, no unrouted model string).

The metrics are the process's, shared by every app a test starts: tests compare a
scrape after with one before."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.frontdoors.conftest import MESSAGES, Relay, StartRelay

Labels = frozenset[tuple[str, str]]
Samples = Counter[tuple[str, Labels]]

MOCK = {"upstream": "mock", "model": "mock:*", "client": "anonymous"}
PROMPT = MESSAGES[0]["content"]
SESSION_ID = re.compile(r"\bs_[A-Za-z0-9_-]{8,}")


async def metrics_text(relay: Relay) -> str:
    async with relay.http.get(relay.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def parse(text: str) -> Samples:
    samples: Samples = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return samples


async def scrape(relay: Relay) -> Samples:
    return parse(await metrics_text(relay))


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after[key] - before[key]


async def complete(relay: Relay) -> str:
    created = await relay.create("mock:tokens=7,tps=0,ttft_ms=0")
    await relay.events(created["id"])
    return str(created["id"])


async def cut_by_the_client(relay: Relay) -> str:
    """A stream the client closes after its first text; the generation goes on."""
    created = await relay.create("mock:tokens=40,tps=200,ttft_ms=0")
    async with relay.subscribe(created["id"]) as reader:
        while (event := await reader.next_event()) is not None and event.event != "delta":
            pass
    await relay.wait_until_ended(created["id"])
    return str(created["id"])


async def cancelled_after_three_words(relay: Relay) -> tuple[str, int]:
    """A session that hangs after 3 tokens, resumed where it stands (`caught_up`),
    then cancelled: the mock reports no usage, so its tokens are estimated. Returns
    its id and the id of its last event before the cancel."""
    created = await relay.create("mock:tokens=10,tps=0,ttft_ms=0,hang_after=3")
    session_id = str(created["id"])
    text, last_id = "", 0
    async with relay.subscribe(session_id) as reader:
        while len(text.split()) < 3:
            event = await reader.next_event()
            assert event is not None
            last_id = event.int_id
            text += event.json()["text"] if event.event == "delta" else ""
    async with relay.subscribe(session_id, last_event_id=str(last_id)):
        pass
    async with relay.http.delete(relay.url(f"/v1/sessions/{session_id}")) as response:
        assert response.status == 202
    assert (await relay.wait_until_ended(session_id))["status"] == "cancelled"
    return session_id, last_id


async def resume(relay: Relay, session_id: str, last_event_id: int) -> int:
    async with await relay.open_events(session_id, last_event_id=str(last_event_id)) as response:
        await response.read()
        return response.status


async def test_known_generations_show_their_tokens_times_ends_and_resumes(
    relay_server: Relay,
) -> None:
    relay = relay_server
    before = await scrape(relay)
    done = await complete(relay)
    await cut_by_the_client(relay)
    cancelled, _ = await cancelled_after_three_words(relay)
    last_id = (await relay.events(done))[-1].int_id
    assert await resume(relay, done, 2) == 200  # replayed
    assert await resume(relay, done, last_id) == 204  # ended_204
    assert await resume(relay, "s_NoSuchSessionAtAll0000", 1) == 404  # not_found
    await asyncio.sleep(0.05)  # the subscribers' gauge falls once their handlers return
    text = await metrics_text(relay)
    after = parse(text)

    def count(name: str, **labels: str) -> float:
        return grew(before, after, name, **labels)

    words = len(PROMPT.split())
    assert count("relay_output_tokens_total", **MOCK, source="usage") == 7 + 40
    assert count("relay_input_tokens_total", **MOCK, source="usage") == 2 * words
    assert count("relay_output_tokens_total", **MOCK, source="estimated") == 3
    estimated_input = math.ceil(len(PROMPT) / 4)
    assert count("relay_input_tokens_total", **MOCK, source="estimated") == estimated_input
    assert count("relay_sessions_started_total", **MOCK) == 3
    assert count("relay_sessions_finished_total", status="completed", reason="stop") == 2
    assert count("relay_sessions_finished_total", status="cancelled", reason="client") == 1
    assert count("relay_sessions_running") == 0
    ttft = "relay_time_to_first_token_seconds_count"
    assert count(ttft, upstream="mock", model="mock:*") == 3
    assert count("relay_generation_seconds_count") == 3
    assert count("relay_output_tokens_per_second_count") == 3
    assert count("relay_overhead_seconds_count") == 3  # each first token reached a subscriber
    assert count("relay_delivery_lag_seconds_count") > 0
    for outcome in ("replayed", "caught_up", "ended_204", "not_found"):
        assert count("relay_resumes_total", outcome=outcome) == 1, outcome
    assert count("relay_subscribers", transport="sse", format="native") == 0
    assert count("relay_upstream_requests_total", upstream="mock", outcome="ok") == 2
    assert count("relay_upstream_requests_total", upstream="mock", outcome="cancelled") == 1
    events_route = "/v1/sessions/{session_id}/events"
    assert count("relay_http_requests_total", route=events_route, status="204") == 1
    assert count("relay_http_requests_total", route=events_route, status="404") == 1
    assert count("relay_store_operation_seconds_count", op="append") > 0
    assert not SESSION_ID.findall(text), SESSION_ID.findall(text)[:3]
    assert cancelled not in text and done not in text


async def test_a_subscriber_counts_while_its_stream_is_open(relay_server: Relay) -> None:
    created = await relay_server.create("mock:tokens=10,tps=0,ttft_ms=0,hang_after=2")
    gauge = ("relay_subscribers", frozenset({"transport": "sse", "format": "openai"}.items()))
    before = await scrape(relay_server)
    params = {"format": "openai"}
    async with relay_server.subscribe(created["id"], params=params) as reader:
        await reader.next_event()
        assert (await scrape(relay_server))[gauge] == before[gauge] + 1
    async with relay_server.http.delete(relay_server.url(f"/v1/sessions/{created['id']}")):
        pass
    await relay_server.wait_until_ended(created["id"])
    await asyncio.sleep(0.05)
    assert (await scrape(relay_server))[gauge] == before[gauge]


SPARE_UPSTREAMS = [
    {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]},
    {"name": "spare", "kind": "mock", "models": ["mock"]},
]


async def test_model_labels_are_the_routed_names_or_unrouted(start_relay: StartRelay) -> None:
    relay = await start_relay(upstreams=SPARE_UPSTREAMS)
    before = await scrape(relay)
    listed = await relay.create("spare/mock")  # the name spare lists
    unlisted = await relay.create("spare/mock:tokens=3,tps=0,ttft_ms=0,seed=41")
    for created in (listed, unlisted):
        await relay.wait_until_ended(created["id"])
    body = {"model": "no-such-model-anywhere", "messages": MESSAGES}
    async with await relay.post_session(body) as refused:
        assert refused.status == 400
    text = await metrics_text(relay)
    after = parse(text)
    spare = {"upstream": "spare", "client": "anonymous"}
    started = "relay_sessions_started_total"
    assert grew(before, after, started, **spare, model="mock") == 1
    assert grew(before, after, started, **spare, model="unrouted") == 1
    assert "seed=41" not in text and "no-such-model-anywhere" not in text
    sessions = "/v1/sessions"
    assert grew(before, after, "relay_http_requests_total", route=sessions, status="400") == 1


METRIC_ROW = re.compile(r"^\| `(relay_[a-z_]+)`", re.MULTILINE)


def documented_metrics() -> list[str]:
    """The metric names that docs/operations.md's "Metrics" section lists."""
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return METRIC_ROW.findall(section)


async def test_the_operations_guide_lists_exactly_the_metrics_exposed(
    relay_server: Relay,
) -> None:
    families = text_string_to_metric_families(await metrics_text(relay_server))
    exposed = {family.name + ("_total" if family.type == "counter" else "") for family in families}
    listed = documented_metrics()
    assert len(listed) == len(set(listed)), "a metric is listed twice"
    assert set(listed) == exposed
