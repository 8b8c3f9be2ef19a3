// Opening an engine: the one place where a model becomes something that serves requests.
//
//   model (a built-in name, or a checkpoint's config.json) → the gpt-oss step graph for the bounds asked for
//   cuda: compile (plan and kernel caches) → load the plan with KV pools sized from the GPU's memory → weights
//         streamed from the checkpoint into the arena, or seeded random weights made on the device
//   cpu:  the pipeline (so attention reads the pools in place) → the reference interpreter with host weights
//   --tp N: the sharded pipeline (src/passes/shard.ts) → N rank graphs, each with its slices of the weights:
//         cpu: N simulated ranks on the interpreter (in this process, or as processes: rankProcesses);
//         cuda: one process per GPU (rank-group.ts), each compiling its rank's plan, collectives over NCCL
//   → ServingEngine over the backend, with the scheduler's pools matching the plan's
// The CLI verbs (generate, bench, serve, chat) and the HTTP server all open their engine here.

import { type GptOssBuildOptions, gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import { type GptOssConfig, loadGptOssConfig } from "../../models/gpt-oss/config.js";
import { DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import { type CompileEvent, type CompileStats, compile } from "../compile/compile.js";
import { O200K_HARMONY_VOCAB_SIZE } from "../generate/tokenizer.js";
import { freemem, totalmem } from "node:os";
import { formatBytes } from "../format.js";
import type { Graph } from "../ir/graph.js";
import { evalShape, numElements } from "../ir/shape.js";
import type { HostTensor } from "../ir/host-tensor.js";
import { loadParams } from "../loader/load-params.js";
import { randomParams } from "../loader/random-params.js";
import { openGptOssCheckpoint } from "../loader/validate.js";
import { runPipeline, runShardedPipeline } from "../passes/pipeline.js";
import { type RankSet, resolveStrategy } from "../passes/shard.js";
import { sliceParams } from "../loader/slice-params.js";
import { Device, deviceCount, PlanExecutor } from "../../runtime/index.js";
import { type LoadProgress, streamCheckpoint } from "../../runtime/load-checkpoint.js";
import type { EngineModelInfo } from "./api.js";
import { interpreterBackend, interpreterRanksBackend, PDL_MAX_STEP_TOKENS, planBackend, type StepBackend } from "./backend.js";
import { RankGroup, rankGroupBackend, type RankWorkerSpec } from "./rank-group.js";
import { choosePoolBlocks } from "./rank-pools.js";
import { type PagedDecoderLayout, poolSlotsSymbol } from "./contract.js";
import { deviceFill, fillPlanRandom } from "./device-random.js";
import { type EngineOptions, ServingEngine } from "./engine.js";

/**
 * Sequences a step runs unless maxSeqs says otherwise. On cuda, 512: one H200 serving 1000 × (1024 + 1024) tokens at
 * once gave gpt-oss-20b 12,348 output tok/s at 512 (bench/NOTES.md Run 13) against 10,551 at 256 (Run 12), and
 * gpt-oss-120b 5,605 at 512, at a longer time per output token under full load (20b p50 37.0 against 23.7 ms). On cpu
 * (the interpreter, tiny models), 16.
 */
export const DEFAULT_MAX_SEQS = { cuda: 512, cpu: 16 } as const;

export interface OpenEngineOptions extends EngineOptions {
  /** A built-in model (default gpt-oss-tiny); ignored with `checkpoint` or `config`. */
  readonly model?: string;
  /** A gpt-oss config with seeded random weights, instead of a built-in model (tests of odd shapes); ignored with `checkpoint`. */
  readonly config?: GptOssConfig;
  /**
   * Ranks (GPUs) the model is sharded over: attention heads, the embedding and lm_head split across them (tensor
   * parallelism), the experts as `ep` says. Default 1.
   */
  readonly tp?: number;
  /**
   * Expert groups of the MoE: 1 (the default) splits every expert's intermediate dim over the ranks (tensor
   * parallelism inside the experts), `tp` gives each rank whole experts (expert parallelism); a divisor in between
   * groups the experts and splits each group's over its ranks.
   */
  readonly ep?: number;
  /** With --device cpu and tp > 1: run the simulated ranks as processes, as GPU ranks run (the process group's protocol). */
  readonly rankProcesses?: boolean;
  /** A gpt-oss checkpoint directory (config.json and safetensors). */
  readonly checkpoint?: string;
  /** cuda: a compiled plan on GPU 0; cpu: the reference interpreter. Default: cuda when a GPU is present. */
  readonly device?: "cuda" | "cpu";
  /** Compute dtype of the unquantized weights and activations. Default: bf16 on cuda, f32 on cpu. */
  readonly dtype?: "bf16" | "f32";
  /** Load MXFP4 experts as dense `dtype` weights instead of packed. */
  readonly dequantize?: boolean;
  /** Most tokens (prompt and output) one sequence holds. Default 4096. */
  readonly maxContext?: number;
  /** Most sequences one step runs (the plan's bound). Default DEFAULT_MAX_SEQS: 512 on cuda, 16 on cpu. */
  readonly maxSeqs?: number;
  /** Most tokens one step runs (the plan's bound). Default 2048 on cuda, 256 on cpu. */
  readonly maxStepTokens?: number;
  /** Tokens per KV block. Default 16. */
  readonly blockSize?: number;
  /** Share of the GPU's memory the engine may use in all (weights, activations, KV pools). Default 0.9. */
  readonly gpuMemoryUtilization?: number;
  /** Blocks of the full-attention pool, instead of sizing it from memory (cpu default: enough for maxSeqs full sequences). */
  readonly kvBlocks?: number;
  /** Seed of random weights (without a checkpoint). */
  readonly seed?: number;
  /** Kernel and plan cache directory (false: none). */
  readonly cacheDir?: string | false;
  /** Progress of long work: compiling, loading weights. */
  readonly onProgress?: (p: OpenProgress) => void;
  /** Called once the model, the options and the checkpoint's files are checked, before any compile or load (the CLI says what runs there). */
  readonly onChecked?: () => void;
}

export type OpenProgress =
  | { readonly kind: "compile"; readonly event: CompileEvent }
  | { readonly kind: "load"; readonly progress: LoadProgress }
  | { readonly kind: "stage"; readonly message: string };

export interface OpenedEngine {
  readonly engine: ServingEngine;
  readonly graph: Graph;
  readonly layout: PagedDecoderLayout;
  readonly config: GptOssConfig;
  /** Blocks per KV group. */
  readonly poolBlocks: Readonly<Record<string, number>>;
  /** On cuda: the plan's executor (benchmarks profile it) and the compile statistics. */
  readonly executor?: PlanExecutor;
  /** With tp > 1: the ranks' graphs (on cpu), and the ranks' processes (on cuda, or cpu with rankProcesses). */
  readonly rankSet?: RankSet;
  readonly rankGroup?: RankGroup;
  readonly compileStats?: CompileStats;
  readonly timings: { readonly compileMs: number; readonly loadMs: number; readonly weightsMs: number };
}

/** Whether this machine has a usable GPU (the driver loads and reports a device). */
export function gpuPresent(): boolean {
  try {
    return deviceCount() > 0;
  } catch {
    return false;
  }
}

/** Bytes of host memory the interpreter holds a graph's weights and pools in: it keeps every value as an f64. */
export function interpreterHostBytes(graph: Graph, loadSymbols: Readonly<Record<string, number>> = {}): number {
  let elements = 0;
  for (const t of [...graph.params, ...graph.states]) elements += numElements(evalShape(t.shape, { ...graph.symbols, ...loadSymbols }));
  return elements * Float64Array.BYTES_PER_ELEMENT;
}

/** Refuses, before building any weight, a model whose interpreter weights and pools would not fit host memory. */
export function checkInterpreterMemory(bytes: number, name: string, available: number = freemem(), total: number = totalmem()): void {
  if (bytes > available) {
    throw new Error(
      `${name} on the CPU reference interpreter (--device cpu) needs ${formatBytes(bytes)} of host memory for its weights (8 bytes a value), ` +
        `more than the ${formatBytes(available)} free of ${formatBytes(total)}; run it on a GPU with --device cuda`,
    );
  }
}

/** Blocks of each windowed group: every sequence's window (plus one partly filled block) and one step's new tokens. */
function windowedBlocks(layout: PagedDecoderLayout, window: number, maxSeqs: number): number {
  const B = layout.blockSize;
  return maxSeqs * (Math.ceil(window / B) + 1) + Math.ceil(layout.maxTokensPerStep / B) + maxSeqs;
}

/** Pool sizes per group: windowed groups by their need, the full group from `fullBlocks`. */
function poolSizes(layout: PagedDecoderLayout, maxSeqs: number, fullBlocks: number): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const g of layout.groups) sizes[g.name] = g.window !== undefined ? windowedBlocks(layout, g.window, maxSeqs) : fullBlocks;
  return sizes;
}

const loadSymbolsOf = (layout: PagedDecoderLayout, blocks: Readonly<Record<string, number>>) =>
  Object.fromEntries(layout.groups.map((g) => [poolSlotsSymbol(g.name), blocks[g.name]! * layout.blockSize]));

/**
 * Reads a checkpoint's headers and checks every tensor against the config (names, dtypes, shapes), so a broken
 * checkpoint is refused before minutes of compiling, not when its bytes stream in.
 */
async function checkCheckpoint(dir: string, config: GptOssConfig): Promise<void> {
  const { checkpoint } = await openGptOssCheckpoint(dir, config);
  await checkpoint.close();
}

export async function openEngine(o: OpenEngineOptions = {}): Promise<OpenedEngine> {
  const say = o.onProgress ?? (() => {});
  const device = o.device ?? (gpuPresent() ? "cuda" : "cpu");
  const dtype = o.dtype ?? (device === "cuda" ? "bf16" : "f32");
  const name = o.checkpoint || o.config ? "gpt-oss" : (o.model ?? DEFAULT_MODEL);
  const config = o.checkpoint ? await loadGptOssConfig(o.checkpoint) : (o.config ?? findBuiltinModel(name).config);
  const tp = o.tp ?? 1;
  const ep = o.ep ?? 1;
  if (!(Number.isInteger(tp) && tp >= 1)) throw new Error(`--tp must be a positive integer, got ${tp}`);
  if (!(Number.isInteger(ep) && ep >= 1 && tp % ep === 0)) throw new Error(`--ep ${ep}: the expert groups must divide --tp ${tp}`);
  if (o.checkpoint) await checkCheckpoint(o.checkpoint, config);
  const maxContext = o.maxContext ?? Math.min(4096, config.maxPositionEmbeddings);
  if (maxContext > config.maxPositionEmbeddings) throw new Error(`--max-context ${maxContext} exceeds the model's max_position_embeddings (${config.maxPositionEmbeddings})`);
  const buildOptions = {
    dtype,
    ...(o.dequantize ? { experts: "dense" as const } : {}),
    maxContext,
    maxSeqsPerStep: o.maxSeqs ?? DEFAULT_MAX_SEQS[device],
    maxTokensPerStep: o.maxStepTokens ?? (device === "cuda" ? 2048 : 256),
    blockSize: o.blockSize ?? 16,
  };
  const graph = gptOssModel(config, buildOptions, name);
  const layout = gptOssLayout(config, buildOptions, name);
  const info: EngineModelInfo = {
    name: o.checkpoint ?? name,
    vocabSize: config.vocabSize,
    maxContext,
    ...(config.vocabSize === O200K_HARMONY_VOCAB_SIZE ? { tokenizer: "o200k_harmony" as const } : {}),
    eosTokenIds: config.eosTokenIds,
    device,
    ...(tp > 1 ? { ranks: tp } : {}),
  };
  const maxSeqs = layout.maxSeqsPerStep;
  const fullNeed = maxSeqs * layout.maxBlocksPerSeq;
  o.onChecked?.();

  if (device === "cpu" && tp > 1) {
    const poolBlocks = poolSizes(layout, maxSeqs, o.kvBlocks ?? Math.min(fullNeed, 65536));
    const loadSymbols = loadSymbolsOf(layout, poolBlocks);
    const t0 = performance.now();
    const { rankSet } = runShardedPipeline(graph, { ranks: tp, expertGroups: ep });
    const compileMs = performance.now() - t0;
    // the whole weights are made once on the host (random) or read slice by slice (a checkpoint), then each rank's slices
    const wholeParams = o.checkpoint ? 0 : interpreterHostBytes({ ...graph, states: [] });
    checkInterpreterMemory(rankSet.ranks.reduce((sum, g) => sum + interpreterHostBytes(g, loadSymbols), 0) + wholeParams, info.name);
    const t1 = performance.now();
    let backend: StepBackend;
    let rankGroup: RankGroup | undefined;
    if (o.rankProcesses) {
      const spec: RankWorkerSpec = { kind: "interpreter", build: { config, options: buildOptions, name }, strategy: rankSet.strategy, loadSymbols, ...(o.checkpoint ? { checkpoint: o.checkpoint } : { seed: o.seed ?? 0 }) };
      rankGroup = await RankGroup.start({ ranks: tp, spec, onProgress: (message) => say({ kind: "stage", message }) });
      backend = rankGroupBackend(rankGroup, "cpu");
    } else {
      const whole = o.checkpoint ? undefined : randomParams(graph, o.seed ?? 0);
      const params = await Promise.all(rankSet.ranks.map((g) => (whole ? sliceParams(g, whole) : loadParams(o.checkpoint!, g))));
      backend = interpreterRanksBackend(rankSet, params, loadSymbols);
    }
    const weightsMs = performance.now() - t1;
    return { engine: new ServingEngine(backend, layout, info, poolBlocks, o), graph, layout, config, poolBlocks, rankSet, ...(rankGroup ? { rankGroup } : {}), timings: { compileMs, loadMs: 0, weightsMs } };
  }

  if (device === "cpu") {
    const poolBlocks = poolSizes(layout, maxSeqs, o.kvBlocks ?? Math.min(fullNeed, 65536));
    checkInterpreterMemory(interpreterHostBytes(graph, loadSymbolsOf(layout, poolBlocks)), info.name);
    const t0 = performance.now();
    const fused = runPipeline(graph).graph;
    const compileMs = performance.now() - t0;
    const t1 = performance.now();
    const params: Record<string, HostTensor> = o.checkpoint ? await loadParams(o.checkpoint, graph) : randomParams(graph, o.seed ?? 0);
    const weightsMs = performance.now() - t1;
    const backend = interpreterBackend(fused, params, loadSymbolsOf(layout, poolBlocks));
    return { engine: new ServingEngine(backend, layout, info, poolBlocks, o), graph, layout, config, poolBlocks, timings: { compileMs, loadMs: 0, weightsMs } };
  }

  if (tp > 1) return openRankGroupEngine(o, { config, buildOptions, name, layout, graph, info, tp, ep, say });

  const gpu = Device.open(0);
  const t0 = performance.now();
  const { plan, stats } = await compile(graph, { arch: gpu.info.arch, ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}), onEvent: (event) => say({ kind: "compile", event }) });
  const compileMs = performance.now() - t0;
  // KV pools: what the memory budget leaves after the planned arena (weights + activations), windowed groups first
  const { freeBytes, totalBytes } = gpu.memoryInfo();
  const utilization = o.gpuMemoryUtilization ?? 0.9;
  if (!(utilization > 0 && utilization <= 1)) throw new Error(`--gpu-memory-utilization must be in (0, 1], got ${utilization}`);
  const windowedOnly = poolSizes(layout, maxSeqs, 0);
  const windowedBytes = layout.groups.reduce((sum, g) => sum + (windowedOnly[g.name] ?? 0) * g.bytesPerBlock, 0);
  const full = layout.groups.find((g) => g.window === undefined);
  const budget = utilization * totalBytes - (totalBytes - freeBytes) - plan.arena.bytes - windowedBytes;
  let fullBlocks = o.kvBlocks ?? (full ? Math.floor(budget / full.bytesPerBlock) : 0);
  if (full && o.kvBlocks === undefined) fullBlocks = Math.min(fullBlocks, Math.floor(plan.symbols[poolSlotsSymbol(full.name)]! / layout.blockSize));
  if (full && fullBlocks < layout.maxBlocksPerSeq) {
    throw new Error(
      `the KV cache does not fit: ${(budget / 1e9).toFixed(2)} GB left for full-attention blocks after ${(plan.arena.bytes / 1e9).toFixed(2)} GB of weights and activations ` +
        `(${(totalBytes / 1e9).toFixed(1)} GB card, --gpu-memory-utilization ${utilization}); one ${maxContext}-token sequence needs ${layout.maxBlocksPerSeq} blocks of ${(full.bytesPerBlock / 1e6).toFixed(2)} MB. ` +
        `Lower --max-context or --max-seqs, or raise --gpu-memory-utilization`,
    );
  }
  const poolBlocks = poolSizes(layout, maxSeqs, fullBlocks);
  say({ kind: "stage", message: `KV pools: ${layout.groups.map((g) => `${g.name} ${poolBlocks[g.name]} blocks (${((poolBlocks[g.name]! * g.bytesPerBlock) / 1e9).toFixed(2)} GB)`).join(", ")}` });
  const t1 = performance.now();
  const loadSymbols = loadSymbolsOf(layout, poolBlocks);
  const exec = await PlanExecutor.load(plan, gpu, { loadSymbols, programmaticUpTo: { tokens: PDL_MAX_STEP_TOKENS }, ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}) });
  const loadMs = performance.now() - t1;
  let backend: StepBackend;
  const t2 = performance.now();
  try {
    if (o.checkpoint) await streamCheckpoint(exec, o.checkpoint, { onProgress: (progress) => say({ kind: "load", progress }) });
    else if (dtype === "bf16") {
      say({ kind: "stage", message: `making ${(plan.arena.weightBytes / 1e9).toFixed(1)} GB of seeded random weights on the device` });
      fillPlanRandom(await deviceFill(gpu), exec, { params: true, states: false });
      gpu.synchronize();
    } else {
      exec.setParams(randomParams(graph, o.seed ?? 0));
    }
    backend = planBackend(exec);
  } catch (err) {
    exec.dispose();
    throw err;
  }
  const weightsMs = performance.now() - t2;
  return { engine: new ServingEngine(backend, layout, info, poolBlocks, o), graph, layout, config, poolBlocks, executor: exec, compileStats: stats, timings: { compileMs, loadMs, weightsMs } };
}

interface RankGroupContext {
  readonly config: GptOssConfig;
  readonly buildOptions: GptOssBuildOptions;
  readonly name: string;
  readonly layout: PagedDecoderLayout;
  readonly graph: Graph;
  readonly info: EngineModelInfo;
  readonly tp: number;
  readonly ep: number;
  readonly say: (p: OpenProgress) => void;
}

/**
 * A sharded model on `tp` GPUs: one process per GPU (rank-group.ts), each compiling its rank's plan, joining the NCCL
 * communicator and loading its slices; the KV pools sized by the rank with the least memory left.
 */
async function openRankGroupEngine(o: OpenEngineOptions, c: RankGroupContext): Promise<OpenedEngine> {
  const { layout, tp } = c;
  const gpus = gpuPresent() ? deviceCount() : 0;
  if (gpus < tp) throw new Error(`--tp ${tp} needs ${tp} GPUs (one process per GPU), this machine has ${gpus}; --device cpu runs ${tp} simulated ranks on the interpreter`);
  const utilization = o.gpuMemoryUtilization ?? 0.9;
  if (!(utilization > 0 && utilization <= 1)) throw new Error(`--gpu-memory-utilization must be in (0, 1], got ${utilization}`);
  const maxSeqs = layout.maxSeqsPerStep;
  const windowedOnly = poolSizes(layout, maxSeqs, 0);
  const windowedBlocks = Object.fromEntries(layout.groups.filter((g) => g.window !== undefined).map((g) => [poolSlotsSymbol(g.name), windowedOnly[g.name]!]));
  const strategy = resolveStrategy({ ranks: tp, expertGroups: c.ep });
  const spec: RankWorkerSpec = {
    kind: "plan",
    build: { config: c.config, options: c.buildOptions, name: c.name },
    strategy,
    ...(o.checkpoint ? { checkpoint: o.checkpoint } : { seed: o.seed ?? 0 }),
    ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    gpuMemoryUtilization: utilization,
    windowedBlocks,
  };
  let poolBlocks: Record<string, number> = {};
  const t0 = performance.now();
  const group = await RankGroup.start({
    ranks: tp,
    spec,
    onProgress: (message) => c.say({ kind: "stage", message }),
    chooseLoadSymbols: (infos) => {
      const full = layout.groups.find((g) => g.window === undefined);
      const maxFullBlocks = full ? Math.floor(c.graph.symbols[poolSlotsSymbol(full.name)]! / layout.blockSize) : 0;
      poolBlocks = choosePoolBlocks(layout, infos, { kvBlocks: o.kvBlocks, maxFullBlocks, windowed: windowedOnly, maxSeqs, utilization });
      c.say({ kind: "stage", message: `KV pools (every rank): ${layout.groups.map((g) => `${g.name} ${poolBlocks[g.name]} blocks`).join(", ")}` });
      return loadSymbolsOf(layout, poolBlocks);
    },
  });
  const compileMs = Math.max(...group.infos.map((i) => i.compileMs ?? 0));
  const loadMs = performance.now() - t0 - compileMs;
  const engine = new ServingEngine(rankGroupBackend(group, "cuda"), layout, c.info, poolBlocks, o);
  return { engine, graph: c.graph, layout, config: c.config, poolBlocks, rankGroup: group, timings: { compileMs, loadMs, weightsMs: 0 } };
}
