"""Request ids and the access log of `relay serve`, a real process, in both log formats:
the id a client sends (when sane) or one relay makes is in the answer's `X-Request-Id`,
on the request's access line and on every line of the generation it started; a stream's
access line is written when the stream ends, with the events and bytes it sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.vocabulary import session_tag
from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.sse_client import SseParser

MESSAGES = [{"role": "user", "content": "hi"}]
QUICK = "mock:tokens=3,tps=0,ttft_ms=0"
SLOW = "mock:tokens=12,tps=20,ttft_ms=0"  # about 0.6 s
MADE_ID = re.compile(r"req_[0-9a-f]{16}")
ACCESS = "aiohttp.access"


@dataclass
class Relay:
    base: str
    log_path: Path
    http: aiohttp.ClientSession

    def lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]

    def entries(self) -> list[dict[str, Any]]:
        """Every line, parsed: each must be one JSON object (the JSON format)."""
        return [json.loads(line) for line in self.lines()]

    async def line_containing(self, *texts: str) -> str:
        async with asyncio.timeout(10):
            while not (found := [ln for ln in self.lines() if all(t in ln for t in texts)]):
                await asyncio.sleep(0.02)
        return found[0]

    async def create(self, model: str, request_id: str | None = None) -> tuple[str, str]:
        """A new session's id, and the request id its answer named."""
        headers = {"X-Request-Id": request_id} if request_id is not None else {}
        body = {"model": model, "messages": MESSAGES}
        async with self.http.post(self.base + "/v1/sessions", json=body, headers=headers) as answer:
            assert answer.status == 201
            return (await answer.json())["id"], answer.headers["X-Request-Id"]


@pytest.fixture(params=["text", "json"])
async def relay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Relay]:
    async with start(tmp_path, log_format=request.param) as started:
        yield started


@contextlib.asynccontextmanager
async def start(tmp_path: Path, *, log_format: str, level: str = "info") -> AsyncIterator[Relay]:
    config = tmp_path / "relay.toml"
    config.write_text(f'[log]\nformat = "{log_format}"\nlevel = "{level}"\n')
    port, log_path = free_port(), tmp_path / "relay.log"
    async with relay_process(config, port, log_path), aiohttp.ClientSession() as http:
        yield Relay(f"http://127.0.0.1:{port}", log_path, http)


async def test_a_sent_request_id_names_the_answer_the_access_line_and_the_generation(
    relay: Relay,
) -> None:
    session_id, echoed = await relay.create(QUICK, "client-id-42")
    assert echoed == "client-id-42"
    tag = session_tag(session_id)
    access = await relay.line_containing("POST /v1/sessions HTTP/1.1", "201", "client-id-42")
    ended = await relay.line_containing(f"session {tag} ended with done")
    created = await relay.line_containing(f"session {tag} created")
    for line in (access, created, ended):  # ended: logged by the generation's task
        assert_fields(line, request_id="client-id-42", session=tag, upstream="mock")
    assert_fields(access, request_id="client-id-42", session=tag)


async def test_relay_makes_a_request_id_when_none_or_an_odd_one_is_sent(relay: Relay) -> None:
    sent = [None, "", "x" * 129, "has spaces", "naïve", "s_" + "A" * 22]
    for request_id in sent:
        headers = {} if request_id is None else {"X-Request-Id": request_id}
        async with relay.http.get(relay.base + "/healthz", headers=headers) as answer:
            made = answer.headers["X-Request-Id"]
        assert MADE_ID.fullmatch(made), (request_id, made)
        line = await relay.line_containing("GET /healthz HTTP/1.1", made)
        assert_fields(line, request_id=made)
    assert "x" * 129 not in relay.log_path.read_text()
    assert "A" * 22 not in relay.log_path.read_text()


async def test_refusals_have_request_ids_too(relay: Relay) -> None:
    """An error answer (a 404), and one aiohttp's parser refuses (before any middleware)."""
    headers = {"X-Request-Id": "lost-1"}
    async with relay.http.get(relay.base + "/v1/sessions/s_nope", headers=headers) as answer:
        assert answer.status == 404
        assert answer.headers["X-Request-Id"] == "lost-1"
    await relay.line_containing("GET /v1/sessions/s_nope HTTP/1.1", "404", "lost-1")
    port = int(relay.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
    async with asyncio.timeout(10):
        head = (await reader.read()).split(b"\r\n\r\n")[0].decode()
    writer.close()
    assert head.split()[1] == "400", head
    made = re.search(r"X-Request-Id: (\S+)", head)
    assert made and MADE_ID.fullmatch(made[1]), head
    refused = await relay.line_containing("refused a request from", made[1])
    assert_fields(refused, request_id=made[1])
    await relay.line_containing(ACCESS, "400", made[1])


async def test_a_streams_access_line_is_written_when_it_ends_with_its_events_and_bytes(
    relay: Relay,
) -> None:
    session_id, _ = await relay.create(SLOW)
    tag = session_tag(session_id)
    url = f"{relay.base}/v1/sessions/{session_id}/events"
    parser, events, body = SseParser(), [], b""
    async with relay.http.get(url, headers={"X-Request-Id": "stream-7"}) as stream:
        assert stream.headers["X-Request-Id"] == "stream-7"
        while not any(e.event == "delta" for e in events):
            chunk = await stream.content.readany()
            body += chunk
            events += parser.feed(chunk)
        await asyncio.sleep(0.2)  # the stream goes on for about 0.5 s more
        assert not [line for line in relay.lines() if "stream-7" in line]
        rest = await stream.content.read()
    body += rest
    events += parser.feed(rest)
    assert events[-1].event == "done"
    line = await relay.line_containing(ACCESS, "stream-7")
    assert f"/v1/sessions/{tag}/events HTTP/1.1" in line
    assert_access(line, status=200, events=len(events), size=len(body))
    assert_fields(line, request_id="stream-7", session=tag)


async def test_a_wire_format_stream_counts_its_frames(relay: Relay) -> None:
    """OpenAI Chat's stream: each chunk a frame, then `data: [DONE]`."""
    body = {"model": QUICK, "messages": MESSAGES, "stream": True}
    headers = {"X-Request-Id": "chat-9"}
    url = relay.base + "/v1/chat/completions"
    async with relay.http.post(url, json=body, headers=headers) as stream:
        sent = await stream.read()
    events = SseParser().feed(sent)
    assert events[-1].data == "[DONE]"
    line = await relay.line_containing(ACCESS, "chat-9")
    assert_access(line, status=200, events=len(events), size=len(sent))
    assert_fields(line, request_id="chat-9", upstream="mock")


async def test_a_cut_stream_counts_what_was_sent_before_it(relay: Relay) -> None:
    session_id, _ = await relay.create("mock:tokens=400,tps=100,ttft_ms=0")
    url = f"{relay.base}/v1/sessions/{session_id}/events"
    parser, events, body = SseParser(), [], b""
    async with relay.http.get(url, headers={"X-Request-Id": "cut-3"}) as stream:
        while len([e for e in events if e.event == "delta"]) < 3:
            chunk = await stream.content.readany()
            body += chunk
            events += parser.feed(chunk)
        stream.connection.transport.abort()  # type: ignore[union-attr]
    line = await relay.line_containing(ACCESS, "cut-3")
    access = access_fields(line)
    assert access["status"] == 200
    assert access["events"] >= len(events) and access["bytes"] >= len(body) > 0


async def test_every_line_of_a_request_and_its_generation_carries_its_id(
    tmp_path: Path,
) -> None:
    """At DEBUG, in JSON: every line about the session names a request (the one that
    created it, or the one that streamed it) and the session; every line of those
    requests names the session."""
    async with start(tmp_path, log_format="json", level="debug") as relay:
        session_id, _ = await relay.create(SLOW, "debug-create")
        url = f"{relay.base}/v1/sessions/{session_id}/events"
        async with relay.http.get(url, headers={"X-Request-Id": "debug-read"}) as stream:
            await stream.read()
        await relay.line_containing(ACCESS, "debug-read")
        entries = relay.entries()  # every line is one JSON object
    tag = session_tag(session_id)
    about_it = [e for e in entries if tag in e["message"] or e.get("session") == tag]
    assert len(about_it) >= 4, about_it
    for entry in about_it:
        assert entry.get("request_id") in ("debug-create", "debug-read"), entry
        assert entry["session"] == tag, entry
    of_them = [e for e in entries if e.get("request_id") in ("debug-create", "debug-read")]
    assert {e["logger"] for e in of_them} >= {"relay.runner", ACCESS}
    assert all(e.get("session") == tag for e in of_them), of_them


def assert_fields(line: str, **expected: str) -> None:
    """The request's fields on a line: `key=value` (text) or JSON keys."""
    if line.startswith("{"):
        entry = json.loads(line)
        assert {key: entry.get(key) for key in expected} == expected, line
    else:
        for key, value in expected.items():
            assert f" {key}={value}" in line, (key, line)


def access_fields(line: str) -> dict[str, Any]:
    """status, bytes and events of an access line, in either format."""
    if line.startswith("{"):
        entry: dict[str, Any] = json.loads(line)
        assert entry["duration_s"] >= 0 and entry["method"] in ("GET", "POST"), entry
        assert entry["message"].startswith("127.0.0.1 "), entry  # the text line, as message
        return entry
    found = re.search(r'" (\d{3}) (\d+) \d+\.\d{6}s(?: events=(\d+))?', line)
    assert found, line
    events = int(found[3]) if found[3] is not None else None
    return {"status": int(found[1]), "bytes": int(found[2]), "events": events}


def assert_access(line: str, *, status: int, events: int, size: int) -> None:
    access = access_fields(line)
    assert (access["status"], access["events"], access["bytes"]) == (status, events, size)


async def test_a_stream_that_shutdown_cut_still_has_its_access_line(
    tmp_path: Path, redis_url: str
) -> None:
    """A stream of a session generating on another instance outlives this one's drain:
    its handler is cancelled (aiohttp logs no line for that), and its line is written
    all the same, with what it sent."""
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 0\n[store]\nurl = "{redis_url}"\n')
    ports = free_port(), free_port()
    logs = tmp_path / "generating.log", tmp_path / "reading.log"
    async with (
        relay_process(config, ports[0], logs[0]),
        relay_process(config, ports[1], logs[1]) as reading,
        aiohttp.ClientSession() as http,
    ):
        generating = Relay(f"http://127.0.0.1:{ports[0]}", logs[0], http)
        session_id, _ = await generating.create("mock:tokens=100000,tps=50,ttft_ms=0")
        url = f"http://127.0.0.1:{ports[1]}/v1/sessions/{session_id}/events"
        parser, events, body = SseParser(), [], b""
        async with http.get(url, headers={"X-Request-Id": "cut-by-drain"}) as stream:
            while not any(e.event == "delta" for e in events):
                chunk = await stream.content.readany()
                body += chunk
                events += parser.feed(chunk)
            reading.send_signal(signal.SIGTERM)
            with contextlib.suppress(aiohttp.ClientPayloadError):
                body += await stream.content.read()
        async with asyncio.timeout(15):
            assert await reading.wait() == 0
    lines = logs[1].read_text().splitlines()
    [access] = [line for line in lines if ACCESS in line and "cut-by-drain" in line]
    assert f"/v1/sessions/{session_tag(session_id)}/events" in access
    sent = access_fields(access)
    assert sent["status"] == 200
    assert sent["events"] >= len(SseParser().feed(body)) > 0 and sent["bytes"] >= len(body)
