// `tsgc generate` (alias `run`): generation from a gpt-oss checkpoint or a built-in model with seeded random weights,
// on the serving engine (a compiled plan on the GPU, or the CPU reference interpreter). Several prompts decode
// together, continuously batched. Text prompts are rendered as harmony user messages.

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { DEFAULT_MODEL } from "../../models/index.js";
import type { GenerationStream, TokenOutput } from "../engine/api.js";
import { defaultStopTokens } from "../engine/engine.js";
import { gpuPresent, type OpenProgress, openEngine } from "../engine/open.js";
import { chatMessages, encodeHarmony } from "../generate/harmony.js";
import { formatBytes } from "../format.js";
import { type EngineFlags, engineFlags, engineOptions } from "./engine-options.js";

interface GenerateFlags extends EngineFlags {
  promptIds?: number[][];
  prompt?: string[];
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  json?: boolean;
  logitsOut?: string;
}

const number = (flag: string, check: (n: number) => boolean, what: string) => (v: string) => {
  const n = Number(v);
  if (!check(n)) throw new Error(`${flag} must be ${what}, got "${v}"`);
  return n;
};

function parseIds(v: string, previous: number[][] = []): number[][] {
  const ids = v.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`--prompt-ids must be comma-separated non-negative integers, got "${v}"`);
  return [...previous, ids];
}

const collect = (v: string, previous: string[] = []) => [...previous, v];

/** Progress of opening the engine, on stderr (one updating line on a terminal). */
export function progressPrinter(quiet: boolean): (p: OpenProgress) => void {
  const tty = process.stderr.isTTY;
  return (p) => {
    if (quiet) return;
    if (p.kind === "stage") process.stderr.write(`${p.message}\n`);
    else if (p.kind === "load") {
      const { bytes, totalBytes, ms } = p.progress;
      const line = `loading ${formatBytes(bytes)} / ${formatBytes(totalBytes)}, ${(bytes / 1e6 / Math.max(ms, 1)).toFixed(2)} GB/s`;
      process.stderr.write(tty ? `\r\x1b[K${line}${bytes === totalBytes ? "\n" : ""}` : bytes === totalBytes ? `${line}\n` : "");
    } else if (p.event.kind === "kernel") {
      const { done, total } = p.event.progress;
      if (p.event.progress.origin !== "nvrtc") return;
      const line = `compiling kernels ${done}/${total}`;
      process.stderr.write(tty ? `\r\x1b[K${line}${done === total ? "\n" : ""}` : done === total ? `${line}\n` : "");
    }
  };
}

export function registerGenerateCommand(program: Command): void {
  const cmd = program
    .command("generate")
    .alias("run")
    .description("generate from a gpt-oss checkpoint (--checkpoint) or a built-in model with seeded random weights, on the serving engine")
    .argument("[model]", "built-in model name (ignored with --checkpoint)", DEFAULT_MODEL)
    .option("--prompt-ids <ids>", "comma-separated prompt token ids; repeat for several prompts, decoded together", parseIds)
    .option("--prompt <text>", "a user message, rendered in the harmony chat format (o200k_harmony); repeat for several", collect)
    .option("--max-new-tokens <n>", "tokens to generate per prompt", number("--max-new-tokens", (n) => Number.isInteger(n) && n >= 1, "a positive integer"), 16)
    .option("--temperature <t>", "0 for greedy decoding", number("--temperature", (n) => n >= 0 && Number.isFinite(n), "a number >= 0"), 0)
    .option("--top-k <k>", "sample among the k most likely tokens (0: all)", number("--top-k", (n) => Number.isInteger(n) && n >= 0, "a non-negative integer"), 0)
    .option("--top-p <p>", "sample within this probability mass", number("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"), 1)
    .option("--seed <n>", "seed of the sampler (prompt i samples with seed + i) and of random weights", number("--seed", (n) => Number.isInteger(n) && n >= 0, "a non-negative integer"), 0)
    .option("--logits-out <file>", "write the logits behind every generated token as JSON (parity checks)")
    .option("--json", "print one JSON object instead of streaming tokens");
  engineFlags(cmd).action(async (model: string, flags: GenerateFlags) => {
    if (flags.prompt !== undefined && flags.promptIds !== undefined) throw new Error("give --prompt or --prompt-ids, not both");
    const quiet = flags.json === true;
    const started = performance.now();
    const device = flags.device ?? (gpuPresent() ? "cuda" : "cpu");
    if (!quiet) process.stderr.write(`tsgc: ${flags.checkpoint ?? model} on ${device === "cuda" ? "the GPU (a compiled plan)" : "the CPU reference interpreter"}, ${flags.prompt ? "text" : "token ids"} in, ${flags.maxNewTokens} new tokens per prompt\n`);
    const opened = await openEngine({ ...engineOptions(flags, model), device, onProgress: progressPrinter(quiet) });
    const { engine } = opened;
    try {
      const text = engine.model.tokenizer !== undefined;
      if (flags.prompt && !text) throw new Error(`--prompt needs the o200k_harmony vocabulary; ${engine.model.name} has ${engine.model.vocabSize} tokens: give --prompt-ids`);
      const prompts = flags.prompt ? flags.prompt.map((p) => encodeHarmony(chatMessages({ user: p }), { nextRole: "assistant" })) : (flags.promptIds ?? [[1, 2, 3]]);
      const loadMs = performance.now() - started;
      const genStarted = performance.now();
      const streams: GenerationStream[] = prompts.map((promptIds, i) =>
        engine.generate({
          promptIds,
          maxTokens: flags.maxNewTokens,
          temperature: flags.temperature,
          topK: flags.topK,
          topP: flags.topP,
          seed: flags.seed + i,
          stopTokenIds: defaultStopTokens(engine.model),
          ...(flags.logitsOut ? { logits: true } : {}),
        }),
      );
      const outputs: TokenOutput[][] = prompts.map(() => []);
      await Promise.all(
        streams.map(async (s, i) => {
          for await (const o of s) {
            outputs[i]!.push(o);
            // one prompt streams as it goes; several print when done, one line each
            if (!quiet && prompts.length === 1) process.stdout.write(text ? o.text : `${o.token}\n`);
          }
        }),
      );
      const summaries = await Promise.all(streams.map((s) => s.done));
      const failed = summaries.find((s) => s.finishReason === "error");
      if (failed) throw new Error(failed.error ?? "generation failed");
      const genMs = performance.now() - genStarted;
      if (flags.logitsOut) {
        writeFileSync(flags.logitsOut, JSON.stringify({ prompt: prompts[0], tokens: outputs[0]!.map((o) => o.token), logits: outputs[0]!.map((o) => Array.from(o.logits ?? [])) }));
      }
      const tokens = outputs.map((os) => os.map((o) => o.token));
      const texts = outputs.map((os) => os.map((o) => o.text).join(""));
      if (flags.json) {
        const one = prompts.length === 1;
        const result = {
          model: flags.checkpoint ?? model,
          device,
          ...(one ? { prompt: prompts[0], tokens: tokens[0], ...(text ? { text: texts[0] } : {}) } : { prompts, tokens, ...(text ? { texts } : {}) }),
          finishReasons: summaries.map((s) => s.finishReason),
          loadMs: Math.round(loadMs),
          ms: Math.round(genMs),
        };
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } else {
        if (prompts.length > 1) tokens.forEach((t, i) => process.stdout.write(`${i}: ${text ? texts[i] : t.join(",")}\n`));
        else if (text) process.stdout.write("\n");
        const n = tokens.reduce((a, t) => a + t.length, 0);
        process.stderr.write(`${n} tokens in ${genMs.toFixed(0)} ms (${((n / genMs) * 1000).toFixed(1)} tokens/s) on ${device === "cuda" ? "the GPU" : "the CPU reference interpreter"} (loading ${loadMs.toFixed(0)} ms)\n`);
      }
    } finally {
      await engine.close();
    }
  });
}
