// Opening an engine: the one place where a model becomes something that serves requests.
//
//   model (a built-in name, or a checkpoint's config.json) → the gpt-oss step graph for the bounds asked for
//   cuda: compile (plan and kernel caches) → load the plan with KV pools sized from the GPU's memory → weights
//         streamed from the checkpoint into the arena, or seeded random weights made on the device
//   cpu:  the pipeline (so attention reads the pools in place) → the reference interpreter with host weights
//   → ServingEngine over the backend, with the scheduler's pools matching the plan's
// The CLI verbs (generate, bench, serve, chat) and the HTTP server all open their engine here.

import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
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
import { runPipeline } from "../passes/pipeline.js";
import { Device, deviceCount, PlanExecutor } from "../../runtime/index.js";
import { type LoadProgress, streamCheckpoint } from "../../runtime/load-checkpoint.js";
import type { EngineModelInfo } from "./api.js";
import { interpreterBackend, planBackend, type StepBackend } from "./backend.js";
import { type PagedDecoderLayout, poolSlotsSymbol } from "./contract.js";
import { deviceFill, fillPlanRandom } from "./device-random.js";
import { type EngineOptions, ServingEngine } from "./engine.js";

export interface OpenEngineOptions extends EngineOptions {
  /** A built-in model (default gpt-oss-tiny); ignored with `checkpoint`. */
  readonly model?: string;
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
  /** Most sequences one step runs (the plan's bound). Default 256 on cuda, 16 on cpu. */
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
export async function checkCheckpoint(dir: string, config: GptOssConfig): Promise<void> {
  const { checkpoint } = await openGptOssCheckpoint(dir, config);
  await checkpoint.close();
}

export async function openEngine(o: OpenEngineOptions = {}): Promise<OpenedEngine> {
  const say = o.onProgress ?? (() => {});
  const device = o.device ?? (gpuPresent() ? "cuda" : "cpu");
  const dtype = o.dtype ?? (device === "cuda" ? "bf16" : "f32");
  const name = o.checkpoint ? "gpt-oss" : (o.model ?? DEFAULT_MODEL);
  const config = o.checkpoint ? await loadGptOssConfig(o.checkpoint) : findBuiltinModel(name).config;
  if (o.checkpoint) await checkCheckpoint(o.checkpoint, config);
  const maxContext = o.maxContext ?? Math.min(4096, config.maxPositionEmbeddings);
  if (maxContext > config.maxPositionEmbeddings) throw new Error(`--max-context ${maxContext} exceeds the model's max_position_embeddings (${config.maxPositionEmbeddings})`);
  const buildOptions = {
    dtype,
    ...(o.dequantize ? { experts: "dense" as const } : {}),
    maxContext,
    maxSeqsPerStep: o.maxSeqs ?? (device === "cuda" ? 256 : 16),
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
  };
  const maxSeqs = layout.maxSeqsPerStep;
  const fullNeed = maxSeqs * layout.maxBlocksPerSeq;

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
  const exec = await PlanExecutor.load(plan, gpu, { loadSymbols, ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}) });
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
