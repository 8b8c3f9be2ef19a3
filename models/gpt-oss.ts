// gpt-oss, written with the public model-definition API in plain math; the compiler does the fusing.
//
// Pre-norm decoder: h = x + o_proj(attn(rms(x))); y = h + moe(rms(h)); final rms; lm_head.
// Attention: q/k/v/o with bias, GQA, YaRN RoPE (half-split), per-head sinks; even layers slide
// (window 128: a query sees itself and 127 earlier tokens), odd layers are full causal.
// MoE: router → top-k → softmax over those k → clamped SwiGLU experts → weighted sum.
//
// Entry points (both run `tokens` new tokens against a KV cache of earlier ones):
//   prefill(ids i32[tokens], positions i32[tokens], logit_rows i32[rows], caches…) → logits [rows, vocab], new k/v
//   decode (ids i32[1],      positions i32[1],                            caches…) → logits [1, vocab],    new k/v
// Cache inputs per layer: layers.N.k_cache / v_cache [cache, kvHeads, headDim] with cache = `past` on
// full layers and `windowPast` (≤ window − 1) on sliding ones, plus cache_positions.full / .sliding
// (−1 marks an empty slot). The new keys (after RoPE) and values come back as layers.N.k / v.
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
  /** Upper bound on the cached context of full-attention layers. */
  readonly maxContext?: number;
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

/** Builds one entry point: embeddings → decoder layers → final norm → lm_head on the chosen rows. */
function decoderStep(b: ModelBuilder, e: EntryBuilder, c: GptOssConfig, layers: readonly LayerWeights[], tokens: Dim, lastRowsOnly: boolean, dtype: "bf16" | "f32"): void {
  const [h, kvh, hd] = [c.numHeads, c.numKvHeads, c.headDim];
  const ids = e.input("ids", "i32", [tokens]);
  const positions = e.input("positions", "i32", [tokens]);
  const logitRows = lastRowsOnly ? e.input("logit_rows", "i32", ["rows"]) : undefined;
  const cachePositions = {
    full: e.input("cache_positions.full", "i32", ["past"]),
    sliding: e.input("cache_positions.sliding", "i32", ["windowPast"]),
  };
  const embed = b.param("model.embed_tokens.weight", dtype, [c.vocabSize, c.hiddenSize]);
  const rope = ropeOptions(c);
  let x = b.embedding(embed, ids); // [T, D]
  layers.forEach((w, i) => {
    const sliding = c.layerTypes[i] === "sliding_attention";
    const cache = sliding ? "windowPast" : "past";
    const normed = b.rmsNorm(x, w.inputNorm, c.rmsNormEps);
    const q = b.rope(b.reshape(project(b, normed, w.q), [tokens, h, hd]), positions, rope);
    const k = b.rope(b.reshape(project(b, normed, w.k), [tokens, kvh, hd]), positions, rope);
    const v = b.reshape(project(b, normed, w.v), [tokens, kvh, hd]);
    e.output(`layers.${i}.k`, k);
    e.output(`layers.${i}.v`, v);
    const keys = b.concat([e.input(`layers.${i}.k_cache`, dtype, [cache, kvh, hd]), k], 0);
    const values = b.concat([e.input(`layers.${i}.v_cache`, dtype, [cache, kvh, hd]), v], 0);
    const keyPositions = b.concat([sliding ? cachePositions.sliding : cachePositions.full, positions], 0);
    const attn = b.attention(q, keys, values, {
      qpos: positions,
      kpos: keyPositions,
      sinks: w.sinks,
      scale: 1 / Math.sqrt(hd),
      ...(sliding ? { window: c.slidingWindow } : {}),
    });
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
  const rows = logitRows ? b.gather(x, logitRows, 0) : x;
  e.output("logits", b.linear(b.rmsNorm(rows, finalNorm, c.rmsNormEps), lmHead));
}

/** The gpt-oss graph for a config: entry points `prefill` and `decode` sharing one set of parameters. */
export function gptOssModel(c: GptOssConfig, opts: GptOssBuildOptions, name = "gpt-oss"): Graph {
  const experts = opts.experts ?? (c.quantization ? "mxfp4" : "dense");
  if (c.tieWordEmbeddings) throw new Error(`${name}: tie_word_embeddings is not supported by gpt-oss (lm_head is separate)`);
  return defineModel(name, (b) => {
    const maxPrefill = opts.maxPrefillTokens ?? GPT_OSS_DEFAULT_MAX_PREFILL;
    b.sym("tokens", maxPrefill);
    b.sym("rows", maxPrefill);
    b.sym("past", opts.maxContext ?? GPT_OSS_DEFAULT_MAX_CONTEXT);
    b.sym("windowPast", Math.max(c.slidingWindow - 1, 1));
    const layers = Array.from({ length: c.numLayers }, (_, i) => declareLayer(b, c, i, opts.dtype, experts));
    b.entry("prefill", (e) => decoderStep(b, e, c, layers, "tokens", true, opts.dtype));
    b.entry("decode", (e) => decoderStep(b, e, c, layers, 1, false, opts.dtype));
  });
}


