// A model graph: symbols with upper bounds, named parameters, and entry points that share them.

import type { DType } from "./dtype.js";
import type { Shape } from "./shape.js";
import { type Node, NodeTable, topoOrder } from "./node.js";

/** How a quantized parameter relates to the logical weight it encodes. */
export interface QuantDesc {
  readonly format: "mxfp4";
  /** `blocks` holds packed E2M1 pairs, `scales` the E8M0 block scales. */
  readonly role: "blocks" | "scales";
  /** Name of the logical (dequantized) weight, shared by its blocks and scales. */
  readonly weight: string;
}

/** A half-open index range [start, end). */
export type IndexRange = readonly [number, number];

/**
 * Which part of a whole (checkpoint) tensor a parameter of one rank holds (a sharded model, src/passes/shard.ts):
 * along each listed axis the indices in `ranges`, in order; every other axis whole. The loader reads only these.
 */
export interface ParamSlice {
  /** The whole tensor's shape, as the checkpoint (or the unsharded model) holds it. */
  readonly full: readonly number[];
  readonly axes: readonly { readonly axis: number; readonly ranges: readonly IndexRange[] }[];
}

export interface ParamDecl {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly quant?: QuantDesc;
  /** This rank's slice of the named tensor (a rank of a sharded model); absent: the whole tensor. */
  readonly slice?: ParamSlice;
}

/** Model state (the KV cache): persistent between entry calls, starts zeroed. */
export interface StateDecl {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface InputDecl {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface EntryOutput {
  readonly name: string;
  readonly node: Node;
}

/**
 * An entry point's shape buckets: its batch-like symbol gets a ladder of upper bounds (1, 2, 4, … up to its
 * bound); lowering picks kernels per rung, and a call runs the smallest rung that holds its size. Each
 * co-bounded symbol can never exceed the bucketed one (a step's sequences ≤ its tokens), so a rung bounds it too.
 */
export interface EntryBuckets {
  readonly symbol: string;
  readonly cobounded: readonly string[];
}

/** The rungs of a bucket ladder for a symbol bounded by `bound`: powers of two below it, then the bound itself. */
export function bucketLadder(bound: number): number[] {
  const rungs: number[] = [];
  for (let r = 1; r < bound; r *= 2) rungs.push(r);
  rungs.push(bound);
  return rungs;
}

export interface EntryPoint {
  readonly name: string;
  /** Shape buckets of this entry; absent: one plan at the symbols' bounds. */
  readonly buckets?: EntryBuckets;
  readonly inputs: readonly InputDecl[];
  readonly outputs: readonly EntryOutput[];
  /** New values of model state after the call, by state name (each read of a state sees the old value). */
  readonly updates: readonly EntryOutput[];
}

export interface Graph {
  readonly name: string;
  /** Symbol name → upper bound. */
  readonly symbols: Readonly<Record<string, number>>;
  readonly params: readonly ParamDecl[];
  readonly states: readonly StateDecl[];
  readonly entries: readonly EntryPoint[];
  /** The interning table the graph's nodes came from; passes build new nodes through it. */
  readonly table: NodeTable;
}

export function findEntry(g: Graph, name: string): EntryPoint {
  const e = g.entries.find((x) => x.name === name);
  if (!e) throw new Error(`model ${g.name} has no entry point "${name}" (it has: ${g.entries.map((x) => x.name).join(", ")})`);
  return e;
}

/**
 * Load-time symbols: those in state shapes. A state is allocated once, so their values are chosen when a plan
 * is loaded (e.g. a KV pool sized by the memory left after the weights) and hold for every call.
 */
export function loadTimeSymbols(g: Pick<Graph, "states">): string[] {
  const names = new Set<string>();
  for (const st of g.states) for (const d of st.shape) if (typeof d === "string") names.add(d);
  return [...names];
}

/** The nodes an entry point computes for its caller: its outputs, then its state updates. */
export function entryResults(e: EntryPoint): Node[] {
  return [...e.outputs.map((o) => o.node), ...e.updates.map((u) => u.node)];
}

/** Every node of the graph, over all entry points, inputs before users. */
export function graphNodes(g: Graph): Node[] {
  return topoOrder(g.entries.flatMap(entryResults));
}

/** Nodes of one entry point, inputs before users. */
export function entryNodes(e: EntryPoint): Node[] {
  return topoOrder(entryResults(e));
}

/** Returns a graph whose entry outputs and updates are replaced by `subst`; the same graph when nothing changed. */
export function withEntryResults(g: Graph, subst: (n: Node) => Node): Graph {
  const map = (list: readonly EntryOutput[]) => list.map((o) => ({ name: o.name, node: subst(o.node) }));
  const same = (a: readonly EntryOutput[], b: readonly EntryOutput[]) => a.every((o, i) => o.node === b[i]!.node);
  let changed = false;
  const entries = g.entries.map((e) => {
    const [outputs, updates] = [map(e.outputs), map(e.updates)];
    if (same(outputs, e.outputs) && same(updates, e.updates)) return e;
    changed = true;
    return { ...e, outputs, updates };
  });
  return changed ? { ...g, entries } : g;
}
