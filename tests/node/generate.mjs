// Generations through the Vercel AI SDK (`ai`) and its OpenAI and Anthropic providers,
// unmodified, pointed at relay; run by tests/frontdoors/test_vercel_ai_sdk.py.
//
// The relay comes from the environment: RELAY_BASE_URL (relay's `/v1`) and RELAY_API_KEY
// (there rather than in argv, where `ps` would show it). argv[2] is a JSON list of calls:
//   {"api": "chat" | "responses" | "messages", "mode": "generate" | "stream",
//    "model": "...", "prompt": "..."}
// Prints one JSON list, one result per call: what the SDK gave back (text, usage, finish
// reason, warnings, the response's id and headers) and the headers it sent, the key
// shown as "$KEY"; or, when the call failed, the error the SDK raised.

import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { APICallError, generateText, streamText } from "ai";

// The SDK would log its warnings, a notice among them on stdout, where the results go;
// they are in the results instead.
globalThis.AI_SDK_LOG_WARNINGS = false;
const baseURL = process.env.RELAY_BASE_URL;
const apiKey = process.env.RELAY_API_KEY;
const sent = [];

// The SDK's own fetch, watched: a provider's documented `fetch` option.
async function watchedFetch(url, init) {
  const headers = {};
  for (const [name, value] of new Headers(init?.headers)) {
    headers[name] = value.replaceAll(apiKey, "$KEY");
  }
  sent.push(headers);
  return fetch(url, init);
}

const openai = createOpenAI({ baseURL, apiKey, fetch: watchedFetch });
const anthropic = createAnthropic({ baseURL, apiKey, fetch: watchedFetch });
const models = {
  chat: (id) => openai.chat(id),
  responses: (id) => openai.responses(id),
  messages: (id) => anthropic(id),
};

function described(error) {
  if (APICallError.isInstance(error)) {
    return {
      name: error.name,
      statusCode: error.statusCode,
      responseBody: error.responseBody,
      isRetryable: error.isRetryable,
    };
  }
  return { name: error?.name, message: String(error?.message ?? error) };
}

async function generate(options) {
  const result = await generateText(options);
  return {
    text: result.text,
    usage: result.usage,
    finishReason: result.finishReason,
    warnings: result.warnings,
    response: { id: result.response.id, headers: result.response.headers },
  };
}

// Errors of a stream arrive as its parts (streamText does not throw them).
async function stream(options) {
  const result = streamText(options);
  let streamed = "";
  let deltas = 0;
  for await (const part of result.fullStream) {
    if (part.type === "text-delta") {
      streamed += part.text;
      deltas += 1;
    } else if (part.type === "error") {
      return { error: described(part.error) };
    }
  }
  const response = await result.response;
  return {
    text: await result.text,
    streamed,
    deltas,
    usage: await result.usage,
    finishReason: await result.finishReason,
    warnings: await result.warnings,
    response: { id: response.id, headers: response.headers },
  };
}

async function run({ api, mode, model, prompt }) {
  const before = sent.length;
  const options = { model: models[api](model), prompt, maxRetries: 0 };
  let result;
  try {
    result = mode === "stream" ? await stream(options) : await generate(options);
  } catch (error) {
    result = { error: described(error) };
  }
  return { ...result, sent: sent.slice(before) };
}

const results = [];
for (const call of JSON.parse(process.argv[2])) {
  results.push(await run(call));
}
process.stdout.write(`${JSON.stringify(results)}\n`);
