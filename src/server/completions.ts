// POST /v1/completions: raw continuation of one or more prompts (text, token ids, or lists of either), whole or
// streamed as text_completion events. Choices are ordered by prompt, then by n, as OpenAI orders them. A text
// prompt is tokenized with special-token strings as the special tokens, so a harmony conversation written out as
// text (`<|start|>user<|message|>…<|end|><|start|>assistant`) is the prompt it reads as.
import type { ServerResponse } from "node:http";
import type { GenerationSummary } from "../engine/api.js";
import { CompletionChoiceOutput, type CompletionStep } from "./completion-output.js";
import { badRequest, type ApiError } from "./errors.js";
import { driveChoice, submitChoices, unfinishedError, type ChoiceRun, type RequestContext } from "./generation.js";
import { SseWriter, sendJson } from "./http-io.js";
import { randomId, unixSeconds } from "./ids.js";
import { choiceSeeds, engineFieldNames, samplingParams, stopList } from "./sampling.js";
import { completionRequest, type CompletionRequest } from "./schemas.js";
import { checkChoiceCount, checkModel, parseBody, requireTokenizer } from "./request-checks.js";

/** OpenAI's default max_tokens for completions. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

interface Choice {
  readonly index: number;
  readonly promptIds: number[];
  readonly run: ChoiceRun;
  readonly output: CompletionChoiceOutput;
}

interface Prepared {
  readonly request: CompletionRequest;
  readonly choices: Choice[];
  /** How many prompts the choices are for (n choices each). */
  readonly prompts: number;
  readonly id: string;
  readonly created: number;
}

function promptList(ctx: RequestContext, prompt: CompletionRequest["prompt"]): { ids: number[]; field: string }[] {
  // Raw text, so special-token strings are the tokens (a harmony prompt written out works as such).
  const text = (t: string, field: string) => ({ ids: requireTokenizer(ctx, field, "send the prompt as token ids").encodeWithSpecials(t), field });
  if (typeof prompt === "string") return [text(prompt, "prompt")];
  if (prompt.length > 0 && prompt.every((p) => typeof p === "number")) return [{ ids: prompt as number[], field: "prompt" }];
  return (prompt as (string | number[])[]).map((p, i) => (typeof p === "string" ? text(p, `prompt[${i}]`) : { ids: p, field: `prompt[${i}]` }));
}

function finishReason(summary: GenerationSummary, output: CompletionChoiceOutput): "stop" | "length" {
  return !output.stopped && summary.finishReason === "length" ? "length" : "stop";
}

function prepare(ctx: RequestContext, body: unknown): Prepared {
  const request = parseBody(completionRequest, body);
  checkModel(ctx, request.model);
  const n = request.n ?? 1;
  const prompts = promptList(ctx, request.prompt);
  checkChoiceCount(ctx, prompts.length * n, prompts.length > 1 ? "prompt" : "n");
  const stop = stopList(request.stop);
  if (stop.length > 0) requireTokenizer(ctx, "stop", "stop strings need text; use stop_token_ids");
  for (const { ids, field } of prompts) if (ids.length === 0) throw badRequest(`${field}: the prompt is empty`, field);
  const id = `cmpl-${randomId()}`;
  // ignore_eos: only the stop_token_ids asked for end a choice (benchmarks want every choice to reach max_tokens)
  const eos = request.ignore_eos === true ? [] : ctx.engine.model.eosTokenIds;
  const stopTokenIds = new Set([...eos, ...(request.stop_token_ids ?? [])]);
  const requests = prompts.flatMap(({ ids, field }, p) => {
    const context = {
      model: ctx.engine.model,
      promptLength: ids.length,
      promptField: field,
      maxTokens: request.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS,
      maxTokensField: "max_tokens",
      stopTokenIds: eos,
      logprobs: request.logprobs ?? undefined,
      logprobsField: "logprobs",
    };
    const sampling = samplingParams(request, context);
    return choiceSeeds(request.seed ?? undefined, n).map((seed, i) => ({
      request: { ...sampling, ...(seed !== undefined ? { seed } : {}), promptIds: ids, id: `${id}-${p * n + i}` },
      fields: engineFieldNames(context),
    }));
  });
  // Submitted together so that one refusal withdraws all; errors name the first prompt's fields.
  const runs = submitChoices(ctx, requests.map((r) => r.request), requests[0]!.fields);
  const choices = runs.map((run, index) => ({
    index,
    promptIds: prompts[Math.floor(index / n)]!.ids,
    run,
    output: new CompletionChoiceOutput({ tokenizer: ctx.tokenizer, stop, stopTokenIds, logprobs: request.logprobs != null }),
  }));
  return { request, choices, prompts: prompts.length, id, created: unixSeconds() };
}

export async function handleCompletion(ctx: RequestContext, body: unknown, res: ServerResponse): Promise<void> {
  const p = prepare(ctx, body);
  if (p.request.stream === true) await streamCompletion(ctx, p, res);
  else await wholeCompletion(ctx, p, res);
}

/** Usage over all prompts: each prompt once (not once per choice), every choice's completion. */
function usage(p: Prepared, summaries: readonly GenerationSummary[]): Record<string, unknown> {
  const perPrompt = p.choices.length / p.prompts;
  let prompt = 0;
  let cached = 0;
  let completion = 0;
  summaries.forEach((s, i) => {
    completion += s.completionTokens;
    if (i % perPrompt === 0) {
      prompt += s.promptTokens;
      cached += s.cachedPromptTokens;
    }
  });
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
}

async function wholeCompletion(ctx: RequestContext, p: Prepared, res: ServerResponse): Promise<void> {
  const summaries = await Promise.all(p.choices.map((c) => driveChoice(ctx, c.run, (t) => (c.output.push(t), c.output.stopped))));
  p.choices.forEach((c) => c.output.finish());
  if (ctx.signal.reason === "client-gone") {
    for (const _ of summaries) ctx.metrics.finished.inc({ finish_reason: "abort" });
    return;
  }
  const failure = summaries.map((s, i) => unfinishedError(ctx, s, p.choices[i]!.output.stopped)).find((e) => e !== undefined);
  if (failure !== undefined) throw failure;
  const returnIds = p.request.return_token_ids === true;
  sendJson(res, 200, {
    id: p.id,
    object: "text_completion",
    created: p.created,
    model: p.request.model,
    choices: p.choices.map((c, i) => {
      const reason = finishReason(summaries[i]!, c.output);
      ctx.metrics.finished.inc({ finish_reason: reason });
      return {
        index: c.index,
        text: c.output.text,
        logprobs: c.output.logprobs ?? null,
        finish_reason: reason,
        ...(returnIds ? { prompt_token_ids: c.promptIds, token_ids: c.output.tokenIds } : {}),
      };
    }),
    usage: usage(p, summaries),
  });
}

async function streamCompletion(ctx: RequestContext, p: Prepared, res: ServerResponse): Promise<void> {
  const sse = new SseWriter(res);
  const includeUsage = p.request.stream_options?.include_usage === true;
  const returnIds = p.request.return_token_ids === true;
  // Without text to show (no tokenizer, held-back bytes), a token still gets its chunk when ids or logprobs were asked for.
  const everyToken = returnIds || p.request.logprobs != null || ctx.tokenizer === undefined;
  const chunk = (choice: Choice, step: CompletionStep, finish: "stop" | "length" | null, first: boolean) => ({
    id: p.id,
    object: "text_completion",
    created: p.created,
    model: p.request.model,
    choices: [
      {
        index: choice.index,
        text: step.text,
        logprobs: step.logprobs ?? null,
        finish_reason: finish,
        ...(returnIds ? { ...(first ? { prompt_token_ids: choice.promptIds } : {}), token_ids: step.tokenIds } : {}),
      },
    ],
    ...(includeUsage ? { usage: null } : {}),
  });
  let failure: ApiError | undefined;
  const summaries = await Promise.all(
    p.choices.map(async (c) => {
      let first = true;
      let pendingIds: number[] = [];
      const summary = await driveChoice(ctx, c.run, async (token) => {
        const step = c.output.push(token);
        pendingIds.push(...step.tokenIds);
        if (step.text !== "" || everyToken) {
          await sse.send(chunk(c, { ...step, tokenIds: pendingIds }, null, first));
          first = false;
          pendingIds = [];
        }
        return c.output.stopped || sse.isClosed;
      });
      if (sse.isClosed || ctx.signal.reason === "client-gone") {
        ctx.metrics.finished.inc({ finish_reason: "abort" });
        return summary;
      }
      const error = unfinishedError(ctx, summary, c.output.stopped);
      if (error !== undefined) {
        failure ??= error;
        return summary;
      }
      const last = c.output.finish();
      const reason = finishReason(summary, c.output);
      ctx.metrics.finished.inc({ finish_reason: reason });
      await sse.send(chunk(c, { ...last, tokenIds: pendingIds }, reason, first));
      return summary;
    }),
  );
  if (failure !== undefined) {
    ctx.options.log(`completion ${p.id}: ${failure.message}`);
    await sse.send(failure.body());
  } else if (includeUsage) {
    await sse.send({ id: p.id, object: "text_completion", created: p.created, model: p.request.model, choices: [], usage: usage(p, summaries) });
  }
  sse.end();
}
