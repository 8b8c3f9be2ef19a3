// From a request's sampling fields to the engine's SamplingParams, per choice.
import type { EngineModelInfo, SamplingParams } from "../engine/api.js";
import { badRequest, type EngineFieldNames } from "./errors.js";
import type { SamplingRequest } from "./schemas.js";

export interface SamplingContext {
  readonly model: EngineModelInfo;
  readonly promptLength: number;
  /** The request field the prompt came from (`messages`, `prompt`), for errors. */
  readonly promptField: string;
  /** The requested output bound and the field it came from; undefined: whatever room the context leaves. */
  readonly maxTokens: number | undefined;
  readonly maxTokensField: string;
  /** Stop ids the endpoint always uses (harmony's `<|return|>` and `<|call|>` for chat, the model's eos for completions). */
  readonly stopTokenIds: readonly number[];
  /** Log-probabilities asked for: the number of alternatives per token (0: the chosen token's only); undefined: none. */
  readonly logprobs: number | undefined;
  readonly logprobsField: string;
}

/** OpenAI's default temperature (the engine's own default is greedy). */
export const DEFAULT_TEMPERATURE = 1;

export function samplingParams(request: SamplingRequest, c: SamplingContext): SamplingParams {
  const room = c.model.maxContext - c.promptLength;
  if (c.maxTokens === undefined && room < 1) {
    throw badRequest(`the prompt is ${c.promptLength} tokens, which leaves no room to generate in the model's context of ${c.model.maxContext} tokens`, c.promptField, "context_length_exceeded");
  }
  const topK = request.top_k ?? undefined;
  return {
    maxTokens: c.maxTokens ?? room,
    temperature: request.temperature ?? DEFAULT_TEMPERATURE,
    ...(topK !== undefined && topK > 0 ? { topK } : {}),
    ...(request.top_p !== null && request.top_p !== undefined ? { topP: request.top_p } : {}),
    ...(request.seed !== null && request.seed !== undefined ? { seed: request.seed } : {}),
    stopTokenIds: [...new Set([...c.stopTokenIds, ...(request.stop_token_ids ?? [])])],
    ...(c.logprobs !== undefined ? { logprobs: c.logprobs } : {}),
  };
}

/** The request field behind each engine field, so an EngineRequestError names what the client sent. */
export function engineFieldNames(c: Pick<SamplingContext, "promptField" | "maxTokensField" | "logprobsField">): EngineFieldNames {
  return {
    promptIds: c.promptField,
    maxTokens: c.maxTokensField,
    temperature: "temperature",
    topK: "top_k",
    topP: "top_p",
    seed: "seed",
    stopTokenIds: "stop_token_ids",
    stopStrings: "stop",
    logprobs: c.logprobsField,
  };
}

/**
 * Seeds of `n` choices: a given seed s makes choices s, s+1, …; without one a single choice leaves the engine its
 * default and several get distinct random seeds (the same seed would make them identical).
 */
export function choiceSeeds(seed: number | undefined, n: number): (number | undefined)[] {
  if (seed !== undefined) return Array.from({ length: n }, (_, i) => seed + i);
  if (n === 1) return [undefined];
  return Array.from({ length: n }, () => Math.floor(Math.random() * 2 ** 31));
}

export const stopList = (stop: string | readonly string[] | null | undefined): string[] => (stop === null || stop === undefined ? [] : typeof stop === "string" ? [stop] : [...stop]);
