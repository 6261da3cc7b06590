// What an app writes against relay-client.d.ts, type-checked by tests/web/test_relay_client_types.py
// (`tsc --strict --noEmit`; never run). Each `@ts-expect-error` is a mistake the types must catch:
// tsc fails when the line under it compiles.

import {
  RelayClient,
  RelayError,
  RelayStream,
  backoffDelay,
  parseSSE,
  type EndInfo,
  type RelayEvent,
  type SessionRef,
  type Usage,
} from "../../relay/web/relay-client.js";

async function chat(prompt: string): Promise<string> {
  const client = new RelayClient({
    baseUrl: "https://relay.example.com",
    startUrl: "/api/chat/start",
    stopUrl: "/api/chat/stop",
    transport: "fetch",
    storage: sessionStorage,
    storageKey: "pane-1",
    backoff: { initialMs: 250 },
    idleTimeoutMs: 40_000,
    keepEvents: 50,
  });
  let stream: RelayStream;
  try {
    stream = client.resume() ?? (await client.start({ model: "mock", messages: [{ role: "user", content: prompt }] }));
  } catch (error) {
    if (error instanceof RelayError) return `${error.code} (${error.status}): ${error.message}`;
    throw error;
  }
  const unsubscribe = stream.on("text", ({ text }) => console.log(text.toUpperCase()));
  stream.on("usage", (usage: Usage) => console.log(usage.input_tokens + usage.output_tokens));
  stream.on("done", ({ finish_reason, usage }) => console.log(finish_reason, usage?.output_tokens));
  stream.on("error", (data, event) => console.log(data.code, data.retryable, event?.id ?? "refused"));
  stream.on("reconnecting", ({ attempt, delayMs, reason }) => console.log(attempt, delayMs, reason));
  stream.on("resumed", ({ lastEventId, reconnected }) => console.log(lastEventId, reconnected));
  stream.on("end", (info: EndInfo, terminal) => console.log(info.reason, info.state, terminal?.type));
  stream.on("event", (event: RelayEvent) => console.log(event.id, event.type));
  unsubscribe();
  for await (const event of stream) console.log(event.id > stream.lastEventId, event.data);
  const kept: readonly RelayEvent[] = stream.events;
  const terminal = await stream.finished;
  if (terminal !== null && terminal.id === null) console.log(terminal.data.status, kept.length);
  await stream.stop();
  stream.close();
  return stream.text + stream.reasoning + stream.toolCalls.map((call) => call.name).join();
}

function attachAgain(client: RelayClient): RelayStream | null {
  const saved: SessionRef | null = client.remembered();
  client.forget();
  return saved && client.attach({ id: saved.id, token: saved.token, lastEventId: saved.lastEventId });
}

const { events, rest } = parseSSE("id: 1\nevent: delta\ndata: {}\n\n");
const delay: number = backoffDelay(2, { initialMs: 500, maxMs: 10_000, jitter: 0.5 }, Math.random);

function mistakes(client: RelayClient, stream: RelayStream): void {
  // @ts-expect-error: no such transport
  new RelayClient({ transport: "polling" });
  // @ts-expect-error: the timeout is a number of milliseconds
  new RelayClient({ idleTimeoutMs: "35s" });
  // @ts-expect-error: no such callback
  stream.on("delta", () => {});
  // @ts-expect-error: a text callback's data has no `code`
  stream.on("text", (data) => data.code);
  // @ts-expect-error: attach needs the session's id
  client.attach({ token: "rt_x" });
  // @ts-expect-error: the last id is relay's, read-only
  stream.lastEventId = 3;
  // @ts-expect-error: start needs a model
  void client.start({ messages: [] });
}

export { attachAgain, chat, delay, events, mistakes, rest };
