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
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TEMPLATE_DIR } from "./codegen/templates.js";
import { planCachePath, readCachedPlan, writeCachedPlan } from "./compile/plan-cache.js";
import { ensureDirectory } from "./fs-safe.js";
import { lowerInPlaceUpdate, lowerNode, lowerSiblings } from "./codegen/emit.js";
import type { KernelSource, SizeExpr } from "./codegen/kernel.js";
import { evalSize, sourceHash } from "./codegen/kernel.js";
import { type Plan, type PlanArg, PLAN_FORMAT, PLAN_VERSION } from "./codegen/plan.js";
import type { Graph } from "./ir/graph.js";
import { graphNodes } from "./ir/graph.js";
import { dtypeBytes } from "./ir/dtype.js";
import { FUSED_OPS } from "./ir/ops.js";
import { evalShape, numElements } from "./ir/shape.js";
import { type EntriesMemoryPlan, planEntries } from "./passes/memory-plan.js";
import { type PassReport, opCounts, runPipeline } from "./passes/pipeline.js";
import { scheduleGraph } from "./passes/schedule.js";
import { CODEGEN_VERSION, compileKernels, defaultCacheDir, type CompileProgress } from "../runtime/index.js";

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
}

export interface CompileStats {
  readonly model: string;
  readonly entryPoints: readonly string[];
  readonly opsBefore: number;
  readonly opsAfter: number;
  readonly opsAfterByKind: Readonly<Record<string, number>>;
  readonly fusedOps: Readonly<Record<string, number>>;
  readonly kernels: number;
  readonly launches: Readonly<Record<string, number>>;
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

export interface CompileResult {
  readonly plan: Plan;
  readonly stats: CompileStats;
}

const FUSED = new Set<string>(FUSED_OPS);

/** Structural identity of a graph: its name, symbols, params, state and every entry output's and update's hash. */
export function graphHash(g: Graph): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ name: g.name, symbols: g.symbols, params: g.params, states: g.states }));
  for (const e of g.entries) {
    h.update(`\0${e.name}`);
    for (const o of e.outputs) h.update(`\0${o.name}=${o.node.hash}`);
    for (const u of e.updates) h.update(`\0update ${u.name}=${u.node.hash}`);
  }
  return h.digest("hex");
}

let fingerprint: string | undefined;

/**
 * A hash of the compiler itself: the modules of the passes and the code generator and the kernel
 * templates, as loaded. A cached plan is keyed by it, so changing any pass or template never serves a
 * stale plan (kernels are safe anyway: their cache key covers their source).
 */
export function compilerFingerprint(): string {
  if (fingerprint) return fingerprint;
  const here = dirname(fileURLToPath(import.meta.url));
  const h = createHash("sha256").update(CODEGEN_VERSION);
  const files: string[] = [join(here, "compile.js"), join(here, "compile.ts")];
  for (const dir of [join(here, "passes"), join(here, "codegen"), TEMPLATE_DIR]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) files.push(join(dir, name));
  }
  for (const file of files.filter((f) => existsSync(f) && statSync(f).isFile() && !f.endsWith(".map")).sort()) {
    h.update(`\0${basename(file)}\0`).update(readFileSync(file));
  }
  return (fingerprint = h.digest("hex").slice(0, 16));
}

const sizeJson = (e: SizeExpr) => ({ dims: [...e.dims], scale: e.scale, divisor: e.divisor });

/** Builds the plan from a fused graph: schedule, memory plan, kernel table, resolved arguments. */
export function buildPlan(fused: Graph, input: Graph, arch: string): { plan: Plan; memory: EntriesMemoryPlan } {
  const schedules = scheduleGraph(fused, {
    node: (n) => lowerNode(n, fused.symbols),
    siblings: (nodes) => lowerSiblings(nodes, fused.symbols),
    inPlaceUpdate: (n) => lowerInPlaceUpdate(n, fused.symbols),
  });
  const memory = planEntries(schedules.map((s) => s.planInput));
  const kernelIndex = new Map<string, number>();
  const kernels: Plan["kernels"] = [];
  const kernelOf = (k: KernelSource): number => {
    const hash = sourceHash(k);
    let i = kernelIndex.get(hash);
    if (i === undefined) {
      i = kernels.length;
      kernelIndex.set(hash, i);
      kernels.push({ name: k.name, family: k.family, entry: k.entry, source: k.source, sourceHash: hash });
    }
    return i;
  };
  const offsets = memory.entries.map((e) => new Map(e.buffers.map((b) => [b.id, b.offset])));
  const offsetIn = (entry: number, id: number): number => {
    const offset = offsets[entry]!.get(id);
    if (offset === undefined) throw new Error(`compile: buffer ${id} has no placement`);
    return offset;
  };
  const slot = (entry: number, name: string, id: number) => {
    const info = schedules[entry]!.buffers.find((b) => b.id === id)!;
    const node = info.node!;
    return { name, dtype: node.dtype, shape: [...node.shape], offset: offsetIn(entry, id), bytes: info.bytes };
  };
  const entries: Plan["entries"] = schedules.map((s, ei) => ({
    name: s.name,
    inputs: [...s.inputs].map(([name, id]) => slot(ei, name, id)),
    outputs: [...s.outputs].map(([name, id]) => slot(ei, name, id)),
    launches: s.launches.map((l) => ({
      kernel: kernelOf(l.launch.kernel),
      op: l.node.op,
      grid: [sizeJson(l.launch.grid[0]), sizeJson(l.launch.grid[1]), sizeJson(l.launch.grid[2])],
      block: [l.launch.block[0], l.launch.block[1], l.launch.block[2]],
      sharedBytes: l.launch.sharedBytes,
      args: l.launch.args.map((a): PlanArg => {
        switch (a.kind) {
          case "input": return { kind: "buffer", offset: offsetIn(ei, l.operands[a.index]!) };
          case "output": return { kind: "buffer", offset: offsetIn(ei, l.result) };
          case "scratch": return { kind: "buffer", offset: offsetIn(ei, l.scratch[a.index]!) };
          case "sibling": return { kind: "buffer", offset: offsetIn(ei, l.siblings.get(a.result)!) };
          case "i32": return { kind: "i32", value: sizeJson(a.value) };
          case "f32": return { kind: "f32", value: a.value };
        }
      }),
    })),
    activationBytes: memory.entries[ei]!.activationBytes,
    peakLiveBytes: memory.entries[ei]!.peakLiveBytes,
    naiveBytes: memory.entries[ei]!.naiveBytes,
  }));
  const params: Plan["params"] = fused.params.map((p, id) => {
    const placement = memory.weights.find((w) => w.id === id);
    const bytes = numElements(evalShape(p.shape, fused.symbols)) * dtypeBytes(p.dtype);
    return { name: p.name, dtype: p.dtype, shape: [...p.shape], offset: placement?.offset ?? 0, bytes, ...(p.quant ? { quant: { ...p.quant } } : {}) };
  });
  const states: Plan["states"] = fused.states.map((st, i) => {
    const placement = memory.weights.find((w) => w.id === fused.params.length + i);
    if (!placement) throw new Error(`compile: state ${st.name} has no place in the arena`);
    const bytes = numElements(evalShape(st.shape, fused.symbols)) * dtypeBytes(st.dtype);
    return { name: st.name, dtype: st.dtype, shape: [...st.shape], offset: placement.offset, bytes };
  });
  const plan: Plan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    model: input.name,
    graphHash: graphHash(input),
    arch,
    codegenVersion: CODEGEN_VERSION,
    symbols: { ...fused.symbols },
    opCounts: opCounts(fused),
    kernels,
    arena: { bytes: memory.arenaBytes, weightBytes: memory.weightBytes, activationOffset: memory.activationOffset, activationBytes: memory.activationBytes },
    params,
    states,
    entries,
  };
  // a launch grid must be computable at the symbols' bounds: catches a malformed size early
  for (const e of entries) for (const l of e.launches) for (const g of l.grid) evalSize(g, fused.symbols);
  return { plan, memory };
}

/** Compiles a graph into a plan, using (and filling) the plan and kernel caches. */
export async function compile(graph: Graph, options: CompileOptions): Promise<CompileResult> {
  const started = performance.now();
  const emit = options.onEvent ?? (() => {});
  const cacheDir = options.cacheDir === false ? undefined : options.cacheDir ?? defaultCacheDir();
  const opsBefore = graphNodes(graph).length;
  const key = createHash("sha256").update(`${graphHash(graph)}\0${options.arch}\0${compilerFingerprint()}`).digest("hex");
  const cachePath = cacheDir ? planCachePath(cacheDir, key) : undefined;
  let plan = cacheDir && !options.dumpIrDir ? readCachedPlan(cacheDir, key, graphHash(graph)) : undefined;
  const planCacheHit = plan !== undefined;
  if (cachePath) emit({ kind: "plan-cache", hit: planCacheHit, path: cachePath });
  if (!plan) {
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
  for (const e of plan.entries) launches[e.name] = e.launches.length;
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
