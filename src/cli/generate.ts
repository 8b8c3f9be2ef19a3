// `tsgc generate` (alias `run`): text or token generation from a gpt-oss checkpoint or a built-in model
// with seeded random weights, on the GPU (a compiled plan) or the CPU (the reference interpreter).

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { gptOssModel } from "../../models/gpt-oss.js";
import { type GptOssConfig, loadGptOssConfig } from "../../models/gpt-oss-config.js";
import { DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import { compile } from "../compile.js";
import { checkPrompt, checkSampling, type EntryRunner, generate, interpreterRunner } from "../generate/generate.js";
import { chatMessages, encodeHarmony } from "../generate/harmony.js";
import { HARMONY_STOP_TOKENS, HarmonyTokenizer, O200K_HARMONY_VOCAB_SIZE } from "../generate/tokenizer.js";
import type { Graph } from "../ir/graph.js";
import type { HostTensor } from "../ir/host-tensor.js";
import { loadParams } from "../loader/load-params.js";
import { randomParams } from "../loader/random-params.js";
import { Device, PlanExecutor } from "../../runtime/index.js";

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

async function modelAndParams(model: string, flags: GenerateFlags, promptLength: number): Promise<{ config: GptOssConfig; graph: Graph; params: Record<string, HostTensor> }> {
  const bounds = { maxPrefillTokens: bound(promptLength), maxContext: bound(promptLength + flags.maxNewTokens) };
  if (flags.checkpoint) {
    const config = await loadGptOssConfig(flags.checkpoint);
    const graph = gptOssModel(config, { dtype: flags.dtype, ...bounds }, "gpt-oss");
    return { config, graph, params: await loadParams(flags.checkpoint, graph) };
  }
  const { config } = findBuiltinModel(model);
  const graph = gptOssModel(config, { dtype: flags.dtype, ...bounds }, model);
  return { config, graph, params: randomParams(graph, flags.seed) };
}

async function runnerFor(graph: Graph, params: Record<string, HostTensor>, device: "cuda" | "cpu"): Promise<{ run: EntryRunner; dispose: () => void }> {
  if (device === "cpu") return { run: interpreterRunner(graph, params), dispose: () => {} };
  const gpu = Device.open(0);
  const { plan } = await compile(graph, { arch: gpu.info.arch });
  const exec = await PlanExecutor.load(plan, gpu);
  exec.setParams(params);
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
    .option("--logits-out <file>", "write the logits of every generated position as JSON (for parity checks)")
    .option("--json", "print one JSON object instead of streaming tokens")
    .action(async (model: string, flags: GenerateFlags) => {
      if (flags.prompt !== undefined && flags.promptIds !== undefined) throw new Error("give --prompt or --prompt-ids, not both");
      const promptIds = flags.prompt !== undefined ? encodeHarmony(chatMessages({ user: flags.prompt }), { nextRole: "assistant" }) : (flags.promptIds ?? [1, 2, 3]);
      const started = performance.now();
      const { config, graph, params } = await modelAndParams(model, flags, promptIds.length);
      checkPrompt(graph, promptIds, flags.maxNewTokens);
      checkSampling(flags);
      const loadedMs = performance.now() - started;
      const runner = await runnerFor(graph, params, flags.device);
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
