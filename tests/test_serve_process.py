"""`relay serve` as a real process: JSON logs, and a clean exit on SIGTERM that ends
running generations with `cancelled` (reason `shutdown`), kept in Redis for resume; what it
answers to requests aiohttp's parser refuses; its access log; its ready line; its
tracebacks without uvloop installed."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp

from relay.vocabulary import session_suffix, session_tag
from tests.redis_server import RedisServer, free_port, require_redis_server
from tests.relay_process import relay_process
from tests.sse_client import SseParser

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_sigterm_cancels_generations_that_outlast_the_drain(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[server]\ndrain_timeout_s = 0.3\n[store]\nurl = "{redis_url}"\n[log]\nformat = "json"\n'
    )
    log_path = tmp_path / "relay.log"
    base = f"http://127.0.0.1:{port}"
    async with relay_process(config, port, log_path) as process, aiohttp.ClientSession() as http:
        body = {
            "model": "mock:tokens=100000,tps=50,ttft_ms=0",
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with http.post(base + "/v1/sessions", json=body) as response:
            session_id = (await response.json())["id"]
        async with http.get(f"{base}/v1/sessions/{session_id}/events") as stream:
            parser, events = SseParser(), []
            while not any(e.event == "delta" for e in events):
                events += parser.feed(await stream.content.readany())
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                events += parser.feed(await stream.content.read())
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    assert [e.event for e in events][-1] == "cancelled"
    assert json.loads(events[-1].data) == {"reason": "shutdown"}
    ids = [int(e.id) for e in events if e.id]
    assert ids == list(range(1, len(ids) + 1))
    # Every log line is one JSON object; requests and the session's lifecycle are there.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in log_path.read_text().splitlines() if line.strip()])
    messages = [line["message"] for line in lines]
    tag = session_tag(session_id)  # logs name a session by its tag, never by its id
    assert any(f"session {tag} created" in m for m in messages)
    assert any(f"session {tag} ended with cancelled" in m for m in messages)
    assert not any(session_suffix(session_id) in m for m in messages)
    assert any('"POST /v1/sessions HTTP/1.1" 201' in m for m in messages)


async def test_sigterm_drains_refuses_new_work_and_lets_generations_finish(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 20\n[store]\nurl = "{redis_url}"\n')
    base = f"http://127.0.0.1:{port}"
    body = {
        "model": "mock:tokens=60,tps=60,ttft_ms=0",
        "messages": [{"role": "user", "content": "hi"}],
    }
    log_path = tmp_path / "relay.log"
    async with relay_process(config, port, log_path) as process, aiohttp.ClientSession() as http:
        async with http.post(base + "/v1/sessions", json=body) as response:
            session_id = (await response.json())["id"]
        async with http.get(f"{base}/v1/sessions/{session_id}/events") as stream:
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with http.get(base + "/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["status"] == "draining"
            async with http.post(base + "/v1/sessions", json=body) as refused:
                assert refused.status == 503
                assert (await refused.json())["error"]["code"] == "draining"
            async with asyncio.timeout(15):
                events = SseParser().feed(await stream.content.read())
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    assert events[-1].event == "done"  # the generation was allowed to finish
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")
    assert len(text.split(" ")) == 60


# What aiohttp's own parser refuses (it never reaches the app) still gets relay's error shape.
# Each request carries MARK where it is malformed: the answer must not quote it back.
MARK = b"Q7MARKQ7"
MALFORMED_REQUESTS = {
    "not a request line": (MARK + b"\r\n\r\n", 400),
    "bad method": (b"G@T" + MARK + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad version": (b"GET /" + MARK + b" HTTP/9.x\r\nHost: x\r\n\r\n", 400),
    "bad header name": (b"GET / HTTP/1.1\r\nHost: x\r\nBad " + MARK + b": y\r\n\r\n", 400),
    "header too long": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + MARK * 2000 + b"\r\n\r\n", 431),
    "request line too long": (b"GET /" + MARK * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    "too many headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-" + MARK + b"-%d: y\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
    "bad chunk size": (
        b"POST /v1/sessions HTTP/1.1\r\nHost: [::1]\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + MARK + b"\r\n{}\r\n0\r\n\r\n",
        400,
    ),
    "bad content-length": (
        b"POST /v1/sessions HTTP/1.1\r\nHost: [::1]\r\nContent-Length: " + MARK + b"\r\n\r\n",
        400,
    ),
    "content-length and chunked": (
        b"POST /v1/sessions HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n{}",
        400,
    ),
    "bad URL": (b"GET http://[" + MARK + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "TLS on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK, 400),
}


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the answer's status, headers and body, read until relay closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # relay closes the connection after the answer
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


async def test_requests_the_http_parser_refuses_get_relays_json_error(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text("")
    log_path = tmp_path / "relay.log"
    messages = {}
    async with relay_process(config, port, log_path):
        for name, (request, expected_status) in MALFORMED_REQUESTS.items():
            status, headers, body = await exchange(port, request)
            assert status == expected_status, (name, status, body)
            assert headers["content-type"] == "application/json", (name, headers)
            assert MARK.decode() not in body.decode(), (name, body)
            error = json.loads(body)["error"]
            assert set(error) == {"code", "message"}, (name, error)
            code = "headers_too_large" if expected_status == 431 else "bad_request"
            assert error["code"] == code, (name, error)
            messages[name] = error["message"]
    assert messages["bad chunk size"] == "malformed HTTP request: invalid character in chunk size"
    assert messages["header too long"] == (
        "the request line or a header field is longer than 8190 bytes"
    )
    assert messages["too many headers"] == "the request has more than 128 header fields"
    assert messages["bad method"] == (
        "malformed HTTP request: the request line does not start with a valid method"
    )
    assert messages["TLS on the plain port"] == (
        "malformed HTTP request: this port speaks plain HTTP, and this looks like HTTPS (TLS)"
    )
    # One log line each, without aiohttp's traceback.
    log = log_path.read_text()
    assert "Traceback" not in log
    assert log.count("refused a request from 127.0.0.1") == len(MALFORMED_REQUESTS)


async def test_a_body_that_breaks_after_the_headers_is_a_400(tmp_path: Path) -> None:
    """The body's fault reaches the handler as it reads (aiohttp's Python parser; its C
    parser, the default, leaves the handler waiting for the body instead)."""
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text("")
    python_parser = {"AIOHTTP_NO_EXTENSIONS": "1"}
    async with relay_process(config, port, tmp_path / "relay.log", env=python_parser):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /v1/sessions HTTP/1.1\r\nHost: [::1]\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.3)  # the handler is reading the body by now
            writer.write(MARK + b"\r\n\r\n")
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                body = await reader.readexactly(length)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {
        "error": {
            "code": "bad_request",
            "message": "malformed HTTP request: the body's chunked encoding or length is not valid",
        }
    }


async def test_the_access_log_never_shows_a_read_token_or_a_session_id(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text("")
    log_path = tmp_path / "relay.log"
    base = f"http://127.0.0.1:{port}"
    body = {
        "model": "mock:tokens=3,tps=0,ttft_ms=0",
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with relay_process(config, port, log_path), aiohttp.ClientSession() as http:
        async with http.post(base + "/v1/sessions", json=body) as response:
            created = await response.json()
        token, session_id = created["token"], created["id"]
        events_url = f"{base}/v1/sessions/{session_id}/events?token={token}&last_event_id=0"
        async with http.get(events_url) as stream:
            assert stream.status == 200
            await stream.read()
        async with http.get(f"{base}/v1/sessions/{session_id}?access_token=rt_secret") as snapshot:
            assert snapshot.status == 200
        # A request is logged once its answer is sent: wait for the last one's line.
        tag = session_tag(session_id)
        await log_line_containing(log_path, f"{tag}?access_token=")
    log = log_path.read_text()
    assert token not in log and "rt_secret" not in log
    assert session_suffix(session_id) not in log  # the session is named by its tag
    # The line is still the request line, status, size and time, with only the value hidden.
    line = await log_line_containing(log_path, "/events?")
    request_line = f"GET /v1/sessions/{tag}/events?token=***&last_event_id=0 HTTP/1.1"
    assert f'127.0.0.1 "{request_line}" 200 ' in line
    # Then the events the stream sent, and the request's fields.
    assert re.search(r" 200 \d+ \d+\.\d{6}s events=6 request_id=req_\w{16} session=#\w+$", line)
    assert f'"GET /v1/sessions/{tag}?access_token=*** HTTP/1.1" 200' in log


async def log_line_containing(log_path: Path, text: str) -> str:
    async with asyncio.timeout(10):
        while not (found := [line for line in log_path.read_text().splitlines() if text in line]):
            await asyncio.sleep(0.02)
    return found[0]


async def test_the_ready_line_names_the_bound_address(tmp_path: Path) -> None:
    """`--port 0` binds a free port: the ready line can name it only once the socket is bound."""
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "serve", "--port", "0",
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            while not (
                found := re.search(r"ready on http://127\.0\.0\.1:(\d+)", log_path.read_text())
            ):
                assert process.returncode is None, log_path.read_text()
                await asyncio.sleep(0.05)
        port = int(found.group(1))
        assert port != 0
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as health,
        ):
            assert health.status == 200
        log = log_path.read_text()
        assert log.index("started, store memory://") < log.index("ready on")
    finally:
        process.kill()
        await process.wait()


async def test_a_traceback_logged_without_uvloop_does_not_chain_its_import_error(
    tmp_path: Path,
) -> None:
    redis = RedisServer(require_redis_server())
    redis.start()
    port, config, log_path = free_port(), tmp_path / "relay.toml", tmp_path / "relay.log"
    config.write_text(f'[store]\nurl = "{redis.url}"\n[generation]\nstore_retry_s = 0.2\n')
    body = {"model": "mock:tokens=100000,tps=50,ttft_ms=0", "messages": MESSAGES}
    base = f"http://127.0.0.1:{port}"
    try:
        async with relay_process(config, port, log_path, unimportable=["uvloop"]):
            async with (
                aiohttp.ClientSession() as http,
                http.post(base + "/v1/sessions", json=body) as created,
            ):
                assert created.status == 201  # its generation appends to Redis from now on
            await asyncio.to_thread(redis.stop)  # the generation is abandoned, with a traceback
            async with asyncio.timeout(10):
                while "generation abandoned" not in log_path.read_text():
                    await asyncio.sleep(0.1)
    finally:
        redis.close()
    log = log_path.read_text()
    assert "Traceback" in log
    assert [line for line in log.splitlines() if "uvloop" in line] == [
        line for line in log.splitlines() if "event loop: asyncio (install relay[fast]" in line
    ]
