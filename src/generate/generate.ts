// Generation: drives a decoder graph with the gpt-oss entry-point contract (see models/gpt-oss.ts) —
// `prefill` runs a prompt, `decode` one token for each of up to maxBatch sequences. The KV cache is model
// state that lives with the runner (in the GPU arena, or beside the interpreter); the host only keeps
// its bookkeeping (KvCacheBook): which cache row holds which position of which sequence. A sliding
// layer's rows form a ring of `window` slots, so its memory never grows; full layers have a row per position.
// The entry points run through a runner: the CPU reference interpreter (the oracle) or a compiled plan
// on the GPU (PlanExecutor). Tokens are picked greedily or sampled (temperature, top-k, top-p, seeded).

import { findEntry, type Graph } from "../ir/graph.js";
import { type HostTensor, hostTensor, seededRandom } from "../ir/host-tensor.js";
import { interpretStep } from "../ir/interpret.js";

/** Runs one entry point of the graph (the runner keeps the model state between calls): the reference interpreter or a compiled plan. */
export type EntryRunner = (entry: string, inputs: Readonly<Record<string, HostTensor>>) => Record<string, HostTensor>;

/** The CPU reference interpreter as a runner, holding the model state (KV cache) between calls; it starts zeroed. */
export function interpreterRunner(graph: Graph, params: Readonly<Record<string, HostTensor>>): EntryRunner {
  let states: Record<string, HostTensor> = {};
  return (entry, inputs) => {
    const { outputs, updates } = interpretStep(graph, entry, inputs, params, states);
    states = { ...states, ...updates };
    return outputs;
  };
}

export interface SamplingOptions {
  /** 0 (the default) picks the most likely token; higher values flatten the distribution. */
  readonly temperature?: number;
  /** Sample among the k most likely tokens only (0: no limit). */
  readonly topK?: number;
  /** Sample among the smallest set of tokens whose probability reaches p (1: no limit). */
  readonly topP?: number;
  /** Seed of the sampler's random numbers. */
  readonly seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  readonly maxNewTokens: number;
  /** Generation stops after emitting one of these. */
  readonly stopTokens?: readonly number[];
  /** Called with each new token as soon as it is chosen. */
  readonly onToken?: (token: number) => void;
  /** Keep the logits of every step in the result (a vocabulary of floats per token; off by default). */
  readonly keepLogits?: boolean;
}

export interface GenerateResult {
  readonly tokens: number[];
  /** With `keepLogits`: logits of the last prefill row and of each decode step, in order (else empty). */
  readonly logits: Float64Array[];
}

/** Index of the largest value; ties to the lower index. A NaN has no place in an order: it throws. */
export function argmax(v: ArrayLike<number>, label = "argmax"): number {
  let best = 0;
  for (let i = 0; i < v.length; i++) {
    if (Number.isNaN(v[i])) checkLogits(v, label);
    if (v[i]! > v[best]!) best = i;
  }
  return best;
}

/**
 * Throws when logits hold NaN or +Inf (overflowed arithmetic or damaged weights: no token can be chosen
 * honestly), or no finite value at all. A −Inf logit is a masked token (probability 0) and is allowed.
 * `label` names the call in the message, e.g. "step 3".
 */
export function checkLogits(logits: ArrayLike<number>, label = "sampling"): void {
  let bad = 0;
  let first = -1;
  let finite = false;
  const kinds = new Set<string>();
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (Number.isNaN(v) || v === Infinity) {
      bad++;
      kinds.add(Number.isNaN(v) ? "NaN" : "Inf");
      if (first < 0) first = i;
    } else if (v !== -Infinity) {
      finite = true;
    }
  }
  if (bad > 0) {
    throw new Error(`${label}: the logits hold ${[...kinds].join("/")} (${bad} of ${logits.length} values are NaN or infinite; the first at token ${first}): the model's arithmetic overflowed or its weights are damaged`);
  }
  if (!finite) throw new Error(`${label}: the logits hold no finite value (all ${logits.length} are -Inf): no token can be chosen`);
}

/** Checks sampling options; throws naming the option. */
export function checkSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new Error(`temperature must be a finite number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new Error(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new Error(`top-p must be in (0, 1], got ${o.topP}`);
}

/**
 * Picks the next token from logits: argmax at temperature 0; otherwise softmax(logits / temperature)
 * restricted to the top-k tokens, then to the smallest prefix (by probability) reaching top-p, sampled
 * with `rand`. Ties keep the lower token id first, as argmax does. Only the tokens that can be kept are
 * sorted (a full-vocabulary sort per token would cost more than a GPU decode step). Non-finite logits
 * throw (checkLogits), naming `label` (e.g. "step 3").
 */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: () => number, label?: string): number {
  checkLogits(logits, label);
  const temperature = o.temperature ?? 0;
  if (temperature === 0) return argmax(logits);
  const vocab = logits.length;
  const max = logits[argmax(logits)]!;
  const weights = new Float64Array(vocab);
  let total = 0;
  for (let i = 0; i < vocab; i++) total += weights[i] = Math.exp((logits[i]! - max) / temperature);
  const topK = o.topK && o.topK > 0 ? Math.min(o.topK, vocab) : vocab;
  const topP = o.topP ?? 1;
  if (topK === vocab && topP >= 1) return drawFrom(weights, Array.from({ length: vocab }, (_, i) => i), vocab, rand);
  // Tokens outside the nucleus: those below (1 − p)/vocab of the mass together hold less than 1 − p, so
  // the nucleus never reaches them; with top-k alone, those below the k-th largest weight.
  const floor = topP < 1 ? ((1 - topP) / vocab) * total : 0;
  let candidates: number[] = [];
  for (let i = 0; i < vocab; i++) if (weights[i]! >= floor) candidates.push(i);
  candidates.sort((a, b) => weights[b]! - weights[a]! || a - b);
  candidates = candidates.slice(0, topK);
  let kept = candidates.length;
  if (topP < 1) {
    let mass = 0;
    for (let j = 0; j < candidates.length; j++) {
      mass += weights[candidates[j]!]! / total;
      if (mass >= topP) {
        kept = j + 1;
        break;
      }
    }
  }
  return drawFrom(weights, candidates, kept, rand);
}

/** Draws one of the first `count` of `tokens` with probability proportional to its weight. */
function drawFrom(weights: Float64Array, tokens: readonly number[], count: number, rand: () => number): number {
  let sum = 0;
  for (let j = 0; j < count; j++) sum += weights[tokens[j]!]!;
  let r = rand() * sum;
  for (let j = 0; j < count; j++) {
    r -= weights[tokens[j]!]!;
    if (r < 0) return tokens[j]!;
  }
  return tokens[count - 1]!;
}

/**
 * Host-side bookkeeping of the model's KV cache (the layout models/gpt-oss.ts documents): sequence b owns
 * rows [b·slots, (b+1)·slots) of every layer's cache; on full layers position p sits in row p, on sliding
 * layers in row p mod window. Sequence b holds positions 0 … length(b) − 1. The book computes the cache
 * inputs of `prefill` and `decode`; the cache itself never leaves the runner.
 */
/** Full layers' decode reads grow in steps of this many rows (see KvCacheBook.decodeInputs). */
export const KV_LEN_STEP = 128;

export class KvCacheBook {
  /** Rows per sequence on full layers (the context bound). */
  readonly fullSlots: number;
  /** Rows per sequence on sliding layers (the window). */
  readonly window: number;
  /** Sequences the cache holds (the most a decode step runs together). */
  readonly maxBatch: number;
  private readonly cached: number[];

  constructor(graph: Graph) {
    const decode = findEntry(graph, "decode");
    const rowsOf = (name: string): number => {
      const dim = decode.inputs.find((i) => i.name === name)?.shape[1];
      const rows = typeof dim === "number" ? dim : dim !== undefined ? graph.symbols[dim] : undefined;
      if (rows === undefined) throw new Error(`model ${graph.name}: decode has no ${name} [batch, rows] input with a bound; it does not follow the decoder entry-point contract`);
      return rows;
    };
    this.fullSlots = rowsOf("cache_positions.full");
    this.window = rowsOf("cache_positions.sliding");
    this.maxBatch = graph.symbols["batch"] ?? 1;
    this.cached = new Array<number>(this.maxBatch).fill(0);
  }

  /** Tokens cached for sequence `seq`. */
  length(seq: number): number {
    this.checkSeq(seq);
    return this.cached[seq]!;
  }

  /** Forgets sequence `seq` (its rows are reused; stale contents are masked by position −1). */
  reset(seq: number): void {
    this.checkSeq(seq);
    this.cached[seq] = 0;
  }

  /** Cache inputs of `prefill` for `count` new tokens of sequence `seq` (positions length … length + count − 1). */
  prefillInputs(seq: number, count: number): Record<string, HostTensor> {
    const start = this.length(seq);
    if (start + count > this.fullSlots) throw new Error(`sequence ${seq}: ${start + count} tokens exceed the cache's ${this.fullSlots} rows (maxContext)`);
    const fullRows = Array.from({ length: start }, (_, j) => seq * this.fullSlots + j);
    const slidingPositions = Array.from({ length: Math.min(start, this.window - 1) }, (_, j) => start - Math.min(start, this.window - 1) + j);
    const fresh = Array.from({ length: count }, (_, j) => start + j);
    return {
      "cache_rows.full": hostTensor("i32", [start], fullRows),
      "cache_positions.full": hostTensor("i32", [start], fullRows.map((_, j) => j)),
      "cache_slots.full": hostTensor("i32", [count], fresh.map((p) => seq * this.fullSlots + p)),
      "cache_rows.sliding": hostTensor("i32", [slidingPositions.length], slidingPositions.map((p) => seq * this.window + (p % this.window))),
      "cache_positions.sliding": hostTensor("i32", [slidingPositions.length], slidingPositions),
      "cache_slots.sliding": hostTensor("i32", [count], fresh.map((p) => seq * this.window + (p % this.window))),
    };
  }

  /**
   * Cache inputs of `decode` for one new token of each of sequences 0 … active.length − 1 (batch row b is
   * sequence b); an inactive row writes nothing and sees nothing. Full layers are read over their first
   * kvLen rows: the longest sequence's length rounded up to KV_LEN_STEP, so that a decode step replayed as
   * a CUDA graph (one per symbol values) is captured again only every KV_LEN_STEP tokens.
   */
  decodeInputs(active: readonly boolean[]): Record<string, HostTensor> {
    const batch = active.length;
    if (batch < 1 || batch > this.maxBatch) throw new Error(`a decode step runs 1 to ${this.maxBatch} sequences (maxBatch), got ${batch}`);
    const longest = Math.max(...active.map((a, b) => (a ? this.cached[b]! + 1 : 1)));
    const kvLen = Math.min(this.fullSlots, Math.ceil(longest / KV_LEN_STEP) * KV_LEN_STEP);
    const fullSlots = new Array<number>(batch).fill(-1);
    const slidingSlots = new Array<number>(batch).fill(-1);
    const fullPositions = new Array<number>(batch * kvLen).fill(-1);
    const slidingPositions = new Array<number>(batch * this.window).fill(-1);
    for (let b = 0; b < batch; b++) {
      if (!active[b]) continue;
      const p = this.cached[b]!;
      if (p + 1 > this.fullSlots) throw new Error(`sequence ${b}: ${p + 1} tokens exceed the cache's ${this.fullSlots} rows (maxContext)`);
      fullSlots[b] = b * this.fullSlots + p;
      slidingSlots[b] = b * this.window + (p % this.window);
      for (let j = 0; j <= p; j++) fullPositions[b * kvLen + j] = j;
      // ring row r holds the latest position q <= p with q mod window = r
      for (let r = 0; r < this.window; r++) {
        const q = p - ((((p - r) % this.window) + this.window) % this.window);
        slidingPositions[b * this.window + r] = q >= 0 ? q : -1;
      }
    }
    return {
      "cache_slots.full": hostTensor("i32", [batch], fullSlots),
      "cache_slots.sliding": hostTensor("i32", [batch], slidingSlots),
      "cache_positions.full": hostTensor("i32", [batch, kvLen], fullPositions),
      "cache_positions.sliding": hostTensor("i32", [batch, this.window], slidingPositions),
    };
  }

  /** Records that sequence `seq` cached `count` more tokens. */
  advance(seq: number, count: number): void {
    this.checkSeq(seq);
    this.cached[seq]! += count;
  }

  private checkSeq(seq: number): void {
    if (!(Number.isInteger(seq) && seq >= 0 && seq < this.maxBatch)) throw new Error(`sequence ${seq} is outside the cache's ${this.maxBatch} sequences (maxBatch)`);
  }
}

/** Generation with the reference interpreter, keeping every step's logits (the oracle of tests). */
export function referenceGenerate(graph: Graph, params: Readonly<Record<string, HostTensor>>, promptIds: readonly number[], opts: GenerateOptions): GenerateResult {
  return generate(graph, interpreterRunner(graph, params), promptIds, { keepLogits: true, ...opts });
}

/** Checks a prompt against the graph's vocabulary and symbol bounds; throws naming the problem. */
export function checkPrompt(graph: Graph, promptIds: readonly number[], maxNewTokens: number): void {
  if (promptIds.length === 0) throw new Error("the prompt is empty");
  const vocab = graph.params.find((p) => p.name === "model.embed_tokens.weight")?.shape[0];
  promptIds.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0) throw new Error(`prompt id ${id} is not a token id (at position ${i})`);
    if (typeof vocab === "number" && id >= vocab) throw new Error(`prompt id ${id} is outside the model's vocabulary of ${vocab} tokens (at position ${i})`);
  });
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 0)) throw new Error(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  const contextBound = graph.symbols["past"];
  // The last generated token is never fed back, so the cache grows to prompt + maxNewTokens − 1 tokens.
  if (contextBound !== undefined && Math.max(promptIds.length, promptIds.length + maxNewTokens - 1) > contextBound) {
    throw new Error(`the prompt (${promptIds.length} tokens) and ${maxNewTokens} new tokens exceed the model's context bound (maxContext ${contextBound})`);
  }
}

/** Generates up to `maxNewTokens` tokens after `promptIds`, running the graph's entry points with `run`. */
export function generate(graph: Graph, run: EntryRunner, promptIds: readonly number[], opts: GenerateOptions): GenerateResult {
  const { onToken, ...rest } = opts;
  return generateBatch(graph, run, [promptIds], { ...rest, ...(onToken ? { onToken: (token: number) => onToken(token) } : {}) })[0]!;
}

export interface GenerateBatchOptions extends Omit<GenerateOptions, "onToken"> {
  /** Called with each new token of sequence `seq` (the prompt's index) as soon as it is chosen. */
  readonly onToken?: (token: number, seq: number) => void;
}

/**
 * Generates for several prompts at once: each is prefilled into its own sequence of the KV cache, then one
 * decode step advances all unfinished sequences together (batch row b = prompt b). Prompt b samples with
 * seed + b, so a prompt's tokens do not depend on its batch companions.
 */
export function generateBatch(graph: Graph, run: EntryRunner, prompts: readonly (readonly number[])[], opts: GenerateBatchOptions): GenerateResult[] {
  const book = new KvCacheBook(graph);
  if (prompts.length === 0) throw new Error("no prompts given");
  if (prompts.length > book.maxBatch) throw new Error(`${prompts.length} prompts exceed the model's ${book.maxBatch} sequences (maxBatch)`);
  prompts.forEach((p, i) => {
    try {
      checkPrompt(graph, p, opts.maxNewTokens);
    } catch (err) {
      throw new Error(prompts.length > 1 ? `prompt ${i}: ${err instanceof Error ? err.message : String(err)}` : err instanceof Error ? err.message : String(err));
    }
  });
  checkSampling(opts);
  const stop = new Set(opts.stopTokens ?? []);
  const results: GenerateResult[] = prompts.map(() => ({ tokens: [], logits: [] }));
  const rands = prompts.map((_, i) => seededRandom((opts.seed ?? 0) + i));
  // prompts longer than the prefill bound go in chunks: each chunk reads the cache the earlier ones wrote
  const chunk = graph.symbols["tokens"] ?? Infinity;
  const pending: (Float64Array | undefined)[] = prompts.map((promptIds, seq) => {
    book.reset(seq);
    let logits: Float64Array | undefined;
    for (let start = 0; start < promptIds.length; start += chunk) {
      const ids = promptIds.slice(start, start + chunk);
      const out = run("prefill", {
        ids: hostTensor("i32", [ids.length], ids),
        positions: hostTensor("i32", [ids.length], ids.map((_, i) => start + i)),
        logit_rows: hostTensor("i32", [1], [ids.length - 1]),
        ...book.prefillInputs(seq, ids.length),
      });
      book.advance(seq, ids.length);
      logits = logitsOf(out, "prefill");
    }
    return logits!.slice();
  });
  // pick a token for every sequence that has logits; a sequence is done after a stop token or maxNewTokens
  const pick = (): number[] =>
    pending.map((logits, seq) => {
      if (!logits) return -1;
      const r = results[seq]!;
      if (opts.keepLogits) r.logits.push(logits);
      // step 0 is the token after the prompt (the prefill's logits), step k the k-th decode's
      const step = `${prompts.length > 1 ? `prompt ${seq}, ` : ""}step ${r.tokens.length}`;
      const token = sampleToken(logits, opts, rands[seq]!, step);
      r.tokens.push(token);
      opts.onToken?.(token, seq);
      if (stop.has(token) || r.tokens.length >= opts.maxNewTokens) pending[seq] = undefined;
      return token;
    });
  if (opts.maxNewTokens === 0) return results;
  let tokens = pick();
  while (pending.some((l) => l !== undefined)) {
    const active = pending.map((l) => l !== undefined);
    const positions = active.map((a, seq) => (a ? book.length(seq) : 0));
    const out = run("decode", {
      ids: hostTensor("i32", [prompts.length], tokens.map((t) => Math.max(t, 0))),
      positions: hostTensor("i32", [prompts.length], positions),
      ...book.decodeInputs(active),
    });
    const logits = logitsOf(out, "decode");
    const vocab = logits.length / prompts.length;
    active.forEach((a, seq) => {
      if (!a) return;
      book.advance(seq, 1);
      pending[seq] = logits.slice(seq * vocab, (seq + 1) * vocab);
    });
    tokens = pick();
  }
  return results;
}

function logitsOf(outputs: Readonly<Record<string, HostTensor>>, entry: string): Float64Array {
  const logits = outputs["logits"];
  if (!logits) throw new Error(`entry point ${entry} returned no logits`);
  return logits.data;
}
