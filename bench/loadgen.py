"""The load generator: its own process, one job per run.

`python -m bench.loadgen` reads one job (JSON) on stdin and writes its result (JSON) on
stdout. While a job runs, the client only timestamps and keeps bytes (bench/client.py);
frames are parsed and numbers computed after the measured window. The CPU that the
watched processes (and this one) used in that window is read from /proc, so every
result says whether the load generator itself was near a full core.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bench import stats
from bench.client import Connection, HttpError, Response, delete, fetch, get, post_json
from bench.procfs import CpuWatch, open_files, rss_bytes
from bench.wire import Arrival, arrivals, content_of, sse_frames

MESSAGES = [{"role": "user", "content": "benchmark the relay"}]
CHAT_PATH = "/v1/chat/completions"
CUT = "still running when the run was cut"
Job = dict[str, Any]


def mock_model(tokens: int, tps: float, ttft_ms: float) -> str:
    return f"mock:tokens={tokens},tps={tps:g},ttft_ms={ttft_ms:g}"


def chat_request(host: str, port: int, model: str) -> bytes:
    return post_json(host, port, CHAT_PATH, {"model": model, "messages": MESSAGES, "stream": True})


def first_content_at(response: Response) -> float | None:
    for frame in sse_frames(response.reads):
        if content_of(frame):
            return frame.at
    return None


# --- time to first token -----------------------------------------------------------


async def ttft(job: Job) -> dict[str, Any]:
    """Sequential requests, round-robin over the targets, one keep-alive connection each."""
    targets: dict[str, dict[str, Any]] = job["targets"]
    connections = {name: await Connection.open(t["host"], t["port"]) for name, t in targets.items()}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    model = mock_model(job["tokens"], 0, job["upstream_ttft_ms"])
    for round_ in range(job["warmup"] + job["requests"]):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            target = targets[name]
            response = connections[name].request(
                chat_request(target["host"], target["port"], model)
            )
            await asyncio.wait_for(response.done, 30)
            at = first_content_at(response)
            if response.status != 200 or at is None:
                raise HttpError(f"{name}: HTTP {response.status}, {response.body()[:200]!r}")
            if round_ >= job["warmup"]:
                samples[name].append(at - response.sent_at)
    for connection in connections.values():
        connection.close()
    return {
        "summary_ms": {name: stats.summary(values, 1000) for name, values in samples.items()},
        "cdf_ms": {name: stats.cdf_points(values, 1000) for name, values in samples.items()},
    }


# --- concurrent streams: lag, gaps, throughput ---------------------------------------


async def streams(job: Job) -> dict[str, Any]:
    """N chat streams started evenly over `stagger_s`, each `tokens` tokens at `tps`.

    The run is bounded: streams still going `grace_s` after the last one was due to end
    are cut, and their missing tokens count with the lag they had reached by then.
    """
    host, port, count = job["host"], job["port"], job["streams"]
    model = mock_model(job["tokens"], job["tps"], 0)
    responses: list[Response | None] = [None] * count
    failures: list[str | None] = [None] * count

    async def one(index: int) -> None:
        await asyncio.sleep(index * job["stagger_s"] / count)
        try:
            connection = await Connection.open(host, port)
        except OSError as exc:
            failures[index] = f"connect: {exc}"
            return
        try:
            responses[index] = connection.request(chat_request(host, port, model))
            await responses[index].done  # type: ignore[union-attr]
        except (HttpError, OSError) as exc:
            failures[index] = str(exc)
        finally:
            connection.close()

    watch = CpuWatch(job.get("watch", {}))
    watch.start()
    deadline_s = job["tokens"] / job["tps"] + job["stagger_s"] + job["grace_s"]
    outcomes = await _bounded(deadline_s, [one(i) for i in range(count)])
    ended_at = time.perf_counter()
    cpu = watch.stop()
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, TimeoutError):
            failures[index] = CUT
    return _stream_result(job, responses, failures, ended_at, cpu)


async def _bounded(seconds: float, jobs: list[Awaitable[Any]]) -> list[Any]:
    """Every job's result, or a TimeoutError for those still running after `seconds`."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    _, late = await asyncio.wait(tasks, timeout=seconds)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return [
        TimeoutError("still running at the deadline") if task in late else task.result()
        for task in tasks
    ]


def _stream_result(
    job: Job,
    responses: list[Response | None],
    failures: list[str | None],
    ended_at: float,
    cpu: dict[str, Any],
) -> dict[str, Any]:
    tps, expected = job["tps"], job["tokens"]
    good: list[list[Arrival]] = []
    errors: list[str] = []
    lags: list[float] = []
    ttfts: list[float] = []
    unfinished = failures.count(CUT)
    for response, failure in zip(responses, failures, strict=True):
        found = arrivals(response.reads) if response is not None else []
        tokens = sum(a.tokens for a in found)
        if failure or response is None or response.status != 200 or tokens != expected:
            status = response.status if response is not None else 0
            errors.append(failure or f"HTTP {status}, {tokens} of {expected} tokens")
        if not found:
            continue
        good.append(found)
        assert response is not None
        ttfts.append(found[0].at - response.sent_at)
        origin = stats.schedule_origin([found], tps)
        lags += stats.token_lags(found, tps, origin)
        # Tokens that never came had at least this much lag when the run was cut.
        lags += [max(0.0, ended_at - origin - i / tps) for i in range(tokens, expected)]
    gap_values = [gap for s in good for gap in stats.gaps(s)]
    tokens_per_s, frames_per_s, window = stats.steady_rate(good)
    delivered = sum(a.tokens for s in good for a in s)
    return {
        "streams": job["streams"],
        "tps": tps,
        "tokens_per_stream": expected,
        "offered_tokens_per_s": job["streams"] * tps,
        "completed": len(responses) - len(errors),
        "errors": len(errors),
        "unfinished": unfinished,
        "error_samples": errors[:5],
        "tokens": delivered,
        "frames": sum(len(s) for s in good),
        "lag_ms": stats.summary(lags, 1000),
        "lag_cdf_ms": stats.cdf_points(lags, 1000),
        "gap_ms": stats.summary(gap_values, 1000),
        "ttft_ms": stats.summary(ttfts, 1000),
        "rate": {"tokens_per_s": tokens_per_s, "frames_per_s": frames_per_s, "window_s": window},
        "cpu": cpu,
    }


# --- fan-out: one session, many subscribers ------------------------------------------


async def create_session(host: str, port: int, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": MESSAGES}
    response = await fetch(host, port, post_json(host, port, "/v1/sessions", body))
    created: dict[str, Any] = response.json()  # type: ignore[assignment]
    return created


async def subscribe(host: str, port: int, path: str, *, keep_reads: bool = True) -> Response:
    """An SSE subscriber that has its first bytes; `response.done` when the stream ends."""
    connection = await Connection.open(host, port, keep_reads=keep_reads)
    response = connection.request(get(host, port, path))
    response.done.add_done_callback(lambda _: connection.close())
    await asyncio.wait_for(response.first_body, 30)
    return response


async def fanout(job: Job) -> dict[str, Any]:
    host, port, count, tps = job["host"], job["port"], job["subscribers"], job["tps"]
    created = await create_session(host, port, mock_model(job["tokens"], tps, job["ttft_ms"]))
    started = time.perf_counter()
    watch = CpuWatch(job.get("watch", {}))
    watch.start()
    gate = asyncio.Semaphore(100)

    async def one() -> Response:
        async with gate:
            return await subscribe(host, port, created["events_url"])

    responses = await asyncio.gather(*(one() for _ in range(count)))
    connected_s = time.perf_counter() - started
    deadline_s = job["ttft_ms"] / 1000 + job["tokens"] / tps + 60
    await _bounded(deadline_s, [response.done for response in responses])
    cpu = watch.stop()
    found = [arrivals(response.reads) for response in responses]
    origin = stats.schedule_origin(found, tps)
    lags = [lag for stream in found for lag in stats.token_lags(stream, tps, origin)]
    complete = sum(1 for stream in found if sum(a.tokens for a in stream) == job["tokens"])
    return {
        "subscribers": count,
        "complete": complete,
        "connected_s": connected_s,
        "connected_before_first_token": connected_s < job["ttft_ms"] / 1000,
        "tokens": sum(a.tokens for stream in found for a in stream),
        "frames": sum(len(stream) for stream in found),
        "lag_ms": stats.summary(lags, 1000),
        "lag_cdf_ms": stats.cdf_points(lags, 1000),
        "cpu": cpu,
    }


# --- resume catch-up ------------------------------------------------------------------


async def replay(job: Job) -> dict[str, Any]:
    """A finished session of `tokens + 4` events, read from the start by new subscribers."""
    host, port = job["host"], job["port"]
    started = time.perf_counter()
    created = await create_session(host, port, mock_model(job["tokens"], 0, 0))
    record = await _wait_finished(host, port, created["id"], timeout=120)
    generated_s = time.perf_counter() - started
    times, sizes, counts = [], [], []
    watch = CpuWatch(job.get("watch", {}))
    watch.start()
    for _ in range(job["repeats"]):
        connection = await Connection.open(host, port)
        response = connection.request(get(host, port, created["events_url"]))
        await asyncio.wait_for(response.done, 60)
        connection.close()
        times.append(response.reads[-1][0] - response.sent_at)
        sizes.append(response.size)
    cpu = watch.stop()
    frames = list(sse_frames(response.reads))
    counts.append(len(frames))
    return {
        "session_id": created["id"],
        "events": record["last_event_id"],
        "received_events": counts[-1],
        "last_event": frames[-1].event if frames else None,
        "bytes": sizes[-1],
        "generated_s": generated_s,
        "replay_ms": stats.summary(times, 1000),
        "cpu": cpu,
    }


async def _wait_finished(host: str, port: int, session_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await fetch(host, port, get(host, port, f"/v1/sessions/{session_id}"))
        record: dict[str, Any] = response.json()  # type: ignore[assignment]
        if record["status"] != "running":
            return record
        await asyncio.sleep(0.05)
    raise TimeoutError(f"session {session_id} still running after {timeout:g} s")


# --- idle subscribers -----------------------------------------------------------------


async def idle(job: Job) -> dict[str, Any]:
    """RSS growth of relay per idle SSE subscriber, over `subscribers` connections."""
    host, port, relay_pid = job["host"], job["port"], job["relay_pid"]
    held = await _Held.open(host, port, job["sessions"])
    _close_all(await held.connect(job["warmup"]))
    await asyncio.sleep(1.0)
    before = rss_bytes(relay_pid)
    files_before = open_files(relay_pid)
    started = time.perf_counter()
    subscribers = await held.connect(job["subscribers"])
    connect_s = time.perf_counter() - started
    await asyncio.sleep(job["settle_s"])
    after = rss_bytes(relay_pid)
    result = {
        "subscribers": len(subscribers),
        "sessions": len(held.sessions),
        "still_open": sum(1 for s in subscribers if not s.done.done()),
        "connect_s": connect_s,
        "relay_rss_before_mib": before / 2**20,
        "relay_rss_after_mib": after / 2**20,
        "relay_open_files": open_files(relay_pid) - files_before,
        "bytes_per_subscriber": (after - before) / len(subscribers),
        "loadgen_rss_mib": rss_bytes(os.getpid()) / 2**20,
    }
    _close_all(subscribers)
    await held.close()
    return result


async def held_streams(job: Job) -> dict[str, Any]:
    """`streams` while `subscribers` idle SSE subscribers stay connected to `sessions`
    silent sessions, from just before the streams start to their end: what open idle
    connections (their feeds, their heartbeats) cost the live streams."""
    held = await _Held.open(job["host"], job["port"], job["sessions"])
    started = time.perf_counter()
    subscribers = await held.connect(job["subscribers"])
    connect_s = time.perf_counter() - started
    await asyncio.sleep(job["settle_s"])
    result = await streams(job)
    result["idle"] = {
        "subscribers": len(subscribers),
        "sessions": len(held.sessions),
        "connect_s": connect_s,
        "still_open": sum(1 for s in subscribers if not s.done.done()),
    }
    _close_all(subscribers)
    await held.close()
    return result


class _Held:
    """Silent sessions (their first token an hour away) and the way to subscribe to them."""

    def __init__(self, host: str, port: int, sessions: list[dict[str, Any]]) -> None:
        self.host, self.port, self.sessions = host, port, sessions
        self._gate = asyncio.Semaphore(200)

    @classmethod
    async def open(cls, host: str, port: int, count: int) -> _Held:
        silent = mock_model(1, 0, 3_600_000)
        return cls(host, port, [await create_session(host, port, silent) for _ in range(count)])

    async def connect(self, count: int) -> list[Response]:
        """`count` subscribers, spread round-robin over the sessions."""
        return await asyncio.gather(*(self._subscribe(index) for index in range(count)))

    async def _subscribe(self, index: int) -> Response:
        async with self._gate:
            url = self.sessions[index % len(self.sessions)]["events_url"]
            return await subscribe(self.host, self.port, url, keep_reads=False)

    async def close(self) -> None:
        for session in self.sessions:
            path = f"/v1/sessions/{session['id']}"
            await fetch(self.host, self.port, delete(self.host, self.port, path))


def _close_all(responses: list[Response]) -> None:
    for response in responses:
        if not response.done.done():
            response.done.cancel()


JOBS: dict[str, Callable[[Job], Awaitable[dict[str, Any]]]] = {
    "ttft": ttft,
    "streams": streams,
    "fanout": fanout,
    "replay": replay,
    "idle": idle,
    "held_streams": held_streams,
}


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    job: Job = msgspec.json.decode(sys.stdin.buffer.read())
    _raise_file_limit()
    # Runs are short and keep every read: a collection of that heap would pause the
    # client for tens of milliseconds, in the middle of a measurement.
    gc.disable()
    try:
        import uvloop
    except ImportError:  # still correct, only slower
        runner: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = asyncio.run  # type: ignore[assignment]
    else:
        runner = uvloop.run  # type: ignore[assignment]
    result = runner(JOBS[job["kind"]](job))
    sys.stdout.buffer.write(msgspec.json.encode(result))


if __name__ == "__main__":
    main()
