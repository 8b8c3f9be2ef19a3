// Request bodies of the OpenAI API as zod schemas: every body is parsed here before anything else looks at it.
// Unknown fields are ignored (clients send `user`, `metadata`, `store`, …); known fields this server cannot honour
// (penalties, logit_bias, echo, suffix, best_of, structured output) are refused when set to anything but their
// neutral value, so nobody gets silently different behaviour. Extensions from vLLM: `top_k`, `stop_token_ids`,
// `return_token_ids`, `ignore_eos` (completions: generate past the model's EOS, as benchmarks ask), and assistant
// messages carrying `reasoning_content` (or `reasoning`).
import { z } from "zod";

const nullish = <T extends z.ZodType>(schema: T) => schema.nullish();

/** Fields with a neutral value only: anything else is refused naming the field. */
const neutral = <T extends z.ZodType>(schema: T, isNeutral: (v: z.output<T>) => boolean, why: string) =>
  schema.nullish().refine((v) => v === null || v === undefined || isNeutral(v as z.output<T>), { error: why });

const count = (min: number, max?: number) => {
  const base = z.number().int({ error: "must be an integer" }).min(min, { error: `must be at least ${min}` });
  return max === undefined ? base : base.max(max, { error: `must be at most ${max}` });
};

const stopStrings = z.union([z.string(), z.array(z.string()).max(16, { error: "at most 16 stop strings" })], { error: "must be a string or an array of strings" });

/** Sampling and output fields both endpoints share. */
const samplingFields = {
  model: z.string({ error: "must be a string naming the model (GET /v1/models lists it)" }),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.object({ include_usage: nullish(z.boolean()), continuous_usage_stats: nullish(z.boolean()) })),
  temperature: nullish(z.number().min(0, { error: "must be between 0 and 2" }).max(2, { error: "must be between 0 and 2" })),
  top_p: nullish(z.number().gt(0, { error: "must be in (0, 1]" }).max(1, { error: "must be in (0, 1]" })),
  top_k: nullish(z.number().int({ error: "must be an integer" }).min(-1, { error: "must be -1 or 0 (all tokens) or a positive count" })),
  seed: nullish(z.number().int({ error: "must be an integer" }).min(0, { error: "must be a non-negative integer" }).max(Number.MAX_SAFE_INTEGER)),
  stop: nullish(stopStrings),
  stop_token_ids: nullish(z.array(z.number().int({ error: "token ids are non-negative integers" }).min(0, { error: "token ids are non-negative integers" }))),
  n: nullish(count(1)),
  return_token_ids: nullish(z.boolean()),
  frequency_penalty: neutral(z.number(), (v) => v === 0, "is not supported (only 0)"),
  presence_penalty: neutral(z.number(), (v) => v === 0, "is not supported (only 0)"),
  logit_bias: neutral(z.record(z.string(), z.number()), (v) => Object.keys(v).length === 0, "is not supported"),
};

const textPart = z.object({
  type: z.literal("text", { error: (issue) => `only text content parts are supported, got ${JSON.stringify(issue.input)}` }),
  text: z.string(),
});
const textContent = z.union([z.string(), z.array(textPart)], { error: "must be a string or an array of text parts" });

const toolCall = z.object({
  id: z.string(),
  type: z.literal("function", { error: 'only "function" tool calls are supported' }).optional(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const message = z.discriminatedUnion(
  "role",
  [
    z.object({ role: z.literal("system"), content: textContent, name: nullish(z.string()) }),
    z.object({ role: z.literal("developer"), content: textContent, name: nullish(z.string()) }),
    z.object({ role: z.literal("user"), content: textContent, name: nullish(z.string()) }),
    z.object({
      role: z.literal("assistant"),
      content: nullish(textContent),
      reasoning_content: nullish(z.string()),
      reasoning: nullish(z.string()),
      tool_calls: nullish(z.array(toolCall)),
      name: nullish(z.string()),
      refusal: nullish(z.string()),
    }),
    z.object({ role: z.literal("tool"), content: textContent, tool_call_id: z.string({ error: "a tool message needs the tool_call_id of the call it answers" }) }),
  ],
  { error: (issue) => `role must be one of system, developer, user, assistant, tool; got ${JSON.stringify((issue.input as { role?: unknown } | undefined)?.role)}` },
);

/** The reference's recipient syntax `functions.NAME` ends a name at whitespace: names are identifiers. */
const toolName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: "must be 1 to 64 letters, digits, underscores or dashes" });

const tool = z.object({
  type: z.literal("function", { error: 'only "function" tools are supported' }),
  function: z.object({
    name: toolName,
    description: nullish(z.string()),
    parameters: nullish(z.record(z.string(), z.json())),
    strict: nullish(z.boolean()),
  }),
});

const toolChoice = z.union(
  [z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) })],
  { error: 'must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}' },
);

export const chatCompletionRequest = z.object({
  ...samplingFields,
  messages: z.array(message, { error: "must be an array of messages" }).min(1, { error: "must hold at least one message" }),
  max_tokens: nullish(count(1)),
  max_completion_tokens: nullish(count(1)),
  logprobs: nullish(z.boolean()),
  top_logprobs: nullish(count(0, 20)),
  tools: nullish(z.array(tool)),
  tool_choice: nullish(toolChoice),
  parallel_tool_calls: nullish(z.boolean()),
  reasoning_effort: nullish(z.enum(["low", "medium", "high"], { error: 'must be "low", "medium" or "high"' })),
  response_format: neutral(z.object({ type: z.string() }), (v) => v.type === "text", 'only {"type": "text"} is supported (no structured output)'),
});

export type ChatCompletionRequest = z.output<typeof chatCompletionRequest>;
export type ChatRequestMessage = ChatCompletionRequest["messages"][number];

const tokenId = z.number().int({ error: "token ids are non-negative integers" }).min(0, { error: "token ids are non-negative integers" });
const tokenIds = z.array(tokenId, { error: "must be an array of token ids" }).min(1, { error: "must hold at least one token id" });

export const completionRequest = z.object({
  ...samplingFields,
  prompt: z.union(
    [
      z.string(),
      z.array(z.string()).min(1, { error: "must hold at least one prompt" }),
      tokenIds,
      z.array(tokenIds).min(1, { error: "must hold at least one prompt" }),
    ],
    { error: "must be a string, an array of strings, an array of token ids or an array of token-id arrays" },
  ),
  // The completions API's default, as OpenAI's.
  max_tokens: nullish(count(1)),
  logprobs: nullish(count(0, 20)),
  ignore_eos: nullish(z.boolean()),
  echo: neutral(z.boolean(), (v) => !v, "is not supported"),
  suffix: neutral(z.string(), (v) => v === "", "is not supported"),
  best_of: neutral(z.number(), (v) => v === 1, "is not supported (only 1)"),
});

export type CompletionRequest = z.output<typeof completionRequest>;

/** What both endpoints share, for the sampling mapping. */
export type SamplingRequest = Pick<ChatCompletionRequest, "temperature" | "top_p" | "top_k" | "seed" | "stop_token_ids">;
