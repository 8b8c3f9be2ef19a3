// gpt-oss, written with the public model-definition API in plain math; the compiler does the fusing.
//
// Pre-norm decoder: h = x + o_proj(attn(rms(x))); y = h + moe(rms(h)); final rms; lm_head.
// Attention: q/k/v/o with bias, GQA, YaRN RoPE (half-split), per-head sinks; even layers slide
// (window 128: a query sees itself and 127 earlier tokens), odd layers are full causal.
// MoE: router → top-k → softmax over those k → clamped SwiGLU experts → weighted sum.
//
// KV cache: model state in the arena, per layer layers.N.k_cache / v_cache [maxBatch·slots, kvHeads, headDim],
// sequence b owning rows [b·slots, (b+1)·slots). Full layers have slots = maxContext (row = position);
// sliding layers are a ring of slots = window (row = position mod window): while token p is processed
// the ring holds p and the 127 tokens before it, so its memory never grows with the context.
//
// Entry points (the host keeps the bookkeeping: which row holds which position; −1 marks an empty row):
//   prefill (one sequence, `tokens` new tokens after `past` cached ones):
//     ids, positions i32[tokens], logit_rows i32[rows],
//     cache_rows.full i32[past] / cache_positions.full i32[past]: the cached rows the new tokens see, and
//     their positions (likewise .sliding [windowPast], windowPast ≤ window − 1),
//     cache_slots.full / .sliding i32[tokens]: the row each new token's keys and values are written to
//     → logits [rows, vocab]. Attention runs over the gathered old rows followed by the new tokens; the
//     new keys and values are written to the cache after every read of it.
//   decode (`batch` sequences, one token each; sequence b is batch row b):
//     ids, positions i32[batch], cache_slots.full / .sliding i32[batch] (rows to write),
//     cache_positions.full i32[batch, kvLen] / .sliding i32[batch, window] (the position each row holds
//     once this token is written; full layers: the first kvLen ≤ maxContext rows of each sequence, enough
//     to cover the longest) → logits [batch, vocab]. The new keys and values are written first; attention
//     then reads those rows of the cache in place.
// Parameter names are the Hugging Face checkpoint's.

import { type EntryBuilder, type ExpertWeight, type ModelBuilder, type RopeOptions, type Tensor, defineModel } from "../src/ir/builder.js";
import type { Graph } from "../src/ir/graph.js";
import type { Dim } from "../src/ir/shape.js";
import type { GptOssConfig } from "./gpt-oss-config.js";

export interface GptOssBuildOptions {
  /** Compute and storage dtype of the unquantized weights and activations. */
  readonly dtype: "bf16" | "f32";
  /** Expert weights read packed as MXFP4 (the checkpoint's form) or dense. Default: mxfp4 when the config says so. */
  readonly experts?: "mxfp4" | "dense";
  /** Upper bound on tokens per prefill call. */
  readonly maxPrefillTokens?: number;
  /** Upper bound on the cached context of full-attention layers (rows per sequence). */
  readonly maxContext?: number;
  /** Sequences the KV cache holds, and the most a decode step runs together. Default 1. */
  readonly maxBatch?: number;
}

export const GPT_OSS_DEFAULT_MAX_PREFILL = 4096;
export const GPT_OSS_DEFAULT_MAX_CONTEXT = 4096;

/** A projection's weight [out, in] and, when the config has attention biases, its bias [out]. */
type Linear = readonly [Tensor] | readonly [Tensor, Tensor];

interface LayerWeights {
  readonly inputNorm: Tensor;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly sinks: Tensor;
  readonly postNorm: Tensor;
  readonly routerWeight: Tensor;
  readonly routerBias: Tensor;
  readonly gateUp: ExpertWeight;
  readonly gateUpBias: Tensor;
  readonly down: ExpertWeight;
  readonly downBias: Tensor;
}

function declareLayer(b: ModelBuilder, c: GptOssConfig, i: number, dtype: "bf16" | "f32", experts: "mxfp4" | "dense"): LayerWeights {
  const p = `model.layers.${i}`;
  const [d, h, kvh, hd, e, inter] = [c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.numExperts, c.intermediateSize];
  const linear = (name: string, out: number, inp: number): Linear => {
    const weight = b.param(`${p}.${name}.weight`, dtype, [out, inp]);
    return c.attentionBias ? [weight, b.param(`${p}.${name}.bias`, dtype, [out])] : [weight];
  };
  const expert = (name: string, dense: readonly number[], outMajor: readonly number[]): ExpertWeight =>
    experts === "mxfp4" ? b.mxfp4Param(`${p}.mlp.experts.${name}`, outMajor) : { weight: b.param(`${p}.mlp.experts.${name}`, dtype, dense) };
  return {
    inputNorm: b.param(`${p}.input_layernorm.weight`, dtype, [d]),
    q: linear("self_attn.q_proj", h * hd, d),
    k: linear("self_attn.k_proj", kvh * hd, d),
    v: linear("self_attn.v_proj", kvh * hd, d),
    o: linear("self_attn.o_proj", d, h * hd),
    sinks: b.param(`${p}.self_attn.sinks`, dtype, [h]),
    postNorm: b.param(`${p}.post_attention_layernorm.weight`, dtype, [d]),
    routerWeight: b.param(`${p}.mlp.router.weight`, dtype, [e, d]),
    routerBias: b.param(`${p}.mlp.router.bias`, dtype, [e]),
    gateUp: expert("gate_up_proj", [e, d, 2 * inter], [e, 2 * inter, d]),
    gateUpBias: b.param(`${p}.mlp.experts.gate_up_proj_bias`, dtype, [e, 2 * inter]),
    down: expert("down_proj", [e, inter, d], [e, d, inter]),
    downBias: b.param(`${p}.mlp.experts.down_proj_bias`, dtype, [e, d]),
  };
}

function project(b: ModelBuilder, x: Tensor, [weight, bias]: Linear): Tensor {
  return b.linear(x, weight, bias);
}

function ropeOptions(c: GptOssConfig): RopeOptions {
  const r = c.rope;
  return {
    theta: r.theta,
    yarn: { factor: r.factor, originalContext: r.originalMaxPositionEmbeddings, betaFast: r.betaFast, betaSlow: r.betaSlow, truncate: r.truncate },
  };
}

interface KvCache {
  readonly k: Tensor;
  readonly v: Tensor;
  readonly sliding: boolean;
  /** Rows per sequence. */
  readonly slots: number;
}

interface CacheLayout {
  readonly maxBatch: number;
  readonly maxContext: number;
}

function declareCache(b: ModelBuilder, c: GptOssConfig, i: number, dtype: "bf16" | "f32", layout: CacheLayout): KvCache {
  const sliding = c.layerTypes[i] === "sliding_attention";
  const slots = sliding ? c.slidingWindow : layout.maxContext;
  const shape = [layout.maxBatch * slots, c.numKvHeads, c.headDim];
  return { k: b.state(`layers.${i}.k_cache`, dtype, shape), v: b.state(`layers.${i}.v_cache`, dtype, shape), sliding, slots };
}

/** One decoder layer's attention over its KV cache: the entry point decides how the cache is read and written. */
type AttendWithCache = (q: Tensor, k: Tensor, v: Tensor, cache: KvCache, layer: number, window: number | undefined, sinks: Tensor) => Tensor;

/** Embeddings → decoder layers → final norm → lm_head on `rows` of the last hidden state. */
function decoder(
  b: ModelBuilder, c: GptOssConfig, layers: readonly LayerWeights[], caches: readonly KvCache[], dtype: "bf16" | "f32",
  ids: Tensor, positions: Tensor, attend: AttendWithCache, logitRows: (x: Tensor) => Tensor,
): Tensor {
  const [h, kvh, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  const tokens = ids.shape[0]!;
  const embed = b.param("model.embed_tokens.weight", dtype, [c.vocabSize, c.hiddenSize]);
  const rope = ropeOptions(c);
  let x = b.embedding(embed, ids); // [T, D]
  layers.forEach((w, i) => {
    const cache = caches[i]!;
    const normed = b.rmsNorm(x, w.inputNorm, c.rmsNormEps);
    const q = b.rope(b.reshape(project(b, normed, w.q), [tokens, h, hd]), positions, rope);
    const k = b.rope(b.reshape(project(b, normed, w.k), [tokens, kvh, hd]), positions, rope);
    const v = b.reshape(project(b, normed, w.v), [tokens, kvh, hd]);
    const attn = attend(q, k, v, cache, i, cache.sliding ? c.slidingWindow : undefined, w.sinks);
    x = b.add(x, project(b, b.reshape(attn, [tokens, h * hd]), w.o));
    const moeIn = b.rmsNorm(x, w.postNorm, c.rmsNormEps);
    x = b.add(
      x,
      b.moe(moeIn, {
        routerWeight: w.routerWeight,
        routerBias: w.routerBias,
        gateUp: w.gateUp,
        gateUpBias: w.gateUpBias,
        down: w.down,
        downBias: w.downBias,
        topK: c.expertsPerToken,
        limit: c.swigluLimit,
        alpha: c.swigluAlpha,
      }),
    );
  });
  const finalNorm = b.param("model.norm.weight", dtype, [c.hiddenSize]);
  const lmHead = b.param("lm_head.weight", dtype, [c.vocabSize, c.hiddenSize]);
  return b.linear(b.rmsNorm(logitRows(x), finalNorm, c.rmsNormEps), lmHead);
}

/** Prefill of one sequence: attention over its gathered cached rows then the new tokens; the cache written last. */
function prefillEntry(b: ModelBuilder, e: EntryBuilder, c: GptOssConfig, layers: readonly LayerWeights[], caches: readonly KvCache[], dtype: "bf16" | "f32"): void {
  const ids = e.input("ids", "i32", ["tokens"]);
  const positions = e.input("positions", "i32", ["tokens"]);
  const logitRows = e.input("logit_rows", "i32", ["rows"]);
  const cacheInputs = (kind: "full" | "sliding", past: Dim) => ({
    rows: e.input(`cache_rows.${kind}`, "i32", [past]),
    positions: e.input(`cache_positions.${kind}`, "i32", [past]),
    slots: e.input(`cache_slots.${kind}`, "i32", ["tokens"]),
  });
  const full = cacheInputs("full", "past");
  const sliding = cacheInputs("sliding", "windowPast");
  const attend: AttendWithCache = (q, k, v, cache, i, window, sinks) => {
    const io = cache.sliding ? sliding : full;
    const keys = b.concat([b.gather(cache.k, io.rows, 0), k], 0);
    const values = b.concat([b.gather(cache.v, io.rows, 0), v], 0);
    e.update(`layers.${i}.k_cache`, b.scatter(cache.k, io.slots, k, 0));
    e.update(`layers.${i}.v_cache`, b.scatter(cache.v, io.slots, v, 0));
    const kpos = b.concat([io.positions, positions], 0);
    return b.attention(q, keys, values, { qpos: positions, kpos, sinks, scale: 1 / Math.sqrt(c.headDim), ...(window ? { window } : {}) });
  };
  e.output("logits", decoder(b, c, layers, caches, dtype, ids, positions, attend, (x) => b.gather(x, logitRows, 0)));
}

/** Decode of `batch` sequences, one token each: the new keys and values written first, then read in place. */
function decodeEntry(b: ModelBuilder, e: EntryBuilder, c: GptOssConfig, layers: readonly LayerWeights[], caches: readonly KvCache[], dtype: "bf16" | "f32", layout: CacheLayout): void {
  const [h, kvh, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  const ids = e.input("ids", "i32", ["batch"]);
  const positions = e.input("positions", "i32", ["batch"]);
  const cacheInputs = (kind: "full" | "sliding", rows: Dim) => ({
    slots: e.input(`cache_slots.${kind}`, "i32", ["batch"]),
    positions: e.input(`cache_positions.${kind}`, "i32", ["batch", rows]),
  });
  const full = cacheInputs("full", "kvLen");
  const sliding = cacheInputs("sliding", c.slidingWindow);
  const attend: AttendWithCache = (q, k, v, cache, i, window, sinks) => {
    const io = cache.sliding ? sliding : full;
    const written = (state: Tensor, fresh: Tensor, name: string) => {
      const updated = b.scatter(state, io.slots, fresh, 0);
      e.update(name, updated);
      // this step's sequences are the first `batch` of the cache's maxBatch: a leading slice, read in place;
      // on full layers attention reads their first kvLen rows (in place too: the fused op takes the stride)
      const sequences = b.slice(b.reshape(updated, [layout.maxBatch, cache.slots, kvh, hd]), 0, 0, "batch");
      return cache.sliding ? sequences : b.slice(sequences, 1, 0, "kvLen");
    };
    const keys = written(cache.k, k, `layers.${i}.k_cache`);
    const values = written(cache.v, v, `layers.${i}.v_cache`);
    const out = b.attention(b.reshape(q, ["batch", 1, h, hd]), keys, values, {
      qpos: b.reshape(positions, ["batch", 1]),
      kpos: io.positions,
      sinks,
      scale: 1 / Math.sqrt(hd),
      ...(window ? { window } : {}),
    });
    return b.reshape(out, ["batch", h, hd]);
  };
  e.output("logits", decoder(b, c, layers, caches, dtype, ids, positions, attend, (x) => x));
}

/** The gpt-oss graph for a config: entry points `prefill` and `decode` sharing one set of parameters. */
export function gptOssModel(c: GptOssConfig, opts: GptOssBuildOptions, name = "gpt-oss"): Graph {
  const experts = opts.experts ?? (c.quantization ? "mxfp4" : "dense");
  if (c.tieWordEmbeddings) throw new Error(`${name}: tie_word_embeddings is not supported by gpt-oss (lm_head is separate)`);
  const layout: CacheLayout = { maxBatch: opts.maxBatch ?? 1, maxContext: opts.maxContext ?? GPT_OSS_DEFAULT_MAX_CONTEXT };
  if (!(Number.isInteger(layout.maxBatch) && layout.maxBatch >= 1)) throw new Error(`${name}: maxBatch must be a positive integer, got ${layout.maxBatch}`);
  if (!(Number.isInteger(layout.maxContext) && layout.maxContext >= 1)) throw new Error(`${name}: maxContext must be a positive integer, got ${layout.maxContext}`);
  // positions past the trained range are out of the RoPE scaling's domain: never silently generate there
  if (layout.maxContext > c.maxPositionEmbeddings) throw new Error(`${name}: maxContext ${layout.maxContext} exceeds the config's max_position_embeddings (${c.maxPositionEmbeddings})`);
  return defineModel(name, (b) => {
    const maxPrefill = opts.maxPrefillTokens ?? GPT_OSS_DEFAULT_MAX_PREFILL;
    b.sym("tokens", maxPrefill);
    b.sym("rows", maxPrefill);
    b.sym("past", layout.maxContext);
    b.sym("windowPast", Math.max(c.slidingWindow - 1, 1));
    b.sym("batch", layout.maxBatch);
    b.sym("kvLen", layout.maxContext);
    const layers = Array.from({ length: c.numLayers }, (_, i) => declareLayer(b, c, i, opts.dtype, experts));
    const caches = Array.from({ length: c.numLayers }, (_, i) => declareCache(b, c, i, opts.dtype, layout));
    b.entry("prefill", (e) => prefillEntry(b, e, c, layers, caches, opts.dtype));
    b.entry("decode", (e) => decodeEntry(b, e, c, layers, caches, opts.dtype, layout));
  });
}


