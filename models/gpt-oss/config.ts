// Hugging Face `config.json` of gpt-oss (20b, 120b and smaller test shapes), validated and normalized.
//
// Two generations of transformers write this file differently, and both are accepted:
// - hub checkpoints (transformers 4.55): RoPE in `rope_scaling` (`rope_type` or legacy `type`), `rope_theta` at top level;
// - transformers 5: RoPE in `rope_parameters`, which also carries `rope_theta`.
// Unknown keys (`architectures`, `router_aux_loss_coef`, `use_cache`, …) are ignored; every value tsgc relies on is
// checked, and a value tsgc cannot run is rejected with a message naming the field, e.g.
// `config.json: rope_scaling.rope_type must be "yarn", got "linear"`.
import { join } from "node:path";
import { z } from "zod";
import { FileAccessError, readRegularFile } from "../../src/fs-safe.js";
import { MAX_TENSOR_ELEMENTS } from "../../src/ir/shape.js";

export type LayerType = "sliding_attention" | "full_attention";
export const LAYER_TYPES: readonly LayerType[] = ["sliding_attention", "full_attention"];

/** YaRN rotary embedding settings (the only RoPE gpt-oss uses). */
export interface YarnRope {
  readonly type: "yarn";
  readonly theta: number;
  readonly factor: number;
  readonly originalMaxPositionEmbeddings: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  /** Whether the correction range is rounded to integers (transformers' default is true; gpt-oss sets false). */
  readonly truncate: boolean;
  /** cos/sin multiplier: `attention_factor` when given, else `0.1·ln(factor) + 1`. */
  readonly attentionFactor: number;
}

export interface Mxfp4Quantization {
  readonly method: "mxfp4";
  /** Module patterns left unquantized, as the official checkpoints list them. */
  readonly modulesToNotConvert: readonly string[];
}

/** Storage dtype a checkpoint declares for its unquantized weights. */
export type CheckpointFloatDType = "bfloat16" | "float32" | "float16";

export interface GptOssConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  /** One entry per layer. */
  readonly layerTypes: readonly LayerType[];
  /** Number of keys a sliding layer's query sees, itself included. */
  readonly slidingWindow: number;
  readonly rope: YarnRope;
  /** Clamp of the expert SwiGLU: gate ≤ limit, −limit ≤ up ≤ limit. */
  readonly swigluLimit: number;
  /** Sigmoid gain of the expert SwiGLU. */
  readonly swigluAlpha: number;
  readonly numExperts: number;
  readonly expertsPerToken: number;
  readonly rmsNormEps: number;
  readonly attentionBias: boolean;
  readonly tieWordEmbeddings: boolean;
  readonly quantization: Mxfp4Quantization | null;
  readonly dtype: CheckpointFloatDType;
  readonly maxPositionEmbeddings: number;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  readonly bosTokenId: number | null;
}

/** A config.json value tsgc cannot use; the message names the file and the field. */
export class GptOssConfigError extends Error {
  override readonly name = "GptOssConfigError";
}

/** The modules the official MXFP4 checkpoints keep in bf16 (transformers' gpt-oss conversion script writes this list). */
export const MXFP4_MODULES_TO_NOT_CONVERT: readonly string[] = [
  "model.layers.*.self_attn",
  "model.layers.*.mlp.router",
  "model.embed_tokens",
  "lm_head",
];

// ---- raw schema ------------------------------------------------------------------------------

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const positiveNumber = z.number().positive();

/**
 * Upper bounds of the sizes tsgc builds a graph from. Generous for real models (gpt-oss-120b: 36 layers,
 * 128 experts, vocabulary 201088, hidden 2880, 131072 positions), small enough that the host graph stays
 * buildable (a million layers ran the heap out) and every tensor's element count fits the `int` a kernel
 * indexes it with (checked per tensor in checkTensorSizes).
 */
export const GPT_OSS_CONFIG_LIMITS = {
  hidden_size: 65536,
  intermediate_size: 65536,
  num_hidden_layers: 512,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  vocab_size: 1 << 22,
  sliding_window: 1 << 20,
  num_local_experts: 1024,
  experts_per_token: 64,
  max_position_embeddings: 1 << 24,
} as const;


const bounded = (field: keyof typeof GPT_OSS_CONFIG_LIMITS) =>
  positiveInt.max(GPT_OSS_CONFIG_LIMITS[field], { error: `must be at most ${GPT_OSS_CONFIG_LIMITS[field]} (tsgc's bound for ${field})` });

const ropeObject = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    rope_theta: positiveNumber.optional(),
    factor: positiveNumber.optional(),
    original_max_position_embeddings: bounded("max_position_embeddings").optional(),
    beta_fast: positiveNumber.optional(),
    beta_slow: positiveNumber.optional(),
    truncate: z.boolean().optional(),
    attention_factor: positiveNumber.optional(),
    mscale: z.number().optional(),
    mscale_all_dim: z.number().optional(),
  })
  .loose();

const rawConfigSchema = z
  .object({
    model_type: z.string().optional(),
    hidden_size: bounded("hidden_size"),
    intermediate_size: bounded("intermediate_size"),
    num_hidden_layers: bounded("num_hidden_layers"),
    num_attention_heads: bounded("num_attention_heads"),
    num_key_value_heads: bounded("num_key_value_heads").optional(),
    head_dim: bounded("head_dim").nullable().optional(),
    vocab_size: bounded("vocab_size"),
    layer_types: z.array(z.string()).nullable().optional(),
    sliding_window: bounded("sliding_window").nullable().optional(),
    rope_theta: positiveNumber.optional(),
    rope_scaling: ropeObject.nullable().optional(),
    rope_parameters: ropeObject.nullable().optional(),
    swiglu_limit: positiveNumber.optional(),
    swiglu_alpha: positiveNumber.optional(),
    hidden_act: z.string().optional(),
    num_local_experts: bounded("num_local_experts").optional(),
    num_experts: bounded("num_local_experts").optional(),
    experts_per_token: bounded("experts_per_token").optional(),
    num_experts_per_tok: bounded("experts_per_token").optional(),
    rms_norm_eps: positiveNumber.optional(),
    attention_bias: z.boolean().optional(),
    tie_word_embeddings: z.boolean().optional(),
    quantization_config: z
      .object({
        quant_method: z.string(),
        modules_to_not_convert: z.array(z.string()).nullable().optional(),
      })
      .loose()
      .nullable()
      .optional(),
    dtype: z.string().nullable().optional(),
    torch_dtype: z.string().nullable().optional(),
    max_position_embeddings: bounded("max_position_embeddings").optional(),
    eos_token_id: z.union([nonNegativeInt, z.array(nonNegativeInt)]).nullable().optional(),
    pad_token_id: nonNegativeInt.nullable().optional(),
    bos_token_id: nonNegativeInt.nullable().optional(),
  })
  .loose();

type RawConfig = z.infer<typeof rawConfigSchema>;
type RawRope = z.infer<typeof ropeObject>;

/** `path.to.field: problem` for the first few zod issues, in config.json's own spelling. */
function describeZodIssues(source: string, error: z.ZodError): string {
  const lines = error.issues.slice(0, 5).map((issue) => {
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".").replace(/\.\[/g, "[");
    return `${source}: ${path || "(top level)"}: ${issue.message}`;
  });
  if (error.issues.length > 5) lines.push(`${source}: … and ${error.issues.length - 5} more problems`);
  return lines.join("\n");
}

function fail(source: string, message: string): never {
  throw new GptOssConfigError(`${source}: ${message}`);
}

// ---- normalization -------------------------------------------------------------------------

const DEFAULT_ROPE_THETA = 150000;

function normalizeRope(raw: RawConfig, source: string): YarnRope {
  if (raw.rope_scaling && raw.rope_parameters) {
    // transformers 5 may keep both after a round trip; they must then agree on everything tsgc uses.
    const a = normalizeRopeObject(raw.rope_scaling, "rope_scaling", raw.rope_theta, source);
    const b = normalizeRopeObject(raw.rope_parameters, "rope_parameters", raw.rope_theta, source);
    for (const key of Object.keys(a) as (keyof YarnRope)[]) {
      if (a[key] !== b[key]) fail(source, `rope_scaling and rope_parameters disagree on ${key} (${a[key]} vs ${b[key]})`);
    }
    return a;
  }
  if (raw.rope_parameters) return normalizeRopeObject(raw.rope_parameters, "rope_parameters", raw.rope_theta, source);
  if (raw.rope_scaling) return normalizeRopeObject(raw.rope_scaling, "rope_scaling", raw.rope_theta, source);
  // transformers' GptOssConfig default when neither is written.
  return normalizeRopeObject(
    { rope_type: "yarn", factor: 32, beta_fast: 32, beta_slow: 1, truncate: false, original_max_position_embeddings: 4096 },
    "rope_parameters",
    raw.rope_theta,
    source,
  );
}

function normalizeRopeObject(rope: RawRope, field: string, topLevelTheta: number | undefined, source: string): YarnRope {
  for (const nested of LAYER_TYPES) {
    if (nested in rope) fail(source, `${field}.${nested}: per-layer-type RoPE settings are not supported by gpt-oss`);
  }
  if (rope.rope_type !== undefined && rope.type !== undefined && rope.rope_type !== rope.type) {
    fail(source, `${field}.rope_type ("${rope.rope_type}") and ${field}.type ("${rope.type}") disagree`);
  }
  const typeField = rope.rope_type !== undefined ? "rope_type" : "type";
  const type = rope.rope_type ?? rope.type;
  if (type === undefined) fail(source, `${field}.rope_type is missing (gpt-oss needs "yarn")`);
  if (type !== "yarn") fail(source, `${field}.${typeField} must be "yarn", got ${JSON.stringify(type)}`);
  if (rope.mscale !== undefined && rope.mscale !== 1) fail(source, `${field}.mscale must be 1 if present, got ${rope.mscale}`);
  if (rope.mscale_all_dim !== undefined && rope.mscale_all_dim !== 0) {
    fail(source, `${field}.mscale_all_dim must be 0 if present, got ${rope.mscale_all_dim}`);
  }
  if (rope.rope_theta !== undefined && topLevelTheta !== undefined && rope.rope_theta !== topLevelTheta) {
    fail(source, `${field}.rope_theta (${rope.rope_theta}) and rope_theta (${topLevelTheta}) disagree`);
  }
  const factor = required(rope.factor, `${field}.factor`, source);
  if (factor < 1) fail(source, `${field}.factor must be ≥ 1, got ${factor}`);
  const betaFast = required(rope.beta_fast, `${field}.beta_fast`, source);
  const betaSlow = required(rope.beta_slow, `${field}.beta_slow`, source);
  if (betaFast <= betaSlow) fail(source, `${field}.beta_fast (${betaFast}) must be greater than ${field}.beta_slow (${betaSlow})`);
  return {
    type: "yarn",
    theta: rope.rope_theta ?? topLevelTheta ?? DEFAULT_ROPE_THETA,
    factor,
    originalMaxPositionEmbeddings: required(rope.original_max_position_embeddings, `${field}.original_max_position_embeddings`, source),
    betaFast,
    betaSlow,
    truncate: rope.truncate ?? true,
    attentionFactor: rope.attention_factor ?? 0.1 * Math.log(factor) + 1,
  };
}

function required<T>(value: T | undefined, field: string, source: string): T {
  if (value === undefined) fail(source, `${field} is missing`);
  return value;
}

function normalizeDtype(raw: RawConfig, source: string): CheckpointFloatDType {
  const given = raw.dtype ?? raw.torch_dtype ?? "bfloat16";
  const field = raw.dtype != null ? "dtype" : "torch_dtype";
  const known: Record<string, CheckpointFloatDType> = {
    bfloat16: "bfloat16",
    float32: "float32",
    float16: "float16",
    "torch.bfloat16": "bfloat16",
    "torch.float32": "float32",
    "torch.float16": "float16",
  };
  const dtype = known[given];
  if (dtype === undefined) fail(source, `${field} must be "bfloat16", "float32" or "float16", got ${JSON.stringify(given)}`);
  return dtype;
}

/**
 * Validates a parsed config.json and returns the normalized config.
 * @param source how messages name the file (a path, or "config.json").
 */
export function parseGptOssConfig(json: unknown, source = "config.json"): GptOssConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail(source, "must be a JSON object");
  const parsed = rawConfigSchema.safeParse(json);
  if (!parsed.success) throw new GptOssConfigError(describeZodIssues(source, parsed.error));
  const raw = parsed.data;

  if (raw.model_type !== undefined && raw.model_type !== "gpt_oss") {
    fail(source, `model_type must be "gpt_oss", got ${JSON.stringify(raw.model_type)}`);
  }
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu") {
    fail(source, `hidden_act must be "silu" (gpt-oss's clamped SwiGLU), got ${JSON.stringify(raw.hidden_act)}`);
  }

  const numHeads = raw.num_attention_heads;
  const numKvHeads = raw.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    fail(source, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const headDim = raw.head_dim ?? Math.floor(raw.hidden_size / numHeads);
  if (headDim <= 0) fail(source, `head_dim could not be derived from hidden_size / num_attention_heads`);
  if (headDim % 2 !== 0) fail(source, `head_dim must be even for half-split RoPE, got ${headDim}`);

  if (raw.num_local_experts !== undefined && raw.num_experts !== undefined && raw.num_local_experts !== raw.num_experts) {
    fail(source, `num_local_experts (${raw.num_local_experts}) and num_experts (${raw.num_experts}) disagree`);
  }
  const numExperts = required(raw.num_local_experts ?? raw.num_experts, "num_local_experts", source);
  if (
    raw.experts_per_token !== undefined &&
    raw.num_experts_per_tok !== undefined &&
    raw.experts_per_token !== raw.num_experts_per_tok
  ) {
    fail(source, `experts_per_token (${raw.experts_per_token}) and num_experts_per_tok (${raw.num_experts_per_tok}) disagree`);
  }
  const expertsPerToken = raw.num_experts_per_tok ?? raw.experts_per_token ?? 4;
  if (expertsPerToken > numExperts) {
    fail(source, `num_experts_per_tok (${expertsPerToken}) must not exceed num_local_experts (${numExperts})`);
  }

  const numLayers = raw.num_hidden_layers;
  let layerTypes: LayerType[];
  if (raw.layer_types == null) {
    // transformers' default: even layers slide, odd layers are full.
    layerTypes = Array.from({ length: numLayers }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"));
  } else {
    if (raw.layer_types.length !== numLayers) {
      fail(source, `layer_types has ${raw.layer_types.length} entries but num_hidden_layers is ${numLayers}`);
    }
    layerTypes = raw.layer_types.map((t, i) => {
      if (t !== "sliding_attention" && t !== "full_attention") {
        fail(source, `layer_types[${i}] must be "sliding_attention" or "full_attention", got ${JSON.stringify(t)}`);
      }
      return t;
    });
  }
  const slidingWindow = raw.sliding_window ?? 128;

  let quantization: Mxfp4Quantization | null = null;
  if (raw.quantization_config != null) {
    const q = raw.quantization_config;
    if (q.quant_method !== "mxfp4") {
      fail(source, `quantization_config.quant_method must be "mxfp4", got ${JSON.stringify(q.quant_method)}`);
    }
    quantization = { method: "mxfp4", modulesToNotConvert: q.modules_to_not_convert ?? [] };
    if (raw.hidden_size % 32 !== 0) fail(source, `hidden_size (${raw.hidden_size}) must be a multiple of 32 for MXFP4 experts`);
    if (raw.intermediate_size % 32 !== 0) {
      fail(source, `intermediate_size (${raw.intermediate_size}) must be a multiple of 32 for MXFP4 experts`);
    }
  }

  const eos = raw.eos_token_id;
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? eos : [eos];
  for (const [field, id] of [...eosTokenIds.map((id) => ["eos_token_id", id] as const), ["pad_token_id", raw.pad_token_id], ["bos_token_id", raw.bos_token_id]] as const) {
    if (id != null && id >= raw.vocab_size) fail(source, `${field} (${id}) is outside the vocabulary (vocab_size ${raw.vocab_size})`);
  }
  checkTensorSizes(raw, numHeads, numKvHeads, headDim, numExperts, source);
  return {
    hiddenSize: raw.hidden_size,
    intermediateSize: raw.intermediate_size,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: raw.vocab_size,
    layerTypes,
    slidingWindow,
    rope: normalizeRope(raw, source),
    swigluLimit: raw.swiglu_limit ?? 7,
    swigluAlpha: raw.swiglu_alpha ?? 1.702,
    numExperts,
    expertsPerToken,
    rmsNormEps: raw.rms_norm_eps ?? 1e-5,
    attentionBias: raw.attention_bias ?? true,
    tieWordEmbeddings: raw.tie_word_embeddings ?? false,
    quantization,
    dtype: normalizeDtype(raw, source),
    maxPositionEmbeddings: raw.max_position_embeddings ?? 131072,
    eosTokenIds,
    padTokenId: raw.pad_token_id ?? null,
    bosTokenId: raw.bos_token_id ?? null,
  };
}

/**
 * Every weight's element count must fit a kernel's `int` index (2^31 − 1): each field may be in bounds
 * while their product is not (vocab 2^22 × hidden 2^16). Names the tensor and the fields that size it.
 */
function checkTensorSizes(raw: RawConfig, heads: number, kvHeads: number, headDim: number, experts: number, source: string): void {
  const d = raw.hidden_size;
  const inter = raw.intermediate_size;
  const tensors: [string, string, number[]][] = [
    ["model.embed_tokens.weight and lm_head.weight", "vocab_size × hidden_size", [raw.vocab_size, d]],
    ["self_attn.q_proj.weight and o_proj.weight", "num_attention_heads × head_dim × hidden_size", [heads, headDim, d]],
    ["self_attn.k_proj.weight and v_proj.weight", "num_key_value_heads × head_dim × hidden_size", [kvHeads, headDim, d]],
    ["mlp.experts.gate_up_proj", "num_local_experts × hidden_size × 2 × intermediate_size", [experts, d, 2, inter]],
    ["mlp.experts.down_proj", "num_local_experts × intermediate_size × hidden_size", [experts, inter, d]],
  ];
  for (const [tensor, fields, dims] of tensors) {
    const elements = dims.reduce((a, b) => a * b, 1);
    if (elements > MAX_TENSOR_ELEMENTS) {
      fail(source, `${fields} = ${dims.join(" × ")} = ${elements} elements in ${tensor}, more than the ${MAX_TENSOR_ELEMENTS} a kernel's int index addresses`);
    }
  }
}

/** Reads and validates `<dir>/config.json`. Errors name the file's path. */
export async function loadGptOssConfig(dir: string): Promise<GptOssConfig> {
  const path = join(dir, "config.json");
  return parseGptOssConfig(await readConfigJson(path), path);
}

/** Reads a JSON file, turning a missing file or malformed JSON into a GptOssConfigError naming the path. */
export async function readConfigJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = (await readRegularFile(path)).toString("utf8");
  } catch (err) {
    const code = err instanceof FileAccessError ? err.code : undefined;
    throw new GptOssConfigError(code === "ENOENT" ? `${path}: file not found` : `${path}: cannot read (${err instanceof FileAccessError ? err.reason : String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GptOssConfigError(`${path}: malformed JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new GptOssConfigError(`${path}: must be a JSON object`);
  return json as Record<string, unknown>;
}

/**
 * The config.json transformers 4.55 writes for this config (hub spelling: `rope_scaling`, top-level `rope_theta`),
 * so tsgc can produce checkpoints the reference implementation loads.
 */
export function gptOssConfigToJson(config: GptOssConfig): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: ["GptOssForCausalLM"],
    model_type: "gpt_oss",
    attention_bias: config.attentionBias,
    attention_dropout: 0.0,
    eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds],
    pad_token_id: config.padTokenId,
    experts_per_token: config.expertsPerToken,
    num_experts_per_tok: config.expertsPerToken,
    head_dim: config.headDim,
    hidden_act: "silu",
    hidden_size: config.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: config.intermediateSize,
    layer_types: [...config.layerTypes],
    max_position_embeddings: config.maxPositionEmbeddings,
    num_attention_heads: config.numHeads,
    num_hidden_layers: config.numLayers,
    num_key_value_heads: config.numKvHeads,
    num_local_experts: config.numExperts,
    rms_norm_eps: config.rmsNormEps,
    rope_scaling: {
      rope_type: "yarn",
      factor: config.rope.factor,
      original_max_position_embeddings: config.rope.originalMaxPositionEmbeddings,
      beta_fast: config.rope.betaFast,
      beta_slow: config.rope.betaSlow,
      truncate: config.rope.truncate,
    },
    rope_theta: config.rope.theta,
    sliding_window: config.slidingWindow,
    swiglu_limit: config.swigluLimit,
    tie_word_embeddings: config.tieWordEmbeddings,
    torch_dtype: config.dtype,
    use_cache: true,
    vocab_size: config.vocabSize,
  };
  if (config.eosTokenIds.length === 0) delete json.eos_token_id;
  if (config.bosTokenId !== null) json.bos_token_id = config.bosTokenId;
  if (config.quantization !== null) {
    json.quantization_config = { quant_method: "mxfp4", modules_to_not_convert: [...config.quantization.modulesToNotConvert] };
  }
  return json;
}

// ---- built-in shapes -----------------------------------------------------------------------

const GPT_OSS_ROPE: YarnRope = {
  type: "yarn",
  theta: 150000,
  factor: 32,
  originalMaxPositionEmbeddings: 4096,
  betaFast: 32,
  betaSlow: 1,
  truncate: false,
  attentionFactor: 0.1 * Math.log(32) + 1,
};

function alternatingLayers(numLayers: number): LayerType[] {
  return Array.from({ length: numLayers }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"));
}

function gptOssShape(numLayers: number, numExperts: number): GptOssConfig {
  return {
    hiddenSize: 2880,
    intermediateSize: 2880,
    numLayers,
    numHeads: 64,
    numKvHeads: 8,
    headDim: 64,
    vocabSize: 201088,
    layerTypes: alternatingLayers(numLayers),
    slidingWindow: 128,
    rope: GPT_OSS_ROPE,
    swigluLimit: 7,
    swigluAlpha: 1.702,
    numExperts,
    expertsPerToken: 4,
    rmsNormEps: 1e-5,
    attentionBias: true,
    tieWordEmbeddings: false,
    quantization: { method: "mxfp4", modulesToNotConvert: MXFP4_MODULES_TO_NOT_CONVERT },
    dtype: "bfloat16",
    maxPositionEmbeddings: 131072,
    eosTokenIds: [200002],
    padTokenId: 199999,
    bosTokenId: null,
  };
}

/** openai/gpt-oss-20b as published (MXFP4 experts). */
export const GPT_OSS_20B: GptOssConfig = gptOssShape(24, 32);
/** openai/gpt-oss-120b as published (MXFP4 experts). */
export const GPT_OSS_120B: GptOssConfig = gptOssShape(36, 128);

/**
 * A tiny gpt-oss for CPU tests: every structural feature (sliding and full layers, GQA, sinks, top-k of several
 * experts, MXFP4-compatible sizes) at a size the reference interpreter runs in milliseconds. bf16 experts.
 */
export const GPT_OSS_TINY: GptOssConfig = {
  hiddenSize: 64,
  intermediateSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  vocabSize: 128,
  layerTypes: alternatingLayers(2),
  slidingWindow: 4,
  rope: GPT_OSS_ROPE,
  swigluLimit: 7,
  swigluAlpha: 1.702,
  numExperts: 4,
  expertsPerToken: 2,
  rmsNormEps: 1e-5,
  attentionBias: true,
  tieWordEmbeddings: false,
  quantization: null,
  dtype: "bfloat16",
  maxPositionEmbeddings: 4096,
  eosTokenIds: [2],
  padTokenId: 0,
  bosTokenId: null,
};
