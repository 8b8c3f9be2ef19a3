// Running a request's choices on the engine: one engine request per choice, each with its own abort controller
// tied to the HTTP request's (aborted when the client goes away or the server stops waiting at shutdown), tokens
// timed for the latency histograms.
import type { Engine, GenerationRequest, GenerationStream, GenerationSummary, TokenOutput } from "../engine/api.js";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";
import { ApiError, toApiError, type EngineFieldNames } from "./errors.js";
import type { ServerMetrics } from "./metrics.js";
import type { ResolvedServerOptions } from "./options.js";

/** Why a request's signal was aborted. */
export type AbortCause = "client-gone" | "shutdown";

/** What a handler gets for one HTTP request. */
export interface RequestContext {
  readonly engine: Engine;
  readonly options: ResolvedServerOptions;
  readonly metrics: ServerMetrics;
  /** The o200k_harmony tokenizer when the model's vocabulary is o200k_harmony. */
  readonly tokenizer: HarmonyTokenizer | undefined;
  /** Aborted when the client disconnects or shutdown stops waiting; `reason` is an AbortCause. */
  readonly signal: AbortSignal;
  /** performance.now() when the request arrived. */
  readonly receivedAt: number;
}

export interface ChoiceRun {
  readonly stream: GenerationStream;
  readonly controller: AbortController;
}

/** Submits one engine request per choice; when one is refused, the ones already submitted are aborted and the refusal is thrown as an ApiError. */
export function submitChoices(ctx: RequestContext, requests: readonly Omit<GenerationRequest, "signal">[], fields: EngineFieldNames): ChoiceRun[] {
  const runs: ChoiceRun[] = [];
  try {
    for (const request of requests) {
      const controller = new AbortController();
      const signal = AbortSignal.any([ctx.signal, controller.signal]);
      runs.push({ stream: ctx.engine.generate({ ...request, signal }), controller });
    }
  } catch (err) {
    for (const run of runs) run.controller.abort();
    throw toApiError(err, fields, ctx.options.retryAfterSeconds);
  }
  return runs;
}

/**
 * Feeds a choice's tokens to `onToken` until the engine ends it or `onToken` returns true (a stop string matched:
 * the engine request is aborted, freeing its blocks). Resolves with the engine's summary.
 */
export async function driveChoice(ctx: RequestContext, run: ChoiceRun, onToken: (token: TokenOutput) => boolean | Promise<boolean>): Promise<GenerationSummary> {
  let last: number | undefined;
  let failure: string | undefined;
  try {
    for await (const token of run.stream) {
      const now = performance.now();
      if (last === undefined) ctx.metrics.timeToFirstToken.observe((now - ctx.receivedAt) / 1000);
      else ctx.metrics.interTokenLatency.observe((now - last) / 1000);
      last = now;
      ctx.metrics.generationTokens.inc();
      if (await onToken(token)) {
        run.controller.abort();
        break;
      }
    }
  } catch (err) {
    // The stream (or turning its tokens into the response) failed: the engine lets go of the request, and the
    // summary says "error" whatever the engine's says (it saw an abort).
    run.controller.abort();
    failure = err instanceof Error ? err.message : String(err);
  }
  const summary = await run.stream.done;
  ctx.metrics.promptTokens.inc({}, summary.promptTokens);
  ctx.metrics.requestLatency.observe((performance.now() - ctx.receivedAt) / 1000);
  return failure === undefined ? summary : { ...summary, finishReason: "error", error: failure };
}

/** Why a request could not be answered, when its summary says it did not finish by itself (undefined: it did). */
export function unfinishedError(ctx: RequestContext, summary: GenerationSummary, stoppedByServer: boolean): ApiError | undefined {
  if (summary.finishReason === "error") return new ApiError(500, `the engine failed on this request: ${summary.error ?? "unknown error"}`, "server_error", null, "engine_error");
  if (summary.finishReason === "abort" && !stoppedByServer) {
    return ctx.signal.reason === "shutdown"
      ? new ApiError(503, "the server is shutting down; the request was aborted", "server_error", null, "shutting_down")
      : new ApiError(503, "the engine aborted the request", "server_error", null, "aborted");
  }
  return undefined;
}

/** The usage object of a response: the prompt counted once, completions of all choices summed. */
export function usageOf(summaries: readonly GenerationSummary[], reasoningTokens: number | undefined): Record<string, unknown> {
  const prompt = summaries[0]?.promptTokens ?? 0;
  const completion = summaries.reduce((sum, s) => sum + s.completionTokens, 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: summaries[0]?.cachedPromptTokens ?? 0 },
    ...(reasoningTokens !== undefined ? { completion_tokens_details: { reasoning_tokens: reasoningTokens } } : {}),
  };
}
