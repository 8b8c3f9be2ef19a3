import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  GPT_OSS_120B,
  GPT_OSS_20B,
  GPT_OSS_TINY,
  GptOssConfigError,
  MXFP4_MODULES_TO_NOT_CONVERT,
  gptOssConfigToJson,
  loadGptOssConfig,
  parseGptOssConfig,
} from "../../models/gpt-oss/config.js";

/** config.json of openai/gpt-oss-20b as published on the hub (transformers 4.55 spelling). */
function hub20bConfig(): Record<string, unknown> {
  return {
    architectures: ["GptOssForCausalLM"],
    attention_bias: true,
    attention_dropout: 0.0,
    eos_token_id: 200002,
    experts_per_token: 4,
    head_dim: 64,
    hidden_act: "silu",
    hidden_size: 2880,
    initial_context_length: 4096,
    initializer_range: 0.02,
    intermediate_size: 2880,
    layer_types: Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention")),
    max_position_embeddings: 131072,
    model_type: "gpt_oss",
    num_attention_heads: 64,
    num_experts_per_tok: 4,
    num_hidden_layers: 24,
    num_key_value_heads: 8,
    num_local_experts: 32,
    output_router_logits: false,
    pad_token_id: 199999,
    quantization_config: {
      modules_to_not_convert: ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
      quant_method: "mxfp4",
    },
    rms_norm_eps: 1e-5,
    rope_scaling: {
      beta_fast: 32.0,
      beta_slow: 1.0,
      factor: 32.0,
      original_max_position_embeddings: 4096,
      rope_type: "yarn",
      truncate: false,
    },
    rope_theta: 150000,
    router_aux_loss_coef: 0.9,
    sliding_window: 128,
    swiglu_limit: 7.0,
    tie_word_embeddings: false,
    transformers_version: "4.55.0.dev0",
    use_cache: true,
    vocab_size: 201088,
  };
}

/** The same model as transformers 5 writes it: rope_parameters carrying rope_theta, `dtype` instead of torch_dtype. */
function transformers5Config(): Record<string, unknown> {
  const c = hub20bConfig();
  delete c.rope_scaling;
  delete c.rope_theta;
  delete c.experts_per_token;
  c.rope_parameters = {
    rope_type: "yarn",
    rope_theta: 150000.0,
    factor: 32.0,
    beta_fast: 32.0,
    beta_slow: 1.0,
    truncate: false,
    original_max_position_embeddings: 4096,
  };
  c.dtype = "bfloat16";
  return c;
}

function rejects(json: Record<string, unknown>): string {
  try {
    parseGptOssConfig(json);
  } catch (err) {
    expect(err).toBeInstanceOf(GptOssConfigError);
    return (err as Error).message;
  }
  throw new Error("expected the config to be rejected");
}

describe("parseGptOssConfig", () => {
  it("reads the hub's gpt-oss-20b config.json (rope_scaling) into exactly GPT_OSS_20B", () => {
    expect(parseGptOssConfig(hub20bConfig())).toEqual(GPT_OSS_20B);
  });

  it("reads the transformers 5 spelling (rope_parameters with rope_theta inside) into the same config", () => {
    expect(parseGptOssConfig(transformers5Config())).toEqual(GPT_OSS_20B);
  });

  it("accepts the legacy `type` key of rope_scaling and torch_dtype", () => {
    const c = hub20bConfig();
    c.rope_scaling = { ...(c.rope_scaling as object), rope_type: undefined, type: "yarn" };
    c.torch_dtype = "float32";
    const parsed = parseGptOssConfig(JSON.parse(JSON.stringify(c)));
    expect(parsed.rope).toEqual(GPT_OSS_20B.rope);
    expect(parsed.dtype).toBe("float32");
  });

  it("normalizes the gpt-oss RoPE and MoE values", () => {
    const c = parseGptOssConfig(hub20bConfig());
    expect(c.rope).toMatchObject({ type: "yarn", theta: 150000, factor: 32, originalMaxPositionEmbeddings: 4096, betaFast: 32, betaSlow: 1, truncate: false });
    expect(c.rope.attentionFactor).toBeCloseTo(0.1 * Math.log(32) + 1, 15);
    expect(c.quantization).toEqual({ method: "mxfp4", modulesToNotConvert: MXFP4_MODULES_TO_NOT_CONVERT });
    expect(c.eosTokenIds).toEqual([200002]);
    expect(c.padTokenId).toBe(199999);
    expect([c.numExperts, c.expertsPerToken, c.swigluLimit, c.swigluAlpha, c.rmsNormEps]).toEqual([32, 4, 7, 1.702, 1e-5]);
  });

  it("derives alternating layer types (even layers slide) when layer_types is absent", () => {
    const c = hub20bConfig();
    delete c.layer_types;
    c.num_hidden_layers = 5;
    expect(parseGptOssConfig(c).layerTypes).toEqual([
      "sliding_attention",
      "full_attention",
      "sliding_attention",
      "full_attention",
      "sliding_attention",
    ]);
  });

  it("keeps layer_types as written", () => {
    const c = hub20bConfig();
    c.num_hidden_layers = 3;
    c.layer_types = ["full_attention", "full_attention", "sliding_attention"];
    expect(parseGptOssConfig(c).layerTypes).toEqual(["full_attention", "full_attention", "sliding_attention"]);
  });

  it("accepts an eos_token_id list and num_experts as an alias", () => {
    const c = hub20bConfig();
    c.eos_token_id = [200002, 199999];
    delete c.num_local_experts;
    c.num_experts = 32;
    const parsed = parseGptOssConfig(c);
    expect(parsed.eosTokenIds).toEqual([200002, 199999]);
    expect(parsed.numExperts).toBe(32);
  });

  it("rejects a non-yarn RoPE naming the field", () => {
    const c = hub20bConfig();
    (c.rope_scaling as Record<string, unknown>).rope_type = "linear";
    expect(rejects(c)).toBe('config.json: rope_scaling.rope_type must be "yarn", got "linear"');
    const t5 = transformers5Config();
    (t5.rope_parameters as Record<string, unknown>).rope_type = "default";
    expect(rejects(t5)).toBe('config.json: rope_parameters.rope_type must be "yarn", got "default"');
  });

  it("rejects unsupported values, each message naming its field", () => {
    const cases: [(c: Record<string, unknown>) => void, string][] = [
      [(c) => (c.quantization_config = { quant_method: "gptq" }), 'config.json: quantization_config.quant_method must be "mxfp4", got "gptq"'],
      [(c) => (c.layer_types = ["sliding_attention"]), "config.json: layer_types has 1 entries but num_hidden_layers is 24"],
      [
        (c) => ((c.layer_types as string[])[3] = "chunked_attention"),
        'config.json: layer_types[3] must be "sliding_attention" or "full_attention", got "chunked_attention"',
      ],
      [(c) => (c.num_key_value_heads = 7), "config.json: num_attention_heads (64) must be a multiple of num_key_value_heads (7)"],
      [(c) => (c.experts_per_token = 2), "config.json: experts_per_token (2) and num_experts_per_tok (4) disagree"],
      [(c) => (c.num_experts_per_tok = c.experts_per_token = 64), "config.json: num_experts_per_tok (64) must not exceed num_local_experts (32)"],
      [(c) => (c.torch_dtype = "int8"), 'config.json: torch_dtype must be "bfloat16", "float32" or "float16", got "int8"'],
      [(c) => (c.model_type = "llama"), 'config.json: model_type must be "gpt_oss", got "llama"'],
      [(c) => (c.hidden_act = "gelu"), 'config.json: hidden_act must be "silu" (gpt-oss\'s clamped SwiGLU), got "gelu"'],
      [(c) => delete (c.rope_scaling as Record<string, unknown>).factor, "config.json: rope_scaling.factor is missing"],
      [(c) => ((c.rope_scaling as Record<string, unknown>).rope_theta = 10000), "config.json: rope_scaling.rope_theta (10000) and rope_theta (150000) disagree"],
      [(c) => delete c.num_local_experts, "config.json: num_local_experts is missing"],
    ];
    for (const [mutate, message] of cases) {
      const c = hub20bConfig();
      mutate(c);
      expect(rejects(c)).toBe(message);
    }
  });

  it("reports schema violations with the field path", () => {
    const c = hub20bConfig();
    c.hidden_size = "2880";
    expect(rejects(c)).toMatch(/^config\.json: hidden_size: /);
    const d = hub20bConfig();
    (d.rope_scaling as Record<string, unknown>).beta_fast = -1;
    expect(rejects(d)).toMatch(/^config\.json: rope_scaling\.beta_fast: /);
    const e = hub20bConfig();
    delete e.vocab_size;
    expect(rejects(e)).toMatch(/^config\.json: vocab_size: /);
    expect(() => parseGptOssConfig([1, 2])).toThrow("config.json: must be a JSON object");
  });

  it("names the source it was given", () => {
    const c = hub20bConfig();
    c.sliding_window = 0;
    expect(() => parseGptOssConfig(c, "/ckpt/config.json")).toThrow(/^\/ckpt\/config\.json: sliding_window: /);
  });
});

describe("built-in configs", () => {
  it("have the published gpt-oss dimensions", () => {
    for (const c of [GPT_OSS_20B, GPT_OSS_120B]) {
      expect([c.hiddenSize, c.intermediateSize, c.vocabSize, c.numHeads, c.numKvHeads, c.headDim, c.expertsPerToken]).toEqual([
        2880, 2880, 201088, 64, 8, 64, 4,
      ]);
      expect([c.slidingWindow, c.swigluLimit, c.rmsNormEps]).toEqual([128, 7, 1e-5]);
      expect(c.layerTypes.length).toBe(c.numLayers);
    }
    expect([GPT_OSS_20B.numLayers, GPT_OSS_20B.numExperts]).toEqual([24, 32]);
    expect([GPT_OSS_120B.numLayers, GPT_OSS_120B.numExperts]).toEqual([36, 128]);
  });

  it("survive a round trip through config.json", () => {
    for (const c of [GPT_OSS_20B, GPT_OSS_120B, GPT_OSS_TINY]) {
      expect(parseGptOssConfig(JSON.parse(JSON.stringify(gptOssConfigToJson(c))))).toEqual(c);
    }
  });

  it("the tiny config exercises sliding and full layers, GQA and top-k > 1 at MXFP4-compatible sizes", () => {
    const t = GPT_OSS_TINY;
    expect(new Set(t.layerTypes)).toEqual(new Set(["sliding_attention", "full_attention"]));
    expect(t.numHeads / t.numKvHeads).toBeGreaterThan(1);
    expect(t.expertsPerToken).toBeGreaterThan(1);
    expect(t.hiddenSize % 32).toBe(0);
    expect(t.intermediateSize % 32).toBe(0);
  });
});

describe("loadGptOssConfig", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("reads <dir>/config.json and names the path in errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tsgc-config-"));
    dirs.push(dir);
    await expect(loadGptOssConfig(dir)).rejects.toThrow(`${join(dir, "config.json")}: file not found`);
    await writeFile(join(dir, "config.json"), "{ not json");
    await expect(loadGptOssConfig(dir)).rejects.toThrow(`${join(dir, "config.json")}: malformed JSON`);
    await writeFile(join(dir, "config.json"), JSON.stringify(transformers5Config()));
    expect(await loadGptOssConfig(dir)).toEqual(GPT_OSS_20B);
  });
});

describe("config size bounds", () => {
  const tiny = () => gptOssConfigToJson(GPT_OSS_TINY);
  const reject = (patch: Record<string, unknown>) => () => parseGptOssConfig({ ...tiny(), ...patch });

  it("name the field and the limit for a size no real model has", () => {
    expect(reject({ num_hidden_layers: 1e6, layer_types: null })).toThrow("config.json: num_hidden_layers: must be at most 512 (tsgc's bound for num_hidden_layers)");
    expect(reject({ vocab_size: 1e12 })).toThrow("config.json: vocab_size: must be at most 4194304");
    expect(reject({ hidden_size: 1e9 })).toThrow("config.json: hidden_size: must be at most 65536");
    expect(reject({ num_local_experts: 1e5 })).toThrow("config.json: num_local_experts: must be at most 1024");
    expect(reject({ max_position_embeddings: 2 ** 40 })).toThrow("config.json: max_position_embeddings: must be at most 16777216");
  });

  it("keep every weight's element count under 2^31 (a kernel's int index), naming the tensor and fields", () => {
    expect(reject({ vocab_size: 4_000_000, hidden_size: 4096, head_dim: 64 })).toThrow(
      "config.json: vocab_size × hidden_size = 4000000 × 4096 = 16384000000 elements in model.embed_tokens.weight and lm_head.weight, more than the 2147483647 a kernel's int index addresses",
    );
    expect(reject({ num_local_experts: 1024, hidden_size: 4096, intermediate_size: 4096, head_dim: 64 })).toThrow(/num_local_experts × hidden_size × 2 × intermediate_size = .* in mlp\.experts\.gate_up_proj/);
  });

  it("accept gpt-oss-20b and 120b as published", () => {
    expect(parseGptOssConfig(gptOssConfigToJson(GPT_OSS_120B))).toEqual(GPT_OSS_120B);
    expect(parseGptOssConfig(gptOssConfigToJson(GPT_OSS_20B))).toEqual(GPT_OSS_20B);
  });

  it("reject token ids outside the vocabulary", () => {
    expect(reject({ eos_token_id: [2, 500] })).toThrow("config.json: eos_token_id (500) is outside the vocabulary (vocab_size 128)");
  });
});
