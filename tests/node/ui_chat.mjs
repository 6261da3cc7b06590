// The Vercel AI SDK's own chat client, unmodified, against relay's UI message stream front
// door; run by tests/frontdoors/test_ui_chat_sdk.py with the working directory set to one
// major's folder (tests/node/ai5, ai6 or ai7), whose node_modules hold `ai` (the latest
// release) and `ai-strict` (the major's first release, whose chunk schema is strict: an
// unknown key fails a chunk; later releases only added keys, and then went loose).
//
// The relay comes from the environment: RELAY_UI_A and RELAY_UI_B (the front door's URL on
// two instances; they may be the same), RELAY_UI_BALANCER (the front door behind a load
// balancer over the instances: the `takeover` scenario's) and RELAY_API_KEY (a client's
// key, or empty). argv[2] is one JSON object: {"package": "ai" | "ai-strict", "scenario":
// "send" | "resume" | "stop" | "takeover", "chatId": "...", "model": "...", "prompt":
// "..."}. Prints one JSON object: what the SDK gave back (chunks, the message it
// assembled, the chat's messages) and every chunk relay sent as it came over the wire
// (`wire`, with the error that cut a response short), with the chunks that the strict
// schema refuses (`refused`: none is expected). The `takeover` scenario prints a line
// before it (`{"killNow": sessionId}`): the moment for the test to kill instance A.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const args = JSON.parse(process.argv[2]);
const require = createRequire(pathToFileURL(`${process.cwd()}/`));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const ai = await load(args.package);
const strict = new (await load("ai-strict")).DefaultChatTransport();

// Whether the strict release's transport takes a chunk: it parses every chunk it reads
// with its own `uiMessageChunkSchema` (which 5.0.0 does not export) and fails the stream
// on one that does not pass.
async function strictlyValid(chunk) {
  const body = new Response(`data: ${JSON.stringify(chunk)}\n\n`).body;
  try {
    const reader = strict.processResponseStream(body).getReader();
    while (!(await reader.read()).done) {}
    return true;
  } catch {
    return false;
  }
}
const [apiA, apiB] = [process.env.RELAY_UI_A, process.env.RELAY_UI_B];
const balancer = process.env.RELAY_UI_BALANCER;
const key = process.env.RELAY_API_KEY;
const headers = key ? { Authorization: `Bearer ${key}` } : {};

// Every chunk relay sent, as the wire had it, per response; `fetch` is the transport's
// documented option.
const wire = [];
const responded = new Map(); // a label: the promise of its response's record
function watchedFetch(label) {
  let arrived;
  responded.set(label, new Promise((resolve) => (arrived = resolve)));
  return async (url, init) => {
    const response = await fetch(url, init);
    if (!response.ok || response.status === 204 || !response.body) {
      wire.push({ label, status: response.status, chunks: [] });
      arrived(wire.at(-1));
      return response;
    }
    const [mine, theirs] = response.body.tee();
    const record = { label, status: response.status, headers: headersOf(response), chunks: [] };
    wire.push(record);
    record.done = collectWire(mine, record);
    arrived(record);
    return new Response(theirs, { status: response.status, headers: response.headers });
  };
}

function headersOf(response) {
  const names = ["x-vercel-ai-ui-message-stream", "x-relay-session-id", "x-accel-buffering"];
  return Object.fromEntries(names.map((name) => [name, response.headers.get(name)]));
}

// The chunks as they come, and the error that cut the response short (its instance died).
async function collectWire(body, record) {
  const decoder = new TextDecoderStream();
  let pending = "";
  try {
    for await (const text of body.pipeThrough(decoder)) {
      const lines = (pending + text).split("\n");
      pending = lines.pop();
      for (const line of lines.filter((line) => line.startsWith("data: "))) {
        const data = line.slice("data: ".length);
        record.chunks.push(data === "[DONE]" ? data : JSON.parse(data));
      }
    }
  } catch (error) {
    record.error = String(error?.message ?? error);
  }
}

function transport(api, label) {
  return new ai.DefaultChatTransport({
    api,
    headers,
    body: { model: args.model },
    fetch: watchedFetch(label),
  });
}

const userMessage = { id: "u1", role: "user", parts: [{ type: "text", text: args.prompt }] };

function send(api, label, chatId = args.chatId) {
  return transport(api, label).sendMessages({
    chatId,
    messages: [userMessage],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
}

function reconnect(api, label) {
  return transport(api, label).reconnectToStream({ chatId: args.chatId });
}

// Reading a stream of chunks: up to the n-th chunk of a type, or to its end.
async function readUntil(reader, chunks, type, n = 1) {
  let seen = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) return false;
    chunks.push(value);
    if (value.type === type && ++seen === n) return true;
  }
}

async function readAll(reader, chunks) {
  await readUntil(reader, chunks, null);
  return chunks;
}

// The message the SDK assembles from chunks (`readUIMessageStream`); errors kept.
async function assembled(chunks) {
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let message = null;
  const errors = [];
  const messages = ai.readUIMessageStream({ stream, onError: (e) => errors.push(String(e)) });
  try {
    for await (const snapshot of messages) message = snapshot;
  } catch (error) {
    errors.push(String(error?.message ?? error));
  }
  return { message, errors };
}

// A chat's state kept in memory: what useChat keeps in React state.
class MemoryState {
  constructor(messages) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (thing) => structuredClone(thing);
}

class MemoryChat extends ai.AbstractChat {}

async function scenarioSend() {
  const chunks = await readAll((await send(apiA, "send")).getReader(), []);
  return { chunks, ...(await assembled(chunks)) };
}

// A tab that had the message up to its third text delta (the message an app persisted)
// reloads: useChat's `resume: true` calls `resumeStream()`, on the other instance.
async function scenarioResume() {
  const live = (await send(apiA, "live")).getReader();
  const liveChunks = [];
  await readUntil(live, liveChunks, "text-delta", 3);
  const persisted = (await assembled(liveChunks)).message;
  const liveRest = readAll(live, liveChunks);
  const errors = [];
  const chat = new MemoryChat({
    id: args.chatId,
    transport: transport(apiB, "resumed"),
    state: new MemoryState([userMessage, persisted]),
    onError: (error) => errors.push(String(error?.message ?? error)),
  });
  await chat.resumeStream();
  await liveRest;
  const afterEnd = await reconnect(apiB, "after-end");
  return {
    liveChunks,
    persisted,
    chatMessages: chat.messages,
    chatStatus: chat.status,
    errors,
    afterEnd: afterEnd === null ? null : "a stream",
  };
}

// `stop` on a resumed stream: the resumed reader asks relay to stop the chat.
async function scenarioStop() {
  const live = (await send(apiA, "live")).getReader();
  const liveChunks = [];
  await readUntil(live, liveChunks, "text-delta");
  const resumed = (await reconnect(apiB, "resumed")).getReader();
  const resumedChunks = [];
  await readUntil(resumed, resumedChunks, "text-delta");
  const stopped = await fetch(`${apiB}/${args.chatId}/stop`, { method: "POST", headers });
  const stop = { status: stopped.status, body: await stopped.json() };
  await readAll(resumed, resumedChunks);
  await readAll(live, liveChunks);
  return { stop, liveChunks, resumedChunks, resumed: await assembled(resumedChunks) };
}

// The instance generating the message dies mid-answer, and another takes the generation
// over. A tab sends the message to instance A (`sendMessage`, as useChat does), a
// reader follows it on instance B (`reconnectToStream`); at its third text delta this
// prints `{"killNow": sessionId}` and the test SIGKILLs A, which cuts the tab's stream.
// The tab reloads through the balancer, and useChat's `resumeStream()` reads the message
// again. The same prompt, sent on B to another chat and never interrupted, is the reference.
async function scenarioTakeover() {
  const referenceChunks = [];
  const reference = send(apiB, "reference", `${args.chatId}-reference`)
    .then((stream) => readAll(stream.getReader(), referenceChunks));
  const tab = chatOf(apiA, "send", []);
  const sending = tab.chat.sendMessage({ text: args.prompt });
  const sessionId = (await responded.get("send")).headers["x-relay-session-id"];
  const follow = (await reconnect(apiB, "follow")).getReader();
  const followChunks = [];
  await readUntil(follow, followChunks, "text-delta", 3);
  process.stdout.write(`${JSON.stringify({ killNow: sessionId })}\n`);
  const followed = readAll(follow, followChunks);
  await sending; // the tab's stream ends as A dies
  const sent = stateOf(tab);
  const reloaded = chatOf(balancer, "reloaded", structuredClone(tab.chat.messages));
  await reloaded.chat.resumeStream();
  await Promise.all([followed, reference]);
  return {
    sent,
    reloaded: stateOf(reloaded),
    followed: await assembled(followChunks),
    reference: await assembled(referenceChunks),
  };
}

function stateOf({ chat, errors, statuses }) {
  return { messages: chat.messages, status: chat.status, errors, statuses };
}

// A chat of `messages` whose transport reaches `api`, keeping its errors and the states
// of the `data-relay-status` chunks that `onData` is handed.
function chatOf(api, label, messages) {
  const errors = [];
  const statuses = [];
  const chat = new MemoryChat({
    id: args.chatId,
    transport: transport(api, label),
    state: new MemoryState(messages),
    onError: (error) => errors.push(String(error?.message ?? error)),
    onData: (part) => statuses.push(part.type === "data-relay-status" ? part.data.state : part),
  });
  return { chat, errors, statuses };
}

const scenarios = {
  send: scenarioSend,
  resume: scenarioResume,
  stop: scenarioStop,
  takeover: scenarioTakeover,
};
const result = await scenarios[args.scenario]();
await Promise.all(wire.map((record) => record.done));
const refused = [];
for (const record of wire) {
  for (const chunk of record.chunks) {
    if (chunk !== "[DONE]" && !(await strictlyValid(chunk))) refused.push(chunk);
  }
  delete record.done;
}
const manifest = `${process.cwd()}/node_modules/${args.package}/package.json`;
const version = JSON.parse(readFileSync(manifest, "utf8")).version;
process.stdout.write(`${JSON.stringify({ ...result, wire, refused, version })}\n`);
