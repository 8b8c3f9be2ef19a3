// Code generation for `matmul` (templates/gemv.cu.njk and templates/gemm.cu.njk).
//
//   a [...batch, M, K] · b [...batch, K, N]  (b [...batch, N, K] with transposeB)  → [...batch, M, N]
//   b of rank 2 is shared across a's batch: then a's leading dims all fold into the rows (M).
//
// Paths, chosen from M (its static value, or its bound — a shape bucket's — when the caller passes symbol bounds):
// - GEMV (decode; weight-bandwidth bound):
//   "gemv-mma"  bf16/f16 with transposeB and K % 8 == 0 (x·Wᵀ, gpt-oss's linear layers), M ≤ GEMV_MMA_MAX_M:
//               tensor cores, each weight fragment reused by MMT = 8, 16, 32 or 64 rows of x (the smallest that
//               holds M's bound), row tiles of x sharing a weight tile launched next to each other (L2 reuse);
//   "gemv-rows" other transposed cases (f32, odd K), M ≤ 8: a warp per weight row;
//   "gemv-cols" b [K, N], M ≤ 8: a thread per 8 (bf16) or 4 (f32) columns, K split over warps.
// - otherwise GEMM (prefill):
//   "gemm-mma"  bf16/f16 with K % 8 == 0 (and N % 8 == 0 when b is [K, N]): mma.sync tiles (default
//               128×128×32, 4-stage cp.async pipeline, 64 KiB of dynamic shared memory); at decode sizes (M ≤ 256)
//               a dense x·Wᵀ takes 64-row tiles up to 64 rows and K split over grid z, with a reduce launch that adds
//               the splits' f32 partials in order (gemmTileFor);
//   "gemm-simt" everything else (f32): 64×64 tiles in f32.
// Kernel parameters: (a, b, out, M, N, K); N and K are also baked in when static. Grid z is the batch
// (at most 65535). Integer matmuls are rejected.
// groupedLinear (several x·W_iᵀ + b_i of one x): on the "gemv-mma" path one launch whose blocks run
// through the layers' 16-row tiles one layer after another (grid.y = Σ ceil(N_i / 16)), so small layers
// (k_proj, v_proj: N = 512) no longer leave most SMs idle; on a split-K GEMM one GEMM over the layers' column
// tiles and one reduce; on other paths one launch per layer.

import { dtypeBytes, type DType } from "../ir/dtype.js";
import type { Node, NodeOf } from "../ir/node.js";
import { type Dim, formatShape, type SymbolBounds, dimBound } from "../ir/shape.js";
import { type ArgBinding, constSize, type KernelLaunch, type NodeKernels, type SizeExpr, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";
import { wgmmaShapes } from "./wgmma.js";

export type MatmulPath = "gemv-mma" | "gemv-rows" | "gemv-cols" | "gemm-mma" | "gemm-simt";

export interface MatmulOptions {
  /** Upper bounds of symbolic dims: a symbolic M whose bound is ≤ 8 gets a GEMV kernel. */
  readonly symbolBounds?: SymbolBounds;
  /** Tile of the tensor-core GEMM (dense weights); default DEFAULT_GEMM_TILE. A tuning hook. */
  readonly gemmTile?: GemmTile;
  /** Force a path (benchmarks comparing variants); by default the shape and bounds pick it. */
  readonly path?: MatmulPath;
  /** The target has warpgroup MMA (sm_90a, lower/kernel.ts LowerTarget): gemmTileFor may take wgmma tiles. */
  readonly wgmma?: boolean;
}

/**
 * Tensor-core GEMM tile: `rows` (default 128) × 4·warpN columns × k, in `stages` pipeline stages (8 warps, 2 × 4), and
 * K split `splitK` ways (default 1: none; dense x·Wᵀ without a batch only) with a reduce launch after.
 */
export interface GemmTile {
  readonly warpN: 32 | 64;
  readonly k: 32 | 64;
  readonly stages: number;
  readonly rows?: 64 | 128;
  readonly splitK?: number;
  /**
   * Warpgroup MMAs (sm_90a; dense x·Wᵀ, 16-bit, rows 128, k 64, stages ≥ 3): each warpgroup's 64 rows × all 4·warpN
   * columns one wgmma a k16 step, both operands read from the shared tiles by the tensor cores (gemm.cu.njk).
   */
  readonly wgmma?: boolean;
}
export const DEFAULT_GEMM_TILE: GemmTile = { warpN: 32, k: 32, stages: 4 };

/** Dynamic shared memory of the tensor-core GEMM: `stages` × (A tile + B tile) in 16-bit elements (wgmma: 1024 bytes more, to align them). */
export function gemmSharedBytes(t: GemmTile): number {
  return t.stages * ((t.rows ?? 128) + 4 * t.warpN) * t.k * 2 + (t.wgmma === true ? 1024 : 0);
}

/** Largest M that takes a GEMV path (any variant); rows of x per block of the rows/cols variants. */
export const GEMV_MAX_M = 8;
/** Largest M the tensor-core GEMV takes: up to here a weight tile read once serves every row, over the GEMM's few CTAs. */
export const GEMV_MMA_MAX_M = 256;

/** Rows of x per block of the tensor-core GEMV for an M bound: 8, 16, 32 or 64. */
export function gemvRowsPerBlock(mBound: number): number {
  return mBound <= 8 ? 8 : mBound <= 16 ? 16 : mBound <= 32 ? 32 : 64;
}
/** Warps per block of the tensor-core GEMV kernels (they split K), unless gemvKsplit picks more. */
export const GEMV_KSPLIT = 8;

/**
 * Warps per block of the tensor-core GEMV for a layer of `weightTiles` 16-row tiles and K columns at MMT x rows: 16
 * for few tiles and long rows at decode sizes (gpt-oss's o_proj, 180 tiles × K 4096, and q/k/v, 320 × 2880: each
 * warp's chunks then take two trips to memory instead of three or four, on a grid too small to hide them; on an
 * H200 o_proj read 1.9 TB/s with 8), else GEMV_KSPLIT. 16 warps' partial sums of 32 x rows would overflow the static
 * shared memory of the reduction, so only up to MMT 16.
 */
export function gemvKsplit(weightTiles: number, k: number, mt: number): number {
  return weightTiles < 1024 && k >= 1024 && mt <= 16 ? 16 : GEMV_KSPLIT;
}
export const GEMM_SIMT_TILE = { m: 64, n: 64, k: 16 } as const;
/** Dynamic shared memory of the default tensor-core GEMM: 4 stages of a 128×32 A tile and a 128×32 B tile. */
export const GEMM_MMA_SHARED_BYTES = gemmSharedBytes(DEFAULT_GEMM_TILE);

const DT_CODES: Partial<Record<DType, number>> = { f32: 0, bf16: 1, f16: 2 };

/** The dims of a contraction as the kernels see it. */
export interface MatmulShape {
  readonly dtype: DType;
  /** Rows of a (all leading dims when b is shared). */
  readonly rows: readonly Dim[];
  /** Batch dims launched on grid z (empty when b is shared). */
  readonly batch: readonly Dim[];
  readonly n: Dim;
  readonly k: Dim;
  readonly transposeB: boolean;
  readonly bShared: boolean;
  readonly bFormat: "dense" | "mxfp4";
}

/** The bound of a product of dims (a symbolic dim without a bound counts as unbounded). */
export function rowsBound(rows: readonly Dim[], bounds: SymbolBounds | undefined): number {
  return rows.reduce<number>((n, d) => n * dimBound(d, bounds), 1);
}

const isStatic = (d: Dim): d is number => typeof d === "number";

/** Picks the kernel path for a contraction shape (see the header comment). */
export function choosePath(s: MatmulShape, bounds: SymbolBounds | undefined): MatmulPath {
  const tensor = s.dtype === "bf16" || s.dtype === "f16";
  const kAligned = isStatic(s.k) && s.k % 8 === 0;
  const m = rowsBound(s.rows, bounds);
  if (tensor && kAligned && s.transposeB && m <= GEMV_MMA_MAX_M && gemvMmaBeatsGemm(m, s.n)) return "gemv-mma";
  if (m <= GEMV_MAX_M) return s.transposeB ? "gemv-rows" : "gemv-cols";
  const nAligned = s.transposeB || (isStatic(s.n) && s.n % 8 === 0);
  return tensor && kAligned && nAligned ? "gemm-mma" : "gemm-simt";
}

/**
 * Whether the tensor-core GEMV is the faster of the two tensor-core paths for M rows (a bucket's bound)
 * and N outputs. Measured on an H200 (bench/codegen-matmul.js bucket, bench/NOTES.md Run 8): up to 32 rows the
 * GEMV (each weight tile read once, x rows from L2) is as fast as the split-K GEMM for q, k, v and o_proj and
 * faster for lm_head, and its grouped q/k/v launch beats three; from 64 rows its x reloads (4× the weight bytes at
 * 64) make it slower than the GEMM, whose 64- or 128-row tiles share x through shared memory (split K gives them
 * enough blocks): q/k/v 35 → 29, o_proj 24 → 16 µs at 64 rows; 54 → 37 and 44 → 23 at 128.
 */
export function gemvMmaBeatsGemm(m: number, _n: Dim): boolean {
  return m <= 32;
}

/** Widest vector (elements, at most 16 bytes) that divides a static dim; 1 for a symbolic one. */
export function vectorWidth(dim: Dim, dtype: DType): number {
  if (!isStatic(dim)) return 1;
  let vec = 16 / dtypeBytes(dtype);
  while (vec > 1 && dim % vec !== 0) vec /= 2;
  return vec;
}

const ceilDiv = (d: Dim, by: number): SizeExpr => (isStatic(d) ? constSize(Math.ceil(d / by)) : sizeExpr([d], 1, by));

/** What the GEMV/GEMM templates are rendered with for a contraction shape and path (`extra` may override). */
function templateContext(s: MatmulShape, path: MatmulPath, entry: string, vec: number, tile: GemmTile, mt = GEMV_MAX_M, ksplit = GEMV_KSPLIT): Record<string, unknown> {
  return {
    mt,
    entry,
    included: false,
    hasBias: false,
    variant: path.split("-")[1],
    path,
    bFormat: s.bFormat,
    transposeB: s.transposeB,
    bShared: s.bShared,
    dtCode: DT_CODES[s.dtype],
    tType: CUDA_STORAGE_TYPE[s.dtype],
    mmaType: s.dtype === "f16" ? "f16" : "bf16",
    nExpr: isStatic(s.n) ? String(s.n) : "N_",
    kExpr: isStatic(s.k) ? String(s.k) : "K_",
    ksplit,
    vec,
    tileWn: tile.warpN,
    tileK: tile.k,
    tileStages: tile.stages,
    tileRows: tile.rows ?? 128,
    splitK: tile.splitK ?? 1,
    wgmma: tile.wgmma === true,
    wgmmaShapes: tile.wgmma === true ? wgmmaShapes([4 * tile.warpN], s.dtype === "f16" ? "f16" : "bf16") : [],
  };
}

/** Which operands (and which result) a matmul-family launch binds; default x = 0, w = 1 (, scales = 2), bias next, the node's own output. */
export interface MatmulBinding {
  readonly x: number;
  readonly w: number;
  readonly bias: number;
  readonly out: ArgBinding;
}

/** One launch of a matmul-family kernel: template, path, context, geometry. Shared with mxfp4-matmul. */
export function matmulLaunch(s: MatmulShape, path: MatmulPath, template: string, family: string, extra: Record<string, unknown> = {}, tile: GemmTile = DEFAULT_GEMM_TILE, binding?: MatmulBinding, mBound = GEMV_MAX_M): KernelLaunch {
  const mt = gemvRowsPerBlock(mBound);
  const splitK = tile.splitK ?? 1;
  const tileValid = [32, 64].includes(tile.warpN) && [32, 64].includes(tile.k) && Number.isInteger(tile.stages) && tile.stages >= 2 &&
    [64, 128].includes(tile.rows ?? 128) && Number.isInteger(splitK) && splitK >= 1 && splitK <= MAX_SPLIT_K;
  if (!tileValid) throw new Error(`tsgc codegen: bad GEMM tile ${JSON.stringify(tile)}`);
  if (tile.wgmma === true && !(path === "gemm-mma" && s.bFormat === "dense" && s.transposeB && s.dtype !== "f32" && (tile.rows ?? 128) === 128 && tile.k === 64 && tile.stages >= 3)) {
    throw new Error(`tsgc codegen: a wgmma GEMM takes a dense x·Wᵀ in bf16 or f16 with rows 128, k 64 and at least 3 stages (tile ${JSON.stringify(tile)})`);
  }
  if (splitK > 1 && !(s.bFormat === "dense" && s.transposeB && s.bShared && isStatic(s.n) && isStatic(s.k))) {
    throw new Error(`tsgc codegen: a split-K GEMM takes a dense x·Wᵀ with static N and K and no batch (tile ${JSON.stringify(tile)})`);
  }
  const defaultTile = tile.warpN === DEFAULT_GEMM_TILE.warpN && tile.k === DEFAULT_GEMM_TILE.k && tile.stages === DEFAULT_GEMM_TILE.stages && (tile.rows ?? 128) === 128 && splitK === 1 && tile.wgmma !== true;
  if (s.bFormat === "mxfp4" && !defaultTile) throw new Error(`tsgc codegen: the MXFP4 GEMM takes only the default tile`);
  const dtCode = DT_CODES[s.dtype];
  if (dtCode === undefined) throw new Error(`tsgc codegen: no matmul kernel for ${s.dtype}`);
  const [kind, variant] = path.split("-") as ["gemv" | "gemm", "mma" | "rows" | "cols" | "simt"];
  const vec = variant === "rows" ? (s.bFormat === "mxfp4" ? 32 : vectorWidth(s.k, s.dtype)) : variant === "cols" ? vectorWidth(s.n, s.dtype) : 0;
  const ksplit = path === "gemv-mma" && family === "gemv" && isStatic(s.n) && isStatic(s.k) ? gemvKsplit(Math.ceil(s.n / 16), s.k, mt) : GEMV_KSPLIT;
  const name = [
    family === "mxfp4-matmul" ? `mxfp4_${kind}` : kind,
    extra["hasBias"] === true ? "bias" : "",
    variant,
    s.dtype,
    s.bFormat === "mxfp4" ? "" : s.transposeB ? "nt" : "nn",
    s.bShared ? "" : "batched",
    `n${isStatic(s.n) ? s.n : "x"}`,
    `k${isStatic(s.k) ? s.k : "x"}`,
    vec > 0 && vec !== 32 ? `v${vec}` : "",
    path === "gemm-mma" && !defaultTile ? gemmTileTag(tile) : "",
    path === "gemv-mma" && mt !== GEMV_MAX_M ? `m${mt}` : "",
    ksplit !== GEMV_KSPLIT ? `w${ksplit}` : "",
  ]
    .filter((p) => p !== "")
    .join("_");
  // a split-K GEMM stores f32 partial sums (scratch 0); its reduce launch adds the bias
  const hasBias = extra["hasBias"] === true && splitK === 1;
  const source = renderTemplate(template, { ...templateContext(s, path, name, vec, tile, mt, ksplit), ...extra, hasBias });
  const m = sizeExpr(s.rows);
  const batch = sizeExpr(s.batch);
  let grid: readonly [SizeExpr, SizeExpr, SizeExpr];
  let block: readonly [number, number, number];
  let sharedBytes = 0;
  const mTiles = (tile: number) => sizeExpr(s.rows, 1, tile);
  switch (path) {
    case "gemv-mma":
      // mxfp4-matmul's GEMV keeps weight tiles on x and 8-row tiles of x on y
      grid = family === "mxfp4-matmul" ? [ceilDiv(s.n, 16), mTiles(GEMV_MAX_M), batch] : [mTiles(mt), ceilDiv(s.n, 16), batch];
      block = [32 * ksplit, 1, 1];
      break;
    case "gemv-rows":
      grid = [ceilDiv(s.n, 8), mTiles(GEMV_MAX_M), batch];
      block = [256, 1, 1];
      break;
    case "gemv-cols":
      grid = [ceilDiv(s.n, 32 * vec), mTiles(GEMV_MAX_M), batch];
      block = [256, 1, 1];
      break;
    case "gemm-mma":
      grid = [ceilDiv(s.n, 4 * tile.warpN), mTiles(tile.rows ?? 128), splitK > 1 ? constSize(splitK) : batch];
      block = [256, 1, 1];
      sharedBytes = gemmSharedBytes(tile);
      break;
    case "gemm-simt":
      grid = [ceilDiv(s.n, GEMM_SIMT_TILE.n), mTiles(GEMM_SIMT_TILE.m), batch];
      block = [256, 1, 1];
      break;
  }
  const inputs: ArgBinding[] = binding
    ? [{ kind: "input", index: binding.x }, { kind: "input", index: binding.w }]
    : (s.bFormat === "mxfp4" ? [0, 1, 2] : [0, 1]).map((index) => ({ kind: "input", index }));
  const bias: ArgBinding[] = hasBias ? [{ kind: "input", index: binding ? binding.bias : inputs.length }] : [];
  const out: ArgBinding = splitK > 1 ? { kind: "scratch", index: 0 } : binding ? binding.out : { kind: "output" };
  const args: ArgBinding[] = [...inputs, out, ...bias, { kind: "i32", value: m }, { kind: "i32", value: sizeExpr([s.n]) }, { kind: "i32", value: sizeExpr([s.k]) }];
  return { kernel: { name, family, source, entry: name }, grid, block, sharedBytes, args };
}

/**
 * Blocks a split-K GEMM aims for: one per SM of a 132-SM H100/H200. Measured on an H200 (bench/codegen-matmul.ts
 * bucket, bench/NOTES.md Run 8) at 64–256 rows: q (N 4096) fastest at 128 blocks, q/k/v as one (N 5120) at 120–320,
 * o_proj (N 2880) at 138–276, k and v (N 512: 4 column tiles) at the most splits K allows; twice as many blocks was
 * 5–25% slower for the wide ones.
 */
export const SPLIT_K_TARGET_BLOCKS = 132;
/** Fewest k-tiles a split takes (its cp.async pipeline needs a few to run full). */
const SPLIT_K_MIN_TILES = 8;

/**
 * The tiles of a dense x·Wᵀ at decode sizes with columns enough for every SM (lm_head's 201088), up to 64 rows and
 * up to 256: k 64 either way; 64 × 128 in 4 stages, then 128 × 256 in 3. Measured on an H200 (bench/codegen-matmul.ts
 * "bucket N: lm_head", bench/NOTES.md Run 9) against the default, 64-row and 128 × 256 × 32 tiles: lm_head at 64 rows
 * 293 µs against the default's 452 (the weight floor at the measured read rate: 287), at 128 rows 441 / 478, at 256
 * 869 / 939 (64-row tiles read the weights once per 64 rows: 913 and 1823 at 128 and 256 with k 32).
 */
export const WIDE_DECODE_GEMM_TILES: { readonly upTo64: GemmTile; readonly upTo256: GemmTile } = {
  upTo64: { warpN: 32, k: 64, stages: 4, rows: 64 },
  upTo256: { warpN: 64, k: 64, stages: 3 },
};

/**
 * The tensor-core GEMM tile for a contraction at an M bound (a bucket's): the default for wide M, batches or plain or
 * MXFP4 B; for a dense x·Wᵀ at decode sizes (M ≤ GEMV_MMA_MAX_M), WIDE_DECODE_GEMM_TILES when N / 128 × M / 128 blocks
 * fill the SMs, else 64-row tiles up to 64 rows and K split until about SPLIT_K_TARGET_BLOCKS blocks run.
 */
export function gemmTileFor(s: MatmulShape, path: MatmulPath, mBound: number, wgmma = false): GemmTile {
  const denseXWt = path === "gemm-mma" && s.bFormat === "dense" && s.transposeB && s.dtype !== "f32";
  if (!denseXWt || !s.bShared || !isStatic(s.n) || !isStatic(s.k) || mBound > GEMV_MMA_MAX_M) {
    // (batched weights keep the default: the wgmma tiles were measured and tested on shared ones)
    return wgmma && denseXWt && s.bShared && mBound > GEMV_MMA_MAX_M ? WGMMA_GEMM_TILES.prefill : DEFAULT_GEMM_TILE;
  }
  const columnTiles = Math.ceil(s.n / (4 * DEFAULT_GEMM_TILE.warpN));
  if (columnTiles * Math.ceil(mBound / 128) >= SPLIT_K_TARGET_BLOCKS) {
    if (mBound <= 64) return WIDE_DECODE_GEMM_TILES.upTo64;
    return wgmma ? WGMMA_GEMM_TILES.decode : WIDE_DECODE_GEMM_TILES.upTo256;
  }
  const rows = mBound <= 64 ? 64 : 128;
  const blocks = columnTiles * Math.ceil(mBound / rows);
  const kTiles = Math.ceil(s.k / DEFAULT_GEMM_TILE.k);
  const splitK = Math.max(1, Math.min(Math.ceil(SPLIT_K_TARGET_BLOCKS / blocks), MAX_SPLIT_K, Math.floor(kTiles / SPLIT_K_MIN_TILES)));
  // 128-row tiles take the wgmma tile with the same split where the target has it
  if (rows === 128 && wgmma) return splitK === 1 ? WGMMA_GEMM_TILES.decode : { ...WGMMA_GEMM_TILES.decode, splitK };
  return rows === 128 && splitK === 1 ? DEFAULT_GEMM_TILE : { ...DEFAULT_GEMM_TILE, rows, splitK };
}

/**
 * The wgmma tiles (sm_90a) of a dense x·Wᵀ: 128 × 128 × 64 in 4 stages for decode buckets of more than 64 rows (with
 * their split), 128 × 256 × 64 in 3 past GEMV_MMA_MAX_M rows (prefill). Measured on an H200 (bench/codegen-matmul.ts,
 * bench/NOTES.md Run 11) against the mma.sync tiles the bucket took: at 256 rows q/k/v 44.6 → 33.8 µs (split 2; 28.6
 * unsplit), q 31.8 → 26.1, k 10.4 → 8.3, o_proj 41.0 → 28.7, lm_head 872.6 → 826.0; at 4096 rows [2880, 2880]ᵀ 201.7 →
 * 156.0 and [5760, 2880]ᵀ 416.7 → 338.7. At 64 rows they lose (q/k/v 19.8 against 17.8, lm_head 381 against 303):
 * buckets up to 64 rows keep their 64-row tiles.
 */
export const WGMMA_GEMM_TILES: { readonly decode: GemmTile; readonly prefill: GemmTile } = {
  decode: { warpN: 32, k: 64, stages: 4, wgmma: true },
  prefill: { warpN: 64, k: 64, stages: 3, wgmma: true },
};

/** Most ways a GEMM's K may be split. */
export const MAX_SPLIT_K = 16;

/** A non-default GEMM tile's name part: t{4·warpN}x{k}s{stages}, r{rows} when not 128, sk{splitK} when split, w for wgmma. */
function gemmTileTag(t: GemmTile): string {
  return `t${4 * t.warpN}x${t.k}s${t.stages}${(t.rows ?? 128) !== 128 ? `r${t.rows}` : ""}${(t.splitK ?? 1) > 1 ? `sk${t.splitK}` : ""}${t.wgmma === true ? "w" : ""}`;
}

/**
 * The kernels of one dense x·Wᵀ (+ bias when extra.hasBias) on `path`, with `tile` or the bucket's (gemmTileFor of
 * the rows' bound): its one launch, or for a split-K GEMM tile that launch (f32 partial sums into scratch 0,
 * [splitK, M, N]) and the reduce after it, which adds the splits in order and stores the result (plus the bias) as
 * the single launch would round it.
 */
function linearKernels(s: MatmulShape, path: MatmulPath, extra: Record<string, unknown>, opts: MatmulOptions, binding?: MatmulBinding): NodeKernels {
  const gemv = path.startsWith("gemv");
  const mBound = rowsBound(s.rows, opts.symbolBounds);
  const tile = opts.gemmTile ?? gemmTileFor(s, path, mBound, opts.wgmma === true);
  const main = matmulLaunch(s, path, gemv ? "gemv.cu.njk" : "gemm.cu.njk", gemv ? "gemv" : "gemm", extra, tile, binding, mBound);
  const splitK = path === "gemm-mma" ? tile.splitK ?? 1 : 1;
  if (splitK === 1) return { launches: [main], scratchBytes: [] };
  const n = s.n as number;
  const hasBias = extra["hasBias"] === true;
  const vec = n % 4 === 0 ? 4 : 1;
  const name = ["gemm_splitk_reduce", hasBias ? "bias" : "", s.dtype, `n${n}`, `sk${splitK}`, vec !== 1 ? `v${vec}` : ""].filter((p) => p !== "").join("_");
  const source = renderTemplate("gemm.cu.njk", { ...templateContext(s, path, name, vec, tile), variant: "splitk_reduce", hasBias });
  const outputs: ArgBinding[] = [binding ? binding.out : { kind: "output" }, ...(hasBias ? [{ kind: "input", index: binding ? binding.bias : 2 } as const] : [])];
  return { launches: [main, splitReduceLaunch(name, source, s, n, vec, outputs)], scratchBytes: [sizeExpr(s.rows, splitK * n * 4)] };
}

/**
 * The reduce launch after a split-K GEMM over `columns` columns (all layers' for a grouped one): one thread per `vec`
 * outputs, reading scratch 0 and writing `outputs` (each layer's output and bias), then (M, columns).
 */
function splitReduceLaunch(name: string, source: string, s: MatmulShape, columns: number, vec: number, outputs: readonly ArgBinding[]): KernelLaunch {
  return {
    kernel: { name, family: "gemm", source, entry: name },
    grid: [sizeExpr(s.rows, columns, 256 * vec), constSize(1), constSize(1)],
    block: [256, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "scratch", index: 0 }, ...outputs, { kind: "i32", value: sizeExpr(s.rows) }, { kind: "i32", value: sizeExpr([columns]) }],
  };
}

type MatmulNode = NodeOf<"matmul">;

function fail(node: MatmulNode, msg: string): never {
  const [a, b] = [node.inputs[0]!, node.inputs[1]!];
  throw new Error(`tsgc codegen: matmul (a ${a.dtype}${formatShape(a.shape)}, b ${b.dtype}${formatShape(b.shape)}, transposeB ${node.attrs.transposeB}): ${msg}`);
}

/** The contraction shape of a · b (bᵀ when transposeB) computed in `dtype`, as the kernels see it. */
function contractionShape(a: Node, b: Node, transposeB: boolean, dtype: DType, fail: (msg: string) => never): MatmulShape {
  if (DT_CODES[dtype] === undefined) fail(`only f32, bf16 and f16 matmuls have kernels, got ${dtype}`);
  const ar = a.shape.length;
  const br = b.shape.length;
  const bShared = br === 2;
  return {
    dtype,
    rows: bShared ? a.shape.slice(0, -1) : [a.shape[ar - 2]!],
    batch: bShared ? [] : a.shape.slice(0, -2),
    n: transposeB ? b.shape[br - 2]! : b.shape[br - 1]!,
    k: a.shape[ar - 1]!,
    transposeB,
    bShared,
    bFormat: "dense",
  };
}

/** The contraction shape of a matmul node. */
export function matmulShape(node: MatmulNode): MatmulShape {
  return contractionShape(node.inputs[0]!, node.inputs[1]!, node.attrs.transposeB, node.dtype, (msg) => fail(node, msg));
}

/** The path emitMatmul takes for `node`. */
export function matmulPath(node: MatmulNode, opts: MatmulOptions = {}): MatmulPath {
  return opts.path ?? choosePath(matmulShape(node), opts.symbolBounds);
}

/**
 * Emits a fusedLinear node (matmul + bias[N]): the matmul's kernel with the bias added in its store
 * epilogue. Parameters (a, b, out, bias, M, N, K).
 */
export function emitFusedLinear(node: NodeOf<"fusedLinear">, opts: MatmulOptions = {}): NodeKernels {
  const [x, w] = [node.inputs[0]!, node.inputs[1]!];
  const shape = contractionShape(x, w, node.attrs.transposeB, node.dtype, (msg) => {
    throw new Error(`tsgc codegen: fusedLinear (x ${x.dtype}${formatShape(x.shape)}, w ${w.dtype}${formatShape(w.shape)}): ${msg}`);
  });
  return linearKernels(shape, opts.path ?? choosePath(shape, opts.symbolBounds), { hasBias: true }, opts);
}

/** The contraction shape of layer `r` of a groupedLinear node. */
function groupedLayerShape(node: NodeOf<"groupedLinear">, r: number): MatmulShape {
  const [x, w] = [node.inputs[0]!, node.inputs[1 + 2 * r]!];
  return contractionShape(x, w, true, node.dtype, (msg) => {
    throw new Error(`tsgc codegen: groupedLinear layer ${r} (x ${x.dtype}${formatShape(x.shape)}, w ${w.dtype}${formatShape(w.shape)}): ${msg}`);
  });
}

/** One layer of a groupedLinear computed alone (its siblings are not in this entry point): a fusedLinear launch. */
export function emitGroupedLinearLayer(node: NodeOf<"groupedLinear">, opts: MatmulOptions = {}): NodeKernels {
  const r = node.attrs.result;
  const shape = groupedLayerShape(node, r);
  const binding: MatmulBinding = { x: 0, w: 1 + 2 * r, bias: 2 + 2 * r, out: { kind: "output" } };
  return linearKernels(shape, opts.path ?? choosePath(shape, opts.symbolBounds), { hasBias: true }, opts, binding);
}

/**
 * All layers of a groupedLinear (the sibling nodes, in any order): on the tensor-core GEMV path one launch
 * over every layer's row tiles, otherwise a launch per layer. Layer r's output is bound as sibling `r`.
 */
export function emitGroupedLinear(layers: readonly NodeOf<"groupedLinear">[], opts: MatmulOptions = {}): NodeKernels {
  const node = layers[0]!;
  const count = (node.inputs.length - 1) / 2;
  const shapes = Array.from({ length: count }, (_, r) => groupedLayerShape(node, r));
  const paths = shapes.map((s) => opts.path ?? choosePath(s, opts.symbolBounds));
  const out = (r: number): ArgBinding => ({ kind: "sibling", result: String(r) });
  const split = groupedSplitGemm(shapes, paths, opts, out);
  if (split) return split;
  if (!paths.every((p) => p === "gemv-mma") || shapes.some((s) => !isStatic(s.n))) {
    // a launch (set) per layer, one after another, so the split-K ones share scratch 0
    const perLayer = shapes.map((s, r) => linearKernels(s, paths[r]!, { hasBias: true }, opts, { x: 0, w: 1 + 2 * r, bias: 2 + 2 * r, out: out(r) }));
    // (every layer's partials are [splitK, M, N_r] of the same M: the largest scale is the largest buffer)
    const scratch = perLayer.flatMap((k) => k.scratchBytes);
    const widest = scratch.reduce<SizeExpr | undefined>((a, b) => (a === undefined || b.scale > a.scale ? b : a), undefined);
    return { launches: perLayer.flatMap((k) => k.launches), scratchBytes: widest ? [widest] : [] };
  }
  const s = shapes[0]!;
  const ns = shapes.map((x) => x.n as number);
  const tiles = ns.map((n) => Math.ceil(n / 16));
  const mt = gemvRowsPerBlock(rowsBound(s.rows, opts.symbolBounds));
  const ksplit = isStatic(s.k) ? gemvKsplit(tiles.reduce((a, b) => a + b, 0), s.k, mt) : GEMV_KSPLIT;
  const name = ["gemv_grouped_bias_mma", s.dtype, ...ns.map((n) => `n${n}`), `k${s.k}`, ...(mt !== GEMV_MAX_M ? [`m${mt}`] : []), ...(ksplit !== GEMV_KSPLIT ? [`w${ksplit}`] : [])].join("_");
  const grouped = ns.map((n, r) => ({ n, firstTile: tiles.slice(0, r).reduce((a, b) => a + b, 0), tiles: tiles[r] }));
  // every layer's N is passed per tile; the single-layer N parameter is not used
  const source = renderTemplate("gemv.cu.njk", { ...templateContext(s, "gemv-mma", name, 0, DEFAULT_GEMM_TILE, mt, ksplit), hasBias: true, grouped, nExpr: "N_" });
  const args: ArgBinding[] = [
    { kind: "input", index: 0 },
    ...ns.flatMap((_, r): ArgBinding[] => [{ kind: "input", index: 1 + 2 * r }, out(r), { kind: "input", index: 2 + 2 * r }]),
    { kind: "i32", value: sizeExpr(s.rows) },
    { kind: "i32", value: sizeExpr([s.k]) },
  ];
  const grid: readonly [SizeExpr, SizeExpr, SizeExpr] = [sizeExpr(s.rows, 1, mt), constSize(tiles.reduce((a, b) => a + b, 0)), constSize(1)];
  return { launches: [{ kernel: { name, family: "gemv", source, entry: name }, grid, block: [32 * ksplit, 1, 1], sharedBytes: 0, args }], scratchBytes: [] };
}

/**
 * A groupedLinear's layers as one split-K GEMM over all their column tiles (grid x: the layers' tiles one after
 * another, as the grouped GEMV's y) and one reduce writing each layer's output and bias: when every layer takes the
 * GEMM path at a decode size with static N a multiple of 4 and their combined columns call for a split (q/k/v at
 * 64–256 rows: 3 launches fewer than a split GEMM and reduce per layer). Otherwise undefined.
 */
function groupedSplitGemm(shapes: readonly MatmulShape[], paths: readonly MatmulPath[], opts: MatmulOptions, out: (r: number) => ArgBinding): NodeKernels | undefined {
  const s = shapes[0]!;
  if (opts.gemmTile || !paths.every((p) => p === "gemm-mma") || !shapes.every((x) => isStatic(x.n) && x.n % 4 === 0)) return undefined;
  const ns = shapes.map((x) => x.n as number);
  const nTotal = ns.reduce((a, b) => a + b, 0);
  const mBound = rowsBound(s.rows, opts.symbolBounds);
  // the split for all columns: the layers' tiles of 128 columns, counted as one N's (each layer's rounded up)
  const bn = 4 * DEFAULT_GEMM_TILE.warpN;
  const tiles = ns.map((n) => Math.ceil(n / bn));
  const tile = gemmTileFor({ ...s, n: tiles.reduce((a, b) => a + b, 0) * bn }, "gemm-mma", mBound, opts.wgmma === true);
  const splitK = tile.splitK ?? 1;
  if (splitK === 1) return undefined;
  const layers = ns.map((n, r) => ({ n, firstTile: tiles.slice(0, r).reduce((a, b) => a + b, 0), tiles: tiles[r], colBase: ns.slice(0, r).reduce((a, b) => a + b, 0) }));
  const nTag = ns.map((n) => `n${n}`);
  const gemmName = ["gemm_grouped_mma", s.dtype, ...nTag, `k${s.k}`, gemmTileTag(tile)].join("_");
  const ctx = (name: string, vec: number) => ({ ...templateContext(s, "gemm-mma", name, vec, tile), grouped: layers, nTotal });
  const gemm: KernelLaunch = {
    kernel: { name: gemmName, family: "gemm", source: renderTemplate("gemm.cu.njk", ctx(gemmName, 0)), entry: gemmName },
    grid: [constSize(tiles.reduce((a, b) => a + b, 0)), sizeExpr(s.rows, 1, tile.rows ?? 128), constSize(splitK)],
    block: [256, 1, 1],
    sharedBytes: gemmSharedBytes(tile),
    args: [
      { kind: "input", index: 0 }, ...ns.map((_, r): ArgBinding => ({ kind: "input", index: 1 + 2 * r })), { kind: "scratch", index: 0 },
      { kind: "i32", value: sizeExpr(s.rows) }, { kind: "i32", value: constSize(nTotal) }, { kind: "i32", value: sizeExpr([s.k]) },
    ],
  };
  const reduceName = ["gemm_splitk_reduce_grouped_bias", s.dtype, ...nTag, `sk${splitK}`, "v4"].join("_");
  const reduceSource = renderTemplate("gemm.cu.njk", { ...ctx(reduceName, 4), variant: "splitk_reduce", hasBias: true });
  const reduce = splitReduceLaunch(reduceName, reduceSource, s, nTotal, 4, ns.flatMap((_, r): ArgBinding[] => [out(r), { kind: "input", index: 2 + 2 * r }]));
  return { launches: [gemm, reduce], scratchBytes: [sizeExpr(s.rows, splitK * nTotal * 4)] };
}

/** Emits a matmul node: one launch of the GEMV or GEMM kernel its shape calls for. */
export function emitMatmul(node: MatmulNode, opts: MatmulOptions = {}): NodeKernels {
  const shape = matmulShape(node);
  return linearKernels(shape, opts.path ?? choosePath(shape, opts.symbolBounds), {}, opts);
}
