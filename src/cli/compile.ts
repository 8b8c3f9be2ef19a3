// `tsgc compile <model>`: runs the compiler on a built-in model or a model file and writes the plan.

import { join } from "node:path";
import type { Command } from "commander";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { parseGptOssConfig } from "../../models/gpt-oss/config.js";
import { type CompileStats, compile } from "../compile/compile.js";
import type { Plan } from "../lower/plan.js";
import type { Graph } from "../ir/graph.js";
import { formatBytes } from "../format.js";
import { FileAccessError, prepareOutputDirectory, readRegularFileSync, writeFileAtomically } from "../fs-safe.js";
import { deviceCount, deviceInfo } from "../../runtime/index.js";
import { findBuiltinModel } from "../../models/index.js";
import { compileProgressReporter } from "./compile-progress.js";
import { positiveInt } from "./engine-options.js";
import { loadModel } from "./load-model.js";

interface CompileFlags {
  config?: string;
  maxContext?: number;
  maxBatch?: number;
  maxStepTokens?: number;
  blockSize?: number;
  arch?: string;
  dtype: "bf16" | "f32";
  out?: string;
  dumpIr?: string;
  emitCuda?: string;
  json?: boolean;
  cache: boolean;
  tp?: number;
  ep?: number | true;
  rank?: number;
}

/** The local GPU's architecture (sm_90a on an H100 or H200), or sm_90 (H100, without its architecture-specific features) when there is none. */
function defaultArch(): string {
  try {
    if (deviceCount() > 0) return deviceInfo(0).arch;
  } catch {
    // no driver: compile for the reference card
  }
  return "sm_90";
}

/** The gpt-oss bounds given on the command line. */
function bounds(flags: CompileFlags) {
  return {
    ...(flags.maxContext !== undefined ? { maxContext: flags.maxContext } : {}),
    ...(flags.maxBatch !== undefined ? { maxSeqsPerStep: flags.maxBatch } : {}),
    ...(flags.maxStepTokens !== undefined ? { maxTokensPerStep: flags.maxStepTokens } : {}),
    ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
  };
}

async function graphFor(model: string, flags: CompileFlags): Promise<Graph> {
  const given = bounds(flags);
  if (!flags.config) {
    if (Object.keys(given).length > 0 && !findBuiltinModel(model, { orUndefined: true })) throw new Error(`--max-context, --max-batch, --max-step-tokens and --block-size apply to the built-in gpt-oss models; ${model} is a model file`);
    return loadModel(model, { dtype: flags.dtype, ...given });
  }
  if (!model.startsWith("gpt-oss")) throw new Error(`--config applies to gpt-oss models; ${model} is not one`);
  let text: string;
  try {
    text = readRegularFileSync(flags.config).toString("utf8");
  } catch (err) {
    throw new Error(`--config ${flags.config}: ${err instanceof FileAccessError ? err.reason : String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`--config ${flags.config}: malformed JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  return gptOssModel(parseGptOssConfig(json, flags.config), { dtype: flags.dtype, ...given }, model);
}

/** Creates the output directories before any work, so a bad --out fails in a second, not after the compile. */
function prepareOutputDirectories(flags: CompileFlags): void {
  if (flags.out) prepareOutputDirectory(flags.out, "--out");
  if (flags.dumpIr) prepareOutputDirectory(flags.dumpIr, "--dump-ir");
  if (flags.emitCuda) prepareOutputDirectory(flags.emitCuda, "--emit-cuda");
}

export function registerCompileCommand(program: Command): void {
  program
    .command("compile")
    .description("compile a model (built-in name or .ts/.js model file) into fused CUDA kernels and a plan")
    .argument("<model>", "built-in model name (see `tsgc models`) or a model file")
    .option("--config <config.json>", "a Hugging Face gpt-oss config.json to build the model from")
    .option("--arch <sm_XX>", "target GPU architecture, e.g. sm_80, sm_90a (default: the local GPU's, else sm_90)")
    .option("--max-context <n>", "gpt-oss: most tokens (prompt and output) one sequence holds", positiveInt("--max-context"))
    .option("--max-batch <n>", "gpt-oss: most sequences one step runs", positiveInt("--max-batch"))
    .option("--max-step-tokens <n>", "gpt-oss: most tokens one step runs (the bucketed dim: 1, 2, 4, … up to it)", positiveInt("--max-step-tokens"))
    .option("--block-size <n>", "gpt-oss: tokens per KV block", positiveInt("--block-size"))
    .option("--dtype <dtype>", "bf16 or f32", (v: string) => {
      if (v !== "bf16" && v !== "f32") throw new Error(`--dtype must be bf16 or f32, got "${v}"`);
      return v;
    }, "bf16" as const)
    .option("--out <dir>", "write plan.json into this directory")
    .option("--dump-ir <dir>", "write the IR after every pass into this directory")
    .option("--emit-cuda <dir>", "write every generated kernel's CUDA source into this directory (works without NVRTC)")
    .option("--no-cache", "neither read nor write the plan and kernel caches")
    .option("--json", "print one JSON object with the compile's statistics")
    .option("--tp <n>", "gpt-oss: compile the plans of the N ranks of the model sharded over N GPUs (into the caches, where GPU ranks find them)", positiveInt("--tp"))
    .option("--ep [groups]", "with --tp: expert parallelism (whole experts per rank; G: G expert groups)", positiveInt("--ep"))
    .option("--rank <r>", "with --tp: only rank r's plan", (v: string) => {
      const n = Number(v);
      if (!(Number.isInteger(n) && n >= 0 && /^\d+$/.test(v.trim()))) throw new Error(`--rank must be a whole number, got "${v}"`);
      return n;
    })
    .addHelpText("after", `
A model file is a program: compiling it runs its code with your permissions, as \`node FILE\` would.
Compile only model files you trust. Built-in models (\`tsgc models\`) run no outside code.`)
    .action(async (model: string, flags: CompileFlags) => {
      const arch = flags.arch ?? defaultArch();
      if (!/^sm_\d+a?$/.test(arch)) throw new Error(`--arch must look like sm_90 or sm_90a, got "${arch}"`);
      const tp = flags.tp ?? 1;
      if ((flags.ep !== undefined || flags.rank !== undefined) && tp === 1) throw new Error(`--ep and --rank need --tp N with N > 1`);
      const expertGroups = flags.ep === true ? tp : (flags.ep ?? 1);
      if (tp % expertGroups !== 0) throw new Error(`--ep ${expertGroups} must divide --tp ${tp}`);
      if (flags.rank !== undefined && flags.rank >= tp) throw new Error(`--rank ${flags.rank} is not one of the ${tp} ranks`);
      if (tp > 1 && flags.dumpIr) throw new Error(`--dump-ir applies to an unsharded compile (without --tp)`);
      prepareOutputDirectories(flags);
      const graph = await graphFor(model, flags);
      const ranks = tp === 1 ? [undefined] : flags.rank !== undefined ? [flags.rank] : Array.from({ length: tp }, (_, r) => r);
      const results: { plan: Plan; stats: CompileStats; rank: number | undefined }[] = [];
      for (const rank of ranks) {
        const { plan, stats } = await compile(graph, {
          arch,
          ...(flags.cache ? {} : { cacheDir: false as const }),
          ...(flags.dumpIr ? { dumpIrDir: flags.dumpIr } : {}),
          ...(flags.emitCuda ? { emitCudaDir: rank === undefined ? flags.emitCuda : join(flags.emitCuda, `rank${rank}`), nvrtc: "auto" as const } : {}),
          ...(rank !== undefined ? { shard: { strategy: { ranks: tp, expertGroups }, rank } } : {}),
          onEvent: compileProgressReporter(flags.json === true),
        });
        if (flags.out) writeFileAtomically(join(flags.out, rank === undefined ? "plan.json" : `plan.rank${rank}.json`), JSON.stringify(plan));
        results.push({ plan, stats, rank });
      }
      if (flags.json) {
        const one = (r: { plan: Plan; stats: CompileStats; rank: number | undefined }) => ({ ...r.stats, arch, ...(r.rank !== undefined ? { rank: r.rank, ranks: tp, collectives: collectivesOf(r.plan) } : {}) });
        process.stdout.write(`${JSON.stringify(tp === 1 ? one(results[0]!) : { ranks: results.map(one) })}\n`);
        return;
      }
      for (const { plan, stats, rank } of results) printSummary(plan, stats, arch, flags, rank === undefined ? undefined : { rank, ranks: tp });
    });
}

/** Collectives per call of each entry point, in its largest bucket (a rank's plan). */
function collectivesOf(plan: Plan): Record<string, number> {
  return Object.fromEntries(plan.entries.map((e) => [e.name, e.buckets[e.buckets.length - 1]!.collectives?.length ?? 0]));
}

/** The human summary of one plan. */
function printSummary(plan: Plan, stats: CompileStats, arch: string, flags: CompileFlags, rank: { rank: number; ranks: number } | undefined): void {
  const fused = Object.entries(stats.fusedOps).map(([op, n]) => `${op} ${n}`).join(", ");
  const ofRank = rank ? `, rank ${rank.rank} of ${rank.ranks} (collectives per call: ${Object.entries(collectivesOf(plan)).map(([e, n]) => `${e} ${n}`).join(", ")})` : "";
  process.stdout.write(
    [
      `${stats.model} for ${arch}${ofRank}: ${stats.opsBefore} ops → ${stats.opsAfter} (${fused})`,
      `kernels: ${stats.kernels} distinct, launches ${Object.entries(stats.launches).map(([e, n]) => `${e} ${n}`).join(", ")}; ${stats.kernelsCompiled ? `${stats.cacheHits} from cache, ${stats.cacheMisses} compiled` : "not compiled"}`,
      `arena: ${formatBytes(stats.arenaBytes)} = weights ${formatBytes(stats.weightBytes - stats.stateBytes)} + KV cache ${formatBytes(stats.stateBytes)} + activations ${formatBytes(stats.activationBytes)}`,
      ...plan.entries.flatMap((e) => {
        const top = e.buckets[e.buckets.length - 1]!;
        const rungs = e.bucketBy ? `; buckets of ${e.bucketBy.symbol}: ${e.buckets.map((b) => `≤${b.bounds[e.bucketBy!.symbol]} ${b.launches.length} launches`).join(", ")}` : "";
        return [`  ${e.name}: activations ${formatBytes(top.activationBytes)} (peak live ${formatBytes(top.peakLiveBytes)}, naive sum ${formatBytes(top.naiveBytes)})${rungs}`];
      }),
      `${stats.compileMs} ms${stats.planCacheHit ? " (plan from cache)" : ""}${flags.out ? `; plan written to ${join(flags.out, rank ? `plan.rank${rank.rank}.json` : "plan.json")}` : ""}`,
    ].join("\n") + "\n",
  );
}
