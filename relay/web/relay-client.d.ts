// Types of relay-client.js, the browser client for relay's sessions (docs/frontend.md).

/** How the stream reads a session's events. */
export type Transport = "sse" | "fetch" | "websocket";

/** Where a stream is: connecting, open, reconnecting after a network error, or ended. */
export type StreamState = "connecting" | "open" | "reconnecting" | "done" | "error" | "cancelled" | "closed";

/** One relay event: ids are 1, 2, 3 … within a session, with no gaps. */
export interface RelayEvent<T = Record<string, unknown>> {
  id: number;
  type: string;
  data: T;
}

export interface Usage { input_tokens: number; output_tokens: number }
export interface StatusData { state: string; message: string; attempt?: number; delay_s?: number }
export interface TextData { text: string }
export interface ToolCallData { index: number; id: string; name: string; arguments: string }
export interface DoneData { finish_reason: string; usage: Usage | null }
/** relay's `error` event; `status` only when relay refused the subscription itself (e.g. 404). */
export interface ErrorData { code: string; message: string; retryable: boolean; status?: number }
export interface CancelledData { reason: string; usage?: Usage }

/** Exponential backoff between reconnects: initialMs, doubled each attempt up to maxMs,
 * minus up to `jitter` (0–1) of it at random. */
export interface Backoff { initialMs: number; maxMs: number; jitter: number }

export interface RelayClientOptions {
  /** relay's origin, e.g. "https://relay.example.com"; "" (default) is the page's own. */
  baseUrl?: string;
  /** A client key, when the page holds one (sent as `Authorization: Bearer`). */
  apiKey?: string;
  /** The app's own backend: POSTed the same JSON body as POST /v1/sessions, answers {id, token}. */
  startUrl?: string;
  /** The app's own backend for stop(): POSTed {id}; it cancels with its key. Default:
   * DELETE /v1/sessions/{id} (needs the owner's key, or a relay without clients). */
  stopUrl?: string;
  /** "sse" (EventSource, default), "fetch" (fetch streaming; sends headers) or "websocket" (/v1/ws). */
  transport?: Transport;
  /** Where {id, token, lastEventId, text, …} are remembered after every event; null: nowhere.
   * Default: sessionStorage (per tab, survives a reload). */
  storage?: Storage | null;
  /** The key in storage (default "relay-session"); one session per key. */
  storageKey?: string;
  /** Reconnect delays (default {initialMs: 500, maxMs: 10000, jitter: 0.5}). */
  backoff?: Partial<Backoff>;
  /** Reconnect (from the last id) when a connection brings nothing for this long: a
   * half-open connection is silent, not closed. Default 35000, a bit over two of relay's
   * 15 s heartbeats; keep it above twice `[server] heartbeat_s`; 0 turns it off. With
   * "sse" only events count (EventSource hides relay's `: ping`), so a session quiet
   * for longer reconnects once per timeout, losing nothing. */
  idleTimeoutMs?: number;
  /** How many of the latest events `stream.events` keeps (default 0: none; Infinity: all).
   * The text, reasoning, tool calls, usage and last id are kept whatever this is. */
  keepEvents?: number;
}

/** What start() POSTs: the body of POST /v1/sessions (docs/api.md). */
export interface StartBody {
  model: string;
  messages: Array<{ role: string; content: unknown; [field: string]: unknown }>;
  max_tokens?: number;
  temperature?: number;
  stop?: string | string[];
  tools?: unknown[];
  tool_choice?: unknown;
  metadata?: Record<string, unknown>;
  [field: string]: unknown;
}

/** A session to follow; text and the rest are what the stream had before `lastEventId`. */
export interface SessionRef {
  id: string;
  token?: string;
  lastEventId?: number;
  text?: string;
  reasoning?: string;
  toolCalls?: ToolCallData[];
  usage?: Usage | null;
}

/** An error relay or the app's backend answered: relay's `code` and message, the HTTP `status`. */
export class RelayError extends Error {
  code: string;
  status: number;
  retryable: boolean;
}

export class RelayClient {
  constructor(options?: RelayClientOptions);
  /** Start a session and follow it from its first event. Rejects with a RelayError
   * (`code`, `status`, relay's message) when relay refuses it, e.g. `unknown_model`. */
  start(body: StartBody): Promise<RelayStream>;
  /** Follow the session remembered in storage from the event after its last one; null when none. */
  resume(): RelayStream | null;
  /** Follow a session from the event after `lastEventId` (default 0: from the start). */
  attach(session: SessionRef): RelayStream;
  /** What storage holds now, or null. */
  remembered(): SessionRef | null;
  /** Drop what storage remembers (a "new conversation"): resume() then gives null. */
  forget(): void;
}

export interface OpenInfo { lastEventId: number; reconnected: boolean }
/** `reason` says why, e.g. "nothing received for 35000 ms (idle timeout)". */
export interface ReconnectingInfo { attempt: number; delayMs: number; lastEventId: number; reason: string }
/** `reason`: "terminal" (its terminal event), "ended" (204: it had ended), "refused" (404, 401…), "closed". */
export interface EndInfo {
  state: StreamState;
  reason: "terminal" | "ended" | "refused" | "closed";
  lastEventId: number;
}

/** What `finished` gives when relay refused the stream (404, 401…): not an event of the session. */
export interface RefusedEvent { id: null; type: "error"; data: ErrorData }

export interface StreamCallbacks {
  /** A `delta` event: its text (stream.text has it all). */
  text: (data: TextData, event: RelayEvent<TextData>) => void;
  reasoning: (data: TextData, event: RelayEvent<TextData>) => void;
  status: (data: StatusData, event: RelayEvent<StatusData>) => void;
  tool_call: (data: ToolCallData, event: RelayEvent<ToolCallData>) => void;
  usage: (data: Usage, event: RelayEvent<Usage>) => void;
  done: (data: DoneData, event: RelayEvent<DoneData>) => void;
  /** relay's `error` event (event set), or relay refusing the stream, e.g. an expired session (event null). */
  error: (data: ErrorData, event: RelayEvent<ErrorData> | null) => void;
  cancelled: (data: CancelledData, event: RelayEvent<CancelledData>) => void;
  /** Every event, after its own callback. */
  event: (event: RelayEvent, same: RelayEvent) => void;
  open: (info: OpenInfo) => void;
  reconnecting: (info: ReconnectingInfo) => void;
  /** The stream (re)connected from a non-zero offset: "resumed from event N". */
  resumed: (info: OpenInfo) => void;
  /** The stream is over, whatever the reason; once. */
  end: (info: EndInfo, terminal: RelayEvent | RefusedEvent | null) => void;
}

export class RelayStream implements AsyncIterable<RelayEvent> {
  /** The session id. */
  readonly id: string;
  /** The session's read token. */
  readonly token: string | undefined;
  /** The id of the last event received (0: none). */
  readonly lastEventId: number;
  /** The offset it was attached at: the "resumed from event N". */
  readonly resumedFrom: number;
  /** All delta text so far (including what storage held before a reload). */
  readonly text: string;
  readonly reasoning: string;
  readonly toolCalls: ToolCallData[];
  readonly usage: Usage | null;
  readonly state: StreamState;
  /** The last `keepEvents` events this stream received, in order (none by default). */
  readonly events: RelayEvent[];
  /** Resolves with the terminal event; null after close() or a 204; a RefusedEvent when relay
   * refused the stream. Never rejects. */
  readonly finished: Promise<RelayEvent | RefusedEvent | null>;
  /** Subscribe; returns the function that unsubscribes. */
  on<K extends keyof StreamCallbacks>(type: K, handler: StreamCallbacks[K]): () => void;
  /** Cancel the session (DELETE /v1/sessions/{id}, or `stopUrl`) and wait for its terminal event. */
  stop(): Promise<RelayEvent | RefusedEvent | null>;
  /** Disconnect only: the session goes on, storage keeps it, a reload resumes it. */
  close(): void;
  /** The events kept (`keepEvents`), then every event from the moment the loop starts (all of
   * them when it starts before the first, as right after start()); ends after the terminal
   * event (or close()). */
  [Symbol.asyncIterator](): AsyncIterator<RelayEvent>;
}

/** Parse SSE text: the complete events of `buffer` and the rest to prepend to the next chunk. Pure. */
export function parseSSE(buffer: string): {
  events: Array<{ id: string | null; type: string; data: string }>;
  rest: string;
};

/** The reconnect delay of attempt n (1, 2, …). */
export function backoffDelay(attempt: number, backoff: Backoff, random?: () => number): number;
