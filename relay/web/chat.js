// The demo chat page at `/`, built on relay-client.js (no build step).
//
// The conversation lives in localStorage, so every tab of this origin shares it and a
// reload keeps it; each turn is sent with the messages before it. The answer being
// streamed is the client's: it remembers the session and its last event id in this tab's
// sessionStorage, so a reloaded tab resumes where it was ("resumed from event N"), and a
// tab with no such record (a second tab) follows the session from its first event.
// `?transport=websocket` follows over relay's WebSocket instead of SSE.

import { RelayClient } from "/static/relay-client.js";

const CONVERSATION_KEY = "relay-chat"; // localStorage: {turns: [{user, model, session, token, answer}]}
// An answer: {text, reasoning, toolCalls, end: {state, finishReason, reason, code, message}, usage}.
const MODEL_KEY = "relay-chat-model"; // localStorage: the model last picked
const API_KEY_KEY = "relay-chat-api-key"; // sessionStorage: a key never outlives its tab
const STREAM_KEY = "relay-chat-stream"; // sessionStorage: the client's resume point

const TRANSPORTS = ["sse", "websocket", "fetch"];
const params = new URLSearchParams(location.search);
const transport = TRANSPORTS.includes(params.get("transport")) ? params.get("transport") : "sse";

const $ = (id) => document.getElementById(id);
const ui = {
  main: document.querySelector("main"), conversation: $("conversation"), empty: $("empty"), status: $("status"), alert: $("alert"),
  form: $("send"), prompt: $("prompt"), send: $("send-button"), stop: $("stop"),
  model: $("model"), customModel: $("custom-model"), newChat: $("new-chat"),
  settings: $("settings"), keyForm: $("key-form"), apiKey: $("api-key"), transport: $("transport"),
};

let conversation = loadConversation();
let live = null; // {stream, view}: the answer this tab is streaming
const markers = new Map(); // session id → "resumed from event N", this tab's own fact
const unfolded = new Set(); // the sessions whose reasoning the person opened, kept across renders

// --- storage ------------------------------------------------------------------------

function loadConversation() {
  try {
    const saved = JSON.parse(localStorage.getItem(CONVERSATION_KEY) || "null");
    if (saved && Array.isArray(saved.turns)) return saved;
  } catch {
    // unreadable: start over
  }
  return { turns: [] };
}

function saveConversation() {
  localStorage.setItem(CONVERSATION_KEY, JSON.stringify(conversation));
}

function pendingTurn() {
  const last = conversation.turns.at(-1);
  return last && !last.answer ? last : null;
}

// What the next turn is sent with: every earlier question, and every answer that has text.
function history() {
  const messages = [];
  for (const turn of conversation.turns) {
    messages.push({ role: "user", content: turn.user });
    if (turn.answer?.text) messages.push({ role: "assistant", content: turn.answer.text });
  }
  return messages;
}

function client() {
  return new RelayClient({
    apiKey: sessionStorage.getItem(API_KEY_KEY) || undefined,
    transport,
    storage: sessionStorage,
    storageKey: STREAM_KEY,
  });
}

function authHeaders() {
  const key = sessionStorage.getItem(API_KEY_KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// --- the model picker ---------------------------------------------------------------

async function loadModels() {
  let body;
  try {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    body = await response.json();
    if (!response.ok) return modelsRefused(body.error);
  } catch (error) {
    showAlert(`could not list the models: ${error.message}`);
    return fillModels([]);
  }
  fillModels(body.data.map((model) => model.id));
}

function modelsRefused(error) {
  const needsKey = error.code === "missing_api_key" || error.code === "invalid_api_key";
  showAlert(`${error.code}: ${error.message}${needsKey ? " (enter a key under Settings)" : ""}`);
  fillModels([]);
  if (needsKey) {
    ui.settings.open = true;
    ui.apiKey.focus();
  }
}

function fillModels(ids) {
  for (const option of [...ui.model.options]) if (option.value) option.remove();
  const other = ui.model.options[0];
  for (const id of ids) ui.model.insertBefore(new Option(id, id), other);
  pickModel(params.get("model") || localStorage.getItem(MODEL_KEY) || ids[0] || "");
}

function pickModel(name) {
  const listed = [...ui.model.options].some((option) => option.value === name && name);
  ui.model.value = listed ? name : "";
  ui.customModel.value = listed ? "" : name;
  ui.customModel.hidden = listed;
}

function chosenModel() {
  return (ui.model.value || ui.customModel.value).trim();
}

ui.model.addEventListener("change", () => {
  ui.customModel.hidden = ui.model.value !== "";
  if (ui.model.value) localStorage.setItem(MODEL_KEY, ui.model.value);
  else ui.customModel.focus();
});
ui.customModel.addEventListener("change", () => localStorage.setItem(MODEL_KEY, chosenModel()));

// --- rendering ----------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Follow the end of the conversation as it grows, unless the person scrolled up to read.
function keepInView(change) {
  const { main } = ui;
  const atEnd = main.scrollHeight - main.scrollTop - main.clientHeight < 80;
  change();
  if (atEnd) main.scrollTop = main.scrollHeight;
}

function renderAll() {
  keepInView(renderTurns);
  ui.empty.hidden = conversation.turns.length > 0;
  setBusy(Boolean(pendingTurn()));
}

function renderTurns() {
  ui.conversation.replaceChildren();
  for (const turn of conversation.turns) {
    const question = element("article", "message user");
    question.setAttribute("aria-label", "You");
    question.append(element("p", "text", turn.user));
    ui.conversation.append(question, renderAnswer(turn));
  }
}

// One answer's element, and the parts a live stream writes into.
function answerView(sessionId) {
  const root = element("article", "message assistant");
  root.setAttribute("aria-label", "Answer");
  root.dataset.session = sessionId;
  const marker = element("p", "marker");
  marker.hidden = true;
  const reasoning = element("details", "reasoning");
  reasoning.hidden = true;
  const reasoningText = element("div", "reasoning-text");
  reasoning.append(element("summary", "", "Reasoning"), reasoningText);
  reasoning.open = unfolded.has(sessionId);
  reasoning.addEventListener("toggle", () => {
    if (reasoning.open) unfolded.add(sessionId);
    else unfolded.delete(sessionId);
  });
  const tools = element("ul", "tool-calls");
  tools.setAttribute("aria-label", "Tool calls");
  tools.hidden = true;
  const text = element("div", "text");
  const end = element("p", "end");
  end.hidden = true;
  const usage = element("p", "usage");
  usage.hidden = true;
  root.append(marker, reasoning, tools, text, end, usage);
  return { root, marker, reasoning, reasoningText, tools, text, end, usage };
}

function renderAnswer(turn) {
  const view = answerView(turn.session);
  const streaming = live && live.stream.id === turn.session && !live.stream.ended;
  const answer = streaming ? streamed(live.stream) : turn.answer;
  showMarker(view, markers.get(turn.session));
  if (answer) {
    view.text.textContent = answer.text;
    appendReasoning(view, answer.reasoning);
    for (const call of answer.toolCalls) appendToolCall(view, call);
  }
  if (streaming) live.view = view;
  if (turn.answer && !streaming) {
    showEnd(view, turn.answer.end);
    showUsage(view, turn.answer.usage);
  } else setStreaming(view, true);
  return view.root;
}

function streamed(stream) {
  return { text: stream.text, reasoning: stream.reasoning, toolCalls: stream.toolCalls };
}

function setStreaming(view, streaming) {
  view.text.classList.toggle("streaming", streaming);
  view.root.dataset.state = streaming ? "streaming" : view.root.dataset.state;
  // Screen readers read the answer once it is whole, not word by word.
  view.root.setAttribute("aria-busy", String(streaming));
}

function showMarker(view, text) {
  view.marker.hidden = !text;
  view.marker.textContent = text || "";
}

function appendReasoning(view, text) {
  if (!text) return;
  view.reasoning.hidden = false;
  view.reasoningText.append(text);
}

function appendToolCall(view, call) {
  const item = element("li", "tool-call");
  item.append(element("span", "name", call.name), element("pre", "arguments", prettyJson(call.arguments)));
  view.tools.append(item);
  view.tools.hidden = false;
}

function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text; // not JSON: shown as it came
  }
}

// How a session's end reads, in the answer and on the status line.
function endText(end) {
  if (end.state === "done") return `completed · finish reason: ${end.finishReason}`;
  if (end.state === "error") return `failed · ${end.code}: ${end.message}`;
  return "cancelled" + (end.reason ? ` · reason: ${end.reason}` : "");
}

function showEnd(view, end) {
  setStreaming(view, false);
  view.root.dataset.state = end.state;
  view.end.hidden = false;
  view.end.className = `end ${end.state}`;
  view.end.textContent = end.state === "cancelled" ? `Stopped: ${endText(end)}` : endText(end);
  view.end.setAttribute("role", end.state === "error" ? "alert" : "note");
}

// The answer's final usage, small, under it (when relay reported one).
function showUsage(view, usage) {
  view.usage.hidden = !usage;
  view.usage.textContent = usage ? `${usage.input_tokens} input · ${usage.output_tokens} output tokens` : "";
}

function setStatus(text) {
  ui.status.textContent = text;
}

function showAlert(text) {
  ui.alert.textContent = text;
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !(busy && live);
}

// --- following a stream -------------------------------------------------------------

function follow(stream) {
  live = { stream, view: null };
  renderAll();
  ui.stop.disabled = false;
  const view = () => live?.stream === stream && live.view;
  stream.on("open", () => setStatus("streaming"));
  stream.on("status", (data) => setStatus(data.message ? `${data.state} · ${data.message}` : data.state));
  const write = (change) => (data) => view() && keepInView(() => change(view(), data));
  stream.on("text", write((into, data) => into.text.append(data.text)));
  stream.on("reasoning", write((into, data) => appendReasoning(into, data.text)));
  stream.on("tool_call", write((into, data) => appendToolCall(into, data)));
  stream.on("reconnecting", (info) => setStatus(`reconnecting… (attempt ${info.attempt})`));
  stream.on("resumed", (info) => resumed(stream, info));
  stream.on("end", (info, terminal) => ended(stream, info, terminal));
}

function resumed(stream, { lastEventId, reconnected }) {
  const text = `${reconnected ? "reconnected: " : ""}resumed from event ${lastEventId}`;
  markers.set(stream.id, text);
  if (live?.stream === stream && live.view) showMarker(live.view, text);
  setStatus(text);
}

function ended(stream, { state }, terminal) {
  if (state === "closed") return; // this tab let go of it (new chat, another tab's turn)
  const answer = answerOf(stream, state, terminal);
  conversation = loadConversation(); // another tab may have written meanwhile
  const turn = conversation.turns.find((candidate) => candidate.session === stream.id);
  if (live?.stream === stream) live = null;
  if (!turn) return; // its chat was cleared (New chat, here or in another tab)
  if (!turn.answer) {
    turn.answer = answer;
    saveConversation();
  }
  setStatus(endText(answer.end));
  renderAll();
}

// The answer as it ended: from the stream, or (a 204: it had ended before this tab
// came back) from the snapshot the client read.
function answerOf(stream, state, terminal) {
  const data = terminal?.data || {};
  const snapshot = stream.snapshot;
  const error = data.code ? data : snapshot?.error || {};
  const end = {
    state,
    finishReason: data.finish_reason || snapshot?.finish_reason || null,
    reason: data.reason || null,
    code: error.code || null,
    message: error.message || null,
  };
  const usage = (terminal ? stream.usage : snapshot?.usage) ?? stream.usage ?? null;
  if (!terminal && snapshot) return { text: snapshot.text, reasoning: stream.reasoning, toolCalls: snapshot.tool_calls, end, usage };
  return { ...streamed(stream), end, usage };
}

// The pending turn of the conversation: this tab's own stream when it remembers it (a
// reload), else followed from its first event.
function followPending() {
  const turn = pendingTurn();
  if (!turn || live) return;
  const relay = client();
  const remembered = relay.remembered();
  follow(remembered?.id === turn.session ? relay.resume() : relay.attach({ id: turn.session, token: turn.token }));
}

// --- sending, stopping --------------------------------------------------------------

async function send(prompt) {
  const model = chosenModel();
  if (!prompt.trim() || pendingTurn()) return;
  if (!model) return showAlert("choose a model first (Other… takes any name relay routes)");
  ui.prompt.value = "";
  showAlert("");
  setBusy(true);
  setStatus("starting…");
  let stream;
  try {
    stream = await client().start({ model, messages: [...history(), { role: "user", content: prompt }] });
  } catch (error) {
    return startRefused(prompt, error);
  }
  conversation = loadConversation();
  conversation.turns.push({ user: prompt, model, session: stream.id, token: stream.token, answer: null });
  saveConversation();
  follow(stream);
}

function startRefused(prompt, error) {
  showAlert(error.code ? `${error.code}: ${error.message}` : error.message);
  setStatus("not sent");
  setBusy(false);
  if (!ui.prompt.value) ui.prompt.value = prompt; // nothing lost: edit and send again
  ui.prompt.focus();
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  send(ui.prompt.value);
});

// Enter sends, Shift+Enter is a new line (and Enter while an IME composes is the IME's).
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  if (!ui.send.disabled) ui.form.requestSubmit();
});

ui.stop.addEventListener("click", async () => {
  if (!live) return;
  ui.stop.disabled = true;
  setStatus("stopping…");
  try {
    await live.stream.stop();
  } catch (error) {
    showAlert(`could not stop: ${error.code ? `${error.code}: ` : ""}${error.message}`);
    ui.stop.disabled = false;
  }
});

ui.newChat.addEventListener("click", () => {
  if (live) live.stream.stop().catch(() => {}); // a chat left behind need not run on
  live = null;
  markers.clear();
  unfolded.clear();
  conversation = { turns: [] };
  saveConversation();
  showAlert("");
  setStatus("idle");
  renderAll();
  ui.prompt.focus();
});

// --- settings, other tabs, start ----------------------------------------------------

ui.apiKey.value = sessionStorage.getItem(API_KEY_KEY) || "";
ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.apiKey.value.trim();
  if (key) sessionStorage.setItem(API_KEY_KEY, key);
  else sessionStorage.removeItem(API_KEY_KEY);
  showAlert("");
  loadModels().then(followPending);
});
ui.transport.textContent = transport;

// Another tab changed the conversation: show it, follow its new turn, let go of a
// stream whose chat was cleared there.
window.addEventListener("storage", (event) => {
  if (event.key !== CONVERSATION_KEY) return;
  conversation = loadConversation();
  if (live && !conversation.turns.some((turn) => turn.session === live.stream.id)) {
    live.stream.close();
    live = null;
  }
  renderAll();
  followPending();
});

renderAll();
await loadModels();
followPending();
document.body.dataset.ready = "true";
