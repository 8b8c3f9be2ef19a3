// POST /v1/chat/completions: messages rendered as a harmony conversation, the output parsed back into
// reasoning_content, content and tool_calls; whole or streamed as chat.completion.chunk events.
import type { ServerResponse } from "node:http";
import type { GenerationSummary } from "../engine/api.js";
import { HARMONY_STOP_TOKENS } from "../generate/tokenizer.js";
import { ChatChoiceOutput, type ChatStep } from "./chat-output.js";
import { chatPrompt } from "./chat-prompt.js";
import { badRequest, type ApiError } from "./errors.js";
import { driveChoice, submitChoices, unfinishedError, usageOf, type ChoiceRun, type RequestContext } from "./generation.js";
import { SseWriter, sendJson } from "./http-io.js";
import { randomId, unixSeconds } from "./ids.js";
import { choiceSeeds, engineFieldNames, samplingParams, stopList } from "./sampling.js";
import { chatCompletionRequest, type ChatCompletionRequest } from "./schemas.js";
import { checkChoiceCount, checkModel, parseBody, requireTokenizer } from "./request-checks.js";

type FinishReason = "stop" | "length" | "tool_calls";

function finishReason(summary: GenerationSummary, output: ChatChoiceOutput): FinishReason {
  if (output.stopped) return "stop";
  if (summary.finishReason === "length") return "length";
  return output.toolCalls.length > 0 ? "tool_calls" : "stop";
}

interface Prepared {
  readonly request: ChatCompletionRequest;
  readonly runs: ChoiceRun[];
  readonly outputs: ChatChoiceOutput[];
  readonly promptIds: number[];
  readonly id: string;
  readonly created: number;
}

function prepare(ctx: RequestContext, body: unknown): Prepared {
  const request = parseBody(chatCompletionRequest, body);
  checkModel(ctx, request.model);
  const tokenizer = requireTokenizer(ctx, "messages", "chat needs a tokenizer to render messages; send token ids to /v1/completions instead");
  if (request.top_logprobs !== null && request.top_logprobs !== undefined && request.logprobs !== true) throw badRequest("top_logprobs needs logprobs: true", "top_logprobs");
  const n = request.n ?? 1;
  checkChoiceCount(ctx, n, "n");
  const prompt = chatPrompt(request, ctx.options.currentDate(), tokenizer);
  const maxTokensField = request.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const context = {
    model: ctx.engine.model,
    promptLength: prompt.promptIds.length,
    promptField: "messages",
    maxTokens: request.max_completion_tokens ?? request.max_tokens ?? undefined,
    maxTokensField,
    stopTokenIds: [...HARMONY_STOP_TOKENS, ...ctx.engine.model.eosTokenIds],
    logprobs: request.logprobs === true ? (request.top_logprobs ?? 0) : undefined,
    logprobsField: "top_logprobs",
  };
  const sampling = samplingParams(request, context);
  const id = `chatcmpl-${randomId()}`;
  const runs = submitChoices(
    ctx,
    choiceSeeds(request.seed ?? undefined, n).map((seed, i) => ({ ...sampling, ...(seed !== undefined ? { seed } : {}), promptIds: prompt.promptIds, id: `${id}-${i}` })),
    engineFieldNames(context),
  );
  const stop = stopList(request.stop);
  const outputs = runs.map(() => new ChatChoiceOutput({ tokenizer, stop, toolNames: prompt.toolNames, logprobs: request.logprobs === true }));
  return { request, runs, outputs, promptIds: prompt.promptIds, id, created: unixSeconds() };
}

export async function handleChatCompletion(ctx: RequestContext, body: unknown, res: ServerResponse): Promise<void> {
  const p = prepare(ctx, body);
  if (p.request.stream === true) await streamChat(ctx, p, res);
  else await wholeChat(ctx, p, res);
}

async function wholeChat(ctx: RequestContext, p: Prepared, res: ServerResponse): Promise<void> {
  const summaries = await Promise.all(p.runs.map((run, i) => driveChoice(ctx, run, (t) => (p.outputs[i]!.push(t), p.outputs[i]!.stopped))));
  p.outputs.forEach((o) => o.finish());
  if (ctx.signal.reason === "client-gone") {
    for (const _ of summaries) ctx.metrics.finished.inc({ finish_reason: "abort" });
    return;
  }
  const failure = summaries.map((s, i) => unfinishedError(ctx, s, p.outputs[i]!.stopped)).find((e) => e !== undefined);
  if (failure !== undefined) throw failure;
  const returnIds = p.request.return_token_ids === true;
  const choices = p.outputs.map((o, index) => {
    const reason = finishReason(summaries[index]!, o);
    ctx.metrics.finished.inc({ finish_reason: reason });
    return {
      index,
      message: {
        role: "assistant",
        content: o.content === "" && o.toolCalls.length > 0 ? null : o.content,
        reasoning_content: o.reasoning === "" ? null : o.reasoning,
        ...(o.toolCalls.length > 0 ? { tool_calls: o.toolCalls } : {}),
        refusal: null,
      },
      logprobs: p.request.logprobs === true ? { content: o.logprobs, refusal: null } : null,
      finish_reason: reason,
      ...(returnIds ? { prompt_token_ids: p.promptIds, token_ids: o.tokenIds } : {}),
    };
  });
  const reasoning = p.outputs.reduce((sum, o) => sum + o.reasoningTokens, 0);
  sendJson(res, 200, {
    id: p.id,
    object: "chat.completion",
    created: p.created,
    model: p.request.model,
    choices,
    usage: usageOf(summaries, reasoning),
    ...(returnIds ? { prompt_token_ids: p.promptIds } : {}),
  });
}

async function streamChat(ctx: RequestContext, p: Prepared, res: ServerResponse): Promise<void> {
  const sse = new SseWriter(res);
  const includeUsage = p.request.stream_options?.include_usage === true;
  const returnIds = p.request.return_token_ids === true;
  const wantLogprobs = p.request.logprobs === true;
  const chunk = (choices: unknown[]) => ({ id: p.id, object: "chat.completion.chunk", created: p.created, model: p.request.model, choices, ...(includeUsage ? { usage: null } : {}) });
  const choice = (index: number, delta: object, step: ChatStep | undefined, finish: FinishReason | null) => ({
    index,
    delta,
    logprobs: wantLogprobs && step !== undefined && step.logprobs.length > 0 ? { content: step.logprobs, refusal: null } : null,
    finish_reason: finish,
    ...(returnIds ? { token_ids: step?.tokenIds ?? [] } : {}),
  });
  for (let i = 0; i < p.runs.length; i++) {
    await sse.send(chunk([{ ...choice(i, { role: "assistant", content: "" }, undefined, null), ...(returnIds ? { prompt_token_ids: p.promptIds } : {}) }]));
  }
  let failure: ApiError | undefined;
  const summaries = await Promise.all(
    p.runs.map(async (run, index) => {
      const output = p.outputs[index]!;
      const summary = await driveChoice(ctx, run, async (token) => {
        const step = output.push(token);
        if (step.delta !== undefined) await sse.send(chunk([choice(index, step.delta, step, null)]));
        return output.stopped || sse.isClosed;
      });
      const error = unfinishedError(ctx, summary, output.stopped);
      if (sse.isClosed || ctx.signal.reason === "client-gone") {
        ctx.metrics.finished.inc({ finish_reason: "abort" });
        return summary;
      }
      if (error !== undefined) {
        failure ??= error;
        return summary;
      }
      const last = output.finish();
      const reason = finishReason(summary, output);
      ctx.metrics.finished.inc({ finish_reason: reason });
      if (last.delta !== undefined) await sse.send(chunk([choice(index, last.delta, last, null)]));
      await sse.send(chunk([choice(index, {}, last.delta === undefined ? last : undefined, reason)]));
      return summary;
    }),
  );
  if (failure !== undefined) {
    ctx.options.log(`chat ${p.id}: ${failure.message}`);
    await sse.send(failure.body());
  } else if (includeUsage) {
    const reasoning = p.outputs.reduce((sum, o) => sum + o.reasoningTokens, 0);
    await sse.send({ id: p.id, object: "chat.completion.chunk", created: p.created, model: p.request.model, choices: [], usage: usageOf(summaries, reasoning) });
  }
  sse.end();
}
