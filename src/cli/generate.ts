// `tsgc generate` (alias `run`): text or token generation from a gpt-oss checkpoint or a built-in model
// with seeded random weights, on the GPU (a compiled plan) or the CPU (the reference interpreter).

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { gptOssModel } from "../../models/gpt-oss.js";
import { type GptOssConfig, loadGptOssConfig } from "../../models/gpt-oss-config.js";
import { DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import { compile } from "../compile/compile.js";
import { checkPrompt, checkSampling, type EntryRunner, generate, interpreterRunner } from "../generate/generate.js";
import { chatMessages, encodeHarmony } from "../generate/harmony.js";
import { HARMONY_STOP_TOKENS, HarmonyTokenizer, O200K_HARMONY_VOCAB_SIZE } from "../generate/tokenizer.js";
import type { Graph } from "../ir/graph.js";
import type { HostTensor } from "../ir/host-tensor.js";
import { loadParams } from "../loader/load-params.js";
import { randomParams } from "../loader/random-params.js";
import { Device, PlanExecutor } from "../../runtime/index.js";
import { type LoadProgress, streamCheckpoint } from "../../runtime/load-checkpoint.js";
import { formatBytes } from "../format.js";

interface GenerateFlags {
  checkpoint?: string;
  promptIds?: number[];
  prompt?: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  dtype: "bf16" | "f32";
  device: "cuda" | "cpu";
  dequantize?: boolean;
  json?: boolean;
  logitsOut?: string;
}

const number = (flag: string, check: (n: number) => boolean, what: string) => (v: string) => {
  const n = Number(v);
  if (!check(n)) throw new Error(`${flag} must be ${what}, got "${v}"`);
  return n;
};

function parseIds(v: string): number[] {
  const ids = v.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`--prompt-ids must be comma-separated non-negative integers, got "${v}"`);
  return ids;
}

/** Symbol bounds rounded up to a power of two, so nearby prompt lengths share one compiled plan. */
function bound(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 16)));
}

/** Longer prompts are prefilled in chunks of this many tokens (prefill activations grow with the chunk). */
const MAX_PREFILL_CHUNK = 1024;

/** The model's graph for the checkpoint's config (or the built-in model's). */
async function modelFor(model: string, flags: GenerateFlags, promptLength: number): Promise<{ config: GptOssConfig; graph: Graph }> {
  const bounds = { maxPrefillTokens: Math.min(bound(promptLength), MAX_PREFILL_CHUNK), maxContext: bound(promptLength + flags.maxNewTokens) };
  const config = flags.checkpoint ? await loadGptOssConfig(flags.checkpoint) : findBuiltinModel(model).config;
  const experts = flags.dequantize ? { experts: "dense" as const } : {};
  return { config, graph: gptOssModel(config, { dtype: flags.dtype, ...experts, ...bounds }, flags.checkpoint ? "gpt-oss" : model) };
}

/** A runner with the weights in place: a checkpoint streamed into the GPU arena, or host parameters. */
async function runnerFor(graph: Graph, flags: GenerateFlags, quiet: boolean): Promise<{ run: EntryRunner; dispose: () => void }> {
  const hostParams = async (): Promise<Record<string, HostTensor>> => (flags.checkpoint ? loadParams(flags.checkpoint, graph) : randomParams(graph, flags.seed));
  if (flags.device === "cpu") return { run: interpreterRunner(graph, await hostParams()), dispose: () => {} };
  const gpu = Device.open(0);
  const { plan } = await compile(graph, { arch: gpu.info.arch });
  const exec = await PlanExecutor.load(plan, gpu);
  exec.replayAsGraph("decode");
  try {
    if (flags.checkpoint) {
      const report = (p: LoadProgress) => {
        if (quiet) return;
        const line = `loading ${formatBytes(p.bytes)} / ${formatBytes(p.totalBytes)}, ${((p.bytes / 1e6) / Math.max(p.ms, 1)).toFixed(2)} GB/s`;
        process.stderr.write(process.stderr.isTTY ? `\r\x1b[K${line}${p.bytes === p.totalBytes ? "\n" : ""}` : p.bytes === p.totalBytes ? `${line}\n` : "");
      };
      await streamCheckpoint(exec, flags.checkpoint, { onProgress: report });
    } else {
      exec.setParams(await hostParams());
    }
  } catch (err) {
    exec.dispose();
    throw err;
  }
  return { run: (entry, inputs) => exec.run(entry, inputs), dispose: () => exec.dispose() };
}

export function registerGenerateCommand(program: Command): void {
  program
    .command("generate")
    .alias("run")
    .description("generate from a gpt-oss checkpoint (--checkpoint) or a built-in model with seeded random weights")
    .argument("[model]", "built-in model name (ignored with --checkpoint)", DEFAULT_MODEL)
    .option("--checkpoint <dir>", "a gpt-oss checkpoint directory (config.json + safetensors)")
    .option("--prompt-ids <ids>", "comma-separated prompt token ids", parseIds)
    .option("--prompt <text>", "a user message, rendered in the harmony chat format and tokenized with o200k_harmony")
    .option("--max-new-tokens <n>", "tokens to generate", number("--max-new-tokens", (n) => Number.isInteger(n) && n >= 1, "a positive integer"), 16)
    .option("--temperature <t>", "0 for greedy decoding", number("--temperature", (n) => n >= 0 && Number.isFinite(n), "a number >= 0"), 0)
    .option("--top-k <k>", "sample among the k most likely tokens (0: all)", number("--top-k", (n) => Number.isInteger(n) && n >= 0, "a non-negative integer"), 0)
    .option("--top-p <p>", "sample within this probability mass", number("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"), 1)
    .option("--seed <n>", "seed of the sampler (and of random weights)", number("--seed", (n) => Number.isInteger(n) && n >= 0, "a non-negative integer"), 0)
    .option("--dtype <dtype>", "bf16 or f32", (v: string) => {
      if (v !== "bf16" && v !== "f32") throw new Error(`--dtype must be bf16 or f32, got "${v}"`);
      return v;
    }, "f32" as const)
    .option("--device <device>", "cuda (a compiled plan on GPU 0) or cpu (the reference interpreter)", (v: string) => {
      if (v !== "cuda" && v !== "cpu") throw new Error(`--device must be cuda or cpu, got "${v}"`);
      return v;
    }, "cpu" as const)
    .option("--dequantize", "load MXFP4 expert weights as dense --dtype weights (dequantized one expert at a time) instead of keeping them packed")
    .option("--logits-out <file>", "write the logits of every generated position as JSON (for parity checks)")
    .option("--json", "print one JSON object instead of streaming tokens")
    .action(async (model: string, flags: GenerateFlags) => {
      if (flags.prompt !== undefined && flags.promptIds !== undefined) throw new Error("give --prompt or --prompt-ids, not both");
      const promptIds = flags.prompt !== undefined ? encodeHarmony(chatMessages({ user: flags.prompt }), { nextRole: "assistant" }) : (flags.promptIds ?? [1, 2, 3]);
      const started = performance.now();
      const { config, graph } = await modelFor(model, flags, promptIds.length);
      checkPrompt(graph, promptIds, flags.maxNewTokens);
      checkSampling(flags);
      const runner = await runnerFor(graph, flags, flags.json === true);
      const loadedMs = performance.now() - started;
      const tokenizer = config.vocabSize === O200K_HARMONY_VOCAB_SIZE ? HarmonyTokenizer.instance() : undefined;
      try {
        const genStarted = performance.now();
        const result = generate(graph, runner.run, promptIds, {
          maxNewTokens: flags.maxNewTokens,
          temperature: flags.temperature,
          topK: flags.topK,
          topP: flags.topP,
          seed: flags.seed,
          keepLogits: flags.logitsOut !== undefined,
          stopTokens: tokenizer ? [...config.eosTokenIds, ...HARMONY_STOP_TOKENS] : config.eosTokenIds,
          ...(flags.json ? {} : { onToken: (t: number) => process.stdout.write(tokenizer ? tokenizer.decode([t]) : `${t}\n`) }),
        });
        const genMs = performance.now() - genStarted;
        if (flags.logitsOut) writeFileSync(flags.logitsOut, JSON.stringify({ prompt: promptIds, tokens: result.tokens, logits: result.logits.map((l) => Array.from(l)) }));
        const text = tokenizer ? tokenizer.decode(result.tokens) : undefined;
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ model: flags.checkpoint ?? model, device: flags.device, prompt: promptIds, tokens: result.tokens, ...(text !== undefined ? { text } : {}), loadMs: Math.round(loadedMs), ms: Math.round(genMs) })}\n`);
        } else {
          if (tokenizer) process.stdout.write("\n");
          process.stderr.write(`${result.tokens.length} tokens in ${genMs.toFixed(0)} ms on ${flags.device === "cuda" ? "the GPU" : "the cpu reference interpreter"} (loading ${loadedMs.toFixed(0)} ms)\n`);
        }
      } finally {
        runner.dispose();
      }
    });
}
