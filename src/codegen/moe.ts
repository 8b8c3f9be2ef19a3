// Code generation for `moeExperts`: gpt-oss's router → top-k → softmax → clamped-SwiGLU experts →
// weighted sum, with dense ([E, in, out], input-major) or MXFP4 ([E, out, in/32, 16] blocks read
// packed, never dequantized to memory) expert weights.
//
//   x [T, D]; router W [E, D], b [E]; dense: gate_up W [E, D, 2I], b [E, 2I], down W [E, I, D], b [E, D]
//   mxfp4: gate_up blocks [E, 2I, D/32, 16], scales [E, 2I, D/32], b; down blocks [E, D, I/32, 16], scales [E, D, I/32], b
//   → y [T, D]
//
// Three launches, all numerics in f32 with every intermediate rounded to x's dtype exactly where the
// builder's expansion rounds (the interpreter's `moeExperts`):
// 1. route (moe-route.cu.njk): one block per token: router GEMV, top-k (ties to the lower index, NaN
//    first), softmax over the k → scratch 0 (expert ids, i32 [T, K]) and scratch 1 (weights, f32 [T, K]).
//    (Selecting inside each gate_up/down block from router logits instead, to save this launch, measured
//    slower on an H200: 0.283 against 0.221 ms a layer at 8 tokens; bench/NOTES.md.)
// 2. gate_up (moe-experts.cu.njk, stage "gateup"): one grid row per (token, slot) pair: x·W + b for the
//    gate/up column pairs with the SwiGLU epilogue → scratch 2 (h, f32 [T, K, I]).
// 3. down (stage "down"): one grid row per token; a block owns output columns of that token and loops
//    over the token's K experts: h·Wd + bd, times the routing weight, summed in a fixed order, so the
//    result is deterministic (no atomics).
// That token loop serves decode-sized token counts (the token dim's bound ≤ GROUPED_MIN_TOKENS). Above
// it, MXFP4 experts take the grouped-GEMM path (moe-grouped.cu.njk), six launches:
// 1. route, as above;
// 2. bucket: pairs counted per expert, segments laid out in expert order, cut into row tiles of
//    GROUPED_BM rows (scratch 2: tile count; 3: tiles {expert, first row, rows}; 4: perm, sorted row → pair);
// 3. gate_up: tensor-core (bf16/f16) or SIMT (f32) GEMM per (row tile, column tile), x rows gathered
//    through perm, the expert's MXFP4 tile dequantized into shared memory, SwiGLU epilogue → scratch 5
//    (h in x's dtype, [T·K, I], sorted rows);
// 4. down: h · Wdᵀ, + bias, × routing weight → scratch 6 (y in x's dtype, [T·K, D], by pair);
// 5. combine: out[t] = rd(Σ_slot y[t·K + slot]) in slot order (f32 sum, one rounding), deterministic.
// At decode sizes (see STREAM_MAX_ROWS) bf16/f16 activations with MXFP4 experts take
// the "stream" variant of the grouped path instead: the same bucketing and combine, with
// 1./2. route and bucket, as above (MoeOptions.streamRouting "logits": router logits over many small blocks → scratch 7,
//    and a bucket that selects the experts itself, lib/moe-topk.cuh.njk, the code route runs);
// 3./4. gate_up and down stream each active expert's weights once, straight into mma fragments (as its A operand,
//    the tile's 16 rows its n; StreamTiling), never through shared memory (moe-grouped.cu.njk, variant "stream").
// Dense expert weights keep the token loop at every size.
// Expert parallelism (firstExpert: the weights hold E_local of the router's E experts): the selection marks another
// rank's picks −1 (lib/moe-topk.cuh.njk) and every later stage skips them (the grouped paths' bucket places none, their
// combine sums only this rank's), so a rank computes only its experts' pairs; the ranks' outputs sum (an allReduce)
// to the MoE.

import { type DType, MXFP4_BLOCK, roundTo } from "../ir/dtype.js";
import type { Node, NodeOf } from "../ir/node.js";
import { type Dim, dimAdd, formatShape, isStaticDim, type SymbolBounds, dimBound } from "../ir/shape.js";
import { f32Literal } from "./attention.js";
import { loadExpr, storeExpr } from "./elementwise.js";
import { type ArgBinding, constSize, type KernelLaunch, type NodeKernels, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";
import { wgmmaShapes } from "./wgmma.js";

const THREADS = 256;
const WARPS = THREADS / 32;
/** Dense gate_up: column pairs per block (one per lane). */
export const DENSE_GATEUP_PAIRS = 32;
/** Dense down: output columns per block (two per lane). */
export const DENSE_DOWN_COLS = 64;
/** MXFP4 gate_up: column pairs per block (two per warp). */
export const MXFP4_GATEUP_PAIRS = 2 * WARPS;
/** MXFP4 down: output rows per block (two per warp). */
export const MXFP4_DOWN_ROWS = 2 * WARPS;

const FLOAT_DTYPES: readonly DType[] = ["f32", "bf16", "f16"];
/** One letter per operand dtype in entry names: f32, bf16, f16. */
const DTYPE_TAG = { f32: "f", bf16: "b", f16: "h" } as const;

function fail(node: NodeOf<"moeExperts">, msg: string): never {
  const x = node.inputs[0]!;
  throw new Error(`tsgc codegen: moeExperts (${node.attrs.weightFormat}, x ${x.dtype}${formatShape(x.shape)}): ${msg}`);
}

interface Loader {
  readonly name: string;
  readonly dtype: DType;
  readonly ctype: string;
  readonly expr: string;
}

function loader(node: NodeOf<"moeExperts">, name: string, t: Node): Loader {
  if (!FLOAT_DTYPES.includes(t.dtype)) fail(node, `${name} has dtype ${t.dtype}; expected f32, bf16 or f16`);
  return { name, dtype: t.dtype, ctype: CUDA_STORAGE_TYPE[t.dtype as "f32" | "bf16" | "f16"], expr: loadExpr(t.dtype, "p[i]") };
}

function roundExpr(dtype: DType): string {
  switch (dtype) {
    case "f32": return "x";
    case "bf16": return "bf16_to_f32(f32_to_bf16(x))";
    case "f16": return "f16_to_f32(f32_to_f16(x))";
    default: throw new Error(`tsgc codegen: no rounding for ${dtype}`);
  }
}

interface MoeSpec {
  readonly dtype: DType;
  readonly t: Dim;
  readonly d: number;
  readonly e: number;
  readonly k: number;
  readonly inter: number;
  readonly mxfp4: boolean;
  /** Expert parallelism: this rank's experts, first … first + local − 1 of the router's. */
  readonly ep?: { readonly first: number; readonly local: number };
}

function analyze(node: NodeOf<"moeExperts">): MoeSpec {
  const x = node.inputs[0]!;
  if (!FLOAT_DTYPES.includes(x.dtype)) fail(node, `dtype ${x.dtype} is not supported (f32, bf16, f16)`);
  const [t, d] = x.shape as [Dim, Dim];
  const e = node.inputs[1]!.shape[0]!;
  if (!isStaticDim(d)) fail(node, `hidden size must be static`);
  if (!isStaticDim(e)) fail(node, `expert count must be static`);
  const mxfp4 = node.attrs.weightFormat === "mxfp4";
  const twoI = mxfp4 ? node.inputs[3]!.shape[1]! : node.inputs[3]!.shape[2]!;
  if (!isStaticDim(twoI)) fail(node, `intermediate size must be static`);
  if (mxfp4 && (d % MXFP4_BLOCK !== 0 || (twoI / 2) % MXFP4_BLOCK !== 0)) fail(node, `MXFP4 sizes must be multiples of ${MXFP4_BLOCK}`);
  const local = node.inputs[3]!.shape[0]!;
  if (!isStaticDim(local)) fail(node, `local expert count must be static`);
  const ep = node.attrs.firstExpert !== undefined ? { first: node.attrs.firstExpert, local } : undefined;
  return { dtype: x.dtype, t, d, e, k: node.attrs.topK, inter: twoI / 2, mxfp4, ...(ep ? { ep } : {}) };
}

/** Token counts (the token dim's value or bound) above which MXFP4 experts run as grouped GEMMs. */
export const GROUPED_MIN_TOKENS = 16;
/** Grouped GEMM row tile: each expert's segment of sorted (token, slot) rows is cut into tiles of this many. */
export const GROUPED_BM = 64;
/** Grouped GEMM column tile: tensor-core (bf16/f16) and SIMT (f32) variants. */
export const GROUPED_BN_MMA = 128;
export const GROUPED_BN_SIMT = 64;
/**
 * Tensor-core grouped GEMMs: MXFP4 B tiles each thread keeps in flight in registers (8 bytes and a scale each; a
 * block has 2 KB per tile). Measured on an H200 (bench/moe-prefill.ts, one layer of gpt-oss-20b): one tile ahead,
 * loaded after the tile's mma, is the fastest (0.585 ms at 256 tokens, 2.537 at 2048); 4 and 8 deep were 4–10%
 * slower (more registers, fewer blocks per SM), so these GEMMs are not bound by B's load latency.
 */
export const GROUPED_B_PREFETCH = 1;

/**
 * Where bf16/f16 MXFP4 experts take the weight-streaming variant: token bounds from STREAM_MIN_TOKENS while an expert
 * expects at most STREAM_MAX_ROWS rows (bound · top-k / experts). Measured on an H200 (bench/moe-prefill.ts, bench/NOTES.md
 * Run 7, weights as the mma's A): the token loop is faster at 2 tokens (0.073 against 0.079 ms a layer: it needs no
 * bucketing), the stream kernels from 4 (0.115 against 0.124; at 8, 0.151 against 0.219); they beat
 * the grouped GEMMs up to 16 rows an expert (gpt-oss-20b 0.392 against 0.464 ms a layer at 128 tokens, 120b 1.007 against
 * 1.723 at 256) and lose at 32 (20b at 256 tokens: 0.570 against 0.489).
 */
export const STREAM_MIN_TOKENS = 3;
export const STREAM_MAX_ROWS = 16;

export type MoePath = "token-loop" | "grouped" | "stream";

export interface MoeOptions {
  /** Force a path (benchmarks and tests); by default the token dim's bound picks it. */
  readonly path?: MoePath;
  /**
   * How the stream variant routes: "route" (the default: the route kernel, a block a token, selects; the plain bucket
   * follows) or "logits" (router logits over many small blocks, the bucketing kernel selecting: the previous way, a
   * baseline for bench/moe-prefill.ts).
   */
  readonly streamRouting?: "route" | "logits";
  /** Override the stream variant's tiling (a tuning hook for benchmarks); by default the bound picks it. */
  readonly streamTiling?: Partial<StreamTiling>;
  /**
   * The previous tensor-core grouped GEMMs (64×128×32 tiles, per-byte dequantization) with this many B tiles in flight,
   * instead of the tiled kernel: the baseline bench/moe-prefill.ts times the tiled one against.
   */
  readonly groupedPrefetch?: number;
  /** Override the tiled tensor-core grouped GEMMs' tiling (a tuning hook for benchmarks): fields left out take groupedTiling's for the bound. */
  readonly groupedTiling?: Partial<GroupedTiling>;
  /** The target has warpgroup MMAs (sm_90a): the tiled grouped GEMMs may take them (groupedTiling). */
  readonly wgmma?: boolean;
  /** Override the tokens a route block takes (a tuning hook for benchmarks; by default routeTokensPerBlock of the bound). */
  readonly routeTokens?: 1 | 2 | 4 | 8;
}

/**
 * The tiled tensor-core grouped GEMMs: BM × 128 × BK block tiles (8 warps as 2 × 4; BK = 64 reads a whole 16-byte
 * MXFP4 block and its scale per thread and k-tile), an A cp.async ring of aStages, two B stages in padded shared rows
 * (dynamic shared memory), MXFP4 dequantized per byte (mx_dequant2, as the measured kernel) or by prmt table look-up
 * ("lut": the same bits, see mxfp4LutDequant8), and `minBlocks` for __launch_bounds__ (0: none). With `skipEmpty` a
 * warp whose half of the tile has no rows (an expert with at most BM / 2 rows left) skips its ldmatrix and mma.
 */
export interface GroupedTiling {
  readonly bm: 32 | 64 | 128;
  /** Weight rows (output columns) a block: 256 gives each warp a (bm / 2) × 64 tile, half the B bytes ldmatrix reads per mma. */
  readonly bn: 128 | 256;
  readonly bk: 32 | 64;
  readonly aStages: 2 | 3 | 4;
  readonly dequant: "byte" | "lut";
  readonly minBlocks: number;
  readonly skipEmpty: boolean;
  /**
   * Warpgroup MMAs (sm_90a; bm 64 or 128, bk 64, aStages ≥ 3): a warpgroup's 64 tile rows (bm 128: its half; bm 64: all)
   * × bn (bm 64: half of them) weight rows, one m64nNk16 a k16 step, both operands from 128-byte-swizzled shared tiles
   * (three B stages).
   */
  readonly wgmma: boolean;
}
/**
 * The tiled grouped GEMMs' base tiling (see groupedTiling for a bucket's). Measured on an H200 (bench/moe-prefill.ts, one gpt-oss-20b layer, bench/NOTES.md
 * Run 6): 0.484 ms at 256 tokens, 0.745 at 512, 2.112 at 2048, against 0.596, 0.901 and 2.534 for the previous kernel
 * (64×128×32, per-byte dequantization); BM 32 and BK 32 were slower, A stages 2–4 and per-byte dequantization
 * within 5%, and 3 blocks per SM (80 registers) the fastest.
 */
export const GROUPED_TILING: GroupedTiling = { bm: 64, bn: 128, bk: 64, aStages: 3, dequant: "lut", minBlocks: 3, skipEmpty: false, wgmma: false };

/** Rows an expert expects (the token bound · top-k / experts) from which the tiled GEMMs take 128-row tiles. */
export const GROUPED_BM128_MIN_ROWS = 128;
/**
 * On a wgmma target: rows an expert expects from which the tiled GEMMs take 64-row tiles of warpgroup MMAs, and from
 * which 128-row ones.
 */
export const GROUPED_WGMMA_MIN_ROWS = 32;
export const GROUPED_WGMMA_BM128_MIN_ROWS = 64;

/**
 * The tiled GEMMs' tiling for a bucket whose experts expect `rowsPerExpert` rows. Measured on an H200 (bench/moe-prefill.ts,
 * one gpt-oss-20b layer, bench/NOTES.md Run 10): these kernels are bound by shared memory (ncu at 2048 tokens: L1 85%,
 * DRAM 6%), so from GROUPED_BM128_MIN_ROWS rows 128-row tiles (a 64×32 warp tile reads 192 bytes of shared memory per
 * mma against 256; two blocks an SM) take 2048 tokens from 2.097 to 1.919 ms; below it GROUPED_TILING with skipEmpty
 * (the half of an expert's last tile that has no rows does no mma) takes 256 tokens from 0.493 to 0.476 ms and 512 from
 * 0.743 to 0.718, where 128-row tiles lose (0.694 and 0.763).
 * On a wgmma target the tiles of warpgroup MMAs read shared memory less (bench/NOTES.md Run 12): 128-row ones from
 * GROUPED_WGMMA_BM128_MIN_ROWS (512 tokens 0.714 → 0.580 ms, 1024 1.131 → 0.877, 2048 1.867 → 1.462), 64-row ones (two
 * blocks an SM) from GROUPED_WGMMA_MIN_ROWS (256 tokens 0.466 → 0.452); at 16 rows (128 tokens) they lose to both the
 * mma.sync tiles and the stream kernels (0.447 against 0.369 and 0.319).
 */
export function groupedTiling(rowsPerExpert: number, wgmma = false): GroupedTiling {
  if (wgmma && rowsPerExpert >= GROUPED_WGMMA_BM128_MIN_ROWS) return { ...GROUPED_TILING, bm: 128, minBlocks: 2, wgmma: true };
  if (wgmma && rowsPerExpert >= GROUPED_WGMMA_MIN_ROWS) return { ...GROUPED_TILING, minBlocks: 2, wgmma: true };
  return rowsPerExpert >= GROUPED_BM128_MIN_ROWS ? { ...GROUPED_TILING, bm: 128, minBlocks: 2 } : { ...GROUPED_TILING, skipEmpty: true };
}

/** The most dynamic shared memory a block may take on sm_90 (227 KiB). */
const MAX_SHARED_BYTES = 227 * 1024;

/** The N of a wgmma tiling's warpgroup MMAs: all bn weight rows with 128-row tiles, half of them with 64-row tiles. */
function wgmmaN(t: GroupedTiling): number {
  return t.bm === 128 ? t.bn : t.bn / 2;
}

/**
 * Dynamic shared memory of a tiled grouped GEMM: A stages of BM rows and two B stages of BN, rows of BK + 8 elements; with
 * wgmma, unpadded 128-byte rows, three B stages and 1024 bytes to align them.
 */
export function groupedSharedBytes(t: GroupedTiling): number {
  if (t.wgmma) return 128 * (t.aStages * t.bm + 3 * t.bn) + 1024;
  return 2 * (t.bk + 8) * (t.aStages * t.bm + 2 * t.bn);
}

/** The tiled kernel's name suffix: m{bm}, n{bn} when not 128, k{bk}s{aStages}, l(ut) or b(yte), b{minBlocks} when set, z with skipEmpty, w with wgmma. */
export function groupedTilingTag(t: GroupedTiling): string {
  return `_m${t.bm}${t.bn === 128 ? "" : `n${t.bn}`}k${t.bk}s${t.aStages}${t.dequant === "lut" ? "l" : "b"}${t.minBlocks > 0 ? `b${t.minBlocks}` : ""}${t.skipEmpty ? "z" : ""}${t.wgmma ? "w" : ""}`;
}

/**
 * prmt selectors of the "lut" MXFP4 dequantization (moe-grouped.cu.njk's mx_make_lut / mx_dequant8 render these, and
 * mxfp4LutDequant8 models them). prmt.b32 d, a, b, c: byte i of d is byte c[4i+2 : 4i] of {b, a} (a = bytes 0..3),
 * its msb replicated when c[4i+3] is set (no selector here sets it).
 */
export const MXFP4_LUT = {
  /** the low / high bytes of the magnitudes' pairs v01, v23 (bytes lo(v0) hi(v0) lo(v1) hi(v1), …) → tables of 4 */
  tableLo: 0x6420,
  tableHi: 0x7531,
  /** a word's 8 magnitudes as 8 selector nibbles (bit 3 of each code, its sign, cleared) */
  magMask: 0x77777777,
  /** the sign bits of codes 4h .. 4h + 3 (bits 3 of w << 4 and of w, per byte) → the msbs of bytes 0..3, for h = 0, 1 */
  sign: [0x5140, 0x7362],
  /** the mask of those msbs */
  signBits: 0x80808080,
  /** low and high bytes of codes 4h .. 4h + 3 → the packed pairs (4h, 4h + 1) and (4h + 2, 4h + 3) */
  interleave: [0x5140, 0x7362],
  /** bf16 pairs of the positive codes (0, 1), (2, 3), (4, 5), (6, 7) at scale 1: 0 0.5, 1 1.5, 2 3, 4 6 */
  unitPairs: [0x3f000000, 0x3fc03f80, 0x40404000, 0x40c04080],
  /** the scale codes whose tables come from unitPairs by exponent arithmetic (0.5·2^(s−127) normal, 6·2^(s−127) finite) */
  fastScales: [2, 252],
  /**
   * The "raw" dequantization (mx_dequant8_raw): a code's raw bf16 (mx_fp4x2_raw: the value × 2^−126, magnitude bits at
   * 6..8, sign at 15) has a low byte set by code bits 0..1 alone (bits 6, 7) and a high byte by bits 2..3 alone (bits 8,
   * 15), so each is one of 4 bytes: tables small enough to be prmt's immediate second word, looked up with selector
   * nibbles 4 + index (the first word zero).
   */
  rawLo: 0xc0804000,
  rawHi: 0x81800100,
  /** selector nibbles: index bits of each code (after >> 2 for the high bytes), and 4 to select the second word */
  rawIndex: 0x33333333,
  rawSecond: 0x44444444,
} as const;

/** The prmt tables mx_make_lut builds from the packed pairs of the positive codes (0,1), (2,3), (4,5), (6,7). */
export function mxfp4LutTables(pairs: readonly [number, number, number, number]): { lo0: number; lo1: number; hi0: number; hi1: number } {
  const L = MXFP4_LUT;
  const [v01, v23, v45, v67] = pairs;
  return { lo0: prmt(v01, v23, L.tableLo), hi0: prmt(v01, v23, L.tableHi), lo1: prmt(v45, v67, L.tableLo), hi1: prmt(v45, v67, L.tableHi) };
}

/**
 * The model of mx_scaled_pair over unitPairs: the pairs at scale code s by exponent arithmetic, s − 127 added to each
 * nonzero value's exponent field. mx_dequant2's bits only for s in MXFP4_LUT.fastScales (mxfp4LutPairs).
 */
export function mxfp4ExponentPairs(s: number): [number, number, number, number] {
  const d = (s - 127) * 128;
  const pair = (unit: number) => {
    const l = unit & 0xffff, h = unit >>> 16;
    return (((h + d) << 16) | (l !== 0 ? l + d : 0)) >>> 0;
  };
  return MXFP4_LUT.unitPairs.map(pair) as [number, number, number, number];
}

/** The model of mx_make_lut's table pairs for a bf16 scale code s in MXFP4_LUT.fastScales (outside, mx_dequant2's). */
export function mxfp4LutPairs(s: number): [number, number, number, number] {
  const [lo, hi] = MXFP4_LUT.fastScales;
  if (!(Number.isInteger(s) && s >= lo && s <= hi)) throw new Error(`mxfp4LutPairs: scale code ${s} is outside [${lo}, ${hi}]`);
  return mxfp4ExponentPairs(s);
}

/** prmt.b32 in its default mode, exactly (PTX ISA): see MXFP4_LUT. */
export function prmt(a: number, b: number, c: number): number {
  let d = 0;
  for (let i = 0; i < 4; i++) {
    const sel = (c >>> (4 * i)) & 15;
    const src = sel & 7;
    let byte = src < 4 ? (a >>> (8 * src)) & 0xff : (b >>> (8 * (src - 4))) & 0xff;
    if (sel & 8) byte = byte & 0x80 ? 0xff : 0;
    d |= byte << (8 * i);
  }
  return d >>> 0;
}

/**
 * The model of mx_make_lut + mx_dequant8: `pairs` = the packed dequantized pairs of the positive codes (0,1), (2,3),
 * (4,5), (6,7) (mx_dequant2 of bytes 0x10, 0x32, 0x54, 0x76), `nan` = the scale is 255; word w (8 codes) → 4 pairs.
 */
export function mxfp4LutDequant8(w: number, pairs: readonly [number, number, number, number], nan: boolean): [number, number, number, number] {
  const L = MXFP4_LUT;
  const { lo0, lo1, hi0, hi1 } = mxfp4LutTables(pairs);
  const sgn = nan ? 0 : L.signBits;
  const sel = (w & L.magMask) >>> 0, w4 = (w << 4) >>> 0;
  const out: number[] = [];
  for (let h = 0; h < 2; h++) {
    const sh = h === 0 ? sel : sel >>> 16;
    const lo = prmt(lo0, lo1, sh), hi = prmt(hi0, hi1, sh);
    const sg = prmt(w4, w, L.sign[h]!);
    const hs = ((sg & sgn) | (hi & ~sgn)) >>> 0;
    out.push(prmt(lo, hs, L.interleave[0]), prmt(lo, hs, L.interleave[1]));
  }
  return out as [number, number, number, number];
}

/**
 * The model of mx_dequant8_raw: word w (8 codes, code 2j in the low nibble of byte j) → 4 packed raw pairs (bf16 bits
 * of each code's value × 2^−126, mx_fp4x2_raw of byte j), by two immediate-table prmt look-ups and two interleaves per
 * half word.
 */
export function mxfp4RawDequant8(w: number): [number, number, number, number] {
  const L = MXFP4_LUT;
  const ls = ((w & L.rawIndex) | L.rawSecond) >>> 0, hs = (((w >>> 2) & L.rawIndex) | L.rawSecond) >>> 0;
  const out: number[] = [];
  for (let h = 0; h < 2; h++) {
    const lo = prmt(0, L.rawLo, h === 0 ? ls : ls >>> 16), hi = prmt(0, L.rawHi, h === 0 ? hs : hs >>> 16);
    out.push(prmt(lo, hi, L.interleave[0]), prmt(lo, hi, L.interleave[1]));
  }
  return out as [number, number, number, number];
}

/**
 * The stream variant's tiles: rows per tile, weight-row groups per warp, A stages, blocks per SM, weight chunks in
 * flight, how MXFP4 becomes bf16/f16: per byte (mx_dequant2), by prmt table look-up per 32-bit word from tables built
 * for each block's scale (the tiled grouped GEMMs' "lut"), ("unit", bf16 only) from constant tables of the values at
 * scale 1 times one bf16x2 multiply by the block's 2^(s−127), or ("raw", bf16 only) from immediate tables of each
 * byte of the raw bf16 (mxfp4RawDequant8) times mx_dequant2's one multiply (two for a scale code above 128) — bit for
 * bit the same values — and which mma operand the weights fill:
 * - "b": tile rows are the mma's m (bm 16, 32 or 64), each warp's nj groups of 8 weight rows its n;
 * - "a": weight rows are the mma's m, each warp's nj groups of 16 of them, tile rows its n (bm a multiple of 8 up to
 *   64); "lut", "unit" or "raw"; aStages at least the chunks of K (128 values each) stages the whole K once a tile.
 */
export interface StreamTiling {
  readonly tokens: number;
  readonly bm: number;
  readonly nj: 1 | 2 | 4;
  readonly aStages: number;
  readonly minBlocks: number;
  readonly pf: number;
  readonly dequant: "byte" | "lut" | "unit" | "raw";
  readonly weights: "a" | "b";
}

/**
 * The path a node takes: for MXFP4 experts, the weight-streaming variant at decode sizes with 16-bit
 * activations, else grouped GEMMs when the tokens can exceed GROUPED_MIN_TOKENS; the token loop otherwise.
 */
export function moePath(node: NodeOf<"moeExperts">, bounds: SymbolBounds = {}, opts: MoeOptions = {}): MoePath {
  if (opts.path) return opts.path;
  if (node.attrs.weightFormat !== "mxfp4") return "token-loop";
  const bound = dimBound(node.inputs[0]!.shape[0]!, bounds);
  const experts = node.inputs[1]!.shape[0]! as number;
  if (node.inputs[0]!.dtype !== "f32" && bound >= STREAM_MIN_TOKENS && (bound * node.attrs.topK) / experts <= STREAM_MAX_ROWS) return "stream";
  return bound > GROUPED_MIN_TOKENS ? "grouped" : "token-loop";
}


/**
 * The stream variant's tiling for a token bound and the longer of the GEMMs' K (hidden, intermediate): weights as the
 * mma's A over tiles of 16 rows, one 16-row weight tile a warp, 4 chunks ahead, and all of K's A staged once a tile where
 * two blocks still fit an SM (else an 8-chunk ring). Measured on an H200 (bench/moe-prefill.ts, Run 7) against 8, 24, 32,
 * 48 and 64 rows, two weight tiles a warp, rings of 4 and 8, and 3 or 4 blocks an SM: the fastest at every count where
 * the variant runs, for 20b and 120b (8-row tiles were within 7% at 16 tokens; more blocks an SM, fewer chunks ahead, slower).
 */
export function streamTiling(tokens: number, k = 2880, dtype: DType = "bf16"): StreamTiling {
  const bm = 16;
  const chunks = Math.ceil(k / 128);
  const aStages = 2 * chunks * bm * 256 <= MAX_SHARED_BYTES ? Math.max(2, chunks) : 8;
  // bf16: immediate tables of the raw bf16's bytes and mx_dequant2's multiply (fewer instructions a word than "unit"'s
  // constant tables, which were 3–6% faster than a table per block, Run 7c; bench/NOTES.md Run 9)
  return { tokens, bm, nj: 1, aStages, minBlocks: 2, pf: 4, dequant: dtype === "bf16" ? "raw" : "lut", weights: "a" };
}

/**
 * The previous stream kernels' tiling (weights as the mma's B, per-byte dequantization, tiles of 16 to 64 rows by the
 * bound): the baseline bench/moe-prefill.ts times the default against.
 */
export function previousStreamTiling(tokens: number): StreamTiling {
  const bm = tokens <= 16 ? 16 : tokens <= 128 ? 32 : 64;
  const nj = tokens <= 2 ? 1 : 2;
  return { tokens, bm, nj, aStages: bm <= 32 ? 3 : 2, minBlocks: bm <= 32 ? 2 : 1, pf: 4, dequant: "byte", weights: "b" };
}

/**
 * Kernels for one `moeExperts` node: route, gate_up (+SwiGLU), down (+bias, weighted sum) looping over
 * tokens, or route, bucket, grouped gate_up and down GEMMs and combine (see the header).
 */
export function emitMoeExperts(node: NodeOf<"moeExperts">, bounds: SymbolBounds = {}, opts: MoeOptions = {}): NodeKernels {
  const s = analyze(node);
  const path = moePath(node, bounds, opts);
  if (path === "grouped" && !s.mxfp4) fail(node, `the grouped-GEMM path takes MXFP4 experts only (dense experts use the token loop)`);
  const ins = node.inputs;
  const dt = s.dtype;
  const loaders = [loader(node, "x", ins[0]!), loader(node, "rw", ins[1]!), loader(node, "rb", ins[2]!)];
  if (s.mxfp4) {
    const [gBlk, gSc, gb, dBlk, dSc, db] = ins.slice(3) as Node[];
    if (gBlk!.dtype !== "fp4e2m1x2" || dBlk!.dtype !== "fp4e2m1x2" || gSc!.dtype !== "e8m0" || dSc!.dtype !== "e8m0") fail(node, `MXFP4 blocks/scales must be fp4e2m1x2/e8m0`);
    loaders.push(loader(node, "gb", gb!), loader(node, "db", db!));
  } else {
    loaders.push(loader(node, "gw", ins[3]!), loader(node, "gb", ins[4]!), loader(node, "dw", ins[5]!), loader(node, "db", ins[6]!));
  }
  const { limit, alpha } = node.attrs;
  const ctx = {
    dtype: dt,
    xType: CUDA_STORAGE_TYPE[dt as "f32" | "bf16" | "f16"],
    loaders,
    roundExpr: roundExpr(dt),
    storeX: storeExpr(dt, "x"),
    D: s.d,
    E: s.e,
    K: s.k,
    I: s.inter,
    mxfp4: s.mxfp4,
    threads: THREADS,
    limit: f32Literal(roundTo(dt, limit)),
    negLimit: f32Literal(roundTo(dt, -limit)),
    alpha: f32Literal(roundTo(dt, alpha)),
    one: f32Literal(roundTo(dt, 1)),
    ep: s.ep ?? false,
  };
  const tag = (ls: readonly Loader[]) => ls.map((l) => DTYPE_TAG[l.dtype as "f32" | "bf16" | "f16"]).join("");
  const fmt = s.mxfp4 ? `mxfp4${tag(loaders.slice(3))}` : `dense${tag(loaders.slice(3))}`;
  const typeTag = `${dt}_${tag(loaders.slice(1, 3))}`;
  const base = `e${s.e}k${s.k}d${s.d}i${s.inter}`;
  const constTag = [limit, alpha].map((v) => new Uint32Array(new Float32Array([v]).buffer)[0]!.toString(16)).join("_");
  const epTag = s.ep ? `_ep${s.ep.first}n${s.ep.local}` : "";
  const routeEntry = `moe_route_${typeTag}_e${s.e}k${s.k}d${s.d}${epTag}`;
  const gateEntry = `moe_gateup_${fmt}_${typeTag}_${base}_${constTag}${epTag}`;
  const downEntry = `moe_down_${fmt}_${typeTag}_${base}${epTag}`;
  const tokens = sizeExpr([s.t]);
  const pairs = sizeExpr([s.t], s.k);
  const input = (index: number): ArgBinding => ({ kind: "input", index });
  const scratch = (index: number): ArgBinding => ({ kind: "scratch", index });

  // one warp per expert row (up to 1024 threads), 16-byte router-weight loads when rows allow
  const routeThreads = Math.min(1024, Math.max(THREADS, 32 * s.e));
  const rwBytes = ins[1]!.dtype === "f32" ? 4 : 2;
  const routeVec = s.d % (16 / rwBytes) === 0 ? 16 / rwBytes : 1;
  // tokens a route block: several where the expert rows sit in registers, x and the router are 16-bit (routeVec 8: a
  // 16-byte chunk holds the same 8 elements of both) and the bound is prefill-sized
  const blockTokens = s.dtype !== "f32" && routeVec === 8 && routeThreads >= 32 * s.e;
  if (opts.routeTokens !== undefined && !([1, 2, 4, 8].includes(opts.routeTokens) && (blockTokens || opts.routeTokens === 1))) {
    fail(node, `routeTokens ${opts.routeTokens}: 1, 2, 4 or 8, and more than 1 only with 16-bit x, rows of 8-element chunks and a warp per expert`);
  }
  const routeTokens = blockTokens ? (opts.routeTokens ?? routeTokensPerBlock(dimBound(s.t, bounds))) : 1;
  const routeName = routeTokens > 1 ? `${routeEntry}_r${routeTokens}` : routeEntry;
  const route: KernelLaunch = {
    kernel: { name: routeName, family: "moe", source: renderTemplate("moe-route.cu.njk", { ...ctx, entry: routeName, stage: "route", routeThreads, routeVec, routeTokens }), entry: routeName },
    grid: [routeTokens > 1 ? sizeExpr([s.t], 1, routeTokens) : tokens, constSize(1), constSize(1)],
    block: [routeThreads, 1, 1],
    sharedBytes: 0,
    args: [input(0), input(1), input(2), scratch(0), scratch(1), ...(routeTokens > 1 ? [{ kind: "i32" as const, value: tokens }] : [])],
  };
  if (path === "grouped") {
    if (opts.groupedTiling && s.dtype === "f32") fail(node, `groupedTiling applies to the tensor-core grouped GEMMs (bf16/f16 activations)`);
    if (opts.groupedTiling && opts.groupedPrefetch !== undefined) fail(node, `groupedTiling's kernel loads B one k-tile ahead; groupedPrefetch applies to the previous kernel only`);
    // f32 activations take the SIMT GEMMs; groupedPrefetch asks for the previous tensor-core kernel
    const tiling = s.dtype === "f32" || opts.groupedPrefetch !== undefined ? undefined : { ...groupedTiling((dimBound(s.t, bounds) * s.k) / s.e, opts.wgmma), ...opts.groupedTiling };
    return emitGrouped(s, ctx, route, { typeTag, base: `${base}${epTag}`, constTag }, undefined, opts.groupedPrefetch ?? GROUPED_B_PREFETCH, tiling);
  }
  if (path === "stream") {
    if (!s.mxfp4 || s.dtype === "f32") fail(node, `the stream path takes MXFP4 experts with bf16/f16 activations`);
    const tiling = { ...streamTiling(dimBound(s.t, bounds), Math.max(s.d, s.inter), s.dtype), ...opts.streamTiling };
    if ((opts.streamRouting ?? "route") === "route") return emitGrouped(s, ctx, route, { typeTag, base: `${base}${epTag}`, constTag }, tiling, GROUPED_B_PREFETCH);
    const logits = logitsLaunch(s, ctx, { typeTag, routeThreads, routeVec, bound: dimBound(s.t, bounds) }, 7);
    return emitGrouped(s, ctx, logits, { typeTag, base: `${base}${epTag}`, constTag }, tiling, GROUPED_B_PREFETCH, undefined, true);
  }
  const gatePerBlock = s.mxfp4 ? MXFP4_GATEUP_PAIRS : DENSE_GATEUP_PAIRS;
  const gateup: KernelLaunch = {
    kernel: { name: gateEntry, family: "moe", source: renderTemplate("moe-experts.cu.njk", { ...ctx, entry: gateEntry, stage: "gateup" }), entry: gateEntry },
    grid: [constSize(Math.ceil(s.inter / gatePerBlock)), pairs, constSize(1)],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: s.mxfp4 ? [input(0), scratch(0), input(3), input(4), input(5), scratch(2)] : [input(0), scratch(0), input(3), input(4), scratch(2)],
  };
  const downPerBlock = s.mxfp4 ? MXFP4_DOWN_ROWS : DENSE_DOWN_COLS;
  const down: KernelLaunch = {
    kernel: { name: downEntry, family: "moe", source: renderTemplate("moe-experts.cu.njk", { ...ctx, entry: downEntry, stage: "down" }), entry: downEntry },
    grid: [constSize(Math.ceil(s.d / downPerBlock)), tokens, constSize(1)],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: s.mxfp4
      ? [scratch(0), scratch(1), scratch(2), input(6), input(7), input(8), { kind: "output" }]
      : [scratch(0), scratch(1), scratch(2), input(5), input(6), { kind: "output" }],
  };
  return {
    launches: [route, gateup, down],
    scratchBytes: [sizeExpr([s.t], s.k * 4), sizeExpr([s.t], s.k * 4), sizeExpr([s.t], s.k * s.inter * 4)],
  };
}

/** The stream kernels' name suffix: m{bm}n{nj}p{pf}, l(ut), u(nit) or r(aw), and for weights as the mma's A a{aStages}b{minBlocks}. */
export function streamTilingTag(t: StreamTiling): string {
  return `_m${t.bm}n${t.nj}p${t.pf}${{ byte: "", lut: "l", unit: "u", raw: "r" }[t.dequant]}${t.weights === "a" ? `a${t.aStages}b${t.minBlocks}` : ""}`;
}

/** Dynamic shared memory of a weights-as-A stream GEMM over K values: aStages 128-value chunks of bm rows, at most K's. */
export function streamSharedBytes(t: StreamTiling, k: number): number {
  return Math.min(t.aStages, Math.ceil(k / 128)) * t.bm * 256;
}

function checkStreamTiling(t: StreamTiling): void {
  const bad = (what: string) => { throw new Error(`tsgc codegen: moeExperts: streamTiling ${JSON.stringify(t)}: ${what}`); };
  if (!["byte", "lut", "unit", "raw"].includes(t.dequant)) bad(`dequant must be "byte", "lut", "unit" or "raw", got ${JSON.stringify(t.dequant)}`);
  if ((t.dequant === "unit" || t.dequant === "raw") && t.weights !== "a") bad(`the "${t.dequant}" dequantization is a weights "a" option`);
  if (t.weights !== "a" && t.weights !== "b") bad(`weights must be "a" or "b"`);
  if (!(Number.isInteger(t.pf) && t.pf >= 1 && t.pf <= 8)) bad(`pf must be an integer in [1, 8]`);
  if (!(Number.isInteger(t.minBlocks) && t.minBlocks >= 0 && t.minBlocks <= 8)) bad(`minBlocks must be an integer in [0, 8]`);
  if (t.weights === "b") {
    if (![16, 32, 64].includes(t.bm)) bad(`bm must be 16, 32 or 64`);
    if (![1, 2, 4].includes(t.nj)) bad(`nj must be 1, 2 or 4`);
    if (!(Number.isInteger(t.aStages) && t.aStages >= 2 && t.aStages <= 8)) bad(`aStages must be an integer in [2, 8]`);
  } else {
    if (!(Number.isInteger(t.bm) && t.bm >= 8 && t.bm <= 64 && t.bm % 8 === 0)) bad(`bm must be a multiple of 8 in [8, 64]`);
    if (t.nj !== 1 && t.nj !== 2 && t.nj !== 4) bad(`nj must be 1, 2 or 4`);
    if (t.dequant === "byte") bad(`weights "a" takes the "lut", "unit" or "raw" dequantization`);
    if (!(Number.isInteger(t.aStages) && t.aStages >= 2)) bad(`aStages must be an integer ≥ 2`);
  }
}

function checkTiling(t: GroupedTiling): void {
  const bad = (what: string) => { throw new Error(`tsgc codegen: moeExperts: groupedTiling ${JSON.stringify(t)}: ${what}`); };
  if (t.bm !== 32 && t.bm !== 64 && t.bm !== 128) bad(`bm must be 32, 64 or 128`);
  if (t.bn !== 128 && t.bn !== 256) bad(`bn must be 128 or 256`);
  // a thread's f32 accumulators: bm · bn / 256 (64 at 128 × 128 or 64 × 256: more than two blocks an SM would spill
  // them; 128 at 128 × 256: more than one)
  const accumulators = (t.bm * t.bn) / 256;
  if (accumulators >= 128 && t.minBlocks > 1) bad(`bm ${t.bm} × bn ${t.bn} takes minBlocks 0 or 1`);
  else if (accumulators >= 64 && t.minBlocks > 2) bad(`bm ${t.bm} × bn ${t.bn} takes minBlocks 0, 1 or 2`);
  if (typeof t.skipEmpty !== "boolean") bad(`skipEmpty must be a boolean`);
  if (t.bk !== 32 && t.bk !== 64) bad(`bk must be 32 or 64`);
  if (![2, 3, 4].includes(t.aStages)) bad(`aStages must be 2, 3 or 4`);
  if (t.dequant !== "byte" && t.dequant !== "lut") bad(`dequant must be "byte" or "lut"`);
  if (!(Number.isInteger(t.minBlocks) && t.minBlocks >= 0 && t.minBlocks <= 8)) bad(`minBlocks must be an integer in [0, 8]`);
  if (typeof t.wgmma !== "boolean") bad(`wgmma must be a boolean`);
  if (t.wgmma && !(t.bm !== 32 && t.bk === 64 && t.aStages >= 3)) bad(`wgmma takes bm 64 or 128, bk 64 and aStages 3 or 4`);
  if (groupedSharedBytes(t) > MAX_SHARED_BYTES) bad(`needs ${groupedSharedBytes(t)} bytes of shared memory (at most 227 KiB)`);
}

/**
 * Tokens a route block takes (its expert rows loaded once for all of them) at a token bound: one up to ROUTE_BLOCK_TOKENS_FROM
 * (a block a token fills the SMs there), then a block for every ROUTE_BLOCK_TOKENS_FROM / 2 tokens of the bound, at most 8.
 * One block a token re-reads the router (184 KB for 20b) per token from L2: measured on an H200 (bench/moe-prefill.ts, one
 * gpt-oss-20b layer, bench/NOTES.md Run 10), 2048 tokens 0.113 → 0.048 ms with 8 tokens a block, 512: 0.031 → 0.019 with 2;
 * from 256 (Run 14, MoeOptions.routeTokens): 256 tokens 0.017 → 0.011 with 2, 512 0.019 → 0.016 with 4, 1024 0.029 → 0.026 with 8.
 */
export const ROUTE_BLOCK_TOKENS_FROM = 256;
export function routeTokensPerBlock(bound: number): number {
  if (bound < ROUTE_BLOCK_TOKENS_FROM) return 1;
  return Math.min(8, 2 ** Math.floor(Math.log2((2 * bound) / ROUTE_BLOCK_TOKENS_FROM)));
}

/** The router logits launch of the stream path: scratch `into` = f32 [T, E]. */
function logitsLaunch(s: MoeSpec, ctx: Record<string, unknown>, o: { typeTag: string; routeThreads: number; routeVec: number; bound: number }, into: number): KernelLaunch {
  const lt = Math.min(8, o.bound);
  const entry = `moe_logits_${o.typeTag}_e${s.e}d${s.d}_t${lt}`;
  return {
    kernel: { name: entry, family: "moe", source: renderTemplate("moe-route.cu.njk", { ...ctx, entry, stage: "logits", routeThreads: o.routeThreads, routeVec: o.routeVec, xBytes: s.dtype === "f32" ? 4 : 2, logitTokens: lt }), entry },
    grid: [constSize(Math.ceil(s.e / 4)), sizeExpr([s.t], 1, lt), constSize(1)],
    block: [128, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: into }, { kind: "i32", value: sizeExpr([s.t]) }],
  };
}

/**
 * The grouped-GEMM path (MXFP4 experts): route, bucket, gate_up GEMM, down GEMM, combine. Scratch: 0 ids
 * i32 [T·K], 1 weights f32 [T·K], 2 tile count i32, 3 tiles int4 [T·K] (a tile has ≥ 1 row, so at most
 * T·K of them), 4 perm i32 [T·K], 5 h [T·K, I] and 6 y [T·K, D] in x's dtype. `stream` tiling is the decode-sized
 * variant; with `selects` the first launch writes router logits (scratch 7, f32 [T, E]) and bucket selects.
 */
function emitGrouped(
  s: MoeSpec, ctx: Record<string, unknown>, first: KernelLaunch, tags: { typeTag: string; base: string; constTag: string },
  stream: StreamTiling | undefined,
  bpf: number,
  tiled?: GroupedTiling,
  selects = false,
): NodeKernels {
  if (!(Number.isInteger(bpf) && bpf >= 1 && bpf <= 16)) throw new Error(`tsgc codegen: moeExperts: B prefetch depth ${bpf} must be an integer in [1, 16]`);
  if (tiled) checkTiling(tiled);
  if (stream) checkStreamTiling(stream);
  if ((stream?.dequant === "unit" || stream?.dequant === "raw") && s.dtype !== "bf16") throw new Error(`tsgc codegen: moeExperts: the "${stream.dequant}" dequantization's tables are bf16; ${s.dtype} activations take "lut"`);
  const { typeTag, base, constTag } = tags;
  const mma = s.dtype !== "f32";
  const variant = stream ? "stream" : mma ? "mma" : "simt";
  const bm = stream ? stream.bm : tiled ? tiled.bm : GROUPED_BM;
  const bn = stream ? (stream.weights === "a" ? 128 : 64) * stream.nj : tiled ? tiled.bn : mma ? GROUPED_BN_MMA : GROUPED_BN_SIMT;
  const tiling = stream ? streamTilingTag(stream) : tiled ? groupedTilingTag(tiled) : variant === "mma" ? `_p${bpf}` : "";
  // the weights-as-A stream kernels stage A in dynamic shared memory: aStages chunks, or all of K's
  const streamShared = (k: number) => {
    if (stream?.weights !== "a") return 0;
    const bytes = streamSharedBytes(stream, k);
    if (bytes > MAX_SHARED_BYTES) throw new Error(`tsgc codegen: moeExperts: streamTiling ${JSON.stringify(stream)}: A stages of ${stream.bm} rows over K = ${k} need ${bytes} bytes of shared memory (at most 227 KiB)`);
    return bytes;
  };
  const gemmShared = tiled ? groupedSharedBytes(tiled) : 0;
  const tiledCtx = tiled
    ? {
      tiled: true, bn: tiled.bn, bk: tiled.bk, aStages: tiled.aStages, dequant: tiled.dequant, minBlocks: tiled.minBlocks, skipEmpty: tiled.skipEmpty,
      wgmma: tiled.wgmma, wgN: wgmmaN(tiled), wgmmaShapes: tiled.wgmma ? wgmmaShapes([wgmmaN(tiled)], s.dtype === "f16" ? "f16" : "bf16") : [],
    }
    : { tiled: false, wgmma: false };
  const gctx = { ...ctx, bm, stages: 3, variant, bpf, mmaType: s.dtype === "f16" ? "f16" : "bf16", ...(stream ?? {}), ...tiledCtx, lut: MXFP4_LUT, unitLut: mxfp4LutTables(MXFP4_LUT.unitPairs), selects };
  const input = (index: number): ArgBinding => ({ kind: "input", index });
  const scratch = (index: number): ArgBinding => ({ kind: "scratch", index });
  const launch = (stage: string, entry: string, grid: KernelLaunch["grid"], block: number, args: ArgBinding[], sharedBytes = 0): KernelLaunch => ({
    kernel: { name: entry, family: "moe", source: renderTemplate("moe-grouped.cu.njk", { ...gctx, entry, stage, kTail: tiled !== undefined && (stage === "gateup" ? s.d : s.inter) % tiled.bk !== 0 }), entry },
    grid,
    block: [block, 1, 1],
    sharedBytes,
    args,
  });
  const pairs = sizeExpr([s.t], s.k);
  // the tiles of P = T·K pairs cut per expert: at most P/BM + E (each expert's last tile may be partial), and
  // at most P (a tile has a row); blocks past the bucket's real tile count return at once
  const fewPairs = stream !== undefined && stream.tokens * s.k <= s.e;
  const rowTiles = fewPairs ? pairs : sizeExpr([dimAdd(s.t, Math.ceil((s.e * bm) / s.k))], s.k, bm);
  const xBytes = s.dtype === "f32" ? 4 : 2;
  const bucket = selects
    ? launch("bucket", `moe_bucketsel_${typeTag}_e${s.e}k${s.k}_m${bm}${s.ep ? `_ep${s.ep.first}n${s.ep.local}` : ""}`, [constSize(1), constSize(1), constSize(1)], 1024, [
      scratch(7), scratch(0), scratch(1), scratch(2), scratch(3), scratch(4), { kind: "i32", value: pairs },
    ])
    : launch("bucket", `moe_bucket_e${s.e}k${s.k}_m${bm}${s.ep ? "_ep" : ""}`, [constSize(1), constSize(1), constSize(1)], 1024, [
      scratch(0), scratch(2), scratch(3), scratch(4), { kind: "i32", value: pairs },
    ]);
  const gateup = launch("gateup", `moe_ggateup_${variant}_${typeTag}_${base}_${constTag}${tiling}`, [constSize(Math.ceil((2 * s.inter) / bn)), rowTiles, constSize(1)], 256, [
    input(0), scratch(4), scratch(2), scratch(3), input(3), input(4), input(5), scratch(5),
  ], gemmShared || streamShared(s.d));
  const down = launch("down", `moe_gdown_${variant}_${typeTag}_${base}${tiling}`, [constSize(Math.ceil(s.d / bn)), rowTiles, constSize(1)], 256, [
    scratch(5), scratch(4), scratch(2), scratch(3), scratch(1), input(6), input(7), input(8), scratch(6),
  ], gemmShared || streamShared(s.inter));
  const combine = launch("combine", `moe_combine_${s.dtype}_d${s.d}k${s.k}${s.ep ? "_ep" : ""}`, [constSize(Math.ceil(s.d / 256)), sizeExpr([s.t]), constSize(1)], 256, s.ep ? [scratch(6), scratch(0), { kind: "output" }] : [scratch(6), { kind: "output" }]);
  return {
    launches: [first, bucket, gateup, down, combine],
    scratchBytes: [
      sizeExpr([s.t], s.k * 4), sizeExpr([s.t], s.k * 4), constSize(16), sizeExpr([s.t], s.k * 16), sizeExpr([s.t], s.k * 4),
      sizeExpr([s.t], s.k * s.inter * xBytes), sizeExpr([s.t], s.k * s.d * xBytes),
      ...(selects ? [sizeExpr([s.t], s.e * 4)] : []),
    ],
  };
}
