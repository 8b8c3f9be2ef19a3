// `tsgc generate` (alias `run`): text or token generation from a gpt-oss checkpoint or a built-in model
// with seeded random weights, on the GPU (a compiled plan) or the CPU (the reference interpreter).
//
// The command is a few separate steps, so that the generation loop in the middle can be replaced (by the
// serving engine) without touching the rest:
//   settings   the flags, strictly parsed; defaults that depend on the machine (a GPU: cuda and bf16, else
//              cpu and f32); checks of the paths given, before any work
//   model      the config, the prompt's ids, the graph with context bounds within max_position_embeddings,
//              and, for the interpreter, whether its weights fit host memory
//   runner     a plan compiled for GPU 0 (with compile progress: a cold run compiles every kernel) and the
//              weights streamed into its arena, or the interpreter with host parameters
//   output     a banner saying what runs and what the numbers are, then tokens as they come (text is
//              decoded incrementally, never splitting a character), then timing

import { freemem, totalmem } from "node:os";
import type { Command } from "commander";
import { gptOssModel } from "../../models/gpt-oss.js";
import { type GptOssConfig, loadGptOssConfig } from "../../models/gpt-oss-config.js";
import { DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import type { Plan } from "../codegen/plan.js";
import { type CompileOptions, compile } from "../compile.js";
import { formatBytes } from "../format.js";
import { checkInputDirectory, checkOutputFile, writeFileAtomically } from "../fs-safe.js";
import { checkPrompt, checkSampling, type EntryRunner, generate, interpreterRunner } from "../generate/generate.js";
import { chatMessages, encodeHarmony } from "../generate/harmony.js";
import { HARMONY_STOP_TOKENS, HarmonyTokenizer, O200K_HARMONY_VOCAB_SIZE, StreamingDecoder } from "../generate/tokenizer.js";
import type { Graph } from "../ir/graph.js";
import type { HostTensor } from "../ir/host-tensor.js";
import { evalShape, numElements } from "../ir/shape.js";
import { loadParams } from "../loader/load-params.js";
import { randomParams } from "../loader/random-params.js";
import { Device, deviceCount, PlanExecutor } from "../../runtime/index.js";
import { type LoadProgress, streamCheckpoint } from "../../runtime/load-checkpoint.js";
import { compileProgressReporter } from "./compile-progress.js";

type GenerateDevice = "cuda" | "cpu";
type GenerateDtype = "bf16" | "f32";

/** What commander parses; `device` and `dtype` stay undefined unless given (their defaults depend on the machine). */
interface GenerateFlags {
  checkpoint?: string;
  promptIds?: number[];
  prompt?: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  dtype?: GenerateDtype;
  device?: GenerateDevice;
  dequantize?: boolean;
  json?: boolean;
  logitsOut?: string;
}

/** The flags with every default filled in. */
export interface GenerateSettings extends Omit<GenerateFlags, "dtype" | "device"> {
  readonly model: string;
  readonly device: GenerateDevice;
  readonly dtype: GenerateDtype;
}

// ---- settings ------------------------------------------------------------------------------------

/** A decimal integer and nothing else: "0x10", "1e1", "1.0" and "" are refused, not read as numbers. */
const DECIMAL_INTEGER = /^\d+$/;

const integerFlag = (flag: string, min: number) => (v: string): number => {
  const n = Number(v.trim());
  if (!DECIMAL_INTEGER.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new Error(`${flag} must be ${min === 0 ? "a non-negative" : "a positive"} integer, got "${v}"`);
  }
  return n;
};

const numberFlag = (flag: string, check: (n: number) => boolean, what: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === "" || !check(n)) throw new Error(`${flag} must be ${what}, got "${v}"`);
  return n;
};

/** "1,2,3" → [1, 2, 3]; an empty item, a sign, hex, an exponent or a fraction is an error naming the item. */
export function parsePromptIds(v: string): number[] {
  const items = v.split(",").map((s) => s.trim());
  const bad = items.findIndex((s) => !DECIMAL_INTEGER.test(s) || !Number.isSafeInteger(Number(s)));
  if (items.length === 0 || bad >= 0) {
    const what = bad >= 0 ? (items[bad] === "" ? `: item ${bad + 1} is empty` : `: item ${bad + 1} ("${items[bad]}") is not a decimal integer`) : "";
    throw new Error(`--prompt-ids must be comma-separated non-negative integers, got "${v}"${what}`);
  }
  return items.map(Number);
}

/** GPUs this machine has (0 without a driver). */
function localGpuCount(): number {
  try {
    return deviceCount();
  } catch {
    return 0;
  }
}

/** The device and dtype to use: as given, else cuda/bf16 where a GPU is present and cpu/f32 where not. */
export function resolveDevice(given: { readonly device?: GenerateDevice | undefined; readonly dtype?: GenerateDtype | undefined }, gpus: number): { device: GenerateDevice; dtype: GenerateDtype } {
  const device = given.device ?? (gpus > 0 ? "cuda" : "cpu");
  return { device, dtype: given.dtype ?? (device === "cuda" ? "bf16" : "f32") };
}

/** Everything that can be checked before loading a model: flag combinations and the paths given. */
export function settingsFor(model: string, flags: GenerateFlags, gpus: number = localGpuCount()): GenerateSettings {
  if (flags.prompt !== undefined && flags.promptIds !== undefined) throw new Error("give --prompt or --prompt-ids, not both");
  if (flags.checkpoint !== undefined) checkInputDirectory(flags.checkpoint, "--checkpoint");
  if (flags.logitsOut !== undefined) checkOutputFile(flags.logitsOut, "--logits-out");
  checkSampling(flags);
  return { ...flags, model: flags.checkpoint ?? model, ...resolveDevice(flags, gpus) };
}

// ---- the model -----------------------------------------------------------------------------------

/** Symbol bounds rounded up to a power of two, so nearby prompt lengths share one compiled plan. */
function bound(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 16)));
}

/** Longer prompts are prefilled in chunks of this many tokens (prefill activations grow with the chunk). */
const MAX_PREFILL_CHUNK = 1024;

/**
 * The graph's prefill and context bounds for a prompt and a generation length: powers of two, never past
 * the config's max_position_embeddings; a request that needs more positions is an error naming the flag.
 */
export function contextBounds(config: GptOssConfig, name: string, promptLength: number, maxNewTokens: number): { maxPrefillTokens: number; maxContext: number } {
  // the last new token is never fed back, so the cache holds prompt + maxNewTokens − 1 positions
  const needed = Math.max(promptLength, promptLength + maxNewTokens - 1);
  if (needed > config.maxPositionEmbeddings) {
    throw new Error(
      `--max-new-tokens ${maxNewTokens}: the prompt (${promptLength} tokens) and ${maxNewTokens} new tokens need ${needed} positions, ` +
        `more than ${name}'s max_position_embeddings (${config.maxPositionEmbeddings})`,
    );
  }
  const maxContext = Math.min(bound(promptLength + maxNewTokens), config.maxPositionEmbeddings);
  return { maxPrefillTokens: Math.min(bound(promptLength), MAX_PREFILL_CHUNK, maxContext), maxContext };
}

async function configFor(s: GenerateSettings): Promise<GptOssConfig> {
  return s.checkpoint ? loadGptOssConfig(s.checkpoint) : findBuiltinModel(s.model).config;
}

/** The prompt's token ids: a harmony user message (o200k_harmony models only) or the ids given. */
function promptFor(s: GenerateSettings, config: GptOssConfig): number[] {
  if (s.prompt === undefined) return s.promptIds ?? [1, 2, 3];
  if (config.vocabSize !== O200K_HARMONY_VOCAB_SIZE) {
    throw new Error(`--prompt needs a model with the o200k_harmony vocabulary (${O200K_HARMONY_VOCAB_SIZE} tokens); ${s.model} has ${config.vocabSize}: give token ids with --prompt-ids`);
  }
  return encodeHarmony(chatMessages({ user: s.prompt }), { nextRole: "assistant" });
}

function graphFor(s: GenerateSettings, config: GptOssConfig, promptLength: number): Graph {
  const bounds = contextBounds(config, s.model, promptLength, s.maxNewTokens);
  const experts = s.dequantize ? { experts: "dense" as const } : {};
  return gptOssModel(config, { dtype: s.dtype, ...experts, ...bounds }, s.checkpoint ? "gpt-oss" : s.model);
}

/** Bytes of host memory the interpreter holds the weights and model state in: it keeps every value as an f64. */
export function interpreterHostBytes(graph: Graph): number {
  let elements = 0;
  for (const t of [...graph.params, ...graph.states]) elements += numElements(evalShape(t.shape, graph.symbols));
  return elements * Float64Array.BYTES_PER_ELEMENT;
}

/** Refuses, before building any weight, a model whose interpreter weights would not fit host memory. */
export function checkInterpreterMemory(graph: Graph, name: string, available: number = freemem(), total: number = totalmem()): void {
  const bytes = interpreterHostBytes(graph);
  if (bytes > available) {
    throw new Error(
      `${name} on the CPU reference interpreter (--device cpu) needs ${formatBytes(bytes)} of host memory for its weights (8 bytes a value), ` +
        `more than the ${formatBytes(available)} free of ${formatBytes(total)}; run it on a GPU with --device cuda`,
    );
  }
}

// ---- the runner ----------------------------------------------------------------------------------

/**
 * Compiles the plan for a GPU, reporting progress on `write`: a cold run compiles every kernel with NVRTC
 * (minutes for the full models), a warm one loads them from the cache.
 */
export async function compileWithProgress(
  graph: Graph,
  arch: string,
  write: (text: string) => void,
  options: Pick<CompileOptions, "cacheDir"> = {},
  tty = process.stderr.isTTY === true,
): Promise<Plan> {
  const report = compileProgressReporter(false, write, tty);
  let announced = false;
  const { plan } = await compile(graph, {
    arch,
    ...options,
    onEvent: (e) => {
      if (e.kind === "pass" && !announced) {
        announced = true;
        write(`compiling ${graph.name} for ${arch} (the first run compiles every kernel; later runs load them from the cache)\n`);
      }
      if (e.kind !== "pass") report(e);
    },
  });
  return plan;
}

/** A runner with the weights in place: a checkpoint streamed into the GPU arena, or host parameters. */
async function runnerFor(graph: Graph, s: GenerateSettings, quiet: boolean): Promise<{ run: EntryRunner; dispose: () => void }> {
  const hostParams = async (): Promise<Record<string, HostTensor>> => (s.checkpoint ? loadParams(s.checkpoint, graph) : randomParams(graph, s.seed));
  if (s.device === "cpu") return { run: interpreterRunner(graph, await hostParams()), dispose: () => {} };
  const gpu = Device.open(0);
  const plan = await compileWithProgress(graph, gpu.info.arch, quiet ? () => {} : (text) => void process.stderr.write(text));
  const exec = await PlanExecutor.load(plan, gpu);
  exec.replayAsGraph("decode");
  try {
    if (s.checkpoint) {
      const report = (p: LoadProgress) => {
        if (quiet) return;
        const line = `loading ${formatBytes(p.bytes)} / ${formatBytes(p.totalBytes)}, ${((p.bytes / 1e6) / Math.max(p.ms, 1)).toFixed(2)} GB/s`;
        process.stderr.write(process.stderr.isTTY ? `\r\x1b[K${line}${p.bytes === p.totalBytes ? "\n" : ""}` : p.bytes === p.totalBytes ? `${line}\n` : "");
      };
      await streamCheckpoint(exec, s.checkpoint, { onProgress: report });
    } else {
      exec.setParams(await hostParams());
    }
  } catch (err) {
    exec.dispose();
    throw err;
  }
  return { run: (entry, inputs) => exec.run(entry, inputs), dispose: () => exec.dispose() };
}

// ---- output --------------------------------------------------------------------------------------

/** What is about to run and what the printed numbers are, in two lines (for stderr, before the tokens). */
export function describeRun(s: GenerateSettings, config: GptOssConfig, promptIds: readonly number[], text: boolean): string {
  const weights = s.checkpoint ? `${s.checkpoint} (gpt-oss, ${config.numLayers} layers)` : `${s.model} with seeded random weights (seed ${s.seed}: untrained, its tokens are noise)`;
  const where = s.device === "cuda" ? `GPU 0 (a compiled plan, ${s.dtype})` : `the CPU reference interpreter (${s.dtype})`;
  const sampling = s.temperature === 0 ? "greedy decoding" : `sampling at temperature ${s.temperature}${s.topK > 0 ? `, top-k ${s.topK}` : ""}${s.topP < 1 ? `, top-p ${s.topP}` : ""}, seed ${s.seed}`;
  const shown = promptIds.length > 8 ? `${promptIds.slice(0, 8).join(",")},… (${promptIds.length} tokens)` : promptIds.join(",");
  const prompt = s.prompt !== undefined ? `a harmony user message of ${promptIds.length} tokens` : `token ids ${shown}`;
  const output = text ? `printing up to ${s.maxNewTokens} new tokens as text` : `printing up to ${s.maxNewTokens} new token ids (0‥${config.vocabSize - 1}), one per line`;
  return `${weights} on ${where}, ${sampling}\nprompt: ${prompt}; ${output}:\n`;
}

/** Writes tokens as they come: ids one per line, or text decoded incrementally (a character split across tokens waits for its last byte). */
export function tokenPrinter(write: (text: string) => void, tokenizer?: HarmonyTokenizer): { onToken: (token: number) => void; finish: () => void } {
  if (tokenizer === undefined) return { onToken: (t) => write(`${t}\n`), finish: () => {} };
  const decoder = new StreamingDecoder(tokenizer);
  return {
    onToken: (t) => {
      const piece = decoder.push(t);
      if (piece !== "") write(piece);
    },
    finish: () => write(`${decoder.flush()}\n`),
  };
}

// ---- the command ---------------------------------------------------------------------------------

export function registerGenerateCommand(program: Command): void {
  program
    .command("generate")
    .alias("run")
    .description("generate from a gpt-oss checkpoint (--checkpoint) or a built-in model with seeded random weights")
    .argument("[model]", "built-in model name (ignored with --checkpoint)", DEFAULT_MODEL)
    .option("--checkpoint <dir>", "a gpt-oss checkpoint directory (config.json + safetensors)")
    .option("--prompt-ids <ids>", "comma-separated prompt token ids", parsePromptIds)
    .option("--prompt <text>", "a user message, rendered in the harmony chat format and tokenized with o200k_harmony")
    .option("--max-new-tokens <n>", "tokens to generate", integerFlag("--max-new-tokens", 1), 16)
    .option("--temperature <t>", "0 for greedy decoding", numberFlag("--temperature", (n) => n >= 0 && Number.isFinite(n), "a number >= 0"), 0)
    .option("--top-k <k>", "sample among the k most likely tokens (0: all)", integerFlag("--top-k", 0), 0)
    .option("--top-p <p>", "sample within this probability mass", numberFlag("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"), 1)
    .option("--seed <n>", "seed of the sampler (and of random weights)", integerFlag("--seed", 0), 0)
    .option("--dtype <dtype>", "bf16 or f32 (default: bf16 on a GPU, f32 on the CPU)", (v: string) => {
      if (v !== "bf16" && v !== "f32") throw new Error(`--dtype must be bf16 or f32, got "${v}"`);
      return v;
    })
    .option("--device <device>", "cuda (a compiled plan on GPU 0) or cpu (the reference interpreter); default: cuda when a GPU is present", (v: string) => {
      if (v !== "cuda" && v !== "cpu") throw new Error(`--device must be cuda or cpu, got "${v}"`);
      return v;
    })
    .option("--dequantize", "load MXFP4 expert weights as dense --dtype weights (dequantized one expert at a time) instead of keeping them packed")
    .option("--logits-out <file>", "write the logits of every generated position as JSON (for parity checks)")
    .option("--json", "print one JSON object instead of streaming tokens")
    .action(async (model: string, flags: GenerateFlags) => {
      const s = settingsFor(model, flags);
      const started = performance.now();
      const config = await configFor(s);
      const promptIds = promptFor(s, config);
      const graph = graphFor(s, config, promptIds.length);
      checkPrompt(graph, promptIds, s.maxNewTokens);
      if (s.device === "cpu") checkInterpreterMemory(graph, s.model);
      const tokenizer = config.vocabSize === O200K_HARMONY_VOCAB_SIZE ? HarmonyTokenizer.instance() : undefined;
      const runner = await runnerFor(graph, s, s.json === true);
      const loadedMs = performance.now() - started;
      if (!s.json) process.stderr.write(describeRun(s, config, promptIds, tokenizer !== undefined));
      const printer = tokenPrinter((text) => void process.stdout.write(text), tokenizer);
      try {
        const genStarted = performance.now();
        const result = generate(graph, runner.run, promptIds, {
          maxNewTokens: s.maxNewTokens,
          temperature: s.temperature,
          topK: s.topK,
          topP: s.topP,
          seed: s.seed,
          keepLogits: s.logitsOut !== undefined,
          stopTokens: tokenizer ? [...config.eosTokenIds, ...HARMONY_STOP_TOKENS] : config.eosTokenIds,
          ...(s.json ? {} : { onToken: printer.onToken }),
        });
        const genMs = performance.now() - genStarted;
        if (s.logitsOut) writeFileAtomically(s.logitsOut, JSON.stringify({ prompt: promptIds, tokens: result.tokens, logits: result.logits.map((l) => Array.from(l)) }));
        const text = tokenizer ? tokenizer.decode(result.tokens) : undefined;
        if (s.json) {
          process.stdout.write(`${JSON.stringify({ model: s.model, device: s.device, dtype: s.dtype, prompt: promptIds, tokens: result.tokens, ...(text !== undefined ? { text } : {}), loadMs: Math.round(loadedMs), ms: Math.round(genMs) })}\n`);
        } else {
          printer.finish();
          process.stderr.write(`${result.tokens.length} tokens in ${genMs.toFixed(0)} ms on ${s.device === "cuda" ? "the GPU" : "the CPU reference interpreter"} (loading ${loadedMs.toFixed(0)} ms)\n`);
        }
      } finally {
        runner.dispose();
      }
    });
}
