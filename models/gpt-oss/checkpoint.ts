// The tensors a transformers-written gpt-oss checkpoint holds: names, shapes and allowed dtypes, derived from a config.
//
// Names and layouts follow transformers' modeling_gpt_oss.py (GptOssExperts, GptOssTopKRouter, GptOssAttention) and
// its conversion script (convert_gpt_oss_weights_to_hf.py), which writes the MXFP4 form:
//
//   model.embed_tokens.weight                               [vocab, hidden]
//   model.layers.N.input_layernorm.weight                   [hidden]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight          [heads·hd, hidden] / [kv·hd, hidden] / [hidden, heads·hd]
//   model.layers.N.self_attn.{q,k,v,o}_proj.bias            (when attention_bias)
//   model.layers.N.self_attn.sinks                          [heads]
//   model.layers.N.post_attention_layernorm.weight          [hidden]
//   model.layers.N.mlp.router.weight / .bias                [E, hidden] / [E]
//   bf16 experts (input-major, used as x·W):
//   model.layers.N.mlp.experts.gate_up_proj                 [E, hidden, 2·inter]   (gate = even columns, up = odd)
//   model.layers.N.mlp.experts.gate_up_proj_bias            [E, 2·inter]
//   model.layers.N.mlp.experts.down_proj                    [E, inter, hidden]
//   model.layers.N.mlp.experts.down_proj_bias               [E, hidden]
//   MXFP4 experts (output-major rows, 32 values per block along the input axis):
//   model.layers.N.mlp.experts.gate_up_proj_blocks          [E, 2·inter, hidden/32, 16] U8
//   model.layers.N.mlp.experts.gate_up_proj_scales          [E, 2·inter, hidden/32]     U8
//   model.layers.N.mlp.experts.down_proj_blocks             [E, hidden, inter/32, 16]   U8
//   model.layers.N.mlp.experts.down_proj_scales             [E, hidden, inter/32]       U8
//   (the two biases stay as in the bf16 form)
//   model.norm.weight                                       [hidden]
//   lm_head.weight                                          [vocab, hidden]   (absent when tie_word_embeddings)
//
// Dtypes: the hub checkpoints store every unquantized tensor in BF16; transformers writes F32 when saved from an f32
// model, and the original conversion keeps norms and biases in whatever the source held (F32 or BF16). So every
// unquantized tensor may be any float dtype (F32, BF16, F16); MXFP4 blocks and scales are always U8.
import type { GptOssConfig } from "./config.js";

/** How the experts' weights are stored. */
export type ExpertFormat = "bf16" | "mxfp4";

/** Float dtypes an unquantized gpt-oss tensor may have in a checkpoint (safetensors spelling). */
export const CHECKPOINT_FLOAT_DTYPES = ["BF16", "F32", "F16"] as const;

export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Safetensors dtypes accepted for this tensor. */
  readonly dtypes: readonly string[];
}

const FLOAT = CHECKPOINT_FLOAT_DTYPES;
const BYTES = ["U8"] as const;

/** The expert tensor names of layer `layer`, by role, in both forms. */
export function expertTensorNames(layer: number): {
  readonly gateUp: string;
  readonly gateUpBias: string;
  readonly down: string;
  readonly downBias: string;
  readonly gateUpBlocks: string;
  readonly gateUpScales: string;
  readonly downBlocks: string;
  readonly downScales: string;
} {
  const p = `model.layers.${layer}.mlp.experts`;
  return {
    gateUp: `${p}.gate_up_proj`,
    gateUpBias: `${p}.gate_up_proj_bias`,
    down: `${p}.down_proj`,
    downBias: `${p}.down_proj_bias`,
    gateUpBlocks: `${p}.gate_up_proj_blocks`,
    gateUpScales: `${p}.gate_up_proj_scales`,
    downBlocks: `${p}.down_proj_blocks`,
    downScales: `${p}.down_proj_scales`,
  };
}

/** The expert format a config describes: MXFP4 when it carries a quantization_config, bf16 otherwise. */
export function configExpertFormat(config: GptOssConfig): ExpertFormat {
  return config.quantization !== null ? "mxfp4" : "bf16";
}

/**
 * Every tensor a transformers-written checkpoint of `config` holds, in transformers' module order.
 * @param format defaults to what the config says (see configExpertFormat).
 */
export function gptOssCheckpointTensors(config: GptOssConfig, format: ExpertFormat = configExpertFormat(config)): ExpectedTensor[] {
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const E = config.numExperts;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  if (format === "mxfp4" && (H % 32 !== 0 || I % 32 !== 0)) {
    throw new Error(`MXFP4 experts need hidden_size (${H}) and intermediate_size (${I}) to be multiples of 32`);
  }
  const out: ExpectedTensor[] = [{ name: "model.embed_tokens.weight", shape: [config.vocabSize, H], dtypes: FLOAT }];
  for (let n = 0; n < config.numLayers; n++) {
    const l = `model.layers.${n}`;
    out.push({ name: `${l}.input_layernorm.weight`, shape: [H], dtypes: FLOAT });
    const projections: [string, number, number][] = [
      ["q_proj", q, H],
      ["k_proj", kv, H],
      ["v_proj", kv, H],
      ["o_proj", H, q],
    ];
    for (const [proj, rows, cols] of projections) {
      out.push({ name: `${l}.self_attn.${proj}.weight`, shape: [rows, cols], dtypes: FLOAT });
      if (config.attentionBias) out.push({ name: `${l}.self_attn.${proj}.bias`, shape: [rows], dtypes: FLOAT });
    }
    out.push({ name: `${l}.self_attn.sinks`, shape: [config.numHeads], dtypes: FLOAT });
    out.push({ name: `${l}.post_attention_layernorm.weight`, shape: [H], dtypes: FLOAT });
    out.push({ name: `${l}.mlp.router.weight`, shape: [E, H], dtypes: FLOAT });
    out.push({ name: `${l}.mlp.router.bias`, shape: [E], dtypes: FLOAT });
    const x = expertTensorNames(n);
    if (format === "bf16") {
      out.push({ name: x.gateUp, shape: [E, H, 2 * I], dtypes: FLOAT });
      out.push({ name: x.gateUpBias, shape: [E, 2 * I], dtypes: FLOAT });
      out.push({ name: x.down, shape: [E, I, H], dtypes: FLOAT });
      out.push({ name: x.downBias, shape: [E, H], dtypes: FLOAT });
    } else {
      out.push({ name: x.gateUpBlocks, shape: [E, 2 * I, H / 32, 16], dtypes: BYTES });
      out.push({ name: x.gateUpScales, shape: [E, 2 * I, H / 32], dtypes: BYTES });
      out.push({ name: x.gateUpBias, shape: [E, 2 * I], dtypes: FLOAT });
      out.push({ name: x.downBlocks, shape: [E, H, I / 32, 16], dtypes: BYTES });
      out.push({ name: x.downScales, shape: [E, H, I / 32], dtypes: BYTES });
      out.push({ name: x.downBias, shape: [E, H], dtypes: FLOAT });
    }
  }
  out.push({ name: "model.norm.weight", shape: [H], dtypes: FLOAT });
  if (!config.tieWordEmbeddings) out.push({ name: "lm_head.weight", shape: [config.vocabSize, H], dtypes: FLOAT });
  return out;
}

/** Number of parameters (weights, biases, sinks, norms), counted in the unquantized form. */
export function gptOssParameterCount(config: GptOssConfig): number {
  let total = 0;
  for (const t of gptOssCheckpointTensors(config, "bf16")) total += t.shape.reduce((a, b) => a * b, 1);
  return total;
}
