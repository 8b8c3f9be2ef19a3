// `tsgc generate` (alias `run`): generation from a gpt-oss checkpoint or a built-in model with seeded random weights,
// on the serving engine (a compiled plan on the GPU, or the CPU reference interpreter). Several prompts decode
// together, continuously batched. A prompt is token ids (--prompt-ids), or a user message (--prompt,
// --prompt-file) rendered in the harmony chat format, whose output is parsed as chat's is (harmony-answer.ts).
//   settings  the flags, strictly parsed; machine-dependent defaults (a GPU: cuda and bf16, else cpu and f32);
//             the paths given checked before any work
//   model     the config, the prompts' ids, a context bound within max_position_embeddings
//   engine    opened with progress on stderr (a cold GPU run compiles every kernel; the CPU interpreter refuses a
//             model whose weights do not fit host memory)
//   output    a banner saying what runs and what the numbers are, then as tokens come: token ids, their text
//             (decoded by the engine, never splitting a character), or a harmony prompt's answer; then timing

import type { Command } from "commander";
import { type GptOssConfig, loadGptOssConfig } from "../../models/gpt-oss/config.js";
import { DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import type { GenerationStream, TokenOutput } from "../engine/api.js";
import { defaultStopTokens } from "../engine/engine.js";
import { gpuPresent, type OpenProgress, openEngine } from "../engine/open.js";
import { formatBytes } from "../format.js";
import { checkInputDirectory, checkOutputFile, writeFileAtomically } from "../fs-safe.js";
import { chatMessages, encodeHarmony } from "../generate/harmony.js";
import { O200K_HARMONY_VOCAB_SIZE } from "../generate/tokenizer.js";
import { compileProgressReporter } from "./compile-progress.js";
import { type EngineFlags, engineFlags, engineOptions } from "./engine-options.js";
import { DECIMAL_INTEGER, integerFlag, numberFlag } from "./flags.js";
import { AnswerPrinter, harmonyFlags, type HarmonyFlags, harmonyFlagsGiven } from "./harmony-answer.js";
import { collectPrompt, type PromptSource, promptSources, readPrompts } from "./prompt-text.js";

interface GenerateFlags extends EngineFlags, HarmonyFlags {
  promptIds?: number[][];
  prompt?: PromptSource[];
  promptFile?: PromptSource[];
  maxNewTokens?: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  json?: boolean;
  logitsOut?: string;
}

// ---- settings ------------------------------------------------------------------------------------

/**
 * --max-new-tokens unless given: token ids get a few; a harmony answer reasons first, so it gets room for that (at
 * most what the context leaves).
 */
const DEFAULT_MAX_NEW_TOKENS = { ids: 16, harmony: 1024 } as const;

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

/** The device and dtype to use: as given, else cuda/bf16 where a GPU is present and cpu/f32 where not. */
export function resolveDevice(given: { readonly device?: "cuda" | "cpu" | undefined; readonly dtype?: "bf16" | "f32" | undefined }, gpus: number): { device: "cuda" | "cpu"; dtype: "bf16" | "f32" } {
  const device = given.device ?? (gpus > 0 ? "cuda" : "cpu");
  return { device, dtype: given.dtype ?? (device === "cuda" ? "bf16" : "f32") };
}

/**
 * The context bound for the longest prompt and a generation length: `--max-context` when given, else the positions
 * needed rounded up to a power of two (at least 64) — never past max_position_embeddings; a request that needs
 * more positions is an error naming the flag.
 */
export function contextBound(config: GptOssConfig, name: string, promptLength: number, maxNewTokens: number, given?: number): number {
  // the last new token is never fed back, so the cache holds prompt + maxNewTokens − 1 positions
  const needed = promptLength + maxNewTokens - 1;
  const limit = Math.min(given ?? Infinity, config.maxPositionEmbeddings);
  if (needed > limit) {
    const by = given !== undefined && given < config.maxPositionEmbeddings ? `--max-context ${given}` : `${name}'s max_position_embeddings (${config.maxPositionEmbeddings})`;
    throw new Error(`--max-new-tokens ${maxNewTokens}: the prompt (${promptLength} tokens) and ${maxNewTokens} new tokens need ${needed} positions, more than ${by}`);
  }
  // a sequence holds its prompt and every new token (the last one included) within the engine's context
  return given ?? Math.min(2 ** Math.ceil(Math.log2(Math.max(needed + 1, 64))), config.maxPositionEmbeddings);
}

// ---- output --------------------------------------------------------------------------------------

/** What is about to run and what the printed numbers are, in two lines (for stderr, before the tokens). */
export function describeRun(o: { model: string; checkpoint?: string | undefined; device: "cuda" | "cpu"; dtype: string; seed: number; temperature: number; topK: number; topP: number; maxNewTokens: number; text: boolean; prompts: readonly (readonly number[])[]; harmony: boolean; showReasoning?: boolean }, config: GptOssConfig): string {
  const weights = o.checkpoint ? `${o.checkpoint} (gpt-oss, ${config.numLayers} layers)` : `${o.model} with seeded random weights (seed ${o.seed}: untrained, its tokens are noise)`;
  const where = o.device === "cuda" ? `GPU 0 (a compiled plan, ${o.dtype})` : `the CPU reference interpreter (${o.dtype})`;
  const sampling = o.temperature === 0 ? "greedy decoding" : `sampling at temperature ${o.temperature}${o.topK > 0 ? `, top-k ${o.topK}` : ""}${o.topP < 1 ? `, top-p ${o.topP}` : ""}, seed ${o.seed}`;
  const ids = o.prompts[0]!;
  const shown = ids.length > 8 ? `${ids.slice(0, 8).join(",")},… (${ids.length} tokens)` : ids.join(",");
  const several = o.prompts.length > 1;
  const prompt = o.harmony ? (several ? `${o.prompts.length} harmony user messages, decoded together` : `a harmony user message of ${ids.length} tokens`) : several ? `${o.prompts.length} prompts, decoded together` : `token ids ${shown}`;
  const output = o.harmony
    ? `printing the answer (the final channel${o.showReasoning === true ? ", and the reasoning" : ""}) of up to ${o.maxNewTokens} new tokens`
    : o.text
      ? `printing up to ${o.maxNewTokens} new tokens as text`
      : `printing up to ${o.maxNewTokens} new token ids (0‥${config.vocabSize - 1}), one per line`;
  return `${weights} on ${where}, ${sampling}\nprompt: ${prompt}; ${output}:\n`;
}

/** Why a harmony prompt printed no answer (the answer and tool calls are empty), as a line for stderr. */
function noAnswerNote(a: { readonly reasoning: string }, finishReason: string, maxNewTokens: number, showReasoning: boolean): string {
  const why = finishReason === "length" ? `cut at --max-new-tokens ${maxNewTokens}${a.reasoning !== "" ? " while the model was reasoning" : ""}; raise --max-new-tokens` : `the output ended (${finishReason}) before a final channel`;
  return `(no final answer: ${why}${a.reasoning !== "" && !showReasoning ? "; --show-reasoning prints the reasoning" : ""})\n`;
}

/** Progress of opening an engine, on stderr: compile passes and kernels (a cold run), loading, stages. */
export function progressPrinter(quiet: boolean, write: (text: string) => void = (t) => void process.stderr.write(t), tty = process.stderr.isTTY === true): (p: OpenProgress) => void {
  const compileReport = compileProgressReporter(quiet, write, tty);
  let announced = false;
  return (p) => {
    if (quiet) return;
    if (p.kind === "stage") write(`${p.message}\n`);
    else if (p.kind === "load") {
      const { bytes, totalBytes, ms } = p.progress;
      const line = `loading ${formatBytes(bytes)} / ${formatBytes(totalBytes)}, ${(bytes / 1e6 / Math.max(ms, 1)).toFixed(2)} GB/s`;
      write(tty ? `\r\x1b[K${line}${bytes === totalBytes ? "\n" : ""}` : bytes === totalBytes ? `${line}\n` : "");
    } else if (p.event.kind === "pass") {
      // a cold compile: say what is happening once, not every pass
      if (!announced) write(`compiling the plan (the first run compiles every kernel; later runs load them from the cache)\n`);
      announced = true;
    } else compileReport(p.event);
  };
}

// ---- the command ---------------------------------------------------------------------------------

export function registerGenerateCommand(program: Command): void {
  const cmd = program
    .command("generate")
    .alias("run")
    .description("generate from a gpt-oss checkpoint (--checkpoint) or a built-in model with seeded random weights, on the serving engine")
    .argument("[model]", "built-in model name (ignored with --checkpoint)", DEFAULT_MODEL)
    .option("--prompt-ids <ids>", "comma-separated prompt token ids; repeat for several prompts, decoded together", (v: string, previous: number[][] = []) => [...previous, parsePromptIds(v)])
    .option("--prompt <text>", "a user message, rendered in the harmony chat format (o200k_harmony); prints the final answer; - reads the standard input; repeat for several", collectPrompt("--prompt"))
    .option("--prompt-file <file>", "a user message read from a file (-: the standard input), as --prompt; repeat for several", collectPrompt("--prompt-file"))
    .option("--max-new-tokens <n>", `tokens to generate per prompt (default ${DEFAULT_MAX_NEW_TOKENS.ids}; ${DEFAULT_MAX_NEW_TOKENS.harmony} for a harmony prompt, which reasons first)`, integerFlag("--max-new-tokens", 1))
    .option("--temperature <t>", "0 for greedy decoding", numberFlag("--temperature", (n) => n >= 0 && Number.isFinite(n), "a number >= 0"), 0)
    .option("--top-k <k>", "sample among the k most likely tokens (0: all)", integerFlag("--top-k", 0), 0)
    .option("--top-p <p>", "sample within this probability mass", numberFlag("--top-p", (n) => n > 0 && n <= 1, "in (0, 1]"), 1)
    .option("--seed <n>", "seed of the sampler (prompt i samples with seed + i) and of random weights", integerFlag("--seed", 0), 0)
    .option("--logits-out <file>", "write the logits behind every generated token of the first prompt as JSON (parity checks)")
    .option("--json", "print one JSON object instead of streaming tokens");
  engineFlags(harmonyFlags(cmd)).action(async (model: string, flags: GenerateFlags) => {
    const sources = promptSources(flags.prompt, flags.promptFile);
    const harmony = sources.length > 0;
    if (harmony && flags.promptIds !== undefined) throw new Error(`give ${sources[0]!.flag} or --prompt-ids, not both`);
    const stray = harmonyFlagsGiven(flags);
    if (!harmony && stray.length > 0) throw new Error(`${stray[0]} is for a harmony prompt: give the user message with --prompt or --prompt-file`);
    if (flags.checkpoint !== undefined) checkInputDirectory(flags.checkpoint, "--checkpoint");
    if (flags.logitsOut !== undefined) checkOutputFile(flags.logitsOut, "--logits-out");
    const quiet = flags.json === true;
    const showReasoning = flags.showReasoning === true;
    const { device, dtype } = resolveDevice(flags, gpuPresent() ? 1 : 0);
    const name = flags.checkpoint ?? model;
    const config = flags.checkpoint ? await loadGptOssConfig(flags.checkpoint) : findBuiltinModel(model).config;
    const text = config.vocabSize === O200K_HARMONY_VOCAB_SIZE;
    if (harmony && !text) throw new Error(`${sources[0]!.flag} needs a model with the o200k_harmony vocabulary (${O200K_HARMONY_VOCAB_SIZE} tokens); ${name} has ${config.vocabSize}: give token ids with --prompt-ids`);
    // after the vocabulary check: a message typed on the standard input is not read only to be refused
    const messages = harmony ? await readPrompts(sources, { stdin: process.stdin, note: (t) => void process.stderr.write(t) }) : [];
    const developer = { ...(flags.system !== undefined ? { instructions: flags.system } : {}), ...(flags.reasoningEffort !== undefined ? { reasoningEffort: flags.reasoningEffort } : {}) };
    // no current date in the system message: a message's tokens (and greedy answer) are the same every day
    const prompts = harmony ? messages.map((user) => encodeHarmony(chatMessages({ user, ...developer }), { nextRole: "assistant" })) : (flags.promptIds ?? [[1, 2, 3]]);
    prompts.forEach((p) => {
      const bad = p.findIndex((t) => t >= config.vocabSize);
      if (bad >= 0) throw new Error(`prompt id ${p[bad]} is outside the model's vocabulary of ${config.vocabSize} tokens (at position ${bad})`);
    });
    const longest = Math.max(...prompts.map((p) => p.length));
    // a harmony answer's default room shrinks to what the context leaves (as chat's does); a given one is checked
    const room = Math.min(flags.maxContext ?? Infinity, config.maxPositionEmbeddings) - longest + 1;
    const maxNewTokens = flags.maxNewTokens ?? (harmony ? Math.max(1, Math.min(DEFAULT_MAX_NEW_TOKENS.harmony, room)) : DEFAULT_MAX_NEW_TOKENS.ids);
    const maxContext = contextBound(config, name, longest, maxNewTokens, flags.maxContext);
    const banner = describeRun({ model, checkpoint: flags.checkpoint, device, dtype, seed: flags.seed, temperature: flags.temperature, topK: flags.topK, topP: flags.topP, maxNewTokens, text, prompts, harmony, showReasoning }, config);
    const started = performance.now();
    const { engine } = await openEngine({
      ...engineOptions(flags, model), device, dtype, maxContext, seed: flags.seed, onProgress: progressPrinter(quiet),
      // what runs is said once the engine has checked the model and the checkpoint's files, before compiling or loading
      onChecked: () => void (quiet || process.stderr.write(banner)),
    });
    try {
      const loadMs = performance.now() - started;
      const genStarted = performance.now();
      const streams: GenerationStream[] = prompts.map((promptIds, i) =>
        engine.generate({
          promptIds,
          maxTokens: maxNewTokens,
          temperature: flags.temperature,
          topK: flags.topK,
          topP: flags.topP,
          seed: flags.seed + i,
          stopTokenIds: defaultStopTokens(engine.model),
          ...(flags.logitsOut && i === 0 ? { logits: true } : {}),
        }),
      );
      const one = prompts.length === 1;
      // one prompt streams as it goes; several print when done, one entry each
      const streaming = one && !quiet;
      const shown = prompts.map(() => "");
      const answers = harmony
        ? prompts.map((_, i) => new AnswerPrinter(streaming ? (t) => void process.stdout.write(t) : (t) => void (shown[i] += t), { showReasoning, dim: !quiet && process.stdout.isTTY === true }))
        : undefined;
      const outputs: TokenOutput[][] = prompts.map(() => []);
      await Promise.all(
        streams.map(async (s, i) => {
          for await (const o of s) {
            outputs[i]!.push(o);
            if (answers !== undefined) answers[i]!.push(o.token);
            else if (streaming) process.stdout.write(text ? o.text : `${o.token}\n`);
          }
          answers?.[i]!.finish();
        }),
      );
      const summaries = await Promise.all(streams.map((s) => s.done));
      const failed = summaries.find((s) => s.finishReason === "error");
      if (failed) throw new Error(failed.error ?? "generation failed");
      const genMs = performance.now() - genStarted;
      if (flags.logitsOut) writeFileAtomically(flags.logitsOut, JSON.stringify({ prompt: prompts[0], tokens: outputs[0]!.map((o) => o.token), logits: outputs[0]!.map((o) => Array.from(o.logits ?? [])) }));
      const tokens = outputs.map((os) => os.map((o) => o.token));
      const texts = outputs.map((os) => os.map((o) => o.text).join(""));
      if (flags.json) {
        // a harmony prompt: its answer, reasoning and tool calls (if any) instead of the raw text
        const answer = (a: AnswerPrinter) => ({ text: a.text, reasoning: a.reasoning, ...(a.toolCalls.length > 0 ? { toolCalls: a.toolCalls } : {}) });
        const several = answers !== undefined
          ? { texts: answers.map((a) => a.text), reasonings: answers.map((a) => a.reasoning), ...(answers.some((a) => a.toolCalls.length > 0) ? { toolCalls: answers.map((a) => a.toolCalls) } : {}) }
          : text ? { texts } : {};
        process.stdout.write(`${JSON.stringify({
          model: name,
          device,
          dtype,
          ...(one ? { prompt: prompts[0], tokens: tokens[0], ...(answers !== undefined ? answer(answers[0]!) : text ? { text: texts[0] } : {}) } : { prompts, tokens, ...several }),
          finishReasons: summaries.map((s) => s.finishReason),
          loadMs: Math.round(loadMs),
          ms: Math.round(genMs),
        })}\n`);
      } else {
        if (!one) tokens.forEach((t, i) => process.stdout.write(`${i}: ${answers !== undefined ? shown[i] : text ? texts[i] : t.join(",")}\n`));
        else if (text) process.stdout.write("\n");
        answers?.forEach((a, i) => {
          if (a.text === "" && a.toolCalls.length === 0) process.stderr.write(`${one ? "" : `${i}: `}${noAnswerNote(a, summaries[i]!.finishReason, maxNewTokens, showReasoning)}`);
        });
        const n = tokens.reduce((a, t) => a + t.length, 0);
        process.stderr.write(`${n} tokens in ${genMs.toFixed(0)} ms (${((n / Math.max(genMs, 1e-3)) * 1000).toFixed(1)} tokens/s) on ${device === "cuda" ? "the GPU" : "the CPU reference interpreter"} (loading ${loadMs.toFixed(0)} ms)\n`);
      }
    } finally {
      await engine.close();
    }
  });
}
