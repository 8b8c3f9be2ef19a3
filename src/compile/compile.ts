// compile(graph, options) → Plan: passes, scheduling, memory planning, code generation and NVRTC.
//
//   graph ─passes─▶ fused graph ─schedule─▶ launches ─memory plan─▶ offsets ─▶ Plan
//                                    │
//                                    └─ codegen (one KernelSource per distinct kernel) ─▶ NVRTC / kernel cache
//
// Plans are cached on disk next to the kernels (compile/plan-cache.ts: checksummed, verified, recompiled
// when damaged), keyed by the input graph's structural hash, the target and a fingerprint of the
// compiler's own code, so compiling the same model twice runs no pass and no NVRTC compile, and a changed
// compiler never serves a stale plan.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { TEMPLATE_DIR } from "../codegen/templates.js";
import { ensureDirectory } from "../fs-safe.js";
import type { Plan } from "../lower/plan.js";
import type { Graph } from "../ir/graph.js";
import { graphNodes } from "../ir/graph.js";
import { FUSED_OPS } from "../ir/ops.js";
import { type PassReport, runPipeline, runShardedPipeline } from "../passes/pipeline.js";
import { resolveStrategy, type ShardStrategy } from "../passes/shard.js";
import { CODEGEN_VERSION, compileKernels, defaultCacheDir, type CompileProgress } from "../../runtime/index.js";
import { buildPlan } from "./build-plan.js";
import { graphHash } from "./graph-hash.js";
import { planCachePath, readCachedPlan, writeCachedPlan } from "./plan-cache.js";

export { buildPlan } from "./build-plan.js";
export { graphHash } from "./graph-hash.js";

export type CompileEvent =
  | { readonly kind: "pass"; readonly report: PassReport }
  | { readonly kind: "plan-cache"; readonly hit: boolean; readonly path: string }
  | { readonly kind: "kernel"; readonly progress: CompileProgress }
  | { readonly kind: "nvrtc-missing"; readonly reason: string };

export interface CompileOptions {
  /** Target GPU architecture, e.g. "sm_90". */
  readonly arch: string;
  /** Cache directory for kernels and plans; false disables both caches. Default: defaultCacheDir(). */
  readonly cacheDir?: string | false;
  /** Write the IR after every pass here. */
  readonly dumpIrDir?: string;
  /** Write every generated kernel's CUDA source here. */
  readonly emitCudaDir?: string;
  /**
   * Compile kernels with NVRTC ("require", the default), skip NVRTC ("skip": sources only), or
   * compile when NVRTC can be loaded ("auto").
   */
  readonly nvrtc?: "require" | "skip" | "auto";
  readonly onEvent?: (e: CompileEvent) => void;
  /** Compile rank `rank` of the model sharded by `strategy` (tensor and expert parallelism) instead of the whole model. */
  readonly shard?: { readonly strategy: ShardStrategy; readonly rank: number };
}

export interface CompileStats {
  readonly model: string;
  readonly entryPoints: readonly string[];
  readonly opsBefore: number;
  readonly opsAfter: number;
  readonly opsAfterByKind: Readonly<Record<string, number>>;
  readonly fusedOps: Readonly<Record<string, number>>;
  readonly kernels: number;
  /** Launches per call of each entry point, in its largest bucket. */
  readonly launches: Readonly<Record<string, number>>;
  /** Per entry point, each shape bucket: its bounds, launch count and the kernels it launches (distinct, in order). */
  readonly buckets: Readonly<Record<string, readonly BucketStats[]>>;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly planCacheHit: boolean;
  readonly kernelsCompiled: boolean;
  readonly arenaBytes: number;
  /** The weights region: parameters and model state. */
  readonly weightBytes: number;
  /** Model state (the KV cache) inside the weights region. */
  readonly stateBytes: number;
  readonly activationBytes: number;
  readonly compileMs: number;
}

export interface BucketStats {
  readonly bounds: Readonly<Record<string, number>>;
  readonly launches: number;
  readonly kernels: readonly string[];
}

export interface CompileResult {
  readonly plan: Plan;
  readonly stats: CompileStats;
}

const FUSED = new Set<string>(FUSED_OPS);

let fingerprint: string | undefined;

/**
 * A hash of the compiler itself: the modules of compile, the passes, lowering and the code generator and
 * the kernel templates, as loaded. A cached plan is keyed by it, so changing any pass or template never serves a
 * stale plan (kernels are safe anyway: their cache key covers their source).
 */
export function compilerFingerprint(): string {
  if (fingerprint) return fingerprint;
  const src = join(dirname(fileURLToPath(import.meta.url)), "..");
  const h = createHash("sha256").update(CODEGEN_VERSION);
  const files: string[] = [];
  for (const dir of [join(src, "compile"), join(src, "passes"), join(src, "lower"), join(src, "codegen"), TEMPLATE_DIR]) {
    if (!existsSync(dir)) continue;
    // templates include the shared device library from a subfolder (templates/lib/)
    for (const name of readdirSync(dir, { recursive: true })) files.push(join(dir, String(name)));
  }
  for (const file of files.filter((f) => existsSync(f) && statSync(f).isFile() && !f.endsWith(".map")).sort()) {
    h.update(`\0${relative(src, file)}\0`).update(readFileSync(file));
  }
  return (fingerprint = h.digest("hex").slice(0, 16));
}

/** Compiles a graph into a plan, using (and filling) the plan and kernel caches. */
export async function compile(graph: Graph, options: CompileOptions): Promise<CompileResult> {
  const started = performance.now();
  const emit = options.onEvent ?? (() => {});
  const cacheDir = options.cacheDir === false ? undefined : options.cacheDir ?? defaultCacheDir();
  const opsBefore = graphNodes(graph).length;
  const shard = options.shard ? { strategy: resolveStrategy(options.shard.strategy), rank: options.shard.rank } : undefined;
  if (shard && !(Number.isInteger(shard.rank) && shard.rank >= 0 && shard.rank < shard.strategy.ranks)) throw new Error(`rank ${shard.rank} is not one of the ${shard.strategy.ranks} ranks`);
  const shardKey = shard ? `\0rank ${shard.rank} of ${JSON.stringify(shard.strategy)}` : "";
  const key = createHash("sha256").update(`${graphHash(graph)}\0${options.arch}\0${compilerFingerprint()}${shardKey}`).digest("hex");
  const cachePath = cacheDir ? planCachePath(cacheDir, key) : undefined;
  let plan = cacheDir && !options.dumpIrDir ? readCachedPlan(cacheDir, key, graphHash(graph)) : undefined;
  const planCacheHit = plan !== undefined;
  if (cachePath) emit({ kind: "plan-cache", hit: planCacheHit, path: cachePath });
  if (!plan && shard) {
    const { rankSet } = runShardedPipeline(graph, shard.strategy, { onPass: (report) => emit({ kind: "pass", report }) });
    plan = buildPlan(rankSet.ranks[shard.rank]!, graph, options.arch, rankSet.splitOutputs).plan;
  } else if (!plan) {
    const { graph: fused } = runPipeline(graph, {
      ...(options.dumpIrDir ? { dumpDir: options.dumpIrDir } : {}),
      onPass: (report) => emit({ kind: "pass", report }),
    });
    plan = buildPlan(fused, graph, options.arch).plan;
  }
  if (options.emitCudaDir) {
    ensureDirectory(options.emitCudaDir);
    for (const k of plan.kernels) writeFileSync(join(options.emitCudaDir, `${k.name}.cu`), k.source);
  }
  let hits = 0;
  let misses = 0;
  let kernelsCompiled = false;
  const mode = options.nvrtc ?? "require";
  if (mode !== "skip") {
    try {
      const result = await compileKernels(
        plan.kernels.map((k) => ({ name: k.name, source: k.source, entry: k.entry })),
        { arch: options.arch, cache: cacheDir ?? false, onProgress: (progress) => emit({ kind: "kernel", progress }) },
      );
      plan = { ...plan, kernels: plan.kernels.map((k, i) => ({ ...k, cacheKey: result.kernels[i]!.key })) };
      hits = result.hits;
      misses = result.misses;
      kernelsCompiled = true;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const missingLibrary = /libnvrtc|NVRTC library|TSGC_NVRTC_LIBRARY/i.test(reason);
      if (mode === "auto" && missingLibrary) emit({ kind: "nvrtc-missing", reason });
      else throw err;
    }
  }
  if (cacheDir && !planCacheHit && kernelsCompiled) writeCachedPlan(cacheDir, key, plan);
  const counts = plan.opCounts;
  const launches: Record<string, number> = {};
  const buckets: Record<string, BucketStats[]> = {};
  for (const e of plan.entries) {
    launches[e.name] = e.buckets[e.buckets.length - 1]!.launches.length;
    buckets[e.name] = e.buckets.map((b) => ({ bounds: b.bounds, launches: b.launches.length, kernels: [...new Set(b.launches.map((l) => plan!.kernels[l.kernel]!.name))] }));
  }
  return {
    plan,
    stats: {
      model: plan.model,
      entryPoints: plan.entries.map((e) => e.name),
      opsBefore,
      opsAfter: Object.values(counts).reduce((a, b) => a + b, 0),
      opsAfterByKind: counts,
      fusedOps: Object.fromEntries(Object.entries(counts).filter(([op]) => FUSED.has(op))),
      kernels: plan.kernels.length,
      launches,
      buckets,
      cacheHits: hits,
      cacheMisses: misses,
      planCacheHit,
      kernelsCompiled,
      arenaBytes: plan.arena.bytes,
      weightBytes: plan.arena.weightBytes,
      stateBytes: plan.states.reduce((sum, st) => sum + st.bytes, 0),
      activationBytes: plan.arena.activationBytes,
      compileMs: Math.round(performance.now() - started),
    },
  };
}
