// Code generation for `pagedAttention` and `seqTokenRanges` (templates/paged-attention.cu.njk; shapes and
// thread mapping in its header).
//
//   q [T, H, D], k, v [T, KVH, D], kPool, vPool [P, KVH, D], positions, tokenSeqs [T], contextLens [S],
//   blockTable [S, MB], ranges [S, 2] (, sinks [H]) → out [T, H, D]
//
// bf16/f16 with D ∈ {16, 32, 64} and G = H/KVH dividing 64 and ≤ 16 take the tensor-core kernels: "decode"
// (split-KV, for tokens that are their sequence's only token in the step) and "prefill" (query tiles of
// 64/G tokens, for sequences with several step tokens), both launched every call (each returns at once
// for the other's tokens, so one plan serves any mix; a one-token bucket launches decode alone), plus
// "combine" when the decode splits Z > 1. Every
// other shape (and f32) takes the "generic" kernel, a warp per (token, head).
// Z comes from the token bound of the plan's bucket: enough (token, kv head, split) blocks to fill the GPU
// at small batches (batch 1: 16 splits), a single split from 64 tokens up.

import { type DType } from "../ir/dtype.js";
import type { NodeOf } from "../ir/node.js";
import { type Dim, formatShape, isStaticDim, type SymbolBounds, dimBound } from "../ir/shape.js";
import { attentionElementContext, f32Literal } from "./attention.js";
import { loadExpr, storeExpr } from "./elementwise.js";
import { type ArgBinding, constSize, type KernelLaunch, type NodeKernels, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

/** Blocks the decode kernel aims for (two per SM of a 132-SM GPU); splits per token follow from the token bound. */
const DECODE_TARGET_BLOCKS = 264;
export const MAX_DECODE_SPLITS = 16;
const MMA_HEAD_DIMS = [16, 32, 64];
const FLOAT_DTYPES: readonly DType[] = ["f32", "bf16", "f16"];

function fail(node: NodeOf<"pagedAttention">, msg: string): never {
  const [q, kPool] = [node.inputs[0]!, node.inputs[3]!];
  throw new Error(`tsgc codegen: pagedAttention (q ${q.dtype}${formatShape(q.shape)}, pool ${kPool.dtype}${formatShape(kPool.shape)}): ${msg}`);
}

interface PagedSpec {
  readonly dtype: DType;
  readonly tokens: Dim;
  readonly seqs: Dim;
  readonly poolRows: Dim;
  readonly h: number;
  readonly kvh: number;
  readonly d: number;
  readonly g: number;
  readonly mb: number;
  readonly sinkDtype: DType | undefined;
}

function analyze(node: NodeOf<"pagedAttention">): PagedSpec {
  const [q, k, , kPool, , , , contextLens, blockTable] = node.inputs;
  if (!FLOAT_DTYPES.includes(q!.dtype)) fail(node, `dtype ${q!.dtype} is not supported (f32, bf16, f16)`);
  const [tokens, h, d] = q!.shape as [Dim, Dim, Dim];
  const kvh = k!.shape[1]!;
  const mb = blockTable!.shape[1]!;
  if (!isStaticDim(h) || !isStaticDim(kvh) || !isStaticDim(d) || !isStaticDim(mb)) fail(node, `heads, head dim and block-table width must be static`);
  if (node.inputs.length !== (node.attrs.hasSinks ? 11 : 10)) fail(node, `the seqTokenRanges input is missing (the paged-attention fusion adds it)`);
  const sinks = node.attrs.hasSinks ? node.inputs[10]! : undefined;
  if (sinks && !FLOAT_DTYPES.includes(sinks.dtype)) fail(node, `sinks dtype ${sinks.dtype} is not supported`);
  return { dtype: q!.dtype, tokens, seqs: contextLens!.shape[0]!, poolRows: kPool!.shape[0]!, h, kvh, d, g: h / kvh, mb, sinkDtype: sinks?.dtype };
}

/** Whether the node takes the tensor-core kernels (else the generic one). */
export function pagedUsesTensorCores(node: NodeOf<"pagedAttention">): boolean {
  const a = analyze(node);
  return a.dtype !== "f32" && MMA_HEAD_DIMS.includes(a.d) && a.g <= 16 && 64 % a.g === 0;
}

/** Decode splits for a token bound: enough blocks to fill the GPU, at most MAX_DECODE_SPLITS. */
export function decodeSplits(tokenBound: number, kvHeads: number): number {
  return Math.max(1, Math.min(MAX_DECODE_SPLITS, Math.ceil(DECODE_TARGET_BLOCKS / Math.max(1, tokenBound * kvHeads))));
}

/** Kernels for one pagedAttention node (see the header). */
export function emitPagedAttention(node: NodeOf<"pagedAttention">, bounds: SymbolBounds = {}): NodeKernels {
  const a = analyze(node);
  const { scale, window, blockSize, hasSinks } = node.attrs;
  const mma = pagedUsesTensorCores(node);
  const splits = mma ? decodeSplits(dimBound(a.tokens, bounds), a.kvh) : 1;
  const ctx = {
    ...attentionElementContext(a.dtype, a.sinkDtype),
    hasSinks,
    mmaType: a.dtype === "f16" ? "f16" : "bf16",
    mma,
    D: a.d,
    G: a.g,
    H: a.h,
    KVH: a.kvh,
    blockSize,
    MB: a.mb,
    window,
    Z: splits,
    scale: f32Literal(scale),
  };
  const w = window === 0 ? "causal" : `w${window}`;
  const sink = a.sinkDtype ? `_sink${a.sinkDtype}` : "";
  const scaleBits = new Uint32Array(new Float32Array([scale]).buffer)[0]!.toString(16);
  const name = (stage: string, extra = "") => `paged_${stage}_${a.dtype}_h${a.h}kv${a.kvh}d${a.d}_b${blockSize}mb${a.mb}${extra}_${w}${sink}_s${scaleBits}`;
  // only the decode split and its combine depend on Z: the others render with Z = 1 so their sources are shared across buckets
  const render = (stage: string, entry: string) => ({
    name: entry,
    family: "attention",
    source: renderTemplate("paged-attention.cu.njk", { ...ctx, ...(stage === "decode" || stage === "combine" ? {} : { Z: 1 }), stage, entry }),
    entry,
  });
  const inputs: ArgBinding[] = Array.from({ length: hasSinks ? 11 : 10 }, (_, index) => ({ kind: "input", index }));
  const sizes: ArgBinding[] = [{ kind: "i32", value: sizeExpr([a.tokens]) }, { kind: "i32", value: sizeExpr([a.seqs]) }, { kind: "i32", value: sizeExpr([a.poolRows]) }];
  const tokens = sizeExpr([a.tokens]);
  if (!mma) {
    const launch: KernelLaunch = { kernel: render("generic", name("generic")), grid: [tokens, constSize(Math.ceil(a.h / 4)), constSize(1)], block: [128, 1, 1], sharedBytes: 0, args: [...inputs, { kind: "output" }, ...sizes] };
    return { launches: [launch], scratchBytes: [] };
  }
  const scratch: ArgBinding[] = [{ kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }];
  const decode: KernelLaunch = {
    kernel: render("decode", name("decode", `_z${splits}`)),
    grid: [tokens, constSize(a.kvh), constSize(splits)],
    block: [128, 1, 1],
    sharedBytes: 0,
    args: [...inputs, { kind: "output" }, ...scratch, ...sizes],
  };
  const prefill: KernelLaunch = {
    kernel: render("prefill", name("prefill")),
    grid: [sizeExpr([a.tokens], 1, 64 / a.g), constSize(a.kvh), constSize(1)],
    block: [128, 1, 1],
    sharedBytes: 0,
    args: [...inputs, { kind: "output" }, ...sizes],
  };
  // a bucket of one token has no sequence with several step tokens: the prefill kernel would only return
  const launches = dimBound(a.tokens, bounds) === 1 ? [decode] : [decode, prefill];
  if (splits > 1) {
    launches.push({
      kernel: render("combine", name("combine", `_z${splits}`)),
      grid: [tokens, constSize(a.kvh), constSize(1)],
      // a thread per (head, dim) of the kv head's G heads (PA_CT in the template): with 128 threads each walked 4 of
      // them one after another, 5.7 µs a launch at batch 1 on an H200
      block: [Math.min(1024, a.g * a.d), 1, 1],
      sharedBytes: 0,
      args: [{ kind: "output" }, ...scratch, { kind: "input", index: 6 }, { kind: "input", index: 9 }, sizes[0]!, sizes[1]!],
    });
  }
  // decode partials: O f32 [T, KVH, Z, G, D] and (m, l) f32 [T, KVH, Z, G, 2] (one byte each when unused)
  const partRows = a.kvh * splits * a.g;
  return {
    launches,
    scratchBytes: splits > 1 ? [sizeExpr([a.tokens], partRows * a.d * 4), sizeExpr([a.tokens], partRows * 2 * 4)] : [constSize(4), constSize(4)],
  };
}

/** seqTokenRanges: one block of 1024 threads (stage "ranges"). */
export function emitSeqTokenRanges(node: NodeOf<"seqTokenRanges">): NodeKernels {
  const [tokenSeqs, contextLens] = [node.inputs[0]!, node.inputs[1]!];
  const entry = "paged_seq_token_ranges";
  const source = renderTemplate("paged-attention.cu.njk", {
    stage: "ranges", entry, mma: false, dtype: "f32", mmaType: "bf16", elemType: "float", loadElem: "p[i]", storeElem: "x", hasSinks: false, sinkType: "float", loadSink: "0.f",
    D: 1, G: 1, H: 1, KVH: 1, blockSize: 1, MB: 1, window: 0, Z: 1, scale: "1.f",
  });
  const launch: KernelLaunch = {
    kernel: { name: entry, family: "attention", source, entry },
    grid: [constSize(1), constSize(1), constSize(1)],
    block: [1024, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "input", index: 0 }, { kind: "output" }, { kind: "i32", value: sizeExpr([tokenSeqs.shape[0]!]) }, { kind: "i32", value: sizeExpr([contextLens.shape[0]!]) }],
  };
  return { launches: [launch], scratchBytes: [] };
}
