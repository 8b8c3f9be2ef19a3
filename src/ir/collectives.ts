// Collectives of a rank set: what allReduce, allGather and reduceScatter compute from the operands of every rank,
// and the order in which each rank reaches them.
//
//   allReduce      x on every rank              → Σ_r x_r on every rank (f64 in rank order, one rounding to x's dtype)
//   allGather      x [...] on every rank        → [ranks, ...]: x_0, x_1, … stacked, on every rank
//   reduceScatter  x [ranks, ...] on every rank → rank r: Σ_q x_q[r] (as allReduce sums)
//
// The reference interpreter (interpretRanks), the fake CPU ranks of a process group (src/engine/rank-group.ts) and
// tests all combine through `combineCollective`, so they agree to the bit. NCCL on GPUs sums in its own order (a ring
// or a tree), so a GPU's sums may differ from these in the last bits.
//
// Every rank must issue the same collectives in the same order, or NCCL deadlocks. The sharding pass numbers a
// rank set's collectives (`seq`); `collectiveOrder` makes each collective come after the one numbered before it,
// whatever else the topological order of a rank's graph would allow, and the scheduler and the interpreter both
// order a rank's nodes with it.

import { roundTo } from "./dtype.js";
import type { HostTensor } from "./host-tensor.js";
import { type Node, type NodeOf, topoOrder } from "./node.js";
import { type CollectiveOp, isCollective } from "./ops.js";
import { formatShape, numElements } from "./shape.js";

export type CollectiveNode = NodeOf<CollectiveOp>;

export function isCollectiveNode(n: Node): n is CollectiveNode {
  return isCollective(n.op);
}

/** The collectives reachable from `roots`, by `seq`; two of them with one `seq` are an error. */
export function collectivesOf(roots: readonly Node[]): CollectiveNode[] {
  const found = topoOrder(roots).filter(isCollectiveNode).sort((a, b) => a.attrs.seq - b.attrs.seq);
  for (let i = 1; i < found.length; i++) {
    if (found[i]!.attrs.seq === found[i - 1]!.attrs.seq) throw new Error(`two collectives (${found[i - 1]!.op}, ${found[i]!.op}) share seq ${found[i]!.attrs.seq}`);
  }
  return found;
}

/**
 * An ordering constraint for topoOrder (its `after`): each collective after the one before it by `seq`, so every
 * rank meets its collectives in one order. Combined with `base` (another constraint) when given.
 */
export function collectiveOrder(roots: readonly Node[], base?: (n: Node) => readonly Node[]): ((n: Node) => readonly Node[]) | undefined {
  const chain = collectivesOf(roots);
  if (chain.length < 2) return base;
  const previous = new Map<Node, Node>(chain.slice(1).map((c, i) => [c, chain[i]!]));
  return (n) => {
    const prev = previous.get(n);
    const extra = base?.(n) ?? [];
    return prev ? [...extra, prev] : extra;
  };
}

/** Each rank's result of collective `node`, from every rank's operand (rank order). */
export function combineCollective(node: Pick<CollectiveNode, "op" | "attrs" | "dtype">, operands: readonly HostTensor[]): HostTensor[] {
  const ranks = node.attrs.ranks;
  if (operands.length !== ranks) throw new Error(`${node.op} #${node.attrs.seq} needs ${ranks} operands (one per rank), got ${operands.length}`);
  const first = operands[0]!;
  operands.forEach((t, r) => {
    if (t.dtype !== first.dtype || formatShape(t.shape) !== formatShape(first.shape)) {
      throw new Error(`${node.op} #${node.attrs.seq}: rank ${r} gives ${t.dtype}${formatShape(t.shape)} but rank 0 ${first.dtype}${formatShape(first.shape)}`);
    }
  });
  const sum = (pick: (t: HostTensor) => Float64Array, n: number): Float64Array => {
    const out = new Float64Array(n);
    for (const t of operands) {
      const d = pick(t);
      for (let i = 0; i < n; i++) out[i] = out[i]! + d[i]!;
    }
    for (let i = 0; i < n; i++) out[i] = roundTo(node.dtype, out[i]!);
    return out;
  };
  switch (node.op) {
    case "allReduce": {
      const data = sum((t) => t.data, first.data.length);
      return operands.map(() => ({ dtype: first.dtype, shape: [...first.shape], data }));
    }
    case "allGather": {
      const n = first.data.length;
      const data = new Float64Array(n * ranks);
      operands.forEach((t, r) => data.set(t.data, r * n));
      return operands.map(() => ({ dtype: first.dtype, shape: [ranks, ...first.shape], data }));
    }
    case "reduceScatter": {
      if (first.shape[0] !== ranks) throw new Error(`reduceScatter #${node.attrs.seq}: operands are ${formatShape(first.shape)}, not a block per rank`);
      const block = numElements(first.shape.slice(1));
      return operands.map((_, r) => ({ dtype: first.dtype, shape: first.shape.slice(1), data: sum((t) => t.data.subarray(r * block, (r + 1) * block), block) }));
    }
  }
}
