// relay-client.js: a browser client for relay's sessions (relay's docs/frontend.md).
//
// A dependency-free ES module: copy it into an app as it is, or import it from a relay at
// /static/relay-client.js. It starts a session (with a client key, or through the app's own
// backend that returns {id, token}), follows its events over SSE (EventSource), fetch streaming
// or relay's WebSocket, remembers {id, token, lastEventId} in sessionStorage after every event so
// a reloaded tab resumes exactly where it was, reconnects with backoff and jitter after network
// errors and after a connection silent past its idle timeout (a half-open one), and ends
// on the session's terminal event (done, error, cancelled) or a 204. A stream keeps the
// text so far and the last id, not every event (`keepEvents` keeps the last N).
// stop() cancels the session; close() only disconnects. Types: relay-client.d.ts.

const TERMINAL = new Set(["done", "error", "cancelled"]);

// relay's event types, as EventSource needs each named to deliver it.
const EVENT_TYPES = ["status", "delta", "reasoning", "tool_call", "usage", "done", "error", "cancelled"];

// The callback that gets each relay event type's data (`delta` is text).
const CALLBACK_OF = { delta: "text" };

const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 10000, jitter: 0.5 };

// relay sends a `: ping` every heartbeat (15 s by default) while a stream is idle: two
// missed and a bit is a connection that is gone without saying so (docs/frontend.md).
const DEFAULT_IDLE_TIMEOUT_MS = 35000;

/** An error relay (or the app's backend) answered: `code`, `status` and relay's message. */
export class RelayError extends Error {
  constructor(message, { code = "error", status = 0, retryable = false } = {}) {
    super(message);
    this.name = "RelayError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}

/**
 * Parse Server-Sent Events: `buffer` is the text received so far that earlier calls did not
 * use. Returns the complete events in it and the `rest` to prepend to the next chunk. Pure.
 * Each event is {id, type, data} with `data` the raw string; `retry` lines and comments
 * (`: ping`) are dropped.
 */
export function parseSSE(buffer) {
  const events = [];
  // A CR that ends the buffer may be half of a CRLF: it waits for the next chunk.
  const held = buffer.endsWith("\r") ? "\r" : "";
  const blocks = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop() + held;
  for (const block of blocks) {
    const event = { id: null, type: "message", data: null };
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon === 0) continue;
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = value;
      else if (field === "event") event.type = value;
      else if (field === "data") event.data = event.data === null ? value : event.data + "\n" + value;
    }
    if (event.data !== null) events.push(event);
  }
  return { events, rest };
}

/** The delay before reconnect `attempt` (1, 2, …): exponential, capped, with jitter. */
export function backoffDelay(attempt, { initialMs, maxMs, jitter }, random = Math.random) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
  return Math.round(ceiling * (1 - jitter * random()));
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage disabled (e.g. a sandboxed frame)
  }
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: the status says it
  }
  const retryable = response.status >= 500 || response.status === 429;
  return new RelayError(message, { code, status: response.status, retryable });
}

// A URL of the app's own (startUrl, stopUrl): relative to the page.
function pageUrl(url) {
  return new URL(url, globalThis.location?.href);
}

/** A request whose JSON answer is wanted: the answer, or a RelayError with relay's message. */
async function send(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    throw new RelayError(`could not reach ${url.origin}: ${cause.message}`, { code: "network_error", retryable: true });
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

export class RelayClient {
  constructor(options = {}) {
    this.baseUrl = options.baseUrl ?? "";
    this.apiKey = options.apiKey;
    this.startUrl = options.startUrl;
    this.stopUrl = options.stopUrl;
    this.transport = options.transport ?? "sse";
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.storageKey = options.storageKey ?? "relay-session";
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.keepEvents = options.keepEvents ?? 0;
    if (!["sse", "fetch", "websocket"].includes(this.transport)) {
      const given = JSON.stringify(this.transport);
      throw new RelayError(`transport must be "sse", "fetch" or "websocket", got ${given}`, { code: "invalid_transport" });
    }
  }

  /** The absolute URL of a relay path. */
  url(path) {
    const base = this.baseUrl || globalThis.location?.href;
    return new URL(this.baseUrl ? this.baseUrl.replace(/\/$/, "") + path : path, base);
  }

  headers(extra = {}) {
    return this.apiKey ? { ...extra, Authorization: `Bearer ${this.apiKey}` } : extra;
  }

  /** Start a session (POST /v1/sessions, or `startUrl`) and follow it from its first event. */
  async start(body) {
    const json = { "Content-Type": "application/json" };
    const [target, headers] = this.startUrl
      ? [pageUrl(this.startUrl), json] // the app's backend: its own cookies, not relay's key
      : [this.url("/v1/sessions"), this.headers(json)];
    const created = await send(target, { method: "POST", headers, body: JSON.stringify(body) });
    return this.attach({ id: created.id, token: created.token, lastEventId: 0 });
  }

  /** The session remembered in storage (a reloaded tab's), followed from its last event; or null. */
  resume() {
    const saved = this.remembered();
    return saved ? this.attach(saved) : null;
  }

  /** What storage holds: {id, token, lastEventId, text, reasoning, toolCalls, usage}, or null. */
  remembered() {
    if (!this.storage) return null;
    try {
      const saved = JSON.parse(this.storage.getItem(this.storageKey) || "null");
      return saved && typeof saved.id === "string" ? saved : null;
    } catch {
      return null;
    }
  }

  /** Drop what storage remembers (e.g. for a new conversation): a reload then resumes nothing. */
  forget() {
    try {
      this.storage?.removeItem(this.storageKey);
    } catch {
      // storage disabled: nothing is remembered
    }
  }

  /** Follow session `id` from the event after `lastEventId` (0: from the start). */
  attach({ id, token, lastEventId = 0, text = "", reasoning = "", toolCalls = [], usage = null }) {
    if (typeof id !== "string" || !id) throw new RelayError("attach: id is required", { code: "invalid_request" });
    const offset = Number(lastEventId) || 0;
    const stream = new RelayStream(this, { id, token, lastEventId: offset, text, reasoning, toolCalls, usage });
    stream.connect();
    return stream;
  }
}

export class RelayStream {
  constructor(client, session) {
    this.client = client;
    this.id = session.id;
    this.token = session.token;
    this.lastEventId = session.lastEventId;
    this.resumedFrom = session.lastEventId;
    this.text = session.text;
    this.reasoning = session.reasoning;
    this.toolCalls = [...session.toolCalls];
    this.usage = session.usage;
    this.state = "connecting";
    this.events = []; // the last `keepEvents` events only
    this.terminal = null;
    this.attempt = 0;
    this.connection = null;
    this.timer = null;
    this.watchdog = null;
    this.heardAt = 0;
    this.handlers = new Map();
    this.iterators = new Set(); // each running `for await`'s queue of events to give
    this.finished = new Promise((resolve) => { this._finish = resolve; });
    this.onOnline = () => this.retryNow();
    globalThis.addEventListener?.("online", this.onOnline);
    this.save();
  }

  /** Call `handler` on each `type` callback; returns the function that unsubscribes it. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type)?.delete(handler);
  }

  emit(type, payload, event = null) {
    for (const handler of [...(this.handlers.get(type) || [])]) {
      try {
        handler(payload, event);
      } catch (error) {
        setTimeout(() => { throw error; }); // a handler's bug is reported, never breaks the stream
      }
    }
  }

  get ended() {
    return ["done", "error", "cancelled", "closed"].includes(this.state);
  }

  // --- connecting -------------------------------------------------------------------

  connect() {
    if (this.ended) return;
    const open = { sse: openEventSource, fetch: openFetch, websocket: openWebSocket }[this.client.transport];
    this.connection = open(this, this.lastEventId);
    this.watch(this.connection);
  }

  disconnect() {
    clearTimeout(this.timer);
    this.timer = null;
    clearTimeout(this.watchdog);
    this.watchdog = null;
    const connection = this.connection;
    this.connection = null;
    if (connection) connection.close();
  }

  // --- the idle watchdog --------------------------------------------------------------

  /** Reconnect when `connection` brings nothing for `idleTimeoutMs`: a connection that
   * died without a FIN or RST (a NAT that forgot it, a laptop lid) is silent, not closed.
   * Half-way through the silence it asks `connection.ping` for a sign of life, where the
   * transport has one (the WebSocket's `ping`: relay's pings are frames a page never sees). */
  watch(connection) {
    const idleMs = this.client.idleTimeoutMs;
    if (!(idleMs > 0)) return;
    this.heardAt = Date.now();
    const check = () => {
      if (connection !== this.connection || this.ended) return;
      const quietMs = Date.now() - this.heardAt;
      if (quietMs >= idleMs) return this.dropped(connection, `nothing received for ${idleMs} ms (idle timeout)`);
      if (quietMs >= idleMs / 2) connection.ping?.();
      this.watchdog = setTimeout(check, (quietMs < idleMs / 2 ? idleMs / 2 : idleMs) - quietMs);
    };
    this.watchdog = setTimeout(check, idleMs / 2);
  }

  /** `connection` brought something (an event, a ping, a pong, its opening): it lives. */
  heard(connection) {
    if (connection === this.connection) this.heardAt = Date.now();
  }

  /** The transport is connected: the `open` callback, and `resumed` from a non-zero offset. */
  opened(connection) {
    if (connection !== this.connection || this.ended) return;
    this.heard(connection);
    const reconnected = this.state === "reconnecting";
    this.state = "open";
    this.emit("open", { lastEventId: this.lastEventId, reconnected });
    if (this.lastEventId > 0) this.emit("resumed", { lastEventId: this.lastEventId, reconnected });
  }

  /** The connection dropped (a network error, a server that went away): retry after a backoff. */
  dropped(connection, reason) {
    if (connection !== this.connection || this.ended) return;
    this.disconnect();
    this.attempt += 1;
    const delayMs = backoffDelay(this.attempt, this.client.backoff);
    this.state = "reconnecting";
    const { attempt, lastEventId } = this;
    this.emit("reconnecting", { attempt, delayMs, lastEventId, reason: String(reason || "") });
    this.timer = setTimeout(() => this.retryNow(), delayMs);
  }

  /** Reconnect at once if a reconnect is waiting: its timer, or the browser saying it is
   * back online (a phone out of a tunnel need not wait out the backoff). */
  retryNow() {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  /** relay answered 204: the session ended and this stream already has its terminal event.
   * The snapshot says how it ended (the state); `finished` resolves with null. */
  async noContent(connection) {
    if (connection !== this.connection || this.ended) return;
    this.connection = null;
    const state = await this.endedState();
    if (!this.ended) this.end(state, null, "ended"); // unless close() came meanwhile
  }

  async endedState() {
    const url = this.client.url(`/v1/sessions/${encodeURIComponent(this.id)}`);
    if (this.token && !this.client.apiKey) url.searchParams.set("token", this.token);
    try {
      const response = await fetch(url, { headers: this.client.headers() });
      const snapshot = await response.json();
      this.snapshot = snapshot;
      return { completed: "done", failed: "error", cancelled: "cancelled" }[snapshot.status] || "done";
    } catch {
      return "done";
    }
  }

  /** relay refused the subscription (404 expired, 401 token, …): it will not work again. */
  refused(connection, error) {
    if (connection !== this.connection || this.ended) return;
    if (error.retryable) return this.dropped(connection, error.message);
    const data = { code: error.code, message: error.message, retryable: false, status: error.status };
    this.emit("error", data, null);
    this.end("error", { id: null, type: "error", data }, "refused");
  }

  // --- events -----------------------------------------------------------------------

  /** One relay event {id, type, data}, from any transport. */
  received(connection, event) {
    if (connection !== this.connection || this.ended) return;
    this.heard(connection);
    if (event.id !== null && event.id <= this.lastEventId) return; // never twice
    this.attempt = 0;
    if (event.id !== null) this.lastEventId = event.id;
    this.apply(event);
    this.keep(event);
    this.save();
    const terminal = TERMINAL.has(event.type);
    if (terminal) this.settle(event.type, event, "terminal"); // its callbacks see the final state
    this.emit(CALLBACK_OF[event.type] || event.type, event.data, event);
    this.emit("event", event, event);
    for (const iterator of this.iterators) iterator.give(event);
    if (terminal) this.announce(event, "terminal");
  }

  /** `events` holds the last `keepEvents` events: a long session's events would otherwise
   * all stay in the page's memory (the text, what resume needs, is kept apart). */
  keep(event) {
    const limit = this.client.keepEvents;
    if (!(limit > 0)) return;
    this.events.push(event);
    if (this.events.length > limit) this.events.splice(0, this.events.length - limit);
  }

  apply({ type, data }) {
    if (type === "delta") this.text += data.text ?? "";
    else if (type === "reasoning") this.reasoning += data.text ?? "";
    else if (type === "tool_call") this.toolCalls.push(data);
    else if (type === "usage") this.usage = data;
    else if ((type === "done" || type === "cancelled") && data.usage) this.usage = data.usage;
  }

  /** The stream is over: `state`, the `terminal` event (or null), why (see EndInfo). */
  end(state, terminal, reason) {
    this.settle(state, terminal, reason);
    this.announce(terminal, reason);
  }

  settle(state, terminal, reason) {
    this.state = state;
    this.terminal = terminal;
    this.disconnect();
    globalThis.removeEventListener?.("online", this.onOnline);
    if (reason !== "closed") this.forget(); // close() keeps it, for a reload to resume
  }

  announce(terminal, reason) {
    this.emit("end", { state: this.state, reason, lastEventId: this.lastEventId }, terminal);
    for (const iterator of this.iterators) iterator.give(null);
    this._finish(terminal);
  }

  // --- storage ----------------------------------------------------------------------

  save() {
    const { storage, storageKey } = this.client;
    if (!storage) return;
    const { id, token, lastEventId, text, reasoning, toolCalls, usage } = this;
    const saved = { id, token, lastEventId, text, reasoning, toolCalls, usage };
    try {
      storage.setItem(storageKey, JSON.stringify(saved));
    } catch {
      // storage full or disabled: the stream goes on, a reload will not resume
    }
  }

  forget() {
    const { storage, storageKey } = this.client;
    if (!storage) return;
    try {
      const saved = JSON.parse(storage.getItem(storageKey) || "null");
      if (saved && saved.id === this.id) storage.removeItem(storageKey);
    } catch {
      // nothing to forget
    }
  }

  // --- ending -----------------------------------------------------------------------

  /** Disconnect; the session goes on and storage keeps it, so a reload resumes it. */
  close() {
    if (this.ended) return;
    this.end("closed", null, "closed");
  }

  /** Cancel the session (DELETE /v1/sessions/{id}, or `stopUrl`) and wait for its end. A read
   * token cannot cancel: a page without the key stops through its backend (`stopUrl`). */
  async stop() {
    const client = this.client;
    if (client.stopUrl) {
      const headers = { "Content-Type": "application/json" };
      await send(pageUrl(client.stopUrl), { method: "POST", headers, body: JSON.stringify({ id: this.id }) });
    } else {
      const session = client.url(`/v1/sessions/${encodeURIComponent(this.id)}`);
      await send(session, { method: "DELETE", headers: client.headers() });
    }
    return this.ended ? this.terminal : this.finished;
  }

  // --- async iteration ----------------------------------------------------------------

  /** The events kept (`keepEvents`), then every event from the moment the loop starts, in
   * order; ends after the terminal one (or close()). A loop started before the stream's
   * first event (as right after start() or attach()) gets every event. */
  async *[Symbol.asyncIterator]() {
    const queue = [...this.events];
    let wake = null;
    const iterator = { give: (event) => { queue.push(event); wake?.(); } };
    if (this.ended) queue.push(null);
    else this.iterators.add(iterator);
    try {
      while (true) {
        if (!queue.length) await new Promise((resolve) => { wake = resolve; });
        wake = null;
        const event = queue.shift();
        if (event === null) return;
        yield event;
      }
    } finally {
      this.iterators.delete(iterator);
    }
  }
}

// --- transports: each returns {close(), ping?()} and reports to the stream's callbacks ---
// What each can tell of a quiet connection's life (the idle watchdog, RelayStream.watch):
// fetch reads every byte, relay's `: ping` comments too; a WebSocket gets the `pong` to
// the `ping` the watchdog sends; EventSource hides comments, so only events count there.

function eventsUrl(stream, after, { token = true } = {}) {
  const url = stream.client.url(`/v1/sessions/${encodeURIComponent(stream.id)}/events`);
  if (token && stream.token) url.searchParams.set("token", stream.token);
  if (after > 0) url.searchParams.set("last_event_id", String(after));
  return url;
}

function decoded(id, type, data) {
  return { id: id === null || id === "" ? null : Number(id), type, data: JSON.parse(data) };
}

function openEventSource(stream, after) {
  const source = new EventSource(eventsUrl(stream, after));
  const connection = { close: () => source.close() };
  source.onopen = () => stream.opened(connection);
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      if (message.data === undefined) return; // EventSource's own error, below
      stream.received(connection, decoded(message.lastEventId, type, message.data));
    });
  }
  source.addEventListener("error", (message) => {
    if (message.data !== undefined || connection !== stream.connection) return;
    // Our own backoff replaces EventSource's reconnect, with the latest id.
    const closed = source.readyState === EventSource.CLOSED;
    source.close();
    if (closed) probe(stream, connection, after);
    else stream.dropped(connection, "the connection dropped");
  });
  return connection;
}

// EventSource closes for good on any answer but a 200 stream (204, 401, 404, 503…) and does
// not say which: ask again with fetch, which sees the status and relay's message.
async function probe(stream, connection, after) {
  const controller = new AbortController();
  try {
    // No key: the answer EventSource got, which sends none.
    const headers = { Accept: "text/event-stream" };
    const response = await fetch(eventsUrl(stream, after), { headers, signal: controller.signal });
    if (response.status === 204) stream.noContent(connection);
    else if (!response.ok) stream.refused(connection, await errorOf(response));
    else {
      controller.abort(); // the stream works again: reconnect with EventSource
      stream.dropped(connection, "the stream was interrupted");
    }
  } catch (cause) {
    stream.dropped(connection, cause.message);
  }
}

function openFetch(stream, after) {
  const controller = new AbortController();
  const connection = { close: () => controller.abort() };
  const withKey = Boolean(stream.client.apiKey);
  const headers = stream.client.headers({ Accept: "text/event-stream" });
  if (after > 0) headers["Last-Event-ID"] = String(after);
  const url = eventsUrl(stream, 0, { token: !withKey });
  (async () => {
    const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    if (response.status === 204) return stream.noContent(connection);
    if (!response.ok) return stream.refused(connection, await errorOf(response));
    stream.opened(connection);
    await readEvents(stream, connection, response.body);
    stream.dropped(connection, "the stream ended before the session did");
  })().catch((cause) => {
    if (!controller.signal.aborted) stream.dropped(connection, cause.message);
  });
  return connection;
}

async function readEvents(stream, connection, body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  while (connection === stream.connection) {
    const { value, done } = await reader.read();
    if (done) return;
    stream.heard(connection); // any bytes, a `: ping` too: the connection lives
    const parsed = parseSSE(rest + value);
    rest = parsed.rest;
    for (const event of parsed.events) stream.received(connection, decoded(event.id, event.type, event.data));
  }
  reader.cancel().catch(() => {});
}

// The socket counts as open once relay took the subscription: at its first event, or the
// `pong` to the ping sent after it (relay answers a socket's messages in order, so a
// refusal such as `session_ended` comes before it).
function openWebSocket(stream, after) {
  const url = stream.client.url("/v1/ws");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  const connection = {
    close: () => socket.close(1000),
    // relay's pings are protocol frames the browser answers unseen: ask for a `pong`.
    ping: () => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify({ type: "ping" })),
  };
  let subscribed = false;
  const confirm = () => {
    if (!subscribed) stream.opened(connection);
    subscribed = true;
  };
  socket.onopen = () => {
    if (stream.client.apiKey) socket.send(JSON.stringify({ type: "auth", key: stream.client.apiKey }));
    const subscribe = { type: "subscribe", session: stream.id, after };
    if (stream.token && !stream.client.apiKey) subscribe.token = stream.token;
    socket.send(JSON.stringify(subscribe));
    socket.send(JSON.stringify({ type: "ping" }));
  };
  socket.onmessage = (frame) => {
    stream.heard(connection);
    const message = JSON.parse(frame.data);
    if (message.type === "pong") confirm();
    else if (message.type === "event" && message.session === stream.id) {
      confirm();
      stream.received(connection, { id: message.id, type: message.event, data: message.data });
    } else if (message.type === "error" && (message.session === stream.id || message.session === undefined)) {
      socketError(stream, connection, message);
    }
  };
  socket.onclose = (event) => stream.dropped(connection, `the socket closed (${event.code})`);
  return connection;
}

// The socket's refusals: `session_ended` is its 204; `store_unavailable` and
// `too_many_subscribers` pass; the rest (session_not_found, invalid_token…) will not.
function socketError(stream, connection, message) {
  if (message.code === "session_ended") return stream.noContent(connection);
  if (message.code === "already_authenticated") return; // a relay without clients: any key will do
  const retryable = ["store_unavailable", "too_many_subscribers", "draining"].includes(message.code);
  stream.refused(connection, new RelayError(message.message, { code: message.code, retryable }));
}
