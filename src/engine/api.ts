// The serving engine's public API (exported from "tsgc"): load a model once, submit requests at any time,
// read each request's tokens as an AsyncIterable. The CLI (`generate`, `bench serve`, `chat`) and the HTTP
// server (`tsgc serve`) are written against this interface alone.

/** Per-request generation settings. */
export interface SamplingParams {
  /** Most tokens to generate (the request ends with finishReason "length" there). */
  readonly maxTokens: number;
  /** 0 (the default) picks the most likely token; otherwise softmax(logits / temperature) is sampled. */
  readonly temperature?: number;
  /** Sample among the k most likely tokens; 0 or undefined: all. */
  readonly topK?: number;
  /** Sample within the smallest set of tokens whose probability reaches p; 1 or undefined: all. */
  readonly topP?: number;
  /** Seed of this request's sampler: the same request with the same seed gives the same tokens, whatever it is batched with. */
  readonly seed?: number;
  /** Token ids that end the request (finishReason "stop"); the stop token is reported, and counted. */
  readonly stopTokenIds?: readonly number[];
  /** Strings that end the request when the generated text contains one (needs a tokenizer); the text up to the match is reported. */
  readonly stopStrings?: readonly string[];
  /** Report the chosen token's log-probability and, when > 0, this many most likely alternatives per token (at most 20). */
  readonly logprobs?: number;
}

export interface GenerationRequest extends SamplingParams {
  readonly promptIds: readonly number[];
  /** Aborting ends the request at once (finishReason "abort") and frees its KV blocks. */
  readonly signal?: AbortSignal;
  /** A caller-chosen id for logs and stats; the engine makes one otherwise. */
  readonly id?: string;
  /** Also report the full logits behind every token (parity checks: a vocabulary of floats per token). */
  readonly logits?: boolean;
}

export interface TokenLogprob {
  readonly token: number;
  readonly logprob: number;
}

/** One generated token, in order. */
export interface TokenOutput {
  readonly token: number;
  /** The text this token completes (UTF-8 characters split across tokens are held back until whole); "" without a tokenizer. */
  readonly text: string;
  readonly logprob?: number;
  readonly topLogprobs?: readonly TokenLogprob[];
  /** With `logits` in the request: the logits this token was sampled from. */
  readonly logits?: Float64Array;
}

export type FinishReason = "stop" | "length" | "abort" | "error";

export interface GenerationSummary {
  readonly id: string;
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** The stop token id or stop string that ended the request. */
  readonly stoppedBy?: number | string;
  /** With finishReason "error": what went wrong. */
  readonly error?: string;
  /** Milliseconds from submission to the first token, and per later token on average. */
  readonly timeToFirstTokenMs?: number;
  readonly timePerOutputTokenMs?: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  readonly cachedPromptTokens: number;
}

/** A submitted request: iterate it for tokens; `done` resolves when it ends (also when nobody iterates). */
export interface GenerationStream extends AsyncIterable<TokenOutput> {
  readonly id: string;
  readonly done: Promise<GenerationSummary>;
}

export interface EngineStats {
  readonly running: number;
  readonly waiting: number;
  /** Per KV group: blocks holding some sequence's tokens, blocks free (cached-but-unreferenced blocks count as free). */
  readonly blocks: Readonly<Record<string, { readonly used: number; readonly free: number; readonly total: number }>>;
  readonly preemptions: number;
  /** Prompt tokens served from the prefix cache, and prompt tokens looked up, since the engine started. */
  readonly prefixHitTokens: number;
  readonly prefixQueryTokens: number;
  readonly steps: number;
  /** Of those, steps planned while the step before ran and queued behind it, their tokens fed back on the device. */
  readonly stepsAhead: number;
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly finished: Readonly<Record<FinishReason, number>>;
  /** Device time of every step so far, ms (0 on the CPU): against wall time, how busy the host keeps the GPU. */
  readonly deviceMs: number;
}

export interface EngineModelInfo {
  readonly name: string;
  readonly vocabSize: number;
  readonly maxContext: number;
  /** The tokenizer the engine decodes text with, when the model's vocabulary is o200k_harmony. */
  readonly tokenizer?: "o200k_harmony";
  readonly eosTokenIds: readonly number[];
  /** "cuda" (a compiled plan) or "cpu" (the reference interpreter). */
  readonly device: "cuda" | "cpu";
  /** Ranks the model is sharded over (tensor and expert parallelism); absent: 1. */
  readonly ranks?: number;
}

export interface Engine {
  readonly model: EngineModelInfo;
  /**
   * Submits a request. Bad requests (empty prompt, an id outside the vocabulary, a prompt that can never fit the
   * context or the KV pool, bad sampling values) throw an EngineRequestError naming the field; nothing is queued.
   */
  generate(request: GenerationRequest): GenerationStream;
  stats(): EngineStats;
  /** Ends every request (finishReason "abort"), stops stepping and frees the device. */
  close(): Promise<void>;
}

/** A request the engine refuses; `field` names what is wrong (`promptIds`, `temperature`, …). */
export class EngineRequestError extends Error {
  override readonly name = "EngineRequestError";
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/** The engine's waiting queue is full; try again later (the server answers 429 with Retry-After). */
export class EngineOverloadedError extends Error {
  override readonly name = "EngineOverloadedError";
  constructor(readonly waiting: number) {
    super(`the engine's waiting queue is full (${waiting} requests); try again later`);
  }
}
