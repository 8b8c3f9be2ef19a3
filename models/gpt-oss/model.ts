// gpt-oss, written with the public model-definition API in plain math; the compiler does the fusing.
//
// Pre-norm decoder: h = x + o_proj(attn(rms(x))); y = h + moe(rms(h)); final rms; lm_head.
// Attention: q/k/v/o with bias, GQA, YaRN RoPE (half-split), per-head sinks; even layers slide
// (window 128: a query sees itself and 127 earlier tokens), odd layers are full causal.
// MoE: router → top-k → softmax over those k → clamped SwiGLU experts → weighted sum.
//
// One entry point, `step` (the paged-decoder contract of src/engine/contract.ts): a ragged batch of tokens —
// decodes of many sequences and prefill chunks of others together — over a paged KV cache. The cache is two
// KV groups, "full" (full-attention layers) and "sliding" (windowed layers), each a pool of fixed-size blocks:
// per layer layers.N.k_cache / v_cache [groupSlots, kvHeads, headDim], sized when the plan is loaded. Every
// layer attends through its group's block tables (pagedAttention: the pool's positions before this step, then
// the step's own tokens), and the step's keys and values are written to the pool after every read of it.
// The step is planned per shape bucket of its token count (1, 2, 4, … up to maxTokensPerStep).
// Parameter names are the Hugging Face checkpoint's.

import { type EntryBuilder, type ExpertWeight, type ModelBuilder, type RopeOptions, type Tensor, defineModel } from "../../src/ir/builder.js";
import type { Graph } from "../../src/ir/graph.js";
import { dtypeBytes } from "../../src/ir/dtype.js";
import { blockTableInput, type KvGroup, kvSlotsInput, type PagedDecoderLayout, poolSlotsSymbol, STEP_ENTRY, STEP_NAMES, STEP_SYMBOLS } from "../../src/engine/contract.js";
import type { GptOssConfig } from "./config.js";

export interface GptOssBuildOptions {
  /** Compute and storage dtype of the unquantized weights and activations. */
  readonly dtype: "bf16" | "f32";
  /** Expert weights read packed as MXFP4 (the checkpoint's form) or dense. Default: mxfp4 when the config says so. */
  readonly experts?: "mxfp4" | "dense";
  /** Most tokens one step runs: decodes and prefill chunks together. */
  readonly maxTokensPerStep?: number;
  /** Most sequences one step runs. */
  readonly maxSeqsPerStep?: number;
  /** Most tokens (prompt and output) one sequence holds. */
  readonly maxContext?: number;
  /** Tokens per KV block. */
  readonly blockSize?: number;
}

export const GPT_OSS_DEFAULT_MAX_TOKENS_PER_STEP = 2048;
export const GPT_OSS_DEFAULT_MAX_SEQS_PER_STEP = 256;
export const GPT_OSS_DEFAULT_MAX_CONTEXT = 4096;
export const GPT_OSS_DEFAULT_BLOCK_SIZE = 16;
/** The bound of a pool's rows (a load-time symbol): far above any card's memory, well inside int32 element offsets per row. */
export const GPT_OSS_MAX_POOL_SLOTS = 1 << 24;

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
  /** "full" or "sliding": the KV group whose pool and block tables this layer uses. */
  readonly group: string;
  readonly window: number | undefined;
}

/** The KV group of layer i: full-attention layers share "full", sliding ones "sliding". */
function layerGroup(c: GptOssConfig, i: number): { readonly name: string; readonly window: number | undefined } {
  return c.layerTypes[i] === "sliding_attention" ? { name: "sliding", window: c.slidingWindow } : { name: "full", window: undefined };
}

function declareCache(b: ModelBuilder, c: GptOssConfig, i: number, dtype: "bf16" | "f32"): KvCache {
  const group = layerGroup(c, i);
  const slots = b.sym(poolSlotsSymbol(group.name), GPT_OSS_MAX_POOL_SLOTS);
  const shape = [slots, c.numKvHeads, c.headDim];
  return { k: b.state(`layers.${i}.k_cache`, dtype, shape), v: b.state(`layers.${i}.v_cache`, dtype, shape), group: group.name, window: group.window };
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
    const attn = attend(q, k, v, cache, i, cache.window, w.sinks);
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

/** The step: a ragged batch of tokens over the paged pools; the step's keys and values written after every read. */
function stepEntry(b: ModelBuilder, e: EntryBuilder, c: GptOssConfig, layers: readonly LayerWeights[], caches: readonly KvCache[], dtype: "bf16" | "f32", layout: PagedDecoderLayout): void {
  const { tokens, seqs, rows } = STEP_SYMBOLS;
  e.bucketBy(tokens, [seqs, rows]);
  const ids = e.input(STEP_NAMES.ids, "i32", [tokens]);
  const positions = e.input(STEP_NAMES.positions, "i32", [tokens]);
  const tokenSeqs = e.input(STEP_NAMES.tokenSeqs, "i32", [tokens]);
  const contextLens = e.input(STEP_NAMES.contextLens, "i32", [seqs]);
  const logitRows = e.input(STEP_NAMES.logitRows, "i32", [rows]);
  const groups = new Map(layout.groups.map((g) => [g.name, {
    table: e.input(blockTableInput(g.name), "i32", [seqs, layout.maxBlocksPerSeq]),
    slots: e.input(kvSlotsInput(g.name), "i32", [tokens]),
  }]));
  const attend: AttendWithCache = (q, k, v, cache, i, window, sinks) => {
    const g = groups.get(cache.group)!;
    e.update(`layers.${i}.k_cache`, b.scatter(cache.k, g.slots, k, 0));
    e.update(`layers.${i}.v_cache`, b.scatter(cache.v, g.slots, v, 0));
    return b.pagedAttention(q, k, v, cache.k, cache.v, {
      positions, tokenSeqs, contextLens, blockTable: g.table, blockSize: layout.blockSize, sinks, scale: 1 / Math.sqrt(c.headDim),
      ...(window ? { window } : {}),
    });
  };
  const logits = decoder(b, c, layers, caches, dtype, ids, positions, attend, (x) => b.gather(x, logitRows, 0));
  const sampling = {
    temperature: e.input(STEP_NAMES.temperature, "f32", [rows]),
    topK: e.input(STEP_NAMES.topK, "i32", [rows]),
    topP: e.input(STEP_NAMES.topP, "f32", [rows]),
    uniform: e.input(STEP_NAMES.uniform, "f32", [rows]),
  };
  e.output(STEP_NAMES.tokens, b.sample(logits, sampling));
  e.output(STEP_NAMES.logits, logits);
}

/** The paged-decoder layout of gpt-oss for a config and bounds: what the engine needs beside the graph. */
export function gptOssLayout(c: GptOssConfig, opts: GptOssBuildOptions, name = "gpt-oss"): PagedDecoderLayout {
  const maxContext = opts.maxContext ?? Math.min(GPT_OSS_DEFAULT_MAX_CONTEXT, c.maxPositionEmbeddings);
  // positions past the trained range are out of the RoPE scaling's domain: never silently generate there
  if (maxContext > c.maxPositionEmbeddings) throw new Error(`${name}: maxContext ${maxContext} exceeds the config's max_position_embeddings (${c.maxPositionEmbeddings})`);
  const blockSize = opts.blockSize ?? GPT_OSS_DEFAULT_BLOCK_SIZE;
  const maxTokensPerStep = opts.maxTokensPerStep ?? GPT_OSS_DEFAULT_MAX_TOKENS_PER_STEP;
  const maxSeqsPerStep = Math.min(opts.maxSeqsPerStep ?? GPT_OSS_DEFAULT_MAX_SEQS_PER_STEP, maxTokensPerStep);
  for (const [what, v] of [["maxContext", maxContext], ["blockSize", blockSize], ["maxTokensPerStep", maxTokensPerStep], ["maxSeqsPerStep", maxSeqsPerStep]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${name}: ${what} must be a positive integer, got ${v}`);
  }
  const bytesPerLayerBlock = 2 * blockSize * c.numKvHeads * c.headDim * dtypeBytes(opts.dtype);
  const groups: KvGroup[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const g = layerGroup(c, i);
    const existing = groups.find((x) => x.name === g.name);
    if (existing) groups[groups.indexOf(existing)] = { ...existing, layers: [...existing.layers, i], bytesPerBlock: existing.bytesPerBlock + bytesPerLayerBlock };
    else groups.push({ name: g.name, ...(g.window ? { window: g.window } : {}), layers: [i], bytesPerBlock: bytesPerLayerBlock });
  }
  return { blockSize, maxBlocksPerSeq: Math.ceil(maxContext / blockSize), maxContext, maxTokensPerStep, maxSeqsPerStep, groups, vocabSize: c.vocabSize };
}

/** The gpt-oss graph for a config: one `step` entry (the paged-decoder contract, src/engine/contract.ts). */
export function gptOssModel(c: GptOssConfig, opts: GptOssBuildOptions, name = "gpt-oss"): Graph {
  const experts = opts.experts ?? (c.quantization ? "mxfp4" : "dense");
  if (c.tieWordEmbeddings) throw new Error(`${name}: tie_word_embeddings is not supported by gpt-oss (lm_head is separate)`);
  const layout = gptOssLayout(c, opts, name);
  return defineModel(name, (b) => {
    b.sym(STEP_SYMBOLS.tokens, layout.maxTokensPerStep);
    b.sym(STEP_SYMBOLS.seqs, layout.maxSeqsPerStep);
    b.sym(STEP_SYMBOLS.rows, layout.maxSeqsPerStep);
    const layers = Array.from({ length: c.numLayers }, (_, i) => declareLayer(b, c, i, opts.dtype, experts));
    const caches = Array.from({ length: c.numLayers }, (_, i) => declareCache(b, c, i, opts.dtype));
    b.entry(STEP_ENTRY, (e) => stepEntry(b, e, c, layers, caches, opts.dtype, layout));
  });
}
