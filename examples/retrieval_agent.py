"""An example agent backend: the steps of a retrieval agent, published into a relay
session through `relay.producer`.

    python examples/retrieval_agent.py --relay http://127.0.0.1:8080 --prompt "what is relay?"

It prints the session's events URL (with its read token, for a browser), then emits the
statuses "Thinking…", "Searching knowledge base…" and "Found 5 sources", streams its
answer in deltas and ends with `done`. A prompt too short to search for (fewer than
three words) makes it ask a clarifying question first (a `status` with the state
`needs_input`) and wait for the user's answer, a signal `{"answer": "…"}`
(`POST /v1/sessions/{id}/signals`); without one within `--answer-timeout-s` it goes on
with the prompt as it is. A cancel signal ends the session with `cancelled`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from relay.producer import Producer, Signal

SOURCES = 5
QUESTION = "Could you say a little more about what you are looking for?"


def is_ambiguous(prompt: str) -> bool:
    return len(prompt.split()) < 3


def answer_text(question: str) -> str:
    """The answer the knowledge base "gives": deterministic, so a test can check it."""
    return (
        f"Here is what {SOURCES} sources say about {question!r}: relay keeps every step"
        " of an agent in one durable, resumable log, so a reader that reconnects misses"
        " nothing and sees nothing twice."
    )


async def clarified(producer: Producer, prompt: str, timeout_s: float) -> str | None:
    """The prompt with the user's answer to a clarifying question; None on a cancel."""
    await producer.status("needs_input", QUESTION)
    await producer.flush()
    signal = await next_answer(producer, timeout_s)
    if signal is None:
        await producer.status("thinking", "No answer; going on with the question as it is")
        return prompt
    if signal.kind == "cancel":
        return None
    return f"{prompt} {signal.data['answer']}"


async def next_answer(producer: Producer, timeout_s: float) -> Signal | None:
    """The first signal that answers or cancels, or None after `timeout_s`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            async with contextlib.aclosing(producer.signals()) as signals:
                async for signal in signals:
                    if signal.kind == "cancel" or isinstance(signal.data.get("answer"), str):
                        return signal
    return None


async def run_agent(producer: Producer, prompt: str, *, answer_timeout_s: float = 60) -> None:
    """The agent's steps, from the first status to `done` (or `cancelled`)."""
    await producer.status("thinking", "Thinking…")
    question: str | None = prompt
    if is_ambiguous(prompt):
        question = await clarified(producer, prompt, answer_timeout_s)
    if question is None:
        await producer.cancelled("client")
        return
    await producer.status("searching", "Searching knowledge base…")
    await asyncio.sleep(0.05)  # where a real agent would query its index
    await producer.status("found", f"Found {SOURCES} sources")
    for word in answer_text(question).split(" "):
        await producer.delta(word + " ")
    await producer.done("stop")


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="An example retrieval agent for relay.")
    parser.add_argument("--relay", default="http://127.0.0.1:8080", help="relay's base URL")
    parser.add_argument("--key", default=None, help="a client key, if relay has [[clients]]")
    parser.add_argument("--prompt", default="what does relay keep for an agent?")
    parser.add_argument("--answer-timeout-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    async with Producer.create(args.relay, key=args.key) as producer:
        print(f"{producer.events_url}?token={producer.read_token}", flush=True)
        await run_agent(producer, args.prompt, answer_timeout_s=args.answer_timeout_s)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
