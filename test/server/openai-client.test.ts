// The official openai client against the server over a scripted fake engine: chat and completions, whole and
// streamed, stop strings, a tool-call round trip, token-id prompts with return_token_ids, and logprobs.
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerationRequest } from "../../src/engine/api.js";
import { HARMONY_TOKENS, HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { DATE, startHarness, type Harness } from "./harness.js";

const tok = HarmonyTokenizer.instance();
const decodePrompt = (r: GenerationRequest) => tok.decode(r.promptIds);

const ANSWER = "<|channel|>analysis<|message|>The user greets. Reply kindly.<|end|><|start|>assistant<|channel|>final<|message|>Hello there! Nice to meet you 🙂<|return|>";
const CALL = '<|channel|>analysis<|message|>Need the weather tool.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>';
const AFTER_CALL = "<|channel|>analysis<|message|>20 degrees.<|end|><|start|>assistant<|channel|>final<|message|>It is 20 °C in Tokyo.<|return|>";

/** The scripted model: a tool call when asked about weather (an answer once the tool has answered), else a greeting. */
function respond(r: GenerationRequest): number[] {
  const prompt = decodePrompt(r);
  if (prompt.includes("functions.get_weather to=assistant")) return tok.encodeWithSpecials(AFTER_CALL);
  if (prompt.includes("weather")) return tok.encodeWithSpecials(CALL);
  return tok.encodeWithSpecials(ANSWER);
}

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Gets the current weather in a city.",
    parameters: { type: "object", properties: { location: { type: "string", description: "The city" } }, required: ["location"] },
  },
};

type WithReasoning<T> = T & { reasoning_content?: string | null };

describe("the server, through the openai client", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ respond });
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers a chat: the harmony prompt the model sees, reasoning and content parsed apart, usage", async () => {
    const before = h.engine.requests.length;
    const reply = await h.client.chat.completions.create({
      model: "fake-gpt-oss",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi!" },
      ],
      reasoning_effort: "high",
      temperature: 0,
    });
    const sent = h.engine.requests[before]!;
    expect(decodePrompt(sent)).toBe(
      "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n" +
        `Current date: ${DATE}\n\nReasoning: high\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>` +
        "<|start|>developer<|message|># Instructions\n\nBe brief.<|end|><|start|>user<|message|>Hi!<|end|><|start|>assistant",
    );
    expect(sent.stopTokenIds).toEqual(expect.arrayContaining([HARMONY_TOKENS.return, HARMONY_TOKENS.call]));
    expect(sent.temperature).toBe(0);
    expect(sent.maxTokens).toBe(h.engine.model.maxContext - sent.promptIds.length);
    const choice = reply.choices[0]!;
    expect(reply.object).toBe("chat.completion");
    expect(reply.id).toMatch(/^chatcmpl-/);
    expect(choice.message.content).toBe("Hello there! Nice to meet you 🙂");
    expect((choice.message as WithReasoning<typeof choice.message>).reasoning_content).toBe("The user greets. Reply kindly.");
    expect(choice.finish_reason).toBe("stop");
    expect(choice.message.tool_calls).toBeUndefined();
    const generated = tok.encodeWithSpecials(ANSWER).length;
    expect(reply.usage).toMatchObject({ prompt_tokens: sent.promptIds.length, completion_tokens: generated, total_tokens: sent.promptIds.length + generated });
  });

  it("streams a chat whose deltas add up to the whole answer, ending with finish_reason and a usage chunk", async () => {
    const stream = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], stream: true, stream_options: { include_usage: true } });
    let content = "";
    let reasoning = "";
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    let firstRole: string | undefined;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.object).toBe("chat.completion.chunk");
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        firstRole ??= c.delta.role;
        content += c.delta.content ?? "";
        reasoning += (c.delta as WithReasoning<typeof c.delta>).reasoning_content ?? "";
        finishes.push(c.finish_reason);
        expect(content).not.toContain("\uFFFD");
      }
    }
    expect(firstRole).toBe("assistant");
    expect(content).toBe("Hello there! Nice to meet you 🙂");
    expect(reasoning).toBe("The user greets. Reply kindly.");
    expect(finishes.filter((f) => f !== null)).toEqual(["stop"]);
    expect(finishes[finishes.length - 1]).toBe("stop");
    expect(usage?.completion_tokens).toBe(tok.encodeWithSpecials(ANSWER).length);
    expect(chunks).toBeGreaterThan(5); // token by token, not one blob
  });

  it("stops at a stop string in the content (never sending it), aborting the engine request", async () => {
    const aborted = h.engine.stats().finished.abort;
    const reply = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], stop: [" Nice", "zzz"] });
    expect(reply.choices[0]!.message.content).toBe("Hello there!");
    expect(reply.choices[0]!.finish_reason).toBe("stop");
    expect(h.engine.stats().finished.abort).toBe(aborted + 1);
    // Reasoning is not matched: "user" is in the reasoning only.
    const kept = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], stop: "user" });
    expect(kept.choices[0]!.message.content).toBe("Hello there! Nice to meet you 🙂");

    const stream = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], stop: ["there!"], stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? "";
    expect(streamed).toBe("Hello ");
    expect(h.engine.stats().blocks["full"]!.used).toBe(0);
  });

  it("round-trips a tool call: tools in the developer message, tool_calls out, the tool's result back in", async () => {
    const question: OpenAI.Chat.Completions.ChatCompletionMessageParam = { role: "user", content: "What is the weather in Tokyo?" };
    const first = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [question], tools: [weatherTool] });
    const prompt = decodePrompt(h.engine.requests[h.engine.requests.length - 1]!);
    expect(prompt).toContain("Calls to these tools must go to the commentary channel: 'functions'.<|end|>");
    expect(prompt).toContain(
      "<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n\n// Gets the current weather in a city.\ntype get_weather = (_: {\n// The city\nlocation: string,\n}) => any;\n\n} // namespace functions<|end|>",
    );
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    const calls = choice.message.tool_calls!;
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.type).toBe("function");
    if (call.type !== "function") throw new Error("not a function call");
    expect(call.id).toMatch(/^call_/);
    expect(call.function).toEqual({ name: "get_weather", arguments: '{"location":"Tokyo"}' });
    const reasoning = (choice.message as WithReasoning<typeof choice.message>).reasoning_content!;
    expect(reasoning).toBe("Need the weather tool.");

    const second = await h.client.chat.completions.create({
      model: "fake-gpt-oss",
      tools: [weatherTool],
      messages: [
        question,
        { role: "assistant", content: null, tool_calls: calls, reasoning_content: reasoning } as OpenAI.Chat.Completions.ChatCompletionAssistantMessageParam,
        { role: "tool", tool_call_id: call.id, content: '{"temperature":20}' },
      ],
    });
    expect(decodePrompt(h.engine.requests[h.engine.requests.length - 1]!)).toContain(
      "<|start|>user<|message|>What is the weather in Tokyo?<|end|>" +
        "<|start|>assistant<|channel|>analysis<|message|>Need the weather tool.<|end|>" +
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>' +
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temperature":20}<|end|><|start|>assistant',
    );
    expect(second.choices[0]!.message.content).toBe("It is 20 °C in Tokyo.");
    expect(second.choices[0]!.finish_reason).toBe("stop");

    // Streamed: the call's id and name first, then its arguments in pieces.
    const stream = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [question], tools: [weatherTool], stream: true });
    const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      deltas.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(deltas[0]).toMatchObject({ index: 0, type: "function", function: { name: "get_weather" } });
    expect(deltas[0]!.id).toMatch(/^call_/);
    expect(deltas.length).toBeGreaterThan(2);
    expect(deltas.map((d) => d.function?.arguments ?? "").join("")).toBe('{"location":"Tokyo"}');
    expect(deltas.every((d) => d.index === 0)).toBe(true);
    expect(finish).toBe("tool_calls");

    // With tool_choice "none" the tools are not offered, and a call the model makes anyway is reasoning.
    const none = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [question], tools: [weatherTool], tool_choice: "none" });
    expect(decodePrompt(h.engine.requests[h.engine.requests.length - 1]!)).not.toContain("namespace functions");
    expect(none.choices[0]!.finish_reason).toBe("stop");
    expect(none.choices[0]!.message.tool_calls).toBeUndefined();
    expect((none.choices[0]!.message as WithReasoning<typeof choice.message>).reasoning_content).toBe('Need the weather tool.\n{"location":"Tokyo"}');
  });

  it("completes text prompts (special tokens read as such), whole and streamed, with stop strings", async () => {
    const prompt = "<|start|>user<|message|>Hi!<|end|><|start|>assistant";
    const reply = await h.client.completions.create({ model: "fake-gpt-oss", prompt, max_tokens: 200 });
    expect(h.engine.requests[h.engine.requests.length - 1]!.promptIds).toEqual(tok.encodeWithSpecials(prompt));
    expect(reply.object).toBe("text_completion");
    // Raw output: the harmony markup is text; the <|return|> that ended it (an eos) is not.
    expect(reply.choices[0]!.text).toBe(ANSWER.replace("<|return|>", ""));
    expect(reply.choices[0]!.finish_reason).toBe("stop");
    const short = await h.client.completions.create({ model: "fake-gpt-oss", prompt, max_tokens: 3 });
    expect(short.choices[0]!.finish_reason).toBe("length");
    expect(short.usage!.completion_tokens).toBe(3);
    const defaulted = await h.client.completions.create({ model: "fake-gpt-oss", prompt });
    expect(defaulted.usage!.completion_tokens).toBe(16); // OpenAI's default max_tokens

    const stream = await h.client.completions.create({ model: "fake-gpt-oss", prompt, max_tokens: 200, stop: ["Nice"], stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(ANSWER.slice(0, ANSWER.indexOf("Nice")));
    expect(finish).toBe("stop");
    expect(usage?.prompt_tokens).toBe(tok.encodeWithSpecials(prompt).length);
  });

  it("reports logprobs in chat's and completions' shapes", async () => {
    const chat = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], logprobs: true, top_logprobs: 2 });
    const entries = chat.choices[0]!.logprobs!.content!;
    // One entry per token of the final channel's text (not the reasoning, not the markup).
    expect(entries.length).toBe(tok.encode("Hello there! Nice to meet you 🙂").length);
    for (const e of entries) {
      expect(typeof e.token).toBe("string");
      expect(e.logprob).toBeLessThan(0);
      expect(e.bytes).toEqual(Array.from(Buffer.from(e.token, "utf8")));
      expect(e.top_logprobs).toHaveLength(2);
      expect(e.top_logprobs[0]!.logprob).toBeGreaterThan(e.top_logprobs[1]!.logprob);
    }
    expect(entries.map((e) => e.token).join("")).toContain("Hello there! Nice to meet you");
    expect(h.engine.requests[h.engine.requests.length - 1]!.logprobs).toBe(2);
    const plain = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }] });
    expect(plain.choices[0]!.logprobs).toBeNull();

    const completion = await h.client.completions.create({ model: "fake-gpt-oss", prompt: "Hello", max_tokens: 5, logprobs: 3 });
    const lp = completion.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.top_logprobs).toHaveLength(5);
    expect(lp.text_offset).toHaveLength(5);
    expect(lp.text_offset![0]).toBe(0);
    expect(lp.tokens!.join("")).toBe(completion.choices[0]!.text);
    lp.tokens!.forEach((t, i) => expect(lp.text_offset![i + 1] ?? completion.choices[0]!.text.length).toBe(lp.text_offset![i]! + t.length));
    for (const top of lp.top_logprobs!) expect(Object.keys(top).length).toBeGreaterThan(0);
  });

  it("answers n choices, each seeded apart", async () => {
    const reply = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], n: 3, seed: 7 });
    expect(reply.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(h.engine.requests.slice(-3).map((r) => r.seed)).toEqual([7, 8, 9]);
    expect(reply.usage!.completion_tokens).toBe(3 * tok.encodeWithSpecials(ANSWER).length);
    expect(reply.usage!.prompt_tokens).toBe(h.engine.requests[h.engine.requests.length - 1]!.promptIds.length);

    // Streamed: the choices' chunks interleave, each choice's adds up on its own, with logprobs per content token.
    const stream = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi!" }], n: 2, stream: true, logprobs: true });
    const content = ["", ""];
    const logprobs = [0, 0];
    const finishes: (string | null)[][] = [[], []];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        content[c.index] += c.delta.content ?? "";
        logprobs[c.index]! += c.logprobs?.content?.length ?? 0;
        finishes[c.index]!.push(c.finish_reason);
      }
    }
    expect(content).toEqual(["Hello there! Nice to meet you 🙂", "Hello there! Nice to meet you 🙂"]);
    expect(logprobs).toEqual([tok.encode("Hello there! Nice to meet you 🙂").length, tok.encode("Hello there! Nice to meet you 🙂").length]);
    expect(finishes.map((f) => f.filter((x) => x !== null))).toEqual([["stop"], ["stop"]]);
  });
});

describe("token-id prompts on a model without a tokenizer", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ tokenizer: null, vocabSize: 128, eosTokenIds: [0] });
  });
  afterAll(async () => {
    await h.close();
  });

  it("completes token ids and returns prompt_token_ids and token_ids per choice", async () => {
    type WithIds = OpenAI.Completions.CompletionChoice & { prompt_token_ids?: number[]; token_ids?: number[] };
    const body = { model: "fake-tiny", prompt: [5, 6, 7], max_tokens: 6, return_token_ids: true, temperature: 0 } as OpenAI.Completions.CompletionCreateParamsNonStreaming;
    const reply = await h.client.completions.create(body);
    const choice = reply.choices[0] as WithIds;
    expect(choice.prompt_token_ids).toEqual([5, 6, 7]);
    expect(choice.text).toBe("");
    const generated = choice.token_ids!;
    expect(generated.length).toBeGreaterThan(0);
    expect(generated.length).toBeLessThanOrEqual(6);
    expect(generated.every((t) => Number.isInteger(t) && t >= 0 && t < 128)).toBe(true);
    expect(reply.usage!.completion_tokens).toBe(generated.length);
    // Deterministic: the same prompt gives the same tokens, streamed one chunk per token.
    const again = (await h.client.completions.create(body)).choices[0] as WithIds;
    expect(again.token_ids).toEqual(generated);
    const stream = await h.client.completions.create({ ...body, stream: true } as OpenAI.Completions.CompletionCreateParamsStreaming);
    const streamed: number[] = [];
    let promptIds: number[] | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0] as WithIds | undefined;
      promptIds ??= c?.prompt_token_ids;
      streamed.push(...(c?.token_ids ?? []));
    }
    expect(promptIds).toEqual([5, 6, 7]);
    expect(streamed).toEqual(generated);
    // Without return_token_ids neither field appears.
    const plain = (await h.client.completions.create({ model: "fake-tiny", prompt: [5, 6, 7], max_tokens: 2 })).choices[0] as WithIds;
    expect(plain.token_ids).toBeUndefined();
    expect(plain.prompt_token_ids).toBeUndefined();
  });

  it("answers several token-id prompts, n choices each, ordered by prompt then n", async () => {
    type WithIds = OpenAI.Completions.CompletionChoice & { prompt_token_ids?: number[]; token_ids?: number[] };
    const reply = await h.client.completions.create({ model: "fake-tiny", prompt: [[1, 2], [3, 4, 5]], n: 2, max_tokens: 4, return_token_ids: true, seed: 1 } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    const choices = reply.choices as WithIds[];
    expect(choices.map((c) => [c.index, c.prompt_token_ids])).toEqual([
      [0, [1, 2]],
      [1, [1, 2]],
      [2, [3, 4, 5]],
      [3, [3, 4, 5]],
    ]);
    expect(reply.usage!.prompt_tokens).toBe(5);
    expect(reply.usage!.completion_tokens).toBe(choices.reduce((s, c) => s + c.token_ids!.length, 0));
  });

  it("refuses text where only token ids can be served, naming the field", async () => {
    const text = await h.request("POST", "/v1/completions", { model: "fake-tiny", prompt: "hello" });
    expect(text.status).toBe(400);
    expect(text.json).toMatchObject({ error: { param: "prompt", code: "tokenizer_required", type: "invalid_request_error" } });
    expect((text.json as { error: { message: string } }).error.message).toContain("has no tokenizer");
    const chat = await h.request("POST", "/v1/chat/completions", { model: "fake-tiny", messages: [{ role: "user", content: "hi" }] });
    expect(chat.status).toBe(400);
    expect(chat.json).toMatchObject({ error: { param: "messages", code: "tokenizer_required" } });
    const stop = await h.request("POST", "/v1/completions", { model: "fake-tiny", prompt: [1, 2], stop: ["x"] });
    expect(stop.json).toMatchObject({ error: { param: "stop" } });
    // An id outside the vocabulary is the engine's refusal, passed on with the request's field name.
    const outside = await h.request("POST", "/v1/completions", { model: "fake-tiny", prompt: [1, 500] });
    expect(outside.status).toBe(400);
    expect(outside.json).toMatchObject({ error: { param: "prompt" } });
    expect((outside.json as { error: { message: string } }).error.message).toContain("token id 500 at position 1 is outside the vocabulary of 128 tokens");
  });
});

describe("ignore_eos on completions", () => {
  let h: Harness;
  beforeAll(async () => {
    // the "model" answers 3, then the EOS 0, then 4, 5, 6
    h = await startHarness({ tokenizer: null, vocabSize: 128, eosTokenIds: [0], respond: () => [3, 0, 4, 5, 6] });
  });
  afterAll(async () => {
    await h.close();
  });

  it("generates past the model's EOS up to max_tokens, while stop_token_ids still stop", async () => {
    type WithIds = OpenAI.Completions.CompletionChoice & { token_ids?: number[] };
    const ask = async (extra: Record<string, unknown>) =>
      (await h.client.completions.create({ model: "fake-tiny", prompt: [1, 2], max_tokens: 4, return_token_ids: true, ...extra } as OpenAI.Completions.CompletionCreateParamsNonStreaming)).choices[0] as WithIds;
    const stopped = await ask({});
    expect([stopped.token_ids, stopped.finish_reason]).toEqual([[3, 0], "stop"]);
    const ignoring = await ask({ ignore_eos: true });
    expect([ignoring.token_ids, ignoring.finish_reason]).toEqual([[3, 0, 4, 5], "length"]);
    const byStopId = await ask({ ignore_eos: true, stop_token_ids: [4] });
    expect([byStopId.token_ids, byStopId.finish_reason]).toEqual([[3, 0, 4], "stop"]);
    const streamed = await h.client.completions.create({ model: "fake-tiny", prompt: [1, 2], max_tokens: 4, return_token_ids: true, ignore_eos: true, stream: true } as OpenAI.Completions.CompletionCreateParamsStreaming);
    const ids: number[] = [];
    for await (const chunk of streamed) ids.push(...((chunk.choices[0] as WithIds | undefined)?.token_ids ?? []));
    expect(ids).toEqual([3, 0, 4, 5]);
    const bad = await h.request("POST", "/v1/completions", { model: "fake-tiny", prompt: [1, 2], ignore_eos: "yes" });
    expect([bad.status, (bad.json as { error: { param: string } }).error.param]).toEqual([400, "ignore_eos"]);
  });
});
