// The scheduler: turns each entry point of a fused graph into kernel launches in execution order,
// with the buffers they read and write, ready for the memory planner.
//
// Every node is lowered by code generation (injected, so this stays GPU- and codegen-free to test):
//   leaf    — params, state and entry inputs: the caller fills them
//   view    — reshape (or leading slice) of a contiguous tensor: the same storage under another shape
//   kernels — one or more launches writing the node's result (and scratch buffers)
// Launch order is a topological order of the nodes (operands first, outputs in declaration order).
// Parameters and state get the same buffer id in every entry point, so they share one weights region.
//
// Collectives (a rank of a sharded model) are no kernels: each is a step of its own that reads its operand's
// buffer and writes its result's (the executor runs it with NCCL between the kernels, in launch order), and each
// comes after the collective numbered before it, so every rank issues them in one order.
//
// State updates are written in place: an entry's update of state S must be scatter(S, rows, values),
// whose result is S's own storage and whose launches write only the scattered rows. Every other reader
// of S's old value (through views too) is ordered before that scatter, so reads see the value from
// before the call, as the IR says; a reader that depends on the update itself is a cycle and an error.

import { collectiveOrder, type CollectiveNode } from "../ir/collectives.js";
import { dtypeBytes } from "../ir/dtype.js";
import type { EntryPoint, Graph } from "../ir/graph.js";
import { entryNodes, entryResults, loadTimeSymbols } from "../ir/graph.js";
import { type Node, type NodeOf, topoOrder, usersOf } from "../ir/node.js";
import { evalShape, numElements } from "../ir/shape.js";
import type { KernelLaunch, NodeKernels } from "./kernel.js";
import { evalSize } from "./kernel.js";
import type { BufferKind, BufferRequest, EntrySchedule, Step } from "./memory-plan.js";

export type NodeLowering =
  | { readonly kind: "leaf" }
  | { readonly kind: "view" }
  | { readonly kind: "kernels"; readonly kernels: NodeKernels }
  /** A collective across the ranks of a rank set (run by the executor with NCCL, not as a kernel). */
  | { readonly kind: "collective" };

export type LowerNode = (node: Node) => NodeLowering;

/** Kernels that apply a scatter to its own first operand (the state it updates) instead of a copy. */
export type LowerInPlaceUpdate = (update: NodeOf<"scatter">) => NodeKernels;

/** How code generation lowers nodes (injected so the scheduler stays codegen-free to test). */
export interface Lowerers {
  readonly node: LowerNode;
  readonly siblings?: LowerSiblings;
  readonly inPlaceUpdate?: LowerInPlaceUpdate;
}

/**
 * Kernels that compute sibling nodes together (same op and operands, different `result`): returns the
 * node bound as the launches' `output` (the others are bound as `sibling` by their result), or
 * undefined when these siblings have no joint kernel.
 */
export type LowerSiblings = (siblings: readonly Node[]) => { readonly primary: Node; readonly kernels: NodeKernels } | undefined;

/** What a buffer holds, for the plan and for error messages. */
export interface BufferInfo {
  readonly id: number;
  readonly kind: BufferKind;
  readonly bytes: number;
  /** Param or input name, entry output name, or the producing op. */
  readonly label: string;
  readonly node: Node | undefined;
}

export interface ScheduledLaunch {
  readonly node: Node;
  readonly launch: KernelLaunch;
  /** Buffer ids of the node's operands, its result, its scratch buffers, and its siblings' results by `result`. */
  readonly operands: readonly number[];
  readonly result: number;
  readonly scratch: readonly number[];
  readonly siblings: ReadonlyMap<string, number>;
}

/** A collective between kernel launches: it runs before launch `at` (after the last when `at` = launches.length). */
export interface ScheduledCollective {
  readonly node: CollectiveNode;
  readonly at: number;
  /** Buffer ids of its operand and its result. */
  readonly operand: number;
  readonly result: number;
}

export interface ScheduledEntry {
  readonly name: string;
  readonly launches: readonly ScheduledLaunch[];
  /** Collectives in issue order (empty unless the graph is a rank of a sharded model). */
  readonly collectives: readonly ScheduledCollective[];
  readonly buffers: readonly BufferInfo[];
  readonly aliases: ReadonlyMap<number, number>;
  /** Entry inputs and outputs by name → buffer id. */
  readonly inputs: ReadonlyMap<string, number>;
  readonly outputs: ReadonlyMap<string, number>;
  /** The memory planner's view of this entry. */
  readonly planInput: EntrySchedule;
}

/** The buffers one launch reads and writes, for liveness. */
function stepOf(launch: KernelLaunch, operands: readonly number[], result: number, scratch: readonly number[], siblings: ReadonlyMap<string, number>): Step {
  const sibling = (r: string) => {
    const id = siblings.get(r);
    if (id === undefined) throw new Error(`schedule: a kernel writes sibling result "${r}", which is not computed with it`);
    return id;
  };
  const reads = launch.args.flatMap((a) => (a.kind === "input" ? [operands[a.index]!] : a.kind === "scratch" ? [scratch[a.index]!] : []));
  const writes = launch.args.flatMap((a) => (a.kind === "output" ? [result] : a.kind === "scratch" ? [scratch[a.index]!] : a.kind === "sibling" ? [sibling(a.result)] : []));
  return { reads, writes };
}

function nodeBytes(n: Node, bounds: Readonly<Record<string, number>>): number {
  return numElements(evalShape(n.shape, bounds)) * dtypeBytes(n.dtype);
}

/** Buffer id of each param, then of each state: the same in every entry point. */
export function persistentIds(g: Graph): Map<string, number> {
  const ids = new Map<string, number>();
  g.params.forEach((p, i) => ids.set(p.name, i));
  g.states.forEach((st, i) => ids.set(st.name, g.params.length + i));
  return ids;
}

/** Schedules every entry point of `g` with the given lowerings, at the symbols' bounds. */
export function scheduleGraph(g: Graph, lowerers: Lowerers): ScheduledEntry[] {
  const lowerOnce = memoized(lowerers);
  return g.entries.map((e) => scheduleEntry(g, e, persistentIds(g), lowerOnce, g.symbols));
}

/**
 * Schedules one entry point with sizes bounded by `bounds` (a shape bucket: the symbols' bounds lowered to the
 * rung's); the lowerings are given for the same bounds.
 */
export function scheduleEntryAt(g: Graph, e: EntryPoint, bounds: Readonly<Record<string, number>>, lowerers: Lowerers): ScheduledEntry {
  return scheduleEntry(g, e, persistentIds(g), memoized(lowerers), bounds);
}

/** Each node lowered once (nodes shared by several entry points, or reached twice). */
function memoized(lowerers: Lowerers): Lowerers {
  const lowered = new Map<Node, NodeLowering>();
  return {
    ...lowerers,
    node: (n: Node): NodeLowering => {
      let l = lowered.get(n);
      if (!l) lowered.set(n, (l = lowerers.node(n)));
      return l;
    },
  };
}

/**
 * The entry's nodes in launch order, and its in-place updates (scatter node → state node). Each update's
 * scatter comes after every other node that reads the state's old storage, directly or through views.
 */
function orderWithUpdates(e: EntryPoint, lower: LowerNode): { nodes: Node[]; inPlace: Map<Node, NodeOf<"state">> } {
  const inPlace = new Map<Node, NodeOf<"state">>();
  for (const u of e.updates) {
    const w = u.node;
    const target = w.inputs[0];
    if (w.op !== "scatter" || target?.op !== "state" || (target as NodeOf<"state">).attrs.name !== u.name) {
      throw new Error(`schedule: entry ${e.name} updates state ${u.name} with ${w.op}; an update must be scatter(${u.name}, rows, values), which is written in place`);
    }
    if (e.outputs.some((o) => o.node === w)) throw new Error(`schedule: entry ${e.name} returns the update of state ${u.name} as an output; read it through the state instead`);
    inPlace.set(w, target as NodeOf<"state">);
  }
  const roots = entryResults(e);
  if (inPlace.size === 0) return { nodes: topoOrder(roots, collectiveOrder(roots)), inPlace };
  const users = usersOf(entryNodes(e));
  const oldReaders = (update: Node, state: Node): Node[] => {
    const readers: Node[] = [];
    const storage = [state];
    while (storage.length > 0) {
      for (const u of users.get(storage.pop()!) ?? []) {
        if (u === update) continue;
        readers.push(u);
        if (lower(u).kind === "view") storage.push(u);
      }
    }
    return readers;
  };
  const after = new Map([...inPlace].map(([w, st]) => [w, oldReaders(w, st)] as const));
  try {
    return { nodes: topoOrder(roots, collectiveOrder(roots, (n) => after.get(n) ?? [])), inPlace };
  } catch (err) {
    throw new Error(`schedule: entry ${e.name} reads a state after updating it in place (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Groups of sibling nodes in `nodes`: same op, operands and attributes except `result`. */
function siblingGroups(nodes: readonly Node[]): Node[][] {
  const groups = new Map<string, Node[]>();
  for (const n of nodes) {
    const attrs = n.attrs as Readonly<Record<string, unknown>>;
    if (!("result" in attrs)) continue;
    const { result: _result, ...rest } = attrs;
    const key = `${n.op}\0${JSON.stringify(rest)}\0${n.inputs.map((i) => i.hash).join(",")}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(n);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

function scheduleEntry(g: Graph, e: EntryPoint, paramIds: ReadonlyMap<string, number>, lowerers: Lowerers, bounds: Readonly<Record<string, number>>): ScheduledEntry {
  const { node: lower, siblings: lowerSiblings, inPlaceUpdate } = lowerers;
  // state sized at load (a KV pool) and its views and in-place updates take no room in the planned arena
  const atLoad = new Set(loadTimeSymbols(g));
  const sizedAtLoad = (n: Node) => n.shape.some((d) => typeof d === "string" && atLoad.has(d));
  const bytesAtBound = (n: Node, b: Readonly<Record<string, number>>) => (sizedAtLoad(n) ? 0 : nodeBytes(n, b));
  const buffers: BufferInfo[] = [];
  const aliases = new Map<number, number>();
  const bufferOf = new Map<Node, number>();
  const launches: ScheduledLaunch[] = [];
  const collectives: ScheduledCollective[] = [];
  const steps: Step[] = [];
  const inputs = new Map<string, number>();
  let nextId = paramIds.size;
  const add = (kind: BufferKind, bytes: number, label: string, node: Node | undefined, id = nextId++): number => {
    buffers.push({ id, kind, bytes, label, node });
    return id;
  };
  const outputNodes = new Set(e.outputs.map((o) => o.node));
  const { nodes, inPlace } = orderWithUpdates(e, lower);
  // siblings with a joint kernel: the first one reached launches it for all of them
  const jointOf = new Map<Node, { readonly members: readonly Node[]; readonly primary: Node; readonly kernels: NodeKernels }>();
  for (const group of lowerSiblings ? siblingGroups(nodes) : []) {
    const joint = lowerSiblings!(group);
    if (joint) for (const m of group) jointOf.set(m, { members: group, ...joint });
  }

  for (const n of nodes) {
    if (bufferOf.has(n)) continue; // computed with a sibling
    const joint = jointOf.get(n);
    if (joint) {
      const operands = n.inputs.map((i) => bufferOf.get(i)!);
      const siblings = new Map<string, number>();
      for (const m of joint.members) {
        const id = add(outputNodes.has(m) ? "output" : "intermediate", bytesAtBound(m, bounds), m.op, m);
        bufferOf.set(m, id);
        siblings.set(String((m.attrs as Readonly<Record<string, unknown>>)["result"]), id);
      }
      const result = bufferOf.get(joint.primary)!;
      const scratch = joint.kernels.scratchBytes.map((s, i) => add("scratch", evalSize(s, bounds), `${n.op} scratch ${i}`, n));
      for (const launch of joint.kernels.launches) {
        launches.push({ node: joint.primary, launch, operands, result, scratch, siblings });
        steps.push(stepOf(launch, operands, result, scratch, siblings));
      }
      continue;
    }
    const state = inPlace.get(n);
    if (state) {
      if (!inPlaceUpdate) throw new Error(`schedule: entry ${e.name} updates state ${state.attrs.name}, but no in-place lowering was given`);
      const kernels = inPlaceUpdate(n as NodeOf<"scatter">);
      const operands = n.inputs.map((i) => bufferOf.get(i)!);
      const result = add("intermediate", bytesAtBound(n, bounds), `${n.op} into ${state.attrs.name}`, n);
      aliases.set(result, operands[0]!);
      const scratch = kernels.scratchBytes.map((sz, i) => add("scratch", evalSize(sz, bounds), `${n.op} scratch ${i}`, n));
      bufferOf.set(n, result);
      for (const launch of kernels.launches) {
        launches.push({ node: n, launch, operands, result, scratch, siblings: new Map() });
        steps.push(stepOf(launch, operands, result, scratch, new Map()));
      }
      continue;
    }
    const lowering = lower(n);
    switch (lowering.kind) {
      case "leaf": {
        if (n.op === "param" || n.op === "state") {
          const name = (n as NodeOf<"param" | "state">).attrs.name;
          const id = paramIds.get(name);
          if (id === undefined) throw new Error(`schedule: ${n.op} ${name} is used by entry ${e.name} but not declared`);
          bufferOf.set(n, add("param", bytesAtBound(n, bounds), name, n, id));
        } else if (n.op === "input") {
          const name = (n as NodeOf<"input">).attrs.name;
          const id = add("input", bytesAtBound(n, bounds), name, n);
          inputs.set(name, id);
          bufferOf.set(n, id);
        } else {
          throw new Error(`schedule: code generation calls ${n.op} a leaf; only params, state and inputs are`);
        }
        break;
      }
      case "view": {
        const target = bufferOf.get(n.inputs[0]!);
        if (target === undefined) throw new Error(`schedule: ${n.op} views an operand that has no buffer`);
        const id = add(outputNodes.has(n) ? "output" : "intermediate", bytesAtBound(n, bounds), n.op, n);
        aliases.set(id, target);
        bufferOf.set(n, id);
        break;
      }
      case "collective": {
        const operand = bufferOf.get(n.inputs[0]!);
        if (operand === undefined) throw new Error(`schedule: the operand of ${n.op} has no buffer`);
        const result = add(outputNodes.has(n) ? "output" : "intermediate", bytesAtBound(n, bounds), n.op, n);
        bufferOf.set(n, result);
        collectives.push({ node: n as CollectiveNode, at: launches.length, operand, result });
        steps.push({ reads: [operand], writes: [result] });
        break;
      }
      case "kernels": {
        const operands = n.inputs.map((i) => {
          const b = bufferOf.get(i);
          if (b === undefined) throw new Error(`schedule: an operand of ${n.op} has no buffer`);
          return b;
        });
        const result = add(outputNodes.has(n) ? "output" : "intermediate", bytesAtBound(n, bounds), n.op, n);
        const scratch = lowering.kernels.scratchBytes.map((s, i) => add("scratch", evalSize(s, bounds), `${n.op} scratch ${i}`, n));
        bufferOf.set(n, result);
        for (const launch of lowering.kernels.launches) {
          launches.push({ node: n, launch, operands, result, scratch, siblings: new Map() });
          steps.push(stepOf(launch, operands, result, scratch, new Map()));
        }
        break;
      }
    }
  }
  const outputs = new Map<string, number>();
  for (const o of e.outputs) {
    const id = bufferOf.get(o.node);
    if (id === undefined) throw new Error(`schedule: output ${o.name} of entry ${e.name} has no buffer`);
    const info = buffers.find((b) => b.id === id)!;
    if (info.kind !== "output") {
      // an output that is an input, a param or shared with another output: give it its own view-free copy slot
      throw new Error(`schedule: output ${o.name} of entry ${e.name} is a ${info.kind} (${info.label}); an entry must compute its outputs`);
    }
    outputs.set(o.name, id);
  }
  const planInput: EntrySchedule = {
    name: e.name,
    buffers: buffers.map((b): BufferRequest => (aliases.has(b.id) ? { id: b.id, bytes: b.bytes, kind: b.kind, aliasOf: aliases.get(b.id)! } : { id: b.id, bytes: b.bytes, kind: b.kind })),
    steps,
  };
  return { name: e.name, launches, collectives, buffers, aliases, inputs, outputs, planInput };
}
