// Lowering of every IR op to kernels: the per-op table code generation is driven by.
// A mapped type over Op, so an op without a lowering does not compile. Params, state and inputs are
// leaves (the caller fills them); reshape is a view (tensors are contiguous row-major), and so is a
// slice that keeps a leading block of its operand (start 0, step 1, every dim before its axis 1).

import type { Node, NodeOf } from "../ir/node.js";
import type { Op } from "../ir/ops.js";
import type { NodeLowering } from "../lower/schedule.js";
import { emitSinkAttention } from "./attention.js";
import { emitDequantMxfp4 } from "./dequant.js";
import {
  emitBinary, emitBroadcast, emitCast, emitCompare, emitConstant, emitFusedElementwise, emitIota, emitLiteral, emitTernary, emitUnary,
} from "./elementwise.js";
import { type LowerTarget, type NodeKernels, PORTABLE_TARGET } from "../lower/kernel.js";
import { emitFusedLinear, emitGroupedLinear, emitGroupedLinearLayer, emitMatmul } from "./matmul.js";
import { emitMoeExperts } from "./moe.js";
import { emitConcat, emitGather, emitScatter, emitScatterInPlace, emitSlice, emitTranspose, emitUniqueIndices } from "./movement.js";
import { emitPagedAttention, emitSeqTokenRanges } from "./paged-attention.js";
import { emitSample } from "./sample.js";
import { emitMxfp4Matmul } from "./mxfp4-matmul.js";
import { emitReduce } from "./reduce.js";
import { emitFusedRmsNorm, emitResidualRmsNormPair } from "./rmsnorm.js";
import { emitFusedRope } from "./rope.js";
import { emitTopk, emitTopkPair } from "./topk.js";

/** Symbol bounds let an emitter pick a kernel for small symbolic sizes (a GEMV when rows ≤ 8); the target, its instructions. */
type Lowering<K extends Op> = (n: NodeOf<K>, bounds: Readonly<Record<string, number>>, target: LowerTarget) => NodeLowering;

const LEAF: NodeLowering = { kind: "leaf" };
const VIEW: NodeLowering = { kind: "view" };
/** Collectives run on NCCL between the kernels (runtime/executor.ts), no kernel of ours. */
const COLLECTIVE: NodeLowering = { kind: "collective" };
const kernels = <K extends Op>(emit: (n: NodeOf<K>, bounds: Readonly<Record<string, number>>) => NodeKernels): Lowering<K> => (n, bounds) => ({ kind: "kernels", kernels: emit(n, bounds) });
/** The dense linear layers: their GEMM tiles depend on the target's instructions (wgmma on sm_90a). */
const linearKernels = <K extends Op>(emit: (n: NodeOf<K>, o: { symbolBounds: Readonly<Record<string, number>>; wgmma: boolean }) => NodeKernels): Lowering<K> =>
  (n, bounds, target) => ({ kind: "kernels", kernels: emit(n, { symbolBounds: bounds, wgmma: target.wgmma }) });

export const LOWERINGS: { readonly [K in Op]: Lowering<K> } = {
  input: () => LEAF,
  param: () => LEAF,
  state: () => LEAF,
  constant: kernels(emitConstant),
  literal: kernels(emitLiteral),
  iota: kernels(emitIota),
  unary: kernels(emitUnary),
  binary: kernels(emitBinary),
  ternary: kernels(emitTernary),
  compare: kernels(emitCompare),
  cast: kernels(emitCast),
  reduce: kernels(emitReduce),
  matmul: linearKernels(emitMatmul),
  reshape: () => VIEW,
  transpose: kernels(emitTranspose),
  slice: (n, bounds) => (isLeadingSlice(n) ? VIEW : { kind: "kernels", kernels: emitSlice(n) }),
  concat: kernels(emitConcat),
  gather: kernels(emitGather),
  scatter: kernels(emitScatter),
  broadcast: kernels(emitBroadcast),
  topk: kernels(emitTopk),
  sample: kernels(emitSample),
  dequantMxfp4: kernels(emitDequantMxfp4),
  fusedRmsNorm: kernels(emitFusedRmsNorm),
  sinkAttention: kernels(emitSinkAttention),
  pagedAttention: kernels(emitPagedAttention),
  seqTokenRanges: kernels(emitSeqTokenRanges),
  uniqueIndices: kernels(emitUniqueIndices),
  moeExperts: (n, bounds, target) => ({ kind: "kernels", kernels: emitMoeExperts(n, bounds, { wgmma: target.wgmma }) }),
  mxfp4Matmul: kernels((n, bounds) => emitMxfp4Matmul(n, { symbolBounds: bounds })),
  fusedLinear: linearKernels(emitFusedLinear),
  groupedLinear: linearKernels(emitGroupedLinearLayer),
  fusedRope: kernels(emitFusedRope),
  fusedElementwise: kernels(emitFusedElementwise),
  allReduce: () => COLLECTIVE,
  allGather: () => COLLECTIVE,
  reduceScatter: () => COLLECTIVE,
};

/** A slice that is the first elements of its operand's storage: a view, no kernel. */
function isLeadingSlice(n: NodeOf<"slice">): boolean {
  const { axis, start, step } = n.attrs;
  return start === 0 && step === 1 && n.inputs[0]!.shape.slice(0, axis).every((d) => d === 1);
}

/** A state update's scatter, written into the state itself. */
export function lowerInPlaceUpdate(node: NodeOf<"scatter">, bounds: Readonly<Record<string, number>>): NodeKernels {
  return emitScatterInPlace(node, bounds);
}

/** Joint kernels for sibling nodes: a residual norm's sum and normed value, top-k's values and indices, the layers of a groupedLinear. */
export function lowerSiblings(siblings: readonly Node[], bounds: Readonly<Record<string, number>> = {}, target: LowerTarget = PORTABLE_TARGET): { primary: Node; kernels: NodeKernels } | undefined {
  const byResult = (r: string) => siblings.find((n) => (n.attrs as Readonly<Record<string, unknown>>)["result"] === r);
  const op = siblings[0]!.op;
  if (op === "groupedLinear") {
    const layers = siblings as readonly NodeOf<"groupedLinear">[];
    if (layers.length !== (layers[0]!.inputs.length - 1) / 2) return undefined; // not every layer is used here: each alone
    return { primary: layers.find((n) => n.attrs.result === 0)!, kernels: emitGroupedLinear(layers, { symbolBounds: bounds, wgmma: target.wgmma }) };
  }
  if (siblings.length !== 2) return undefined;
  if (op === "fusedRmsNorm") {
    const [normed, sum] = [byResult("normed"), byResult("sum")];
    if (!normed || !sum || !(normed as NodeOf<"fusedRmsNorm">).attrs.hasResidual) return undefined;
    return { primary: normed, kernels: emitResidualRmsNormPair(normed as NodeOf<"fusedRmsNorm">, sum as NodeOf<"fusedRmsNorm">) };
  }
  if (op === "topk") {
    const [indices, values] = [byResult("indices"), byResult("values")];
    if (!indices || !values) return undefined;
    return { primary: indices, kernels: emitTopkPair(indices as NodeOf<"topk">, values as NodeOf<"topk">) };
  }
  return undefined;
}

/** How code generation lowers `node` given the graph's symbol bounds and the target; errors name the op and its call site. */
export function lowerNode(node: Node, bounds: Readonly<Record<string, number>>, target: LowerTarget = PORTABLE_TARGET): NodeLowering {
  try {
    return (LOWERINGS[node.op] as Lowering<Op>)(node as NodeOf<Op>, bounds, target);
  } catch (err) {
    const site = node.site ? ` (built at ${node.site.file}:${node.site.line})` : "";
    throw new Error(`code generation for ${node.op} ${node.dtype}[${node.shape.join(", ")}]${site}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
