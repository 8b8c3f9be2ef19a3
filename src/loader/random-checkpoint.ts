// Seeded random gpt-oss checkpoints in the transformers layout, for tests and for parity runs that need a checkpoint
// on disk without downloading one. Values are small Gaussians (std 0.02, like transformers' initializer_range);
// norm weights are 1 + noise, sinks and biases are noisy too, so no test passes by multiplying zeros.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gptOssCheckpointTensors, type ExpectedTensor } from "../../models/gpt-oss/checkpoint.js";
import { gptOssConfigToJson, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { writeCheckpointTensors, type ShardPlan, type WriteCheckpointOptions } from "./checkpoint.js";
import { encodeFloats, type SafetensorsDType } from "./safetensors.js";
import { seededRandom } from "../ir/host-tensor.js";

/** Standard normal samples (Box–Muller) from a uniform source. */
export function gaussian(random: () => number): () => number {
  return () => {
    const u = 1 - random(); // (0, 1]
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export interface RandomCheckpointOptions extends WriteCheckpointOptions {
  readonly seed?: number;
  /** Storage dtype of every tensor (bf16 experts form only). Default BF16. */
  readonly dtype?: Extract<SafetensorsDType, "BF16" | "F32" | "F16">;
  /** Standard deviation of weights (default 0.02). */
  readonly std?: number;
}

function initialValue(tensor: ExpectedTensor, normal: () => number, std: number): () => number {
  if (tensor.name.endsWith("layernorm.weight") || tensor.name === "model.norm.weight") return () => 1 + 0.1 * normal();
  if (tensor.name.endsWith(".sinks")) return () => 0.5 * normal();
  return () => std * normal();
}

/**
 * Writes config.json and random weights (bf16-experts form) of `config` into `dir`. The config must describe
 * unquantized experts; quantize the result with quantizeCheckpoint to get the MXFP4 form.
 */
export async function writeRandomGptOssCheckpoint(dir: string, config: GptOssConfig, options: RandomCheckpointOptions = {}): Promise<ShardPlan> {
  if (config.quantization !== null) throw new Error("writeRandomGptOssCheckpoint writes bf16 experts; pass a config without quantization");
  const dtype = options.dtype ?? "BF16";
  const normal = gaussian(seededRandom(options.seed ?? 0));
  const std = options.std ?? 0.02;
  const expected = gptOssCheckpointTensors(config, "bf16");
  const byName = new Map(expected.map((t) => [t.name, t]));
  const plan = await writeCheckpointTensors(
    dir,
    expected.map((t) => ({ name: t.name, dtype, shape: t.shape })),
    async (spec, write) => {
      const next = initialValue(byName.get(spec.name)!, normal, std);
      const count = spec.shape.reduce((a, b) => a * b, 1);
      const chunk = 1 << 20;
      for (let at = 0; at < count; at += chunk) {
        const values = new Float32Array(Math.min(chunk, count - at));
        for (let i = 0; i < values.length; i++) values[i] = next();
        await write(encodeFloats(dtype, values));
      }
    },
    options,
  );
  const json = gptOssConfigToJson({ ...config, dtype: dtype === "F32" ? "float32" : dtype === "F16" ? "float16" : "bfloat16" });
  await writeFile(join(dir, "config.json"), JSON.stringify(json, null, 2) + "\n");
  return plan;
}
