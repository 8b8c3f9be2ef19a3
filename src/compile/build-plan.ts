// buildPlan: a fused graph → the Plan the runtime runs (src/lower/plan.ts has the format).
//
//   for every entry point and shape bucket (src/ir/graph.ts `bucketLadder`): lower each node for the bucket's
//   bounds (codegen picks GEMV or GEMM tiles, the MoE path and attention splits from them) and schedule it
//   → one memory plan over all (entry, bucket) schedules: the weights region shared, one activation region as
//   large as the largest bucket's → the kernel table (identical sources once) and every launch's arguments
//   resolved to arena offsets and symbolic sizes.
// State sized by a load-time symbol (a KV pool) takes no room in the planned arena: the executor places it
// after the planned region when the plan is loaded, and arguments pointing into it name the state.

import { lowerInPlaceUpdate, lowerNode, lowerSiblings } from "../codegen/emit.js";
import { dtypeBytes } from "../ir/dtype.js";
import { bucketLadder, type EntryPoint, type Graph } from "../ir/graph.js";
import { evalShape, numElements } from "../ir/shape.js";
import { evalSize, type KernelSource, lowerTarget, type SizeExpr, sizeExpr, sourceHash } from "../lower/kernel.js";
import { type EntriesMemoryPlan, planEntries } from "../lower/memory-plan.js";
import { type Plan, type PlanArg, PLAN_FORMAT, PLAN_VERSION } from "../lower/plan.js";
import { type ScheduledEntry, scheduleEntryAt } from "../lower/schedule.js";
import { opCounts } from "../passes/pipeline.js";
import type { RankSet } from "../passes/shard.js";
import { CODEGEN_VERSION } from "../../runtime/index.js";
import { graphHash } from "./graph-hash.js";

const sizeJson = (e: SizeExpr) => ({ dims: [...e.dims], scale: e.scale, divisor: e.divisor });

/** The bounds of each of an entry's buckets, smallest first: one at the symbols' bounds when it declares none. */
export function bucketBounds(g: Graph, e: EntryPoint): Readonly<Record<string, number>>[] {
  if (!e.buckets) return [g.symbols];
  const { symbol, cobounded } = e.buckets;
  return bucketLadder(g.symbols[symbol]!).map((rung) => {
    const bounds: Record<string, number> = { ...g.symbols, [symbol]: rung };
    for (const c of cobounded) bounds[c] = Math.min(g.symbols[c]!, rung);
    return bounds;
  });
}

interface Unit {
  readonly entry: number;
  readonly bounds: Readonly<Record<string, number>>;
  readonly schedule: ScheduledEntry;
}

/** Builds the plan from a fused graph: schedules per bucket, memory plan, kernel table, resolved arguments. */
export function buildPlan(fused: Graph, input: Graph, arch: string, splitOutputs?: RankSet["splitOutputs"]): { plan: Plan; memory: EntriesMemoryPlan } {
  const target = lowerTarget(arch);
  const units: Unit[] = fused.entries.flatMap((e, entry) =>
    bucketBounds(fused, e).map((bounds) => ({
      entry,
      bounds,
      schedule: scheduleEntryAt(fused, e, bounds, {
        node: (n) => lowerNode(n, bounds, target),
        siblings: (nodes) => lowerSiblings(nodes, bounds, target),
        inPlaceUpdate: (n) => lowerInPlaceUpdate(n, bounds),
      }),
    })),
  );
  const memory = planEntries(units.map((u, i) => ({ ...u.schedule.planInput, name: `${u.schedule.name}#${i}` })));
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
  // persistent buffers: params first, then states (src/lower/schedule.ts `persistentIds`)
  const atLoadState = new Map<number, number>();
  fused.states.forEach((st, i) => {
    if (st.shape.some((d) => typeof d === "string")) atLoadState.set(fused.params.length + i, i);
  });
  const placements = memory.entries.map((e) => new Map(e.buffers.map((b) => [b.id, b])));
  const pointer = (unit: number, id: number): PlanArg => {
    const placement = placements[unit]!.get(id);
    if (placement === undefined) throw new Error(`compile: buffer ${id} has no placement`);
    const state = atLoadState.get(placement.storageOf ?? id);
    return state !== undefined ? { kind: "buffer", offset: 0, state } : { kind: "buffer", offset: placement.offset };
  };
  const offsetOf = (unit: number, id: number): number => {
    const p = pointer(unit, id);
    if (p.kind !== "buffer" || p.state !== undefined) throw new Error(`compile: an entry input or output, or a collective's buffer, is state sized at load`);
    return p.offset;
  };
  const slot = (unit: number, name: string, id: number) => {
    const info = units[unit]!.schedule.buffers.find((b) => b.id === id)!;
    const node = info.node!;
    return { name, dtype: node.dtype, shape: [...node.shape], offset: offsetOf(unit, id), bytes: info.bytes };
  };
  const bucketOf = (u: Unit, ui: number): Plan["entries"][number]["buckets"][number] => ({
    bounds: { ...u.bounds },
    inputs: [...u.schedule.inputs].map(([name, id]) => slot(ui, name, id)),
    outputs: [...u.schedule.outputs].map(([name, id]) => slot(ui, name, id)),
    launches: u.schedule.launches.map((l) => ({
      kernel: kernelOf(l.launch.kernel),
      op: l.node.op,
      grid: [sizeJson(l.launch.grid[0]), sizeJson(l.launch.grid[1]), sizeJson(l.launch.grid[2])],
      block: [l.launch.block[0], l.launch.block[1], l.launch.block[2]],
      sharedBytes: l.launch.sharedBytes,
      args: l.launch.args.map((a): PlanArg => {
        switch (a.kind) {
          case "input": return pointer(ui, l.operands[a.index]!);
          case "output": return pointer(ui, l.result);
          case "scratch": return pointer(ui, l.scratch[a.index]!);
          case "sibling": return pointer(ui, l.siblings.get(a.result)!);
          case "i32": return { kind: "i32", value: sizeJson(a.value) };
          case "f32": return { kind: "f32", value: a.value };
        }
      }),
    })),
    ...(u.schedule.collectives.length
      ? {
        collectives: u.schedule.collectives.map((c) => {
          const counted = c.node.op === "reduceScatter" ? c.node : c.node.inputs[0]!;
          return {
            at: c.at,
            op: c.node.op,
            seq: c.node.attrs.seq,
            ranks: c.node.attrs.ranks,
            dtype: c.node.dtype,
            count: sizeJson(sizeExpr([...counted.shape])),
            send: { offset: offsetOf(ui, c.operand) },
            recv: { offset: offsetOf(ui, c.result) },
          };
        }),
      }
      : {}),
    activationBytes: memory.entries[ui]!.activationBytes,
    peakLiveBytes: memory.entries[ui]!.peakLiveBytes,
    naiveBytes: memory.entries[ui]!.naiveBytes,
  });
  const entries: Plan["entries"] = fused.entries.map((e, ei) => ({
    name: e.name,
    ...(e.buckets ? { bucketBy: { symbol: e.buckets.symbol, cobounded: [...e.buckets.cobounded] } } : {}),
    ...(splitOutputs?.[e.name] && Object.keys(splitOutputs[e.name]!).length
      ? { splitOutputs: Object.fromEntries(Object.entries(splitOutputs[e.name]!).map(([name, o]) => [name, { axis: o.axis, size: o.size, parts: o.parts.map((p) => p.map(([a, b]): [number, number] => [a, b])) }])) }
      : {}),
    buckets: units.flatMap((u, ui) => (u.entry === ei ? [bucketOf(u, ui)] : [])),
  }));
  const params: Plan["params"] = fused.params.map((p, id) => {
    const placement = memory.weights.find((w) => w.id === id);
    const bytes = numElements(evalShape(p.shape, fused.symbols)) * dtypeBytes(p.dtype);
    const slice = p.slice ? { slice: { full: [...p.slice.full], axes: p.slice.axes.map((a) => ({ axis: a.axis, ranges: a.ranges.map(([s0, e0]): [number, number] => [s0, e0]) })) } } : {};
    return { name: p.name, dtype: p.dtype, shape: [...p.shape], offset: placement?.offset ?? 0, bytes, ...(p.quant ? { quant: { ...p.quant } } : {}), ...slice };
  });
  const states: Plan["states"] = fused.states.map((st, i) => {
    const id = fused.params.length + i;
    if (atLoadState.has(id)) return { name: st.name, dtype: st.dtype, shape: [...st.shape], offset: 0, bytes: 0, atLoad: true };
    const placement = memory.weights.find((w) => w.id === id);
    if (!placement) throw new Error(`compile: state ${st.name} has no place in the arena`);
    const bytes = numElements(evalShape(st.shape, fused.symbols)) * dtypeBytes(st.dtype);
    return { name: st.name, dtype: st.dtype, shape: [...st.shape], offset: placement.offset, bytes, atLoad: false };
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
  // a launch grid must be computable at its bucket's bounds: catches a malformed size early
  for (const e of entries) for (const b of e.buckets) for (const l of b.launches) for (const g of l.grid) evalSize(g, b.bounds);
  return { plan, memory };
}
