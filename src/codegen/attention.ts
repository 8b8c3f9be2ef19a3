// Code generation for `sinkAttention`: scaled dot-product attention with GQA, a position-based causal
// (optionally sliding-window) mask and an optional per-head sink logit in the softmax denominator.
//
//   q [...B, T, H, D], k and v [...B, R, KVH, D], qpos i32 [...B, T], kpos i32 [...B, S], sinks [H]
//   → out [...B, T, H, D]; the keys are the first S of k's R rows (R = S, or more: a KV cache read in place)
//
// Key j is visible to query i iff kpos[j] >= 0 && kpos[j] <= qpos[i] && (window == 0 || qpos[i] − kpos[j] < window);
// the sink logit joins the softmax as one more column (max included), then is dropped.
//
// Both kernels treat the G = H/KVH query heads that share a kv head as extra rows: the rows of one
// (batch, kv head) are r = t·G + g (query t, head kvh·G + g), so K and V are read once per kv head.
//
// - prefill (attention-prefill.cu.njk): flash-attention style, one block per 64 rows of one kv head;
//   key tiles stream through shared memory with an online softmax in f32; key tiles no row of the
//   block can see (beyond the causal frontier, outside the window, empty slots) are skipped.
//   bf16/f16 use mma.sync m16n8k16 tensor-core tiles for QKᵀ and PV (P rounded to the input dtype);
//   f32 runs the same fragment layout with SIMT FMAs.
// - decode (attention-decode.cu.njk), chosen when T is static and T·G ≤ 16: split-KV. Each block
//   takes SPLIT (64) keys of one kv head for all T·G rows and writes an unnormalized partial (O, max, sum)
//   to scratch; a combine launch merges the splits (the sink counts once, in split 0). With a single
//   split the first kernel writes the output itself and the combine launch returns at once.
//
// Symbolic T and S are kernel arguments; H, KVH, D, the window, the scale and the dtypes are baked in.

import { loadExpr, storeExpr } from "./elementwise.js";
import type { DType } from "../ir/dtype.js";
import type { NodeOf } from "../ir/node.js";
import { type Dim, dimAdd, formatShape, isStaticDim } from "../ir/shape.js";
import { type ArgBinding, constSize, type KernelLaunch, type NodeKernels, type SizeExpr, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

/** Rows (query, head-in-group) per prefill block: 4 warps × 16. */
export const PREFILL_ROWS = 64;
/** Keys per shared-memory tile in prefill (tensor-core path; the f32 SIMT path uses 32). */
export const PREFILL_KEYS_MMA = 64;
export const PREFILL_KEYS_SIMT = 32;
/** Largest T·G the decode kernel takes; larger static T goes to the prefill kernel. */
export const DECODE_MAX_ROWS = 16;
/** Keys per decode block (one split), processed in tiles of decodeTile(D) keys (shared memory stays under 48 KiB). */
export const DECODE_SPLIT = 64;
export const decodeTile = (headDim: number): number => (headDim > 64 ? 32 : 64);
const THREADS = 128;

const SUPPORTED_HEAD_DIMS = [16, 32, 64, 128];
const FLOAT_DTYPES: readonly DType[] = ["f32", "bf16", "f16"];

function fail(node: NodeOf<"sinkAttention">, msg: string): never {
  const [q, k] = [node.inputs[0]!, node.inputs[1]!];
  throw new Error(`tsgc codegen: sinkAttention (q ${q.dtype}${formatShape(q.shape)}, k ${k.dtype}${formatShape(k.shape)}): ${msg}`);
}

/** Exact C spelling of an f32 constant (its bit pattern), so sources never depend on decimal printing. */
export function f32Literal(x: number): string {
  if (Number.isNaN(x)) return "__int_as_float(0x7fc00000)";
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return `__int_as_float(0x${bits.toString(16).padStart(8, "0")})`;
}

function product(dims: readonly Dim[]): SizeExpr {
  return dims.length === 0 ? constSize(1) : sizeExpr(dims);
}

interface AttnSpec {
  readonly dtype: DType;
  readonly sinkDtype: DType | undefined;
  readonly batch: readonly Dim[];
  readonly t: Dim;
  readonly s: Dim;
  /** Rows of k and v per batch entry (≥ s). */
  readonly rows: Dim;
  readonly h: number;
  readonly kvh: number;
  readonly d: number;
  readonly g: number;
  readonly window: number;
  readonly scale: number;
}

function analyze(node: NodeOf<"sinkAttention">): AttnSpec {
  const [q, k, qpos, kpos] = [node.inputs[0]!, node.inputs[1]!, node.inputs[3]!, node.inputs[4]!];
  const r = q.shape.length;
  const [t, h, d] = q.shape.slice(r - 3) as [Dim, Dim, Dim];
  const [rows, kvh] = k.shape.slice(r - 3) as [Dim, Dim];
  const s = kpos.shape[kpos.shape.length - 1]!;
  if (!FLOAT_DTYPES.includes(q.dtype)) fail(node, `dtype ${q.dtype} is not supported (f32, bf16, f16)`);
  if (!isStaticDim(d) || !SUPPORTED_HEAD_DIMS.includes(d)) fail(node, `head dim ${d} is not supported (static ${SUPPORTED_HEAD_DIMS.join(", ")})`);
  if (!isStaticDim(h) || !isStaticDim(kvh)) fail(node, `head counts must be static`);
  if (qpos.dtype !== "i32" || kpos.dtype !== "i32") fail(node, `positions must be i32, got qpos ${qpos.dtype} and kpos ${kpos.dtype}`);
  const sinks = node.attrs.hasSinks ? node.inputs[5]! : undefined;
  if (sinks && !FLOAT_DTYPES.includes(sinks.dtype)) fail(node, `sinks dtype ${sinks.dtype} is not supported`);
  return {
    dtype: q.dtype,
    sinkDtype: sinks?.dtype,
    batch: q.shape.slice(0, r - 3),
    t,
    s,
    rows,
    h,
    kvh,
    d,
    g: h / kvh,
    window: node.attrs.window,
    scale: node.attrs.scale,
  };
}

/** Whether the node runs the decode (split-KV) kernels rather than the prefill kernel. */
export function usesDecodeKernel(node: NodeOf<"sinkAttention">): boolean {
  const a = analyze(node);
  return isStaticDim(a.t) && a.t * a.g <= DECODE_MAX_ROWS;
}

/** What the attention templates (sink and paged) read and write q, k, v, out and the sinks with. */
export function attentionElementContext(dtype: DType, sinkDtype: DType | undefined): Record<string, unknown> {
  return {
    dtype,
    elemType: CUDA_STORAGE_TYPE[dtype as "f32" | "bf16" | "f16"],
    loadElem: loadExpr(dtype, "p[i]"),
    storeElem: storeExpr(dtype, "x"),
    hasSinks: sinkDtype !== undefined,
    sinkType: sinkDtype ? CUDA_STORAGE_TYPE[sinkDtype as "f32" | "bf16" | "f16"] : "float",
    loadSink: sinkDtype ? loadExpr(sinkDtype, "p[i]") : "0.f",
  };
}

function templateContext(a: AttnSpec, entry: string): Record<string, unknown> {
  return {
    entry,
    ...attentionElementContext(a.dtype, a.sinkDtype),
    H: a.h,
    KVH: a.kvh,
    D: a.d,
    G: a.g,
    window: a.window,
    scale: f32Literal(a.scale),
    scaleValue: Math.fround(a.scale),
  };
}

function specName(family: string, a: AttnSpec, extra = ""): string {
  const w = a.window === 0 ? "causal" : `w${a.window}`;
  const sink = a.sinkDtype ? `_sink${a.sinkDtype}` : "";
  const scaleBits = new Uint32Array(new Float32Array([a.scale]).buffer)[0]!.toString(16);
  return `${family}_${a.dtype}_h${a.h}kv${a.kvh}d${a.d}${extra}_${w}${sink}_s${scaleBits}`;
}

function inputArgs(hasSinks: boolean): ArgBinding[] {
  const n = hasSinks ? 6 : 5;
  return Array.from({ length: n }, (_, index) => ({ kind: "input", index }) as const);
}

function prefillKernels(a: AttnSpec): NodeKernels {
  const mma = a.dtype !== "f32";
  const bn = mma ? PREFILL_KEYS_MMA : PREFILL_KEYS_SIMT;
  const entry = specName("attention_prefill", a);
  const source = renderTemplate("attention-prefill.cu.njk", { ...templateContext(a, entry), mma, mmaType: a.dtype === "f16" ? "f16" : "bf16", BM: PREFILL_ROWS, BN: bn, threads: THREADS });
  // the SIMT path keeps Q, K, V and P tiles in dynamic shared memory (f32, padded)
  const d = a.d;
  const simtShared = 4 * ((PREFILL_ROWS * (d + 1)) + 2 * bn * (d + 1) + PREFILL_ROWS * (bn + 1));
  const launch: KernelLaunch = {
    kernel: { name: entry, family: "attention", source, entry },
    grid: [sizeExpr([a.t], a.g, PREFILL_ROWS), constSize(a.kvh), product(a.batch)],
    block: [THREADS, 1, 1],
    sharedBytes: mma ? 0 : simtShared,
    args: [...inputArgs(a.sinkDtype !== undefined), { kind: "output" }, { kind: "i32", value: sizeExpr([a.t]) }, { kind: "i32", value: sizeExpr([a.s]) }, { kind: "i32", value: sizeExpr([a.rows]) }],
  };
  return { launches: [launch], scratchBytes: [] };
}

function decodeKernels(a: AttnSpec): NodeKernels {
  const t = a.t as number;
  const rows = t * a.g;
  const ctx = { ...templateContext(a, ""), T: t, R: rows, BN: decodeTile(a.d), SPLIT: DECODE_SPLIT, threads: THREADS };
  const splitEntry = specName("attention_decode", a, `_t${t}`);
  const combineEntry = specName("attention_combine", a, `_t${t}`);
  const splitSource = renderTemplate("attention-decode.cu.njk", { ...ctx, entry: splitEntry, stage: "split" });
  const combineSource = renderTemplate("attention-decode.cu.njk", { ...ctx, entry: combineEntry, stage: "combine" });
  const batch = product(a.batch);
  const nkArg: ArgBinding = { kind: "i32", value: sizeExpr([a.s]) };
  // partial results per (batch, kv head, split): O [R, D] and (max, sum) [R, 2], f32;
  // splits = ceil(S / SPLIT) ≤ (S + SPLIT − 1) / SPLIT, which a SizeExpr can bound
  const splitsBound = [...a.batch, dimAdd(a.s, DECODE_SPLIT - 1)];
  const scratchO = sizeExpr(splitsBound, a.kvh * rows * a.d * 4, DECODE_SPLIT);
  const scratchMl = sizeExpr(splitsBound, a.kvh * rows * 2 * 4, DECODE_SPLIT);
  const scratch: ArgBinding[] = [{ kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }];
  const split: KernelLaunch = {
    kernel: { name: splitEntry, family: "attention", source: splitSource, entry: splitEntry },
    grid: [sizeExpr([a.s], 1, DECODE_SPLIT), constSize(a.kvh), batch],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: [...inputArgs(a.sinkDtype !== undefined), { kind: "output" }, ...scratch, nkArg, { kind: "i32", value: sizeExpr([a.rows]) }],
  };
  const combine: KernelLaunch = {
    kernel: { name: combineEntry, family: "attention", source: combineSource, entry: combineEntry },
    grid: [constSize(rows), constSize(a.kvh), batch],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "output" }, ...scratch, nkArg],
  };
  return { launches: [split, combine], scratchBytes: [scratchO, scratchMl] };
}

/** Kernels for one `sinkAttention` node: decode (split-KV + combine) for small static T, else prefill. */
export function emitSinkAttention(node: NodeOf<"sinkAttention">): NodeKernels {
  const a = analyze(node);
  return isStaticDim(a.t) && a.t * a.g <= DECODE_MAX_ROWS ? decodeKernels(a) : prefillKernels(a);
}
