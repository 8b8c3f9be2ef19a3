// The options every verb that opens an engine takes (generate, bench serve, serve, chat), parsed once.

import type { Command } from "commander";
import type { OpenEngineOptions } from "../engine/open.js";
import { choiceFlag } from "./flags.js";

export interface EngineFlags {
  checkpoint?: string;
  dtype?: "bf16" | "f32";
  device?: "cuda" | "cpu";
  dequantize?: boolean;
  maxContext?: number;
  maxBatch?: number;
  maxStepTokens?: number;
  blockSize?: number;
  kvBlocks?: number;
  gpuMemoryUtilization?: number;
  prefixCaching?: boolean;
  planAhead?: boolean;
  seed?: number;
  tp?: number;
  /** --ep alone: every rank whole experts; --ep G: G expert groups. */
  ep?: number | true;
}

export const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 1 && /^\d+$/.test(v.trim()))) throw new Error(`${flag} must be a positive integer, got "${v}"`);
  return n;
};

/** The model bounds every verb that builds gpt-oss takes (compile too). */
export function boundFlags(cmd: Command): Command {
  return cmd
    .option("--max-context <n>", "most tokens (prompt and output) one sequence holds (default 4096)", positiveInt("--max-context"))
    .option("--max-batch <n>", "most sequences decoded together, one step (default 512 on cuda, 16 on cpu; fewer give a shorter time per output token under load)", positiveInt("--max-batch"))
    .option("--max-step-tokens <n>", "most tokens one step runs, decodes and prefill chunks together (default 2048 on cuda, 256 on cpu)", positiveInt("--max-step-tokens"))
    .option("--block-size <n>", "tokens per KV block (default 16)", positiveInt("--block-size"));
}

/** Adds the engine options to a command. */
export function engineFlags(cmd: Command): Command {
  return boundFlags(cmd)
    .option("--checkpoint <dir>", "a gpt-oss checkpoint directory (config.json + safetensors)")
    .option("--device <device>", "cuda (a compiled plan on GPU 0) or cpu (the reference interpreter); default cuda when a GPU is present", choiceFlag("--device", ["cuda", "cpu"] as const))
    .option("--dtype <dtype>", "bf16 or f32 (default bf16 on cuda, f32 on cpu)", choiceFlag("--dtype", ["bf16", "f32"] as const))
    .option("--dequantize", "load MXFP4 expert weights as dense --dtype weights instead of keeping them packed")
    .option("--kv-blocks <n>", "blocks of the full-attention KV pool, instead of sizing it from GPU memory", positiveInt("--kv-blocks"))
    .option("--gpu-memory-utilization <f>", "share of GPU memory for weights, activations and KV (default 0.9)", (v: string) => {
      const n = Number(v);
      if (!(n > 0 && n <= 1)) throw new Error(`--gpu-memory-utilization must be in (0, 1], got "${v}"`);
      return n;
    })
    .option("--no-prefix-caching", "do not share KV blocks of identical prompt prefixes")
    .option("--no-plan-ahead", "plan each decode step only after the last one's tokens reach the host (by default it is queued behind the step before, its tokens fed back on the GPU)")
    .option("--tp <n>", "shard the model over N ranks, one GPU each (with --device cpu: N simulated ranks on the interpreter): attention heads, the embedding and lm_head split across them", positiveInt("--tp"))
    .option("--ep [groups]", "expert parallelism (with --tp): each rank holds whole experts instead of a slice of every expert; --ep G groups the experts in G groups, each split over --tp/G ranks", positiveInt("--ep"));
}

/** Engine options from parsed flags (the model argument is ignored with --checkpoint). */
export function engineOptions(flags: EngineFlags, model: string): OpenEngineOptions {
  const tp = flags.tp ?? 1;
  if (flags.ep !== undefined && tp === 1) throw new Error(`--ep needs --tp N with N > 1 (the ranks to split the experts over)`);
  const ep = flags.ep === true ? tp : flags.ep;
  if (ep !== undefined && tp % ep !== 0) throw new Error(`--ep ${ep} must divide --tp ${tp}`);
  return {
    ...(tp > 1 ? { tp } : {}),
    ...(ep !== undefined ? { ep } : {}),
    model,
    ...(flags.checkpoint !== undefined ? { checkpoint: flags.checkpoint } : {}),
    ...(flags.device !== undefined ? { device: flags.device } : {}),
    ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
    ...(flags.dequantize ? { dequantize: true } : {}),
    ...(flags.maxContext !== undefined ? { maxContext: flags.maxContext } : {}),
    ...(flags.maxBatch !== undefined ? { maxSeqs: flags.maxBatch } : {}),
    ...(flags.maxStepTokens !== undefined ? { maxStepTokens: flags.maxStepTokens } : {}),
    ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
    ...(flags.kvBlocks !== undefined ? { kvBlocks: flags.kvBlocks } : {}),
    ...(flags.gpuMemoryUtilization !== undefined ? { gpuMemoryUtilization: flags.gpuMemoryUtilization } : {}),
    ...(flags.prefixCaching === false ? { prefixCaching: false } : {}),
    ...(flags.planAhead === false ? { planAhead: false } : {}),
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
  };
}
