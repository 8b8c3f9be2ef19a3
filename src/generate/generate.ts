// Generation: drives a decoder graph with the gpt-oss entry-point contract (see models/gpt-oss.ts) —
// `prefill` runs the prompt, `decode` one token at a time; both return each layer's new keys and
// values, which a host-side KV cache appends. A sliding layer's cache keeps only the last `windowPast`
// tokens (its symbol's bound), so its memory stops growing there; full layers grow up to `past`.
// The entry points run through a runner: the CPU reference interpreter (the oracle) or a compiled plan
// on the GPU (PlanExecutor). Tokens are picked greedily or sampled (temperature, top-k, top-p, seeded).

import { findEntry, type Graph } from "../ir/graph.js";
import { type HostTensor, hostTensor, seededRandom } from "../ir/host-tensor.js";
import { interpret } from "../ir/interpret.js";

/** Runs one entry point of the graph: the reference interpreter or a compiled plan. */
export type EntryRunner = (entry: string, inputs: Readonly<Record<string, HostTensor>>) => Record<string, HostTensor>;

/** The CPU reference interpreter as a runner. */
export function interpreterRunner(graph: Graph, params: Readonly<Record<string, HostTensor>>): EntryRunner {
  return (entry, inputs) => interpret(graph, entry, inputs, params);
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

interface LayerCache {
  readonly name: string; // layers.N
  readonly sliding: boolean;
  readonly keys: Float64Array[]; // one [kvHeads·headDim] row per cached token
  readonly values: Float64Array[];
  readonly positions: number[];
}

/** Index of the largest value; ties to the lower index. */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
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
 * sorted (a full-vocabulary sort per token would cost more than a GPU decode step).
 */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: () => number): number {
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

export class HostKvCache {
  private readonly layers: LayerCache[];

  constructor(
    private readonly graph: Graph,
    private readonly rowShape: readonly number[], // [kvHeads, headDim]
    private readonly dtype: HostTensor["dtype"],
  ) {
    const decode = findEntry(graph, "decode");
    this.layers = decode.inputs
      .filter((i) => i.name.endsWith(".k_cache"))
      .map((i) => ({ name: i.name.slice(0, -".k_cache".length), sliding: i.shape[0] === "windowPast", keys: [], values: [], positions: [] }));
  }

  /** Most tokens a sliding layer keeps (window − 1). */
  get slidingCapacity(): number {
    return this.graph.symbols["windowPast"] ?? 0;
  }
  get fullCapacity(): number {
    return this.graph.symbols["past"] ?? 0;
  }

  /** Cached tokens per layer (sliding layers stop at their capacity). */
  lengths(): number[] {
    return this.layers.map((l) => l.positions.length);
  }

  /** The cache inputs of an entry point. */
  inputs(): Record<string, HostTensor> {
    const rowSize = this.rowShape.reduce((a, b) => a * b, 1);
    const out: Record<string, HostTensor> = {};
    const pack = (rows: readonly Float64Array[]) => {
      const data = new Float64Array(rows.length * rowSize);
      rows.forEach((r, i) => data.set(r, i * rowSize));
      return { dtype: this.dtype, shape: [rows.length, ...this.rowShape], data };
    };
    for (const l of this.layers) {
      out[`${l.name}.k_cache`] = pack(l.keys);
      out[`${l.name}.v_cache`] = pack(l.values);
      out[`cache_positions.${l.sliding ? "sliding" : "full"}`] = hostTensor("i32", [l.positions.length], l.positions);
    }
    return out;
  }

  /** Appends an entry point's new keys and values at `positions`, evicting beyond a sliding layer's window. */
  append(outputs: Readonly<Record<string, HostTensor>>, positions: readonly number[]): void {
    const rowSize = this.rowShape.reduce((a, b) => a * b, 1);
    for (const l of this.layers) {
      const k = outputs[`${l.name}.k`];
      const v = outputs[`${l.name}.v`];
      if (!k || !v) throw new Error(`the entry point did not return ${l.name}.k / .v`);
      positions.forEach((p, i) => {
        l.keys.push(k.data.slice(i * rowSize, (i + 1) * rowSize));
        l.values.push(v.data.slice(i * rowSize, (i + 1) * rowSize));
        l.positions.push(p);
      });
      const capacity = l.sliding ? this.slidingCapacity : this.fullCapacity;
      const excess = l.positions.length - capacity;
      if (excess > 0 && l.sliding) {
        l.keys.splice(0, excess);
        l.values.splice(0, excess);
        l.positions.splice(0, excess);
      } else if (excess > 0) {
        throw new Error(`context of ${l.positions.length} tokens exceeds the model's bound past = ${capacity}`);
      }
    }
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
  const prefillBound = graph.symbols["tokens"];
  if (prefillBound !== undefined && promptIds.length > prefillBound) throw new Error(`the prompt has ${promptIds.length} tokens; the model was built for prefills of at most ${prefillBound} (maxPrefillTokens)`);
  const contextBound = graph.symbols["past"];
  // The last generated token is never fed back, so the cache grows to prompt + maxNewTokens − 1 tokens.
  if (contextBound !== undefined && Math.max(promptIds.length, promptIds.length + maxNewTokens - 1) > contextBound) {
    throw new Error(`the prompt (${promptIds.length} tokens) and ${maxNewTokens} new tokens exceed the model's context bound (maxContext ${contextBound})`);
  }
}

/** Generates up to `maxNewTokens` tokens after `promptIds`, running the graph's entry points with `run`. */
export function generate(graph: Graph, run: EntryRunner, promptIds: readonly number[], opts: GenerateOptions): GenerateResult {
  checkPrompt(graph, promptIds, opts.maxNewTokens);
  checkSampling(opts);
  const rand = seededRandom(opts.seed ?? 0);
  const prefill = findEntry(graph, "prefill");
  const kCache = prefill.inputs.find((i) => i.name.endsWith(".k_cache"));
  if (!kCache) throw new Error(`model ${graph.name} has no KV-cache inputs; it does not follow the decoder entry-point contract`);
  const rowShape = kCache.shape.slice(1).map(Number);
  const cache = new HostKvCache(graph, rowShape, kCache.dtype);
  const tokens: number[] = [];
  const logits: Float64Array[] = [];
  const stop = new Set(opts.stopTokens ?? []);
  const positions = promptIds.map((_, i) => i);
  const first = run("prefill", {
    ids: hostTensor("i32", [promptIds.length], promptIds),
    positions: hostTensor("i32", [promptIds.length], positions),
    logit_rows: hostTensor("i32", [1], [promptIds.length - 1]),
    ...cache.inputs(),
  });
  cache.append(first, positions);
  let next = logitsOf(first, "prefill");
  let position = promptIds.length;
  for (let step = 0; step < opts.maxNewTokens; step++) {
    if (opts.keepLogits) logits.push(next);
    const token = sampleToken(next, opts, rand);
    tokens.push(token);
    opts.onToken?.(token);
    if (stop.has(token) || step === opts.maxNewTokens - 1) break;
    const out = run("decode", { ids: hostTensor("i32", [1], [token]), positions: hostTensor("i32", [1], [position]), ...cache.inputs() });
    cache.append(out, [position]);
    next = logitsOf(out, "decode");
    position++;
  }
  return { tokens, logits };
}

function logitsOf(outputs: Readonly<Record<string, HostTensor>>, entry: string): Float64Array {
  const logits = outputs["logits"];
  if (!logits) throw new Error(`entry point ${entry} returned no logits`);
  return logits.data;
}
