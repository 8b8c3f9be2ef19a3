// Every kind of bad request gets its status and an OpenAI-style error naming the problem (table-driven), and the
// engine's refusals (a full queue, a request it cannot take) reach the client as 429 and 400.
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EngineRequestError } from "../../src/engine/api.js";
import { eventually, startHarness, type Harness } from "./harness.js";

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi" }], ...extra });
const completion = (extra: Record<string, unknown> = {}) => ({ model: "fake-gpt-oss", prompt: "Hi", ...extra });

interface Case {
  readonly name: string;
  readonly method?: string;
  readonly path: string;
  readonly body?: unknown;
  readonly status: number;
  readonly param?: string | null;
  readonly code?: string;
  /** A phrase the message must contain. */
  readonly says: string;
}

const CHAT = "/v1/chat/completions";
const COMPLETIONS = "/v1/completions";

const cases: Case[] = [
  { name: "a body that is not JSON", path: CHAT, body: "{not json", status: 400, code: "invalid_json", says: "not valid JSON" },
  { name: "a body that is not an object", path: CHAT, body: '"hello"', status: 400, param: null, says: "expected object" },
  { name: "no model", path: CHAT, body: { messages: [{ role: "user", content: "Hi" }] }, status: 400, param: "model", says: "model: must be a string" },
  { name: "an unknown model", path: CHAT, body: chat({ model: "gpt-4" }), status: 404, param: "model", code: "model_not_found", says: '"gpt-4" does not exist' },
  { name: "an unknown model (completions)", path: COMPLETIONS, body: completion({ model: "x" }), status: 404, param: "model", code: "model_not_found", says: '"x" does not exist' },
  { name: "no messages", path: CHAT, body: chat({ messages: [] }), status: 400, param: "messages", says: "at least one message" },
  { name: "an unknown role", path: CHAT, body: chat({ messages: [{ role: "robot", content: "Hi" }] }), status: 400, param: "messages[0].role", says: 'role must be one of system, developer, user, assistant, tool; got "robot"' },
  { name: "content that is a number", path: CHAT, body: chat({ messages: [{ role: "user", content: 3 }] }), status: 400, param: "messages[0].content", says: "a string or an array of text parts" },
  {
    name: "an image part",
    path: CHAT,
    body: chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }),
    status: 400,
    param: "messages[0].content[0].type",
    says: 'only text content parts are supported, got "image_url"',
  },
  { name: "a tool message without an id", path: CHAT, body: chat({ messages: [{ role: "tool", content: "x" }] }), status: 400, param: "messages[0].tool_call_id", says: "needs the tool_call_id" },
  {
    name: "a tool result for no earlier call",
    path: CHAT,
    body: chat({ messages: [{ role: "user", content: "Hi" }, { role: "tool", tool_call_id: "call_nope", content: "x" }] }),
    status: 400,
    param: "messages[1].tool_call_id",
    says: 'no earlier assistant tool call has the id "call_nope"',
  },
  { name: "temperature out of range", path: CHAT, body: chat({ temperature: 3 }), status: 400, param: "temperature", says: "between 0 and 2" },
  { name: "top_p of 0", path: CHAT, body: chat({ top_p: 0 }), status: 400, param: "top_p", says: "(0, 1]" },
  { name: "a fractional top_k", path: CHAT, body: chat({ top_k: 1.5 }), status: 400, param: "top_k", says: "integer" },
  { name: "a negative seed", path: CHAT, body: chat({ seed: -1 }), status: 400, param: "seed", says: "non-negative" },
  { name: "n of 0", path: CHAT, body: chat({ n: 0 }), status: 400, param: "n", says: "at least 1" },
  { name: "more choices than the server answers", path: CHAT, body: chat({ n: 100 }), status: 400, param: "n", says: "at most 16" },
  { name: "max_tokens of 0", path: CHAT, body: chat({ max_tokens: 0 }), status: 400, param: "max_tokens", says: "at least 1" },
  { name: "max_tokens past the context (the engine's refusal)", path: CHAT, body: chat({ max_tokens: 100_000 }), status: 400, param: "max_tokens", says: "exceed the context of 4096 tokens" },
  { name: "max_completion_tokens past the context", path: CHAT, body: chat({ max_completion_tokens: 100_000 }), status: 400, param: "max_completion_tokens", says: "exceed the context" },
  { name: "top_logprobs without logprobs", path: CHAT, body: chat({ top_logprobs: 2 }), status: 400, param: "top_logprobs", says: "needs logprobs: true" },
  { name: "too many top_logprobs", path: CHAT, body: chat({ logprobs: true, top_logprobs: 21 }), status: 400, param: "top_logprobs", says: "at most 20" },
  { name: "a tool name with a space", path: CHAT, body: chat({ tools: [{ type: "function", function: { name: "get weather" } }] }), status: 400, param: "tools[0].function.name", says: "letters, digits" },
  { name: "a tool that is not a function", path: CHAT, body: chat({ tools: [{ type: "web_search", function: { name: "x" } }] }), status: 400, param: "tools[0].type", says: 'only "function" tools' },
  { name: "tool_choice required", path: CHAT, body: chat({ tools: [{ type: "function", function: { name: "f" } }], tool_choice: "required" }), status: 400, param: "tool_choice", says: "constrained decoding" },
  { name: "a bad tool_choice", path: CHAT, body: chat({ tool_choice: "sometimes" }), status: 400, param: "tool_choice", says: '"none", "auto"' },
  { name: "an unknown reasoning effort", path: CHAT, body: chat({ reasoning_effort: "maximal" }), status: 400, param: "reasoning_effort", says: '"low", "medium" or "high"' },
  { name: "a frequency penalty", path: CHAT, body: chat({ frequency_penalty: 0.5 }), status: 400, param: "frequency_penalty", says: "not supported" },
  { name: "logit_bias", path: CHAT, body: chat({ logit_bias: { "1": 2 } }), status: 400, param: "logit_bias", says: "not supported" },
  { name: "structured output", path: CHAT, body: chat({ response_format: { type: "json_object" } }), status: 400, param: "response_format", says: 'only {"type": "text"}' },
  { name: "too many stop strings", path: CHAT, body: chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), status: 400, param: "stop", says: "at most 16" },
  { name: "a negative stop token id", path: CHAT, body: chat({ stop_token_ids: [-1] }), status: 400, param: "stop_token_ids[0]", says: "non-negative" },
  { name: "a stream flag that is not a boolean", path: CHAT, body: chat({ stream: "yes" }), status: 400, param: "stream", says: "expected boolean" },
  { name: "no prompt", path: COMPLETIONS, body: { model: "fake-gpt-oss" }, status: 400, param: "prompt", says: "must be a string, an array of strings" },
  { name: "an empty token-id prompt", path: COMPLETIONS, body: completion({ prompt: [] }), status: 400, param: "prompt", says: "at least one" },
  { name: "a negative token id", path: COMPLETIONS, body: completion({ prompt: [1, -2] }), status: 400, param: "prompt[1]", says: "non-negative integers" },
  { name: "a token id outside the vocabulary", path: COMPLETIONS, body: completion({ prompt: [1, 300_000] }), status: 400, param: "prompt", says: "token id 300000 at position 1 is outside the vocabulary" },
  { name: "mixed prompt kinds", path: COMPLETIONS, body: completion({ prompt: [[1], "x"] }), status: 400, param: "prompt", says: "must be a string" },
  { name: "an empty text prompt", path: COMPLETIONS, body: completion({ prompt: "" }), status: 400, param: "prompt", says: "the prompt is empty" },
  { name: "too many completion logprobs", path: COMPLETIONS, body: completion({ logprobs: 21 }), status: 400, param: "logprobs", says: "at most 20" },
  { name: "echo", path: COMPLETIONS, body: completion({ echo: true }), status: 400, param: "echo", says: "not supported" },
  { name: "best_of", path: COMPLETIONS, body: completion({ best_of: 3 }), status: 400, param: "best_of", says: "not supported" },
  { name: "too many prompts times n", path: COMPLETIONS, body: completion({ prompt: ["a", "b", "c"], n: 6 }), status: 400, param: "prompt", says: "18 choices" },
  { name: "an unknown route", method: "GET", path: "/v1/embeddings", status: 404, code: "unknown_url", says: "no route GET /v1/embeddings" },
  { name: "GET on a POST route", method: "GET", path: CHAT, status: 405, code: "method_not_allowed", says: "GET is not allowed on /v1/chat/completions; use POST" },
  { name: "POST on a GET route", path: "/v1/models", body: {}, status: 405, code: "method_not_allowed", says: "use GET" },
  { name: "an unknown model id", method: "GET", path: "/v1/models/gpt-4", status: 404, code: "model_not_found", says: '"gpt-4" does not exist' },
];

describe("bad requests", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({}, { maxBodyBytes: 4096 });
  });
  afterAll(async () => {
    await h.close();
  });

  it.each(cases)("$name → $status", async (c) => {
    const before = h.engine.requests.length;
    const res = await h.request(c.method ?? "POST", c.path, c.body);
    expect(res.status, res.text).toBe(c.status);
    expect(res.headers.get("content-type")).toBe("application/json");
    const { error } = res.json as ErrorBody;
    expect(error.message).toContain(c.says);
    expect(error.type).toBe("invalid_request_error");
    if (c.param !== undefined) expect(error.param).toBe(c.param);
    if (c.code !== undefined) expect(error.code).toBe(c.code);
    if (c.status === 405) expect(res.headers.get("allow")).toMatch(/^(GET|POST)$/);
    // Refused before the engine, unless the engine itself refused (then nothing was queued: all blocks free).
    if (!c.says.includes("exceed") && !c.says.includes("outside the vocabulary")) expect(h.engine.requests.length).toBe(before);
    expect(h.engine.stats().blocks["full"]!.used).toBe(0);
  });

  it("refuses a body over the limit with 413, with or without a Content-Length", async () => {
    const big = { model: "fake-gpt-oss", messages: [{ role: "user", content: "x".repeat(5000) }] };
    const declared = await h.request("POST", CHAT, big);
    expect(declared.status).toBe(413);
    expect(declared.json).toMatchObject({ error: { code: "request_too_large", type: "invalid_request_error" } });
    expect((declared.json as ErrorBody).error.message).toContain("larger than 4096 bytes");
    // Chunked: the limit is found while reading.
    const chunked = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(h.url).port), "127.0.0.1", () => {
        socket.write(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const part = "y".repeat(1000);
        for (let i = 0; i < 6; i++) socket.write(`${part.length.toString(16)}\r\n${part}\r\n`);
      });
      let text = "";
      socket.on("data", (d) => (text += d.toString()));
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
      socket.setTimeout(5_000, () => socket.destroy(new Error("timed out")));
    });
    expect(chunked).toMatch(/^HTTP\/1\.1 413 /);
    expect(chunked).toContain("request_too_large");
  });

  it("answers a prompt that leaves no room in the context with 400 naming messages", async () => {
    const tight = await startHarness({ maxContext: 100 });
    try {
      const res = await tight.request("POST", CHAT, chat({ messages: [{ role: "user", content: "word ".repeat(200) }] }));
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ error: { param: "messages", code: "context_length_exceeded" } });
      expect((res.json as ErrorBody).error.message).toContain("leaves no room to generate in the model's context of 100 tokens");
    } finally {
      await tight.close();
    }
  });
});

describe("the engine's refusals", () => {
  it("answers 429 with Retry-After while the engine's queue is full, and serves again once it drains", async () => {
    const h = await startHarness({ maxRunning: 1, maxWaiting: 0, stepMs: 5, respond: () => Array.from({ length: 30 }, (_, i) => 1000 + i) }, { retryAfterSeconds: 3 });
    try {
      const first = h.request("POST", COMPLETIONS, completion({ max_tokens: 30 }));
      await eventually(() => h.engine.stats().running === 1);
      const refused = await h.request("POST", COMPLETIONS, completion({ max_tokens: 5 }));
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("3");
      expect(refused.json).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limit_exceeded" } });
      expect((refused.json as ErrorBody).error.message).toContain("waiting queue is full");
      // n = 2 against a queue with room for one: the first choice is withdrawn with the second's refusal.
      expect((await first).status).toBe(200);
      const both = await h.request("POST", COMPLETIONS, completion({ max_tokens: 5, n: 2 }));
      expect(both.status).toBe(429);
      await eventually(() => h.engine.stats().running === 0 && h.engine.stats().waiting === 0);
      expect(h.engine.stats().blocks["full"]!.used).toBe(0);
      expect((await h.request("POST", COMPLETIONS, completion({ max_tokens: 5 }))).status).toBe(200);
    } finally {
      await h.close();
    }
  });

  it("passes an EngineRequestError on as 400 with the request's name for the field", async () => {
    const h = await startHarness();
    const generate = h.engine.generate.bind(h.engine);
    h.engine.generate = (r) => (r.temperature === 0.5 ? (() => { throw new EngineRequestError("temperature", "is not available on this device"); })() : generate(r));
    try {
      const res = await h.request("POST", CHAT, chat({ temperature: 0.5 }));
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ error: { param: "temperature", message: "temperature: is not available on this device" } });
    } finally {
      await h.close();
    }
  });

  it("reports an engine failure: 500 for a whole response, an error event in a stream", async () => {
    const h = await startHarness({ failAfterTokens: 3 });
    try {
      const whole = await h.request("POST", COMPLETIONS, completion({ max_tokens: 10 }));
      expect(whole.status).toBe(500);
      expect(whole.json).toMatchObject({ error: { type: "server_error", code: "engine_error" } });
      expect((whole.json as ErrorBody).error.message).toContain("the fake engine failed as configured");
      const streamed = await h.request("POST", CHAT, chat({ stream: true }));
      expect(streamed.status).toBe(200);
      const events = streamed.text.split("\n\n").filter((e) => e.startsWith("data: "));
      expect(events[events.length - 1]).toBe("data: [DONE]");
      expect(JSON.parse(events[events.length - 2]!.slice(6))).toMatchObject({ error: { code: "engine_error" } });
      await expect(h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi" }], stream: true }).then(async (s) => {
        for await (const _ of s) void _;
      })).rejects.toThrow("the fake engine failed as configured");
    } finally {
      await h.close();
    }
  });
});
