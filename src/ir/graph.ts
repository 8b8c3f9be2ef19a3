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

export interface ParamDecl {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly quant?: QuantDesc;
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

export interface EntryPoint {
  readonly name: string;
  readonly inputs: readonly InputDecl[];
  readonly outputs: readonly EntryOutput[];
}

export interface Graph {
  readonly name: string;
  /** Symbol name → upper bound. */
  readonly symbols: Readonly<Record<string, number>>;
  readonly params: readonly ParamDecl[];
  readonly entries: readonly EntryPoint[];
  /** The interning table the graph's nodes came from; passes build new nodes through it. */
  readonly table: NodeTable;
}

export function findEntry(g: Graph, name: string): EntryPoint {
  const e = g.entries.find((x) => x.name === name);
  if (!e) throw new Error(`model ${g.name} has no entry point "${name}" (it has: ${g.entries.map((x) => x.name).join(", ")})`);
  return e;
}

/** Every node of the graph, over all entry points, inputs before users. */
export function graphNodes(g: Graph): Node[] {
  return topoOrder(g.entries.flatMap((e) => e.outputs.map((o) => o.node)));
}

/** Nodes of one entry point, inputs before users. */
export function entryNodes(e: EntryPoint): Node[] {
  return topoOrder(e.outputs.map((o) => o.node));
}

/** Returns a graph whose entry outputs are replaced; the same graph when nothing changed. */
export function withEntryOutputs(g: Graph, outputs: (e: EntryPoint) => readonly EntryOutput[]): Graph {
  let changed = false;
  const entries = g.entries.map((e) => {
    const next = outputs(e);
    if (next.length === e.outputs.length && next.every((o, i) => o.node === e.outputs[i]!.node && o.name === e.outputs[i]!.name)) return e;
    changed = true;
    return { ...e, outputs: next };
  });
  return changed ? { ...g, entries } : g;
}
