// The built-in models: what `tsgc <verb> <name>` accepts besides a model file.

import type { Graph } from "../src/ir/graph.js";
import { type GptOssConfig, GPT_OSS_120B, GPT_OSS_20B, GPT_OSS_TINY } from "./gpt-oss/config.js";
import { type GptOssBuildOptions, gptOssModel } from "./gpt-oss/model.js";

export interface BuiltinModelOptions extends Omit<GptOssBuildOptions, "dtype" | "experts"> {
  readonly dtype: "bf16" | "f32";
}

export interface BuiltinModel {
  readonly name: string;
  readonly description: string;
  readonly config: GptOssConfig;
  /** Builds the graph; the bounds default to the model's (the tiny model's keep the reference interpreter fast). */
  build(opts: BuiltinModelOptions): Graph;
}

function gptOss(name: string, description: string, config: GptOssConfig, bounds: { maxTokensPerStep: number; maxSeqsPerStep: number; maxContext: number }): BuiltinModel {
  return { name, description, config, build: (opts) => gptOssModel(config, { ...bounds, ...opts }, name) };
}

export const DEFAULT_MODEL = "gpt-oss-tiny";

export const BUILTIN_MODELS: readonly BuiltinModel[] = [
  gptOss("gpt-oss-20b", "openai/gpt-oss-20b: 24 layers, 32 experts (top-4), MXFP4 experts", GPT_OSS_20B, { maxTokensPerStep: 2048, maxSeqsPerStep: 256, maxContext: 4096 }),
  gptOss("gpt-oss-120b", "openai/gpt-oss-120b: 36 layers, 128 experts (top-4), MXFP4 experts", GPT_OSS_120B, { maxTokensPerStep: 2048, maxSeqsPerStep: 256, maxContext: 4096 }),
  gptOss("gpt-oss-tiny", "gpt-oss-shaped test model: 2 layers (sliding + full), 4 experts top-2, sinks, GQA", GPT_OSS_TINY, { maxTokensPerStep: 256, maxSeqsPerStep: 16, maxContext: 256 }),
];

export function findBuiltinModel(name: string): BuiltinModel;
export function findBuiltinModel(name: string, opts: { readonly orUndefined: true }): BuiltinModel | undefined;
export function findBuiltinModel(name: string, opts?: { readonly orUndefined: true }): BuiltinModel | undefined {
  const m = BUILTIN_MODELS.find((x) => x.name === name);
  if (!m && opts?.orUndefined) return undefined;
  if (!m) throw new Error(`unknown model "${name}"; built-in models: ${BUILTIN_MODELS.map((x) => x.name).join(", ")}`);
  return m;
}
