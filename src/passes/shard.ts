// The sharding pass: one fused graph → the graphs of N ranks (tensor and expert parallelism), each rank's
// parameters its slices of the checkpoint's tensors, with explicit collectives between them.
//
// It runs after fusion (src/passes/pipeline.ts), on the fused ops, because they name what a split means:
//   pagedAttention q [T, H, D], k/v [T, KVH, D], pools [P, KVH, D], sinks [H] — heads split: rank r gets a range of
//       query heads and the KV heads they read (KV heads split when ranks ≤ KV heads, else replicated: each KV head
//       on a group of ranks that split its query heads); q/k/v projections become column-parallel by pushing the
//       split back through fusedRope, the reshape and fusedLinear/groupedLinear to the weight rows; the attention
//       output's o_proj (fusedLinear over split columns) becomes row-parallel: a partial sum, bias on rank 0.
//   moeExperts — experts split into `expertGroups` groups (expert parallelism: rank r routes over all experts and
//       computes only its group's, firstExpert), each expert's intermediate dim split over the ranks of its group
//       (tensor parallelism inside the experts; the down bias on the group's first rank): a partial sum.
//   the embedding (gather of a [V, D] table) — vocabulary-parallel: rank r reads ids in its range, 0 elsewhere: a partial sum.
//   lm_head (the matmul under `sample`) — vocabulary-parallel logits [R, V_r]; `sample` becomes distributed:
//       each rank's top C candidates (logit, token id), all-gathered, then `sample` over the N·C candidates with
//       their ids. Exact for greedy rows and for rows with 1 ≤ top-k ≤ C (the global top-k is among the candidates:
//       see the README, "Tensor and expert parallelism"); other sampling rows draw from the candidates only.
// A partial sum becomes whole (an allReduce) where a consumer needs it whole: the residual norm after o_proj,
// after the MoE, after the embedding. The logits output stays split (the engine reads a row's slices on demand).
// Fused kernels stay fused: every rank's graph holds the same fused ops over smaller operands.
//
// How: (1) anchors (the ops above) fix what they need and, walking back through ops that keep a split (reshape,
// fusedRope, fusedLinear, groupedLinear, matmul), which parameters and states to slice; (2) every node's layout is
// planned forward by a per-op rule (SHARD_RULES, a mapped type over Op: an op without a rule is a compile error),
// where a rule's need differs from what arrives, a conversion (a local slice, a zero-padded partial, or an
// allReduce); a parameter that every use wants sliced one way is sliced, and the plan repeats until it settles;
// (3) collectives are numbered in one topological order, the same for every rank; (4) each rank's graph is built
// from its outputs down: a value a rank holds nothing of (an empty head range) is never built.

import type { EntryPoint, EntryOutput, Graph, IndexRange, ParamDecl, StateDecl } from "../ir/graph.js";
import { entryResults, graphNodes } from "../ir/graph.js";
import { type Node, type NodeOf, type NodeTable, usersOf } from "../ir/node.js";
import { isCollective, type Op } from "../ir/ops.js";
import { type Dim, isStaticDim, isStaticShape } from "../ir/shape.js";
import { MXFP4_BLOCK } from "../ir/dtype.js";
import {
  type AxisSplit, balancedRanges, holdsNothing, type Layout, layoutKey, localShape, PARTIAL, type Part, partSize, rangePart, REPLICATED, reshapeSplit,
  sameLayout, singleAxis, split,
} from "./shard-layout.js";

export interface ShardStrategy {
  /** Ranks of the set (one GPU each). */
  readonly ranks: number;
  /**
   * MoE experts in this many groups, each group's experts held by N / expertGroups ranks that split every expert's
   * intermediate dim: 1 (the default) is tensor parallelism inside every expert, `ranks` is expert parallelism
   * (whole experts per rank). Must divide `ranks`.
   */
  readonly expertGroups?: number;
  /** Candidates per rank of vocabulary-parallel sampling (default 64; at most each rank's vocabulary slice). */
  readonly sampleCandidates?: number;
}

export const DEFAULT_SAMPLE_CANDIDATES = 64;

/** An output left split across the ranks: rank r holds `parts[r]` of axis `axis` (size `size`). */
export interface SplitOutput {
  readonly axis: number;
  readonly size: number;
  readonly parts: readonly Part[];
}

/** The graphs of a rank set: rank r runs `ranks[r]`; every rank takes the same entry inputs. */
export interface RankSet {
  readonly strategy: Required<ShardStrategy>;
  readonly ranks: readonly Graph[];
  /** Per entry, its outputs that stay split (every other output is whole on every rank). */
  readonly splitOutputs: Readonly<Record<string, Readonly<Record<string, SplitOutput>>>>;
  /** Collectives per call of each entry (the same on every rank). */
  readonly collectives: Readonly<Record<string, number>>;
}

export class ShardError extends Error {
  override readonly name = "ShardError";
}

export function resolveStrategy(s: ShardStrategy): Required<ShardStrategy> {
  const { ranks } = s;
  const expertGroups = s.expertGroups ?? 1;
  const sampleCandidates = s.sampleCandidates ?? DEFAULT_SAMPLE_CANDIDATES;
  if (!Number.isInteger(ranks) || ranks < 1) throw new ShardError(`ranks must be a positive integer, got ${ranks}`);
  if (!Number.isInteger(expertGroups) || expertGroups < 1 || ranks % expertGroups !== 0) throw new ShardError(`expert groups (${expertGroups}) must divide the ranks (${ranks})`);
  if (!Number.isInteger(sampleCandidates) || sampleCandidates < 1) throw new ShardError(`sampleCandidates must be a positive integer, got ${sampleCandidates}`);
  return { ranks, expertGroups, sampleCandidates };
}

// ---- assignments: which heads, experts and tokens each rank holds ---------------------------------------------------

/** Query heads and KV heads of each rank; every rank's query heads read exactly its KV heads, in pagedAttention's grouping. */
export function headAssignment(heads: number, kvHeads: number, ranks: number): { readonly q: Part[]; readonly kv: Part[] } {
  const g = heads / kvHeads;
  if (ranks <= kvHeads) {
    const kv = balancedRanges(kvHeads, ranks);
    return { kv: kv.map(rangePart), q: kv.map(([s, e]) => rangePart([s * g, e * g])) };
  }
  // more ranks than KV heads: each KV head on a group of ranks, which split its query heads
  const q: Part[] = [];
  const kv: Part[] = [];
  balancedRanges(ranks, kvHeads).forEach(([r0, r1], j) => {
    for (const [s, e] of balancedRanges(g, r1 - r0)) {
      q.push(rangePart([j * g + s, j * g + e]));
      kv.push(e > s ? [[j, j + 1]] : []);
    }
  });
  return { q, kv };
}

/** Experts of each rank (its group's) and its range of every expert's intermediate dim, in `unit`s. */
export function expertAssignment(experts: number, inter: number, ranks: number, groups: number, unit: number): { readonly experts: IndexRange[]; readonly inter: IndexRange[]; readonly biasOwner: boolean[] } {
  const perGroup = ranks / groups;
  const groupExperts = balancedRanges(experts, groups);
  const slices = balancedRanges(inter / unit, perGroup, unit);
  const ranksOf = Array.from({ length: ranks }, (_, r) => r);
  return {
    experts: ranksOf.map((r) => groupExperts[Math.floor(r / perGroup)]!),
    inter: ranksOf.map((r) => slices[r % perGroup]!),
    biasOwner: ranksOf.map((r) => r % perGroup === 0),
  };
}

interface MoeAssignment {
  readonly experts: IndexRange[] | undefined; // undefined: every rank holds every expert
  readonly inter: IndexRange[] | undefined; // undefined: whole experts
  readonly biasOwner: readonly boolean[];
}

/** What the anchors decided: they need exactly these layouts of their inputs. */
interface Anchors {
  readonly needs: Map<Node, readonly Layout[]>;
  readonly out: Map<Node, Layout>;
  readonly moe: Map<Node, MoeAssignment>;
  readonly vocab: Map<Node, Part[]>;
}

const headSplit = (axis: number, size: number, parts: readonly Part[]): Layout => split({ axis, size, parts });

function findAnchors(g: Graph, s: Required<ShardStrategy>): Anchors {
  const anchors: Anchors = { needs: new Map(), out: new Map(), moe: new Map(), vocab: new Map() };
  const N = s.ranks;
  for (const n of graphNodes(g)) {
    if (n.op === "pagedAttention") {
      const [q, k] = [n.inputs[0]!, n.inputs[1]!];
      const [h, kvh] = [q.shape[1] as number, k.shape[1] as number];
      const { q: qp, kv } = headAssignment(h, kvh, N);
      const needs = n.inputs.map((): Layout => REPLICATED);
      needs[0] = headSplit(1, h, qp);
      needs[1] = needs[2] = needs[3] = needs[4] = headSplit(1, kvh, kv);
      if (n.attrs.hasSinks) needs[n.inputs.length - 1] = headSplit(0, h, qp);
      anchors.needs.set(n, needs);
      anchors.out.set(n, headSplit(1, h, qp));
    } else if (n.op === "moeExperts") {
      const e = n.inputs[1]!.shape[0] as number;
      const mx = n.attrs.weightFormat === "mxfp4";
      const twoI = (mx ? n.inputs[3]!.shape[1] : n.inputs[3]!.shape[2]) as number;
      const a = expertAssignment(e, twoI / 2, N, s.expertGroups, mx ? MXFP4_BLOCK : 1);
      const experts = s.expertGroups > 1 ? a.experts : undefined;
      const inter = N / s.expertGroups > 1 ? a.inter : undefined;
      const ex = experts ? [{ axis: 0, size: e, parts: experts.map(rangePart) }] : [];
      const cols = (axis: number, size: number, scale: number): AxisSplit[] => (inter ? [{ axis, size, parts: inter.map(([s0, e0]) => rangePart([s0 * scale, e0 * scale])) }] : []);
      const needs: Layout[] = [REPLICATED, REPLICATED, REPLICATED];
      const layout = (...axes: AxisSplit[]): Layout => (axes.length ? split(...axes) : REPLICATED);
      if (!mx) {
        needs.push(layout(...ex, ...cols(2, twoI, 2)), layout(...ex, ...cols(1, twoI, 2)), layout(...ex, ...cols(1, twoI / 2, 1)), layout(...ex));
      } else {
        const blocks = twoI / 2 / MXFP4_BLOCK;
        needs.push(
          layout(...ex, ...cols(1, twoI, 2)), layout(...ex, ...cols(1, twoI, 2)), layout(...ex, ...cols(1, twoI, 2)),
          layout(...ex, ...cols(2, blocks, 1 / MXFP4_BLOCK)), layout(...ex, ...cols(2, blocks, 1 / MXFP4_BLOCK)), layout(...ex),
        );
      }
      if (!experts && !inter) continue;
      anchors.needs.set(n, needs);
      anchors.out.set(n, PARTIAL);
      anchors.moe.set(n, { experts, inter, biasOwner: a.biasOwner });
    } else if (n.op === "sample") {
      const logits = n.inputs[0]!;
      const vocab = logits.shape[1]!;
      if (!isStaticDim(vocab)) continue;
      const parts = balancedRanges(vocab, N).map(rangePart);
      if (parts.some((p) => partSize(p) === 0)) continue; // fewer tokens than ranks: sample whole
      anchors.needs.set(n, n.inputs.map((_, i) => (i === 0 ? headSplit(1, vocab, parts) : REPLICATED)));
      anchors.out.set(n, REPLICATED);
      anchors.vocab.set(n, parts);
    } else if (n.op === "gather" && n.attrs.axis === 0 && n.inputs[0]!.op === "param" && n.inputs[0]!.shape.length === 2 && isStaticShape(n.inputs[0]!.shape)) {
      // an embedding table [V, D]: vocabulary-parallel
      const vocab = n.inputs[0]!.shape[0] as number;
      if (vocab < N) continue;
      anchors.needs.set(n, [headSplit(0, vocab, balancedRanges(vocab, N).map(rangePart)), REPLICATED]);
      anchors.out.set(n, PARTIAL);
    }
  }
  return anchors;
}

// ---- planning: every node's layout ------------------------------------------------------------------------------------

interface NodePlan {
  readonly out: Layout;
  /** The layout each input must be in (converted from its own when they differ). */
  readonly needs: readonly Layout[];
  /** Collectives the rule issues itself. */
  readonly collectives?: number;
}

interface PlanContext {
  readonly strategy: Required<ShardStrategy>;
  readonly anchors: Anchors;
  /** Layouts of leaves (params and states) decided so far. */
  readonly leaves: ReadonlyMap<string, Layout>;
}

type PlanRule<K extends Op> = (n: NodeOf<K>, ins: readonly Layout[], cx: PlanContext) => NodePlan;

/** Everything whole: the rule of every op that does not keep a split. */
const whole = (n: Node): NodePlan => ({ out: REPLICATED, needs: n.inputs.map(() => REPLICATED) });
const wholeRule = <K extends Op>(): PlanRule<K> => (n) => whole(n);
const anchored = <K extends Op>(fallback: PlanRule<K>): PlanRule<K> => (n, ins, cx) => {
  const needs = cx.anchors.needs.get(n);
  return needs ? { out: cx.anchors.out.get(n)!, needs, ...(n.op === "sample" ? { collectives: 2 } : {}) } : fallback(n, ins, cx);
};
const leaf = <K extends "param" | "state">(): PlanRule<K> => (n, _ins, cx) => ({ out: cx.leaves.get((n as NodeOf<"param" | "state">).attrs.name) ?? REPLICATED, needs: [] });

/** A linear layer x [..., K] · W [N, K]ᵀ (+ bias [N]): column-parallel when W's rows are split, row-parallel when x's columns are. */
function linearPlan(n: Node, ins: readonly Layout[], hasBias: boolean): NodePlan {
  const [x, w] = [ins[0]!, ins[1]!];
  const rank = n.inputs[0]!.shape.length;
  const xs = singleAxis(x);
  if (n.inputs[1]!.shape.length === 2 && xs && xs.axis === rank - 1) {
    const k = n.inputs[1]!.shape[1] as number;
    return { out: PARTIAL, needs: [x, split({ axis: 1, size: k, parts: xs.parts }), ...(hasBias ? [REPLICATED] : [])] };
  }
  const ws = singleAxis(w);
  if (n.inputs[1]!.shape.length === 2 && ws && ws.axis === 0) {
    const out = split({ axis: n.shape.length - 1, size: ws.size, parts: ws.parts });
    return { out, needs: [REPLICATED, w, ...(hasBias ? [split({ axis: 0, size: ws.size, parts: ws.parts })] : [])] };
  }
  return whole(n);
}

const SHARD_RULES: { readonly [K in Op]: PlanRule<K> } = {
  input: wholeRule(),
  param: leaf(),
  state: leaf(),
  constant: wholeRule(),
  literal: wholeRule(),
  iota: wholeRule(),
  unary: wholeRule(),
  binary: wholeRule(),
  ternary: wholeRule(),
  compare: wholeRule(),
  cast: wholeRule(),
  reduce: wholeRule(),
  matmul: (n, ins) => (n.attrs.transposeB ? linearPlan(n, ins, false) : whole(n)),
  // a reshape keeps a split it can map, and a partial sum (it is linear)
  reshape: (n, [x]) => {
    if (x!.kind === "partial") return { out: PARTIAL, needs: [PARTIAL] };
    const mapped = reshapeSplit(n.inputs[0]!.shape, n.shape, x!);
    return mapped ? { out: mapped, needs: [x!] } : whole(n);
  },
  transpose: wholeRule(),
  slice: wholeRule(),
  concat: wholeRule(),
  gather: anchored(wholeRule()),
  // a state update keeps the state's split: the step's rows of the rank's heads
  scatter: (n, [x]) => {
    if (x!.kind !== "split" || x!.axes.some((a) => a.axis === n.attrs.axis)) return whole(n);
    return { out: x!, needs: [x!, REPLICATED, x!] };
  },
  broadcast: wholeRule(),
  topk: wholeRule(),
  sample: anchored(wholeRule()),
  dequantMxfp4: wholeRule(),
  fusedRmsNorm: wholeRule(),
  sinkAttention: wholeRule(),
  pagedAttention: anchored(wholeRule()),
  seqTokenRanges: wholeRule(),
  uniqueIndices: wholeRule(),
  moeExperts: anchored(wholeRule()),
  mxfp4Matmul: wholeRule(),
  fusedLinear: (n, ins) => (n.attrs.transposeB ? linearPlan(n, ins, true) : whole(n)),
  groupedLinear: (n, ins) => {
    const layers = (n.inputs.length - 1) / 2;
    const needs: Layout[] = [REPLICATED];
    let out: Layout = REPLICATED;
    for (let i = 0; i < layers; i++) {
      const ws = singleAxis(ins[1 + 2 * i]!);
      if (ws && ws.axis === 0) {
        needs.push(ins[1 + 2 * i]!, split({ axis: 0, size: ws.size, parts: ws.parts }));
        if (i === n.attrs.result) out = split({ axis: n.shape.length - 1, size: ws.size, parts: ws.parts });
      } else needs.push(REPLICATED, REPLICATED);
    }
    return { out, needs };
  },
  // rotary embedding per head: a head split passes through (cos and sin are per token)
  fusedRope: (n, [x]) => {
    const xs = singleAxis(x!);
    return xs && xs.axis === n.shape.length - 2 ? { out: x!, needs: [x!, REPLICATED, REPLICATED] } : whole(n);
  },
  fusedElementwise: wholeRule(),
  allReduce: (n) => alreadySharded(n),
  allGather: (n) => alreadySharded(n),
  reduceScatter: (n) => alreadySharded(n),
};

function alreadySharded(n: Node): never {
  throw new ShardError(`the graph already holds a collective (${n.op}): it is a rank of a sharded model, not a whole one`);
}

/**
 * A demand that a node be split one way, walked back through the ops that keep a split to the parameters and
 * states it comes from (their slices are then what the checkpoint loads).
 */
function demand(n: Node, l: Layout, seeds: Map<string, Layout | "conflict">): void {
  if (l.kind !== "split") return;
  const ls = singleAxis(l);
  switch (n.op) {
    case "param":
    case "state": {
      const name = n.attrs.name;
      const prev = seeds.get(name);
      seeds.set(name, prev === undefined || (prev !== "conflict" && sameLayout(prev, l)) ? l : "conflict");
      return;
    }
    case "reshape": {
      const back = reshapeSplit(n.shape, n.inputs[0]!.shape, l);
      if (back) demand(n.inputs[0]!, back, seeds);
      return;
    }
    case "fusedRope":
      if (ls && ls.axis === n.shape.length - 2) demand(n.inputs[0]!, l, seeds);
      return;
    case "fusedLinear":
    case "matmul":
      if (n.attrs.transposeB && ls && ls.axis === n.shape.length - 1 && n.inputs[1]!.shape.length === 2) {
        demand(n.inputs[1]!, split({ axis: 0, size: ls.size, parts: ls.parts }), seeds);
        if (n.op === "fusedLinear") demand(n.inputs[2]!, split({ axis: 0, size: ls.size, parts: ls.parts }), seeds);
      }
      return;
    case "groupedLinear":
      if (ls && ls.axis === n.shape.length - 1) {
        demand(n.inputs[1 + 2 * n.attrs.result]!, split({ axis: 0, size: ls.size, parts: ls.parts }), seeds);
        demand(n.inputs[2 + 2 * n.attrs.result]!, split({ axis: 0, size: ls.size, parts: ls.parts }), seeds);
      }
      return;
    default:
      return; // the forward plan slices it where it is needed
  }
}

interface GraphPlan {
  readonly layouts: Map<Node, Layout>;
  readonly needs: Map<Node, readonly Layout[]>;
  readonly leaves: Map<string, Layout>;
  /** seq of each collective: conversions by `${input hash}|${layout}`, a rule's own by node. */
  readonly conversionSeq: Map<string, number>;
  readonly ownSeqs: Map<Node, number[]>;
  readonly splitOutputs: Record<string, Record<string, SplitOutput>>;
  readonly anchors: Anchors;
}

const isLeaf = (n: Node): n is NodeOf<"param" | "state"> => n.op === "param" || n.op === "state";

/** Whether converting `from` → `to` takes a collective. */
function needsCollective(from: Layout, to: Layout): boolean {
  if (sameLayout(from, to)) return false;
  if (from.kind === "replicated") return false; // a local slice, or rank 0's summand
  if (from.kind === "split" && to.kind === "partial") return false; // zero-padded locally
  return true;
}

/** An output may stay split when one axis is split into disjoint ranges that cover it (a rank's slice of the logits). */
function keepsSplit(l: Layout): SplitOutput | undefined {
  const a = singleAxis(l);
  if (!a) return undefined;
  const ranges = a.parts.flat().slice().sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [s, e] of ranges) {
    if (s !== at) return undefined;
    at = e;
  }
  return at === a.size ? a : undefined;
}

function planGraph(g: Graph, strategy: Required<ShardStrategy>): GraphPlan {
  const anchors = findAnchors(g, strategy);
  const seeds = new Map<string, Layout | "conflict">();
  for (const [n, needs] of anchors.needs) needs.forEach((l, i) => demand(n.inputs[i]!, l, seeds));
  const leaves = new Map<string, Layout>();
  for (const [name, l] of seeds) if (l !== "conflict") leaves.set(name, l);
  const nodes = graphNodes(g);
  const users = usersOf(nodes);
  const updateOf = new Map<string, Node>(g.entries.flatMap((e) => e.updates.map((u) => [u.name, u.node] as const)));
  let layouts = new Map<Node, Layout>();
  let needsOf = new Map<Node, readonly Layout[]>();
  const cx: PlanContext = { strategy, anchors, leaves };
  for (let round = 0; ; round++) {
    if (round > 16) throw new ShardError(`the layouts of ${g.name} did not settle`);
    layouts = new Map();
    needsOf = new Map();
    for (const n of nodes) {
      const plan = (SHARD_RULES[n.op] as PlanRule<Op>)(n as NodeOf<Op>, n.inputs.map((i) => layouts.get(i)!), cx);
      layouts.set(n, plan.out);
      needsOf.set(n, plan.needs);
    }
    // a leaf every use of which wants one split is sliced that way; a sliced leaf some use wants otherwise stays whole
    let changed = false;
    for (const n of nodes) {
      if (!isLeaf(n)) continue;
      const wants = (users.get(n) ?? []).flatMap((u) => u.inputs.flatMap((x, i) => (x === n ? [needsOf.get(u)![i]!] : [])));
      const update = n.op === "state" ? updateOf.get(n.attrs.name) : undefined;
      if (update) wants.push(layouts.get(update)!);
      const have = layouts.get(n)!;
      const first = wants[0];
      const agreed = first && first.kind === "split" && wants.every((w) => sameLayout(w, first)) ? first : undefined;
      if (have.kind === "replicated" && agreed) {
        leaves.set(n.attrs.name, agreed);
        changed = true;
      } else if (have.kind === "split" && wants.some((w) => !sameLayout(w, have))) {
        leaves.delete(n.attrs.name);
        changed = true;
      }
    }
    if (!changed) break;
  }
  // collectives, numbered in topological order: every rank issues them alike
  const conversionSeq = new Map<string, number>();
  const ownSeqs = new Map<Node, number[]>();
  let seq = 0;
  const convert = (x: Node, to: Layout) => {
    const key = `${x.hash}|${layoutKey(to)}`;
    if (needsCollective(layouts.get(x)!, to) && !conversionSeq.has(key)) conversionSeq.set(key, seq++);
  };
  const splitOutputs: Record<string, Record<string, SplitOutput>> = {};
  for (const n of nodes) {
    needsOf.get(n)!.forEach((l, i) => convert(n.inputs[i]!, l));
    const own = (SHARD_RULES[n.op] as PlanRule<Op>)(n as NodeOf<Op>, n.inputs.map((i) => layouts.get(i)!), cx).collectives ?? 0;
    if (own > 0) ownSeqs.set(n, Array.from({ length: own }, () => seq++));
  }
  for (const e of g.entries) {
    splitOutputs[e.name] = {};
    for (const o of e.outputs) {
      const kept = keepsSplit(layouts.get(o.node)!);
      if (kept) splitOutputs[e.name]![o.name] = kept;
      else convert(o.node, REPLICATED);
    }
  }
  return { layouts, needs: needsOf, leaves, conversionSeq, ownSeqs, splitOutputs, anchors };
}

function graphNodesOf(roots: readonly Node[]): Node[] {
  const seen = new Set<Node>();
  const stack = [...roots];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...n.inputs);
  }
  return [...seen];
}

// ---- building a rank's graph ----------------------------------------------------------------------------------------

/** Slices `x` (rank r's value, whole along `a.axis`) to rank r's part of that axis. */
function sliceAxis(table: NodeTable, x: Node, a: AxisSplit, part: Part): Node {
  if (partSize(part) === a.size) return x;
  const pieces = part.map(([s, e]) => table.make("slice", { axis: a.axis, start: s, end: e, step: 1 }, [x]));
  return pieces.length === 1 ? pieces[0]! : table.make("concat", { axis: a.axis }, pieces);
}

class RankBuilder {
  private readonly values = new Map<Node, Node>();
  private readonly converted = new Map<string, Node>();
  readonly params = new Map<string, ParamDecl>();
  readonly states = new Map<string, StateDecl>();

  constructor(
    private readonly g: Graph,
    private readonly plan: GraphPlan,
    private readonly strategy: Required<ShardStrategy>,
    private readonly anchors: Anchors,
    readonly rank: number,
  ) {}

  private get table(): NodeTable {
    return this.g.table;
  }

  private layout(n: Node): Layout {
    return this.plan.layouts.get(n)!;
  }

  /** Rank r's value of `n`, in n's planned layout. */
  value(n: Node): Node {
    let v = this.values.get(n);
    if (!v) {
      const l = this.layout(n);
      // a value this rank holds nothing of (no heads of this layer) is never computed: an empty constant
      v = holdsNothing(l, this.rank) ? this.zeros(n, l) : this.build(n);
      this.values.set(n, v);
    }
    return v;
  }

  private zeros(n: Node, l: Layout): Node {
    return this.table.make("constant", { value: 0, dtype: n.dtype, shape: localShape(n.shape, l, this.rank) }, [], () => n.site);
  }

  /** Input i of `n`, in the layout n's rule needs. */
  input(n: Node, i: number): Node {
    return this.convert(n.inputs[i]!, this.plan.needs.get(n)![i]!);
  }

  /** Rank r's value of `x` in layout `to`. */
  convert(x: Node, to: Layout): Node {
    const from = this.layout(x);
    if (sameLayout(from, to)) return this.value(x);
    const key = `${x.hash}|${layoutKey(to)}`;
    let v = this.converted.get(key);
    if (v) return v;
    const seq = this.plan.conversionSeq.get(key);
    const N = this.strategy.ranks;
    const r = this.rank;
    const allReduce = (y: Node) => {
      if (seq === undefined) throw new ShardError(`internal: conversion of ${x.op} to ${layoutKey(to)} has no collective number`);
      return this.table.make("allReduce", { ranks: N, seq }, [y], () => x.site);
    };
    if (from.kind === "replicated") {
      if (to.kind === "partial") v = r === 0 ? this.value(x) : this.table.make("constant", { value: 0, dtype: x.dtype, shape: x.shape }, [], () => x.site);
      else v = this.sliceTo(this.value(x), to);
    } else if (from.kind === "partial") {
      const whole = allReduce(this.value(x));
      v = to.kind === "split" ? this.sliceTo(whole, to) : whole;
    } else {
      const padded = this.padToWhole(x, from);
      if (to.kind === "partial") v = padded;
      else {
        const whole = allReduce(padded);
        v = to.kind === "split" ? this.sliceTo(whole, to) : whole;
      }
    }
    this.converted.set(key, v);
    return v;
  }

  /** A whole value's slice to rank r's parts. */
  private sliceTo(whole: Node, to: Layout): Node {
    if (to.kind !== "split") return whole;
    let v = whole;
    for (const a of to.axes) v = sliceAxis(this.table, v, a, a.parts[this.rank]!);
    return v;
  }

  /**
   * A split value as a partial sum: rank r's part placed in zeros of the whole shape, on the indices it is the first
   * rank to hold (parts may overlap), so the ranks' sum is the whole value.
   */
  private padToWhole(x: Node, from: Layout): Node {
    if (from.kind !== "split") throw new ShardError(`internal: padding a ${from.kind} value`);
    let v = this.value(x);
    let shape: Dim[] = localShape(x.shape, from, this.rank);
    for (const a of from.axes) {
      const owned: number[] = [];
      const local: number[] = [];
      let at = 0;
      for (const [s, e] of a.parts[this.rank]!) {
        for (let i = s; i < e; i++, at++) {
          const owner = a.parts.findIndex((p) => p.some(([ps, pe]) => i >= ps && i < pe));
          if (owner === this.rank) {
            owned.push(i);
            local.push(at);
          }
        }
      }
      const next = shape.map((d, i) => (i === a.axis ? a.size : d));
      const zeros = this.table.make("constant", { value: 0, dtype: x.dtype, shape: next }, [], () => x.site);
      if (owned.length > 0) {
        const rows = this.table.make("gather", { axis: a.axis }, [v, this.table.make("literal", { data: local, dtype: "i32", shape: [local.length] }, [])]);
        v = this.table.make("scatter", { axis: a.axis }, [zeros, this.table.make("literal", { data: owned, dtype: "i32", shape: [owned.length] }, []), rows]);
      } else v = zeros;
      shape = next;
    }
    return v;
  }

  private build(n: Node): Node {
    const site = () => n.site;
    const t = this.table;
    const r = this.rank;
    const l = this.layout(n);
    switch (n.op) {
      case "param":
      case "state":
        return this.leafNode(n, l);
      case "reshape":
        return t.make("reshape", { shape: localShape(n.shape, l, r) }, [this.input(n, 0)], site);
      case "fusedLinear":
      case "matmul": {
        if (l.kind !== "partial") break;
        // row-parallel: this rank's columns of x times its columns of W; the bias once, on rank 0
        const x = this.plan.needs.get(n)![0]!;
        const bias = n.op === "fusedLinear" ? n.inputs[2] : undefined;
        if (holdsNothing(x, r)) {
          if (r === 0 && bias) return t.make("broadcast", { shape: n.shape }, [this.input(n, 2)], site);
          return t.make("constant", { value: 0, dtype: n.dtype, shape: n.shape }, [], site);
        }
        const [xi, wi] = [this.input(n, 0), this.input(n, 1)];
        if (r === 0 && bias) return t.make("fusedLinear", { transposeB: true }, [xi, wi, this.input(n, 2)], site);
        return t.make("matmul", { transposeB: true }, [xi, wi], site);
      }
      case "moeExperts": {
        const a = this.anchors.moe.get(n);
        if (!a) break;
        const needs = this.plan.needs.get(n)!;
        const weights = needs.slice(3);
        if (weights.some((w) => holdsNothing(w, r))) return t.make("constant", { value: 0, dtype: n.dtype, shape: n.shape }, [], site);
        const ins = n.inputs.map((_, i) => (i === n.inputs.length - 1 && !a.biasOwner[r] ? undefined : this.input(n, i)));
        // the down bias is added by the first rank of each expert's group only
        const downBias = ins[ins.length - 1] ?? t.make("constant", { value: 0, dtype: n.inputs[n.inputs.length - 1]!.dtype, shape: localShape(n.inputs[n.inputs.length - 1]!.shape, needs[needs.length - 1]!, r) }, [], site);
        const attrs = a.experts ? { ...n.attrs, firstExpert: a.experts[r]![0] } : n.attrs;
        return t.make("moeExperts", attrs, [...(ins.slice(0, -1) as Node[]), downBias], site);
      }
      case "gather": {
        if (l.kind !== "partial") break;
        // vocabulary-parallel embedding: ids outside this rank's rows read 0 (gather's rule for an index out of range)
        const table = this.plan.needs.get(n)![0]!;
        const start = singleAxis(table)!.parts[r]![0]![0];
        const ids = this.input(n, 1);
        const local = start === 0 ? ids : t.make("binary", { fn: "sub" }, [ids, t.make("constant", { value: start, dtype: ids.dtype, shape: ids.shape }, [])], site);
        return t.make("gather", { axis: 0 }, [this.input(n, 0), local], site);
      }
      case "sample": {
        const vocab = this.anchors.vocab.get(n);
        if (!vocab) break;
        return this.distributedSample(n as NodeOf<"sample">, vocab);
      }
      default:
        break;
    }
    const inputs = n.inputs.map((_, i) => this.input(n, i));
    return t.withInputs(n, inputs);
  }

  private leafNode(n: NodeOf<"param" | "state">, l: Layout): Node {
    const shape = localShape(n.shape, l, this.rank);
    const name = n.attrs.name;
    if (n.op === "param") {
      const decl = this.g.params.find((p) => p.name === name)!;
      const sliced: ParamDecl = l.kind === "split" && isStaticShape(decl.shape)
        ? { ...decl, shape, slice: { full: [...decl.shape], axes: l.axes.map((a) => ({ axis: a.axis, ranges: a.parts[this.rank]! })) } }
        : decl;
      this.params.set(name, sliced);
    } else {
      const decl = this.g.states.find((st) => st.name === name)!;
      this.states.set(name, { ...decl, shape });
    }
    return this.table.make(n.op, { ...n.attrs, shape }, [], () => n.site);
  }

  /**
   * sample over vocabulary-parallel logits: this rank's top C (logit, token id) candidates, gathered from every rank,
   * then `sample` over the N·C candidates with their ids (the exactness argument is in the file header).
   */
  private distributedSample(n: NodeOf<"sample">, vocab: readonly Part[]): Node {
    const t = this.table;
    const site = () => n.site;
    const N = this.strategy.ranks;
    const c = Math.min(this.strategy.sampleCandidates, ...vocab.map(partSize));
    const logits = this.input(n, 0);
    const rows = logits.shape[0]!;
    const values = t.make("topk", { k: c, result: "values" }, [logits], site);
    const local = t.make("topk", { k: c, result: "indices" }, [logits], site);
    const start = vocab[this.rank]![0]![0];
    const ids = start === 0 ? local : t.make("binary", { fn: "add" }, [local, t.make("constant", { value: start, dtype: "i32", shape: [rows, c] }, [])], site);
    const [seqValues, seqIds] = this.plan.ownSeqs.get(n)!;
    const gathered = (x: Node, seq: number) => {
      const all = t.make("allGather", { ranks: N, seq }, [x], site); // [N, R, C]
      return t.make("reshape", { shape: [rows, N * c] }, [t.make("transpose", { perm: [1, 0, 2] }, [all], site)], site);
    };
    const rest = [1, 2, 3, 4].map((i) => this.input(n, i));
    return t.make("sample", {}, [gathered(values, seqValues!), ...rest, gathered(ids, seqIds!)], site);
  }
}

/** The graphs of a rank set for `g` (a fused graph): rank r's graph computes its part of every value. */
export function shardGraph(g: Graph, strategy: ShardStrategy): RankSet {
  const s = resolveStrategy(strategy);
  const plan = planGraph(g, s);
  const ranks = Array.from({ length: s.ranks }, (_, r) => buildRank(g, plan, s, plan.anchors, r));
  // every rank must issue the same collectives: a pass bug otherwise
  const signature = (rg: Graph) => rg.entries.map((e) => graphNodesOf(entryResults(e)).filter((n) => isCollective(n.op)).map((n) => `${n.op}#${(n.attrs as { seq: number }).seq}:${n.dtype}[${n.shape.join(",")}]`).sort().join(" ")).join("\n");
  const first = signature(ranks[0]!);
  ranks.forEach((rg, r) => {
    if (signature(rg) !== first) throw new ShardError(`internal: rank ${r}'s collectives differ from rank 0's:\n  ${signature(rg)}\n  vs\n  ${first}`);
  });
  const collectives: Record<string, number> = {};
  for (const e of ranks[0]!.entries) collectives[e.name] = graphNodesOf(entryResults(e)).filter((n) => isCollective(n.op)).length;
  return { strategy: s, ranks, splitOutputs: plan.splitOutputs, collectives };
}

function buildRank(g: Graph, plan: GraphPlan, s: Required<ShardStrategy>, anchors: Anchors, rank: number): Graph {
  const b = new RankBuilder(g, plan, s, anchors, rank);
  const entries: EntryPoint[] = g.entries.map((e) => {
    const outputs: EntryOutput[] = e.outputs.map((o) => ({ name: o.name, node: plan.splitOutputs[e.name]![o.name] ? b.value(o.node) : b.convert(o.node, REPLICATED) }));
    // a state this rank holds nothing of (no heads of that layer) has no update
    const updates: EntryOutput[] = e.updates.flatMap((u) => (holdsNothing(plan.layouts.get(u.node)!, rank) ? [] : [{ name: u.name, node: b.value(u.node) }]));
    return { ...e, outputs, updates };
  });
  const params = g.params.flatMap((p) => (b.params.has(p.name) ? [b.params.get(p.name)!] : []));
  const states = g.states.flatMap((st) => (b.states.has(st.name) ? [b.states.get(st.name)!] : []));
  return { name: g.name, symbols: { ...g.symbols }, params, states, entries, table: g.table };
}

export type { Layout, Part } from "./shard-layout.js";
