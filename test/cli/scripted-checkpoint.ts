// A gpt-oss checkpoint with the o200k_harmony vocabulary whose greedy output is a script: every weight is zero
// except the embedding and the unembedding of the script's tokens, so attention and the experts add nothing and the
// next token depends on the current one alone (a bigram table). Token chain[i] embeds as direction i of the hidden
// space, and lm_head scores chain[i + 1] on that direction, so after a prompt ending in chain[0] the model writes
// chain[1], chain[2], …. The chain's tokens (but its last) must be distinct and fewer than the hidden size; any
// harmony text a test wants the CLI to parse can be scripted, as long as no token repeats.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gptOssCheckpointTensors } from "../../models/gpt-oss/checkpoint.js";
import { GPT_OSS_TINY, gptOssConfigToJson, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { O200K_HARMONY_VOCAB_SIZE } from "../../src/generate/tokenizer.js";
import { writeCheckpointTensors } from "../../src/loader/checkpoint.js";
import { encodeFloats } from "../../src/loader/safetensors.js";

/** One sliding-attention layer of width 32: small enough that the CPU interpreter runs it in well under a second. */
export const HARMONY_TINY: GptOssConfig = { ...GPT_OSS_TINY, vocabSize: O200K_HARMONY_VOCAB_SIZE, hiddenSize: 32, headDim: 8, intermediateSize: 16, numLayers: 1, layerTypes: ["sliding_attention"] };

export async function writeScriptedCheckpoint(dir: string, chain: readonly number[], config: GptOssConfig = HARMONY_TINY): Promise<void> {
  const hidden = config.hiddenSize;
  const heads = chain.slice(0, -1);
  if (heads.length > hidden) throw new Error(`a script of ${chain.length} tokens needs a hidden size of at least ${heads.length}`);
  if (new Set(heads).size !== heads.length) throw new Error("a script's tokens (but its last) must be distinct: the next token depends on the current one alone");
  const specs = gptOssCheckpointTensors(config, "bf16").map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape }));
  await writeCheckpointTensors(dir, specs, async (spec, write) => {
    const values = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
    if (spec.name === "model.embed_tokens.weight") heads.forEach((t, i) => (values[t * hidden + i] = 1));
    else if (spec.name === "lm_head.weight") heads.forEach((_, i) => (values[chain[i + 1]! * hidden + i] = 1));
    else if (spec.name.endsWith("layernorm.weight") || spec.name === "model.norm.weight") values.fill(1);
    await write(encodeFloats("F32", values));
  });
  await writeFile(join(dir, "config.json"), JSON.stringify(gptOssConfigToJson({ ...config, dtype: "float32" }), null, 2) + "\n");
}
