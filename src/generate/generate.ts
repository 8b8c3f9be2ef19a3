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
}

export interface GenerateResult {
  readonly tokens: number[];
  /** Logits of the last prefill row and of each decode step, in order. */
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
 * with `rand`. Ties keep the lower token id first, as argmax does.
 */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: () => number): number {
  const temperature = o.temperature ?? 0;
  if (temperature === 0) return argmax(logits);
  const order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, order.length) : order.length;
  const top = order.slice(0, k);
  const max = logits[top[0]!]!;
  const weights = top.map((i) => Math.exp((logits[i]! - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  const p = o.topP ?? 1;
  let kept = top.length;
  if (p < 1) {
    let mass = 0;
    for (let j = 0; j < top.length; j++) {
      mass += weights[j]! / total;
      if (mass >= p) {
        kept = j + 1;
        break;
      }
    }
  }
  const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  let r = rand() * keptTotal;
  for (let j = 0; j < kept; j++) {
    r -= weights[j]!;
    if (r < 0) return top[j]!;
  }
  return top[kept - 1]!;
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

/** Greedy decoding of `promptIds` with the reference interpreter. */
export function referenceGenerate(graph: Graph, params: Readonly<Record<string, HostTensor>>, promptIds: readonly number[], opts: GenerateOptions): GenerateResult {
  return generate(graph, interpreterRunner(graph, params), promptIds, opts);
}

/** Generates up to `maxNewTokens` tokens after `promptIds`, running the graph's entry points with `run`. */
export function generate(graph: Graph, run: EntryRunner, promptIds: readonly number[], opts: GenerateOptions): GenerateResult {
  if (promptIds.length === 0) throw new Error("the prompt is empty");
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
  let next = first["logits"]!.data;
  let position = promptIds.length;
  for (let step = 0; step < opts.maxNewTokens; step++) {
    logits.push(next);
    const token = sampleToken(next, opts, rand);
    tokens.push(token);
    opts.onToken?.(token);
    if (stop.has(token) || step === opts.maxNewTokens - 1) break;
    const out = run("decode", { ids: hostTensor("i32", [1], [token]), positions: hostTensor("i32", [1], [position]), ...cache.inputs() });
    cache.append(out, [position]);
    next = out["logits"]!.data;
    position++;
  }
  return { tokens, logits };
}
