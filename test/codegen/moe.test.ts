// moeExperts codegen: emitted sources and geometry (pure), every gpt-oss specialization compiles
// (NVRTC), and routing + expert kernels against the interpreter on a GPU at 1, 3, 50 and 783 tokens
// (dense bf16/f32, MXFP4 bf16/f32) at a reduced size, plus a gpt-oss-20b-shaped decode step (hidden
// 2880, intermediate 2880, 32 experts, top-4, MXFP4) against an f64 oracle that follows the
// interpreter's roundings but touches only the selected experts (the interpreter would dequantize all
// 32 experts: gigabytes). The oracle itself is checked against the interpreter at the reduced size.
import { describe, expect, it } from "vitest";
import { evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import {
  emitMoeExperts, GROUPED_BM, GROUPED_BM128_MIN_ROWS, GROUPED_WGMMA_BM128_MIN_ROWS, GROUPED_WGMMA_MIN_ROWS, ROUTE_BLOCK_TOKENS_FROM, routeTokensPerBlock, GROUPED_BN_MMA, GROUPED_BN_SIMT, GROUPED_MIN_TOKENS, GROUPED_TILING, type GroupedTiling, groupedSharedBytes, groupedTiling, moePath, MXFP4_DOWN_ROWS,
  MXFP4_GATEUP_PAIRS, MXFP4_LUT, mxfp4ExponentPairs, mxfp4LutDequant8, mxfp4RawDequant8, mxfp4LutPairs, previousStreamTiling, prmt, STREAM_MAX_ROWS, STREAM_MIN_TOKENS, streamSharedBytes, streamTiling,
  type StreamTiling,
} from "../../src/codegen/moe.js";
import { decodeE2m1, decodeE8m0, type DType, roundTo } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom, tensorFromBytes, tensorToBytes } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Dim, evalShape, numElements, type SymbolValues } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc, gpuHasWgmma } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels, runRawKernels } from "./harness.js";

interface MoeCase {
  dtype: DType;
  t: Dim;
  d: number;
  inter: number;
  e: number;
  k: number;
  format: "dense" | "mxfp4";
  /** dtype of the expert biases (default f32) */
  bias?: DType;
}

const DENSE_NAMES = ["x", "router_w", "router_b", "gate_up_w", "gate_up_b", "down_w", "down_b"] as const;
const MXFP4_NAMES = ["x", "router_w", "router_b", "gate_up_blocks", "gate_up_scales", "gate_up_b", "down_blocks", "down_scales", "down_b"] as const;

function moeNode(c: MoeCase & { readonly router?: DType }): NodeOf<"moeExperts"> {
  const table = new NodeTable();
  const i = (name: string, dtype: DType, shape: Dim[]) => table.make("input", { name, dtype, shape }, []);
  const { d, inter, e } = c;
  const bias = c.bias ?? "f32";
  const head = [i("x", c.dtype, [c.t, d]), i("router_w", c.router ?? c.dtype, [e, d]), i("router_b", bias, [e])];
  const experts =
    c.format === "dense"
      ? [i("gate_up_w", c.dtype, [e, d, 2 * inter]), i("gate_up_b", bias, [e, 2 * inter]), i("down_w", c.dtype, [e, inter, d]), i("down_b", bias, [e, d])]
      : [
          i("gate_up_blocks", "fp4e2m1x2", [e, 2 * inter, d / 32, 16]), i("gate_up_scales", "e8m0", [e, 2 * inter, d / 32]), i("gate_up_b", bias, [e, 2 * inter]),
          i("down_blocks", "fp4e2m1x2", [e, d, inter / 32, 16]), i("down_scales", "e8m0", [e, d, inter / 32]), i("down_b", bias, [e, d]),
        ];
  return table.make("moeExperts", { topK: c.k, limit: 7, alpha: 1.702, weightFormat: c.format }, [...head, ...experts]);
}

const MOE_20B = { d: 2880, inter: 2880, e: 32, k: 4 } as const;
/** Symbol bounds of a decode-sized graph (token loop) and of a prefill graph (grouped GEMMs for MXFP4). */
const DECODE = { tokens: 8 };
const PREFILL = { tokens: 4096 };
/** The token loop forced where a test is about it (bf16/f16 MXFP4 decode buckets take the stream variant). */
const LOOP = { path: "token-loop" } as const;

describe("moeExperts codegen (pure)", () => {
  it("emits route, gate_up and down launches with scratch for ids, weights and h", () => {
    const k = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), DECODE, LOOP);
    expect(k.launches.map((l) => l.kernel.entry.split("_").slice(0, 2).join("_"))).toEqual(["moe_route", "moe_gateup", "moe_down"]);
    const sym = { tokens: 7 };
    expect(k.scratchBytes.map((s) => evalSize(s, sym))).toEqual([7 * 4 * 4, 7 * 4 * 4, 7 * 4 * 2880 * 4]);
    expect(k.launches.map((l) => l.grid.map((g) => evalSize(g, sym)))).toEqual([
      [7, 1, 1],
      [Math.ceil(2880 / MXFP4_GATEUP_PAIRS), 28, 1],
      [Math.ceil(2880 / MXFP4_DOWN_ROWS), 7, 1],
    ]);
    expect(k.launches[1]!.args).toEqual([
      { kind: "input", index: 0 }, { kind: "scratch", index: 0 }, { kind: "input", index: 3 }, { kind: "input", index: 4 }, { kind: "input", index: 5 }, { kind: "scratch", index: 2 },
    ]);
    expect(k.launches[2]!.args.at(-1)).toEqual({ kind: "output" });
    const gate = k.launches[1]!.kernel.source;
    expect(gate).toContain("moe_fp4");
    expect(gate).toContain("#define MOE_D 2880");
    expect(gate).not.toMatch(/#include\s*</);
    // limit 7 and alpha 1.702 rounded to bf16 and baked bit-exactly
    expect(gate).toContain("__int_as_float(0x40e00000)");
    expect(gate).toContain("__int_as_float(0x3fda0000)");
  });

  it("dense weights use the column-per-lane kernels; entries differ per dtype and format", () => {
    const names = new Set<string>();
    for (const dtype of ["bf16", "f32", "f16"] as DType[])
      for (const format of ["dense", "mxfp4"] as const)
        for (const l of emitMoeExperts(moeNode({ dtype, t: "tokens", d: 256, inter: 128, e: 8, k: 4, format }), DECODE, LOOP).launches) names.add(l.kernel.entry);
    // route is shared between formats of one dtype: 3 dtypes × (1 route + 2 formats × 2)
    expect(names.size).toBe(15);
    const dense = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "dense" }), DECODE);
    expect(dense.launches[1]!.kernel.source).not.toContain("moe_fp4");
    expect(dense.launches[2]!.args).toEqual([
      { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }, { kind: "scratch", index: 2 }, { kind: "input", index: 5 }, { kind: "input", index: 6 }, { kind: "output" },
    ]);
  });

  it("rejects unsupported dtypes, naming the node", () => {
    const table = new NodeTable();
    const i = (name: string, dtype: DType, shape: Dim[]) => table.make("input", { name, dtype, shape }, []);
    const node = table.make("moeExperts", { topK: 2, limit: 7, alpha: 1.702, weightFormat: "dense" }, [
      i("x", "bf16", [3, 64]), i("rw", "bf16", [4, 64]), i("rb", "i32", [4]), i("gw", "bf16", [4, 64, 64]), i("gb", "f32", [4, 64]), i("dw", "bf16", [4, 32, 64]), i("db", "f32", [4, 64]),
    ]);
    expect(() => emitMoeExperts(node, DECODE)).toThrow(/moeExperts \(dense, x bf16\[3, 64\]\): rb has dtype i32/);
  });
});

describe("moeExperts grouped-GEMM prefill path (pure)", () => {
  it("MXFP4 experts take the grouped path when the token bound exceeds the decode size; dense experts never do", () => {
    const mx = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    expect(moePath(mx, PREFILL)).toBe("grouped");
    expect(moePath(mx, { tokens: STREAM_MIN_TOKENS - 1 })).toBe("token-loop");
    expect(moePath(mx, { tokens: STREAM_MIN_TOKENS })).toBe("stream");
    // 32 experts, top-4: up to 16 expected rows an expert is 128 tokens
    expect(moePath(mx, { tokens: (STREAM_MAX_ROWS * 32) / 4 })).toBe("stream");
    expect(moePath(mx, { tokens: (STREAM_MAX_ROWS * 32) / 4 + 1 })).toBe("grouped");
    // gpt-oss-120b's 128 experts: 512 tokens
    const mx120 = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, e: 128, format: "mxfp4" });
    expect(moePath(mx120, { tokens: 512 })).toBe("stream");
    expect(moePath(mx120, { tokens: 513 })).toBe("grouped");
    expect(moePath(mx, {})).toBe("grouped"); // no bound: prefill-sized
    expect(moePath(moeNode({ dtype: "bf16", t: 2, ...MOE_20B, format: "mxfp4" }), {})).toBe("token-loop");
    expect(moePath(moeNode({ dtype: "bf16", t: 3, ...MOE_20B, format: "mxfp4" }), {})).toBe("stream");
    // f32 activations (no 16-bit tensor cores): the token loop at decode sizes, grouped SIMT GEMMs above
    const f32 = moeNode({ dtype: "f32", t: "tokens", ...MOE_20B, format: "mxfp4" });
    expect(moePath(f32, { tokens: GROUPED_MIN_TOKENS })).toBe("token-loop");
    expect(moePath(f32, { tokens: GROUPED_MIN_TOKENS + 1 })).toBe("grouped");
    expect(moePath(mx, PREFILL, { path: "token-loop" })).toBe("token-loop");
    const dense = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "dense" });
    expect(moePath(dense, PREFILL)).toBe("token-loop");
    expect(() => emitMoeExperts(dense, PREFILL, { path: "grouped" })).toThrow(/grouped-GEMM path takes MXFP4 experts only/);
  });

  it("gpt-oss-20b bf16: route, bucket, gate_up, down, combine; grids and scratch as SizeExprs of the tokens", () => {
    const k = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL);
    expect(k.launches.map((l) => l.kernel.entry.split("_").slice(0, 2).join("_"))).toEqual(["moe_route", "moe_bucket", "moe_ggateup", "moe_gdown", "moe_combine"]);
    for (const t of [1, 7, 2048, 4096]) {
      const sym = { tokens: t };
      const rowTiles = Math.ceil((4 * t) / 128) + 32; // 128-row tiles at 512 rows an expert; every segment may end in a partial tile
      expect(k.launches.map((l) => l.grid.map((g) => evalSize(g, sym)))).toEqual([
        [Math.ceil(t / 8), 1, 1], // 8 tokens a route block at a 4096-token bound
        [1, 1, 1],
        [Math.ceil(5760 / GROUPED_BN_MMA), rowTiles, 1],
        [Math.ceil(2880 / GROUPED_BN_MMA), rowTiles, 1],
        [Math.ceil(2880 / 256), t, 1],
      ]);
      // ids, weights, tile count, tiles (int4, at most one per pair), perm, h [T·K, I] and y [T·K, D] in bf16
      expect(k.scratchBytes.map((s) => evalSize(s, sym))).toEqual([t * 16, t * 16, 16, t * 4 * 16, t * 16, t * 4 * 2880 * 2, t * 4 * 2880 * 2]);
    }
    expect(k.launches.map((l) => l.block[0])).toEqual([1024, 1024, 256, 256, 256]);
    // the tiled GEMMs take dynamic shared memory (more than 48 KiB: the executor opts them in)
    const wide = groupedTiling((4096 * 4) / 32);
    expect(wide).toEqual({ ...GROUPED_TILING, bm: 128, minBlocks: 2 });
    expect(k.launches.map((l) => l.sharedBytes)).toEqual([0, 0, groupedSharedBytes(wide), groupedSharedBytes(wide), 0]);
    expect(k.launches[1]!.args).toEqual([
      { kind: "scratch", index: 0 }, { kind: "scratch", index: 2 }, { kind: "scratch", index: 3 }, { kind: "scratch", index: 4 }, { kind: "i32", value: { dims: ["tokens"], scale: 4, divisor: 1 } },
    ]);
    expect(k.launches[2]!.args).toEqual([
      { kind: "input", index: 0 }, { kind: "scratch", index: 4 }, { kind: "scratch", index: 2 }, { kind: "scratch", index: 3 },
      { kind: "input", index: 3 }, { kind: "input", index: 4 }, { kind: "input", index: 5 }, { kind: "scratch", index: 5 },
    ]);
    expect(k.launches[3]!.args).toEqual([
      { kind: "scratch", index: 5 }, { kind: "scratch", index: 4 }, { kind: "scratch", index: 2 }, { kind: "scratch", index: 3 }, { kind: "scratch", index: 1 },
      { kind: "input", index: 6 }, { kind: "input", index: 7 }, { kind: "input", index: 8 }, { kind: "scratch", index: 6 },
    ]);
    expect(k.launches[4]!.args).toEqual([{ kind: "scratch", index: 6 }, { kind: "output" }]);
    const gate = k.launches[2]!.kernel.source;
    expect(gate).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
    expect(gate).toContain("#define BM 128");
    expect(gate).toContain("__int_as_float(0x40e00000)"); // limit 7 in bf16
    expect(gate).not.toMatch(/#include\s*</);
    // the route kernel takes 8 tokens a block and the token count; below ROUTE_BLOCK_TOKENS_FROM it is the token loop's own
    expect(k.launches[0]!.kernel.entry).toMatch(/^moe_route_\w+_e32k4d2880_r8$/);
    expect(k.launches[0]!.args.at(-1)).toEqual({ kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } });
    expect(k.launches[0]!.kernel.source).toContain("#define MOE_RT 8");
    const loopRoute = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), DECODE, LOOP).launches[0]!;
    const small = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: ROUTE_BLOCK_TOKENS_FROM - 1 }).launches[0]!;
    expect(small.kernel.source).toBe(loopRoute.kernel.source);
    expect(small.grid[0]).toEqual(loopRoute.grid[0]);
    expect(small.args).toHaveLength(5);
    expect([128, 255, 256, 511, 512, 1024, 2048, 1 << 20].map(routeTokensPerBlock)).toEqual([1, 1, 2, 2, 4, 8, 8, 8]);
    // an f32 router (4 weights a 16-byte chunk, not x's 8): one token a block
    expect(emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4", router: "f32" }), PREFILL).launches[0]!.grid[0]).toEqual({ dims: ["tokens"], scale: 1, divisor: 1 });
    // gpt-oss-120b's 128 experts do not keep their rows in registers: one token a block at any bound
    expect(emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, e: 128, format: "mxfp4" }), PREFILL).launches[0]!.kernel.entry).toMatch(/_e128k4d2880$/);
    // routeTokens overrides the bound's choice (a benchmark hook), where the rows sit in registers
    const two = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: 256 }, { routeTokens: 2 }).launches[0]!;
    expect(two.kernel.entry).toMatch(/_e32k4d2880_r2$/);
    expect(two.grid[0]).toEqual({ dims: ["tokens"], scale: 1, divisor: 2 });
    expect(() => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, e: 128, format: "mxfp4" }), PREFILL, { routeTokens: 4 })).toThrow(/routeTokens 4: 1, 2, 4 or 8, and more than 1 only with/);
    expect(() => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL, { routeTokens: 3 as 2 })).toThrow(/routeTokens 3/);
  });

  it("f32 takes the SIMT GEMMs, f16 the f16 tensor cores; scratch h and y follow x's dtype", () => {
    const f32 = emitMoeExperts(moeNode({ dtype: "f32", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL);
    expect(f32.launches[2]!.kernel.entry).toMatch(/^moe_ggateup_simt_/);
    expect(f32.launches[2]!.kernel.source).not.toContain("mma.sync");
    expect(f32.launches[3]!.grid.map((g) => evalSize(g, { tokens: 100 }))).toEqual([Math.ceil(2880 / GROUPED_BN_SIMT), Math.ceil(400 / GROUPED_BM) + 32, 1]);
    expect(f32.scratchBytes.slice(5).map((s) => evalSize(s, { tokens: 3 }))).toEqual([3 * 4 * 2880 * 4, 3 * 4 * 2880 * 4]);
    const f16 = emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" }), PREFILL);
    expect(f16.launches[3]!.kernel.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32");
  });
});

/** Tiled grouped-GEMM variants the tests cover (the benchmark times these beside the default kernel). */
const TILED_VARIANTS: readonly Partial<GroupedTiling>[] = [
  {}, { dequant: "byte" }, { bm: 32 }, { bk: 32 }, { bm: 32, bk: 32 }, { minBlocks: 3 }, { aStages: 2 }, { aStages: 4, bm: 32 },
  { skipEmpty: true }, { bm: 128, minBlocks: 2 }, { bm: 128, minBlocks: 2, skipEmpty: true, bk: 32 },
  { bn: 256, minBlocks: 2 }, { bm: 128, bn: 256, minBlocks: 1 },
];

describe("moeExperts tiled grouped GEMMs (pure)", () => {
  const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
  it("are the default, with tiles by the rows an expert expects; groupedPrefetch asks for the previous kernel (64-row tiles, B prefetch in its name, static shared memory)", () => {
    const tiled = emitMoeExperts(node, PREFILL);
    expect(tiled.launches[2]!.kernel.entry).toMatch(/_m128k64s3lb2$/);
    // 32 experts, top-4: 128 rows an expert from 1024 tokens; below, 64-row tiles that skip a warp's empty half
    expect(emitMoeExperts(node, { tokens: 1024 }).launches[2]!.kernel.entry).toMatch(/_m128k64s3lb2$/);
    expect(emitMoeExperts(node, { tokens: 1023 }).launches[3]!.kernel.entry).toMatch(/_m64k64s3lb3z$/);
    expect(emitMoeExperts(node, { tokens: 1023 }).launches[3]!.kernel.source).toContain("#define SKIP_EMPTY true");
    expect(emitMoeExperts(node, { tokens: 1023 }).launches[1]!.kernel.entry).toBe("moe_bucket_e32k4_m64");
    expect(groupedTiling(GROUPED_BM128_MIN_ROWS - 1)).toEqual({ ...GROUPED_TILING, skipEmpty: true });
    // a wgmma target (sm_90a): 128-row tiles of warpgroup MMAs from 64 rows an expert (512 tokens), 64-row ones from 32
    // (256 tokens), the mma.sync tiles below
    expect(groupedTiling(GROUPED_WGMMA_BM128_MIN_ROWS, true)).toEqual({ ...GROUPED_TILING, bm: 128, minBlocks: 2, wgmma: true });
    expect(groupedTiling(GROUPED_WGMMA_MIN_ROWS, true)).toEqual({ ...GROUPED_TILING, minBlocks: 2, wgmma: true });
    expect(emitMoeExperts(node, { tokens: 256 }, { wgmma: true }).launches[3]!.kernel.entry).toMatch(/_m64k64s3lb2w$/);
    const hopper = emitMoeExperts(node, { tokens: 512 }, { wgmma: true });
    expect(hopper.launches.slice(2, 4).map((l) => l.kernel.entry.split("_").pop())).toEqual(["m128k64s3lb2w", "m128k64s3lb2w"]);
    expect(hopper.launches[2]!.kernel.source).toContain("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16");
    expect(hopper.launches[2]!.sharedBytes).toBe(128 * (3 * 128 + 3 * 128) + 1024);
    expect(emitMoeExperts(node, { tokens: 511 }, { wgmma: true }).launches[2]!.kernel.entry).toMatch(/_m64k64s3lb2w$/);
    expect(emitMoeExperts(node, { tokens: 255 }, { path: "grouped", wgmma: true }).launches[2]!.kernel.entry).toMatch(/_m64k64s3lb3z$/);
    expect(emitMoeExperts(node, { tokens: 255 }, { path: "grouped", wgmma: true }).launches[2]!.kernel.source).not.toContain("wgmma");
    // 64-row tiles: each warpgroup all 64 rows × half the 128 weight rows
    const m64 = emitMoeExperts(node, PREFILL, { groupedTiling: { bm: 64, minBlocks: 3, wgmma: true } });
    expect(m64.launches[2]!.kernel.source).toContain("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16");
    expect(m64.launches[2]!.kernel.source).toContain("#define WG_N 64");
    expect(m64.launches[2]!.sharedBytes).toBe(128 * (3 * 64 + 3 * 128) + 1024);
    expect(tiled.launches[2]!.kernel.source).toContain("mt_smem");
    const k = emitMoeExperts(node, PREFILL, { groupedPrefetch: 1 });
    expect(k.launches[2]!.kernel.entry).toMatch(/_p1$/);
    expect(k.launches[2]!.kernel.source).not.toContain("mt_smem");
    expect(k.launches.every((l) => l.sharedBytes === 0)).toBe(true);
  });

  it("encode the tiling in the names, size dynamic shared memory, and cut row tiles of bm for the bucket and grids", () => {
    for (const v of TILED_VARIANTS) {
      const t = { ...GROUPED_TILING, ...v };
      const k = emitMoeExperts(node, PREFILL, { groupedTiling: t });
      const tag = `_m${t.bm}${t.bn === 256 ? "n256" : ""}k${t.bk}s${t.aStages}${t.dequant === "lut" ? "l" : "b"}${t.minBlocks ? `b${t.minBlocks}` : ""}${t.skipEmpty ? "z" : ""}`;
      expect(k.launches[2]!.kernel.entry).toMatch(new RegExp(`^moe_ggateup_mma_bf16_\\w+_e32k4d2880i2880_40e00000_3fd9db23${tag}$`));
      expect(k.launches[3]!.kernel.entry).toMatch(new RegExp(`^moe_gdown_mma_bf16_\\w+_e32k4d2880i2880${tag}$`));
      expect(k.launches[1]!.kernel.entry).toBe(`moe_bucket_e32k4_m${t.bm}`);
      const smem = 2 * (t.bk + 8) * (t.aStages * t.bm + 2 * t.bn);
      expect(groupedSharedBytes(t)).toBe(smem);
      expect(k.launches.map((l) => l.sharedBytes)).toEqual([0, 0, smem, smem, 0]);
      for (const n of [17, 256, 2048]) {
        const rowTiles = Math.ceil((4 * n) / t.bm) + 32;
        expect(k.launches.slice(2, 4).map((l) => l.grid.map((g) => evalSize(g, { tokens: n })))).toEqual([[Math.ceil(5760 / t.bn), rowTiles, 1], [Math.ceil(2880 / t.bn), rowTiles, 1]]);
      }
      const src = k.launches[2]!.kernel.source;
      expect(src).toContain(`#define BM ${t.bm}`);
      expect(src).toContain(`#define BN ${t.bn}`);
      expect(src).toContain(`#define BK ${t.bk}`);
      expect(src).toContain(`#define AST ${t.aStages}`);
      expect(src).toContain("extern __shared__");
      expect(src.includes("mx_dequant8(")).toBe(t.dequant === "lut");
      expect(src).toContain(t.minBlocks ? `__launch_bounds__(256, ${t.minBlocks})` : "__launch_bounds__(256)");
      expect(src).not.toMatch(/#include\s*</);
      // 2880 = 45 k-tiles of 64: no partial last k-tile
      expect(src).not.toContain("t * KB + sub < GKB");
    }
    // a K of 3 MXFP4 blocks (intermediate 96) leaves down a partial last 64-value k-tile: guarded loads
    const odd = emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 320, inter: 96, e: 8, k: 4, format: "mxfp4" }), PREFILL, { groupedTiling: {} });
    expect(odd.launches[3]!.kernel.source).toContain("t * KB + sub < GKB");
    expect(odd.launches[2]!.kernel.source).not.toContain("t * KB + sub < GKB");
  });

  it("reject f32 activations, a B prefetch depth, and tilings out of range, naming the node or the tiling", () => {
    expect(() => emitMoeExperts(moeNode({ dtype: "f32", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL, { groupedTiling: {} })).toThrow(/moeExperts \(mxfp4, x f32.*groupedTiling applies to the tensor-core/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: {}, groupedPrefetch: 4 })).toThrow(/groupedPrefetch applies to the previous kernel only/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { bm: 16 as 32 } })).toThrow(/groupedTiling .*bm must be 32, 64 or 128/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { bm: 128, minBlocks: 3 } })).toThrow(/groupedTiling .*bm 128 × bn 128 takes minBlocks 0, 1 or 2/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { bm: 128, bn: 256, minBlocks: 2 } })).toThrow(/bm 128 × bn 256 takes minBlocks 0 or 1/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { bn: 192 as 128 } })).toThrow(/bn must be 128 or 256/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { bk: 128 as 64 } })).toThrow(/bk must be 32 or 64/);
    expect(() => emitMoeExperts(node, PREFILL, { groupedTiling: { minBlocks: 1.5 } })).toThrow(/minBlocks/);
  });
});

// ---- the "lut" MXFP4 dequantization against the byte path's formula (mx_dequant2), bit for bit ---------------

/** bf16 bits → value. */
function bf16Value(h: number): number {
  return new Float32Array(new Uint32Array([(h & 0xffff) << 16]).buffer)[0]!;
}
/** An exact value → bf16 bits, rounded to nearest even (subnormals kept, overflow to infinity). */
function bf16Round(v: number): number {
  if (Number.isNaN(v)) return 0x7fff;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const q = a / ulp;
  const fl = Math.floor(q);
  const r = q - fl > 0.5 || (q - fl === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const out = r * ulp;
  if (out >= 2 ** 128) return sign | 0x7f80;
  return sign | (new Uint32Array(new Float32Array([out]).buffer)[0]! >>> 16);
}
/** fma.rn.bf16x2 d = a·b + (−0), lane by lane (the products are exact in f64); NaN → the canonical 0x7fff. */
function mulBf16x2(a: number, b: number): number {
  const lane = (x: number, y: number) => {
    const p = bf16Value(x) * bf16Value(y);
    return Number.isNaN(p) ? 0x7fff : p === 0 ? (Object.is(p, -0) ? 0x8000 : 0) : bf16Round(p);
  };
  return (lane(a & 0xffff, b & 0xffff) | (lane(a >>> 16, b >>> 16) << 16)) >>> 0;
}
/** moe-grouped.cu.njk's mx_fp4x2_raw, mx_scale_factors and mx_dequant2, transcribed. */
function mxDequant2(byte: number, s: number): number {
  const raw = ((Math.imul(byte, 0x40040) & 0x01c001c0) | (Math.imul(byte, 0x1001000) & 0x80008000)) >>> 0;
  const one = s <= 128 ? (s + 126) << 7 : 0x7e80;
  const two = s === 255 ? 0x7fc0 : s << 7;
  const f1 = (one | (one << 16)) >>> 0;
  const f2 = s <= 128 ? 0 : (two | (two << 16)) >>> 0;
  let v = mulBf16x2(raw, f1);
  if (f2 !== 0) v = mulBf16x2(v, f2);
  return v;
}
const isNanBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

describe("MXFP4 prmt-table dequantization (pure)", () => {
  it("builds its tables by exponent arithmetic exactly where that gives mx_dequant2's bits (scale codes 2 .. 252)", () => {
    const [lo, hi] = MXFP4_LUT.fastScales;
    const slow = (s: number) => [0x10, 0x32, 0x54, 0x76].map((b) => mxDequant2(b, s));
    for (let s = lo; s <= hi; s++) expect(mxfp4LutPairs(s), `scale code ${s}`).toEqual(slow(s));
    // just outside, 0.5·2^(s−127) is subnormal (s = 1) and 6·2^(s−127) overflows (s = 253): the kernel's slow path
    expect(mxfp4ExponentPairs(lo - 1)).not.toEqual(slow(lo - 1));
    expect(mxfp4ExponentPairs(hi + 1)).not.toEqual(slow(hi + 1));
    expect(() => mxfp4LutPairs(255)).toThrow(/scale code 255 is outside \[2, 252\]/);
  });

  it("prmt follows PTX: byte selection from {b, a}, msb replication with selector bit 3", () => {
    expect(prmt(0x33221100, 0x77665544, 0x3210)).toBe(0x33221100);
    expect(prmt(0x33221100, 0x77665544, 0x7654)).toBe(0x77665544);
    expect(prmt(0x33221100, 0x77665544, 0x5140)).toBe(0x55114400);
    expect(prmt(0x80000000, 0x00000000, 0x0b03)).toBe(0x00ff0080);
    expect(prmt(0x000000ff, 0, 0x8888)).toBe(0xffffffff);
  });

  it("gives mx_dequant2's bits for every byte value in every position of a word, at every scale (NaN for 255)", () => {
    const rand = seededRandom(99);
    for (let s = 0; s < 256; s++) {
      const pairs = [0x10, 0x32, 0x54, 0x76].map((b) => mxDequant2(b, s)) as [number, number, number, number];
      for (let byte = 0; byte < 256; byte++) {
        for (let j = 0; j < 4; j++) {
          const bytes = [0, 1, 2, 3].map((i) => (i === j ? byte : Math.floor(rand() * 256)));
          const w = (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
          const got = mxfp4LutDequant8(w, pairs, s === 255);
          for (let i = 0; i < 4; i++) {
            const want = mxDequant2(bytes[i]!, s);
            if (s === 255) {
              expect(isNanBf16(got[i]! & 0xffff) && isNanBf16(got[i]! >>> 16), `s 255 byte ${bytes[i]}`).toBe(true);
            } else if (got[i] !== want) {
              expect(got[i]!.toString(16), `scale ${s}, byte ${bytes[i]!.toString(16)} at ${i}`).toBe(want.toString(16));
            }
          }
        }
      }
    }
  });
});


describe("MXFP4 immediate-table (\"raw\") dequantization (pure)", () => {
  it("gives mx_fp4x2_raw's bits for every byte value in every position of a word, so mx_dequant2's factors then give its bits", () => {
    const raw = (byte: number) => ((Math.imul(byte, 0x40040) & 0x01c001c0) | (Math.imul(byte, 0x1001000) & 0x80008000)) >>> 0;
    const rand = seededRandom(7);
    for (let byte = 0; byte < 256; byte++) {
      for (let j = 0; j < 4; j++) {
        const bytes = [0, 1, 2, 3].map((i) => (i === j ? byte : Math.floor(rand() * 256)));
        const w = (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
        expect(mxfp4RawDequant8(w).map((v) => v.toString(16)), `word ${w.toString(16)}`).toEqual(bytes.map((b) => raw(b).toString(16)));
      }
    }
    // the tables: the low byte from code bits 0..1 (bits 6, 7), the high byte from bits 2..3 (bits 8, 15)
    for (let c = 0; c < 16; c++) {
      const r = raw(c) & 0xffff;
      expect((MXFP4_LUT.rawLo >>> (8 * (c & 3))) & 0xff).toBe(r & 0xff);
      expect((MXFP4_LUT.rawHi >>> (8 * (c >> 2))) & 0xff).toBe(r >>> 8);
    }
  });
});

describe("moeExperts stream path, decode sizes (pure)", () => {
  it("gpt-oss-20b bf16 at each decode bucket (its own at 16..128, forced elsewhere): route and bucket (or logits and a selecting bucket), streamed gate_up and down, combine", () => {
    for (const [bound, routing] of [1, 2, 4, 8, 16, 32, 64, 128, 256].flatMap((b) => [[b, "route"], [b, "logits"]] as const)) {
      const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
      expect(moePath(node, { tokens: bound })).toBe(bound < STREAM_MIN_TOKENS ? "token-loop" : bound <= 128 ? "stream" : "grouped");
      const k = emitMoeExperts(node, { tokens: bound }, { path: "stream", ...(routing === "logits" ? { streamRouting: routing } : {}) });
      const selects = routing === "logits";
      expect(k.launches.map((l) => l.kernel.entry.split("_").slice(0, 2).join("_"))).toEqual([selects ? "moe_logits" : "moe_route", selects ? "moe_bucketsel" : "moe_bucket", "moe_ggateup", "moe_gdown", "moe_combine"]);
      const { bm } = streamTiling(bound);
      // weights as the mma's A, 16-row tiles, all 23 chunks of K's A staged, immediate raw tables (bf16)
      expect(k.launches[2]!.kernel.entry).toMatch(/^moe_ggateup_stream_.*_m16n1p4ra23b2$/);
      expect(k.launches[2]!.sharedBytes).toBe(23 * 16 * 256);
      for (const t of new Set([1, Math.max(1, bound - 1), bound])) {
        const sym = { tokens: t };
        const pairs = 4 * t;
        // at most one tile per pair, and at most P/BM + E
        const rowTiles = bound * 4 <= 32 ? pairs : Math.ceil((pairs + 32 * bm) / bm);
        expect(rowTiles).toBeGreaterThanOrEqual(Math.min(pairs, Math.ceil(pairs / bm) + 32));
        expect(k.launches.map((l) => l.grid.map((g) => evalSize(g, sym)))).toEqual([
          selects ? [8, Math.ceil(t / Math.min(8, bound)), 1] : [Math.ceil(t / routeTokensPerBlock(bound)), 1, 1],
          [1, 1, 1],
          [Math.ceil(5760 / 128), rowTiles, 1],
          [Math.ceil(2880 / 128), rowTiles, 1],
          [Math.ceil(2880 / 256), t, 1],
        ]);
        // the grouped path's scratch, and with logits the router logits (f32 [T, E])
        expect(k.scratchBytes.map((x) => evalSize(x, sym))).toEqual([t * 16, t * 16, 16, t * 4 * 16, t * 16, t * 4 * 2880 * 2, t * 4 * 2880 * 2, ...(selects ? [t * 32 * 4] : [])]);
      }
      if (selects) {
        expect(k.launches[0]!.args).toEqual([
          { kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: 7 }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } },
        ]);
        expect(k.launches[1]!.args.slice(0, 3)).toEqual([{ kind: "scratch", index: 7 }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }]);
      } else {
        // from ROUTE_BLOCK_TOKENS_FROM a route block takes several tokens and the token count
        const several = routeTokensPerBlock(bound) > 1 ? [{ kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }] : [];
        expect(k.launches[0]!.args).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }, ...several]);
        expect(k.launches[1]!.args.slice(0, 2)).toEqual([{ kind: "scratch", index: 0 }, { kind: "scratch", index: 2 }]);
      }
      const gate = k.launches[2]!.kernel.source;
      expect(gate).toContain(`#define BM ${bm}`);
      expect(gate).toContain("#define NJ 1");
      expect(gate).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
      expect(gate).not.toMatch(/#include\s*</);
    }
  });

  it("f32 and dense experts never take it; forcing it on them is an error naming the node", () => {
    expect(moePath(moeNode({ dtype: "f32", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: 8 })).toBe("token-loop");
    const dense = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "dense" });
    expect(moePath(dense, { tokens: 8 })).toBe("token-loop");
    expect(() => emitMoeExperts(dense, { tokens: 8 }, { path: "stream" })).toThrow(/moeExperts \(dense, x bf16\[tokens, 2880\]\): the stream path takes MXFP4 experts/);
  });

  it("the previous kernels (weights as the mma's B) dequantize per byte or by prmt table; each option is in its kernels' names and checked", () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    const b = previousStreamTiling(16);
    expect(b).toMatchObject({ weights: "b", dequant: "byte", bm: 16, nj: 2 });
    const lut = emitMoeExperts(node, { tokens: 16 }, { path: "stream", streamTiling: { ...b, dequant: "lut" } });
    expect(lut.launches[2]!.kernel.entry).toMatch(/_m16n2p4l$/);
    expect(lut.launches[3]!.kernel.entry).toMatch(/^moe_gdown_stream_.*_m16n2p4l$/);
    expect(lut.launches[2]!.kernel.source).toContain("mx_dequant8(");
    expect(emitMoeExperts(node, { tokens: 16 }, { path: "stream", streamTiling: b }).launches[2]!.kernel.source).not.toContain("mx_dequant8(");
    expect(() => emitMoeExperts(node, { tokens: 16 }, { path: "stream", streamTiling: { dequant: "table" as "lut" } })).toThrow(/streamTiling .*: dequant must be "byte", "lut", "unit" or "raw", got "table"/);
    expect(() => emitMoeExperts(node, { tokens: 16 }, { path: "stream", streamTiling: { ...b, dequant: "unit" } })).toThrow(/the "unit" dequantization is a weights "a" option/);
    expect(() => emitMoeExperts(node, { tokens: 16 }, { path: "stream", streamTiling: { ...b, dequant: "raw" } })).toThrow(/the "raw" dequantization is a weights "a" option/);
  });

  it("weights as the mma's A: kernel names carry the tiling, A staged in dynamic shared memory (all of K, or a ring), tilings checked", () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    const a = { weights: "a", dequant: "lut", bm: 16, nj: 1, aStages: 64, minBlocks: 2, pf: 4 } as const;
    const k = emitMoeExperts(node, { tokens: 64 }, { path: "stream", streamTiling: a });
    const [gate, down] = [k.launches[2]!, k.launches[3]!];
    expect(gate.kernel.entry).toMatch(/^moe_ggateup_stream_.*_m16n1p4la64b2$/);
    // K = 2880 is 23 chunks of 128 values: all of them staged, 16 rows of 256 bytes each
    expect([gate.sharedBytes, down.sharedBytes]).toEqual([23 * 16 * 256, 23 * 16 * 256]);
    expect(streamSharedBytes({ ...streamTiling(64), ...a, aStages: 3 }, 2880)).toBe(3 * 16 * 256);
    // 128 weight rows a block (8 warps × 16), the bucket's row tiles of 16
    expect(evalSize(gate.grid[0], { tokens: 64 })).toBe(45);
    expect(evalSize(gate.grid[1], { tokens: 64 })).toBe(Math.ceil((64 + 8 * 16) * 4 / 16));
    expect(gate.kernel.source).toContain("mx_scaled_pair(");
    const bad = (t: Partial<StreamTiling>) => () => emitMoeExperts(node, { tokens: 64 }, { path: "stream", streamTiling: { ...a, ...t } });
    expect(bad({ bm: 12 })).toThrow(/bm must be a multiple of 8 in \[8, 64\]/);
    expect(bad({ dequant: "byte" })).toThrow(/weights "a" takes the "lut", "unit" or "raw" dequantization/);
    // the "unit" tables are bf16 values: f16 activations take "lut"
    const unit = emitMoeExperts(node, { tokens: 64 }, { path: "stream", streamTiling: { ...a, dequant: "unit" } });
    expect(unit.launches[2]!.kernel.entry).toMatch(/_m16n1p4ua64b2$/);
    expect(unit.launches[2]!.kernel.source).toContain("mx_unit_scale(");
    const f16 = moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" });
    expect(() => emitMoeExperts(f16, { tokens: 64 }, { path: "stream", streamTiling: { dequant: "unit" } })).toThrow(/"unit" dequantization's tables are bf16; f16 activations take "lut"/);
    // the "raw" immediate tables: each byte of the raw bf16, mx_dequant2's factors (the second in a copy of the chunk)
    const raw = emitMoeExperts(node, { tokens: 64 }, { path: "stream", streamTiling: { ...a, dequant: "raw" } });
    expect(raw.launches[2]!.kernel.entry).toMatch(/_m16n1p4ra64b2$/);
    expect(raw.launches[3]!.kernel.entry).toMatch(/^moe_gdown_stream_.*_m16n1p4ra64b2$/);
    for (const l of [raw.launches[2]!, raw.launches[3]!]) expect(l.kernel.source).toMatch(/mx_dequant8_raw\(w, dqConst, out\)[^]*st_chunk_a<true>\(wq\[p\]/);
    expect(() => emitMoeExperts(f16, { tokens: 64 }, { path: "stream", streamTiling: { dequant: "raw" } })).toThrow(/"raw" dequantization's tables are bf16; f16 activations take "lut"/);
    expect(bad({ nj: 3 as 4 })).toThrow(/nj must be 1, 2 or 4/);
    expect(bad({ bm: 64, aStages: 64 })).toThrow(/need 376832 bytes of shared memory \(at most 227 KiB\)/);
    expect(bad({ weights: "c" as "a" })).toThrow(/weights must be "a" or "b"/);
  });

  it("tiles of 16 rows at every bucket, all of K's A staged where two blocks fit an SM (else an 8-chunk ring), immediate raw tables for bf16", () => {
    for (const t of [1, 16, 128, 512]) expect(streamTiling(t)).toMatchObject({ tokens: t, weights: "a", dequant: "raw", bm: 16, nj: 1, aStages: 23, minBlocks: 2, pf: 4 });
    // f16 activations: tables per block scale ("raw"'s are bf16 bytes)
    expect(streamTiling(64, 2880, "f16").dequant).toBe("lut");
    // 2·28 chunks of 16 rows exceed 227 KiB
    expect(streamTiling(64, 28 * 128).aStages).toBe(28);
    expect(streamTiling(64, 29 * 128).aStages).toBe(8);
  });
});

describeNvrtc("moeExperts kernels compile (NVRTC)", () => {
  it("stream kernels at every decode bucket: gpt-oss-20b bf16, the reduced model in f16, a K with a partial last chunk", async () => {
    const kernels: NodeKernels[] = [
      ...[1, 2, 8, 64, 128, 256].map((b) => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: b }, { path: "stream" })),
      emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" }), { tokens: 64 }),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 320, inter: 96, e: 8, k: 4, format: "mxfp4" }), { tokens: 256 }, { path: "stream" }),
      // the prmt-table dequantization, bf16 and f16
      ...[16, 64].map((b) => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: b }, { path: "stream", streamTiling: { dequant: "lut" } })),
      emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" }), { tokens: 64 }, { streamTiling: { dequant: "lut" } }),
      // weights as the mma's A: whole-K and ring staging, 1 and 2 weight tiles a warp, f16
      ...([[8, 1, 64], [16, 2, 64], [48, 1, 4]] as const).map(([bm, nj, aStages]) => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: 64 }, {
        path: "stream", streamTiling: { weights: "a", dequant: "lut", bm, nj, aStages, minBlocks: 1 },
      })),
      emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 320, inter: 96, e: 8, k: 4, format: "mxfp4", bias: "f16" }), { tokens: 64 }, { streamTiling: { weights: "a", dequant: "lut", bm: 24, aStages: 2 } }),
      // the constant-table dequantization, and the previous kernels (weights as B)
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: 64 }, { path: "stream", streamTiling: { dequant: "unit" } }),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: 64 }, { path: "stream", streamTiling: { dequant: "raw" } }),
      ...[16, 128].map((b) => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), { tokens: b }, { path: "stream", streamTiling: previousStreamTiling(b) })),
    ];
    // combine is shared by all of 20b's buckets, logits by buckets ≥ 8
    expect(await compileNodeKernels(kernels)).toBeGreaterThanOrEqual(6 * 3 + 2 + 2 * 5 + 3 * 2 + 7 * 2);
  });

  it("grouped-GEMM prefill kernels: gpt-oss-20b MXFP4 bf16 and f32, and the reduced model in bf16, f16 and f32", async () => {
    const kernels: NodeKernels[] = [
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL),
      emitMoeExperts(moeNode({ dtype: "f32", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4" }), PREFILL),
      emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" }), PREFILL),
      emitMoeExperts(moeNode({ dtype: "f32", t: "tokens", d: 64, inter: 32, e: 4, k: 2, format: "mxfp4" }), PREFILL),
    ];
    expect(await compileNodeKernels(kernels)).toBe(25);
  });

  it("tiled grouped GEMMs: each variant for gpt-oss-20b bf16, the reduced model in f16, and a K with a partial last k-tile", async () => {
    const kernels: NodeKernels[] = [
      ...TILED_VARIANTS.map((v) => emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), PREFILL, { groupedTiling: { ...GROUPED_TILING, ...v } })),
      ...[{}, { dequant: "byte" as const }, { bk: 32 as const, bm: 32 as const }].map((v) =>
        emitMoeExperts(moeNode({ dtype: "f16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", bias: "f16" }), PREFILL, { groupedTiling: v })),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 320, inter: 96, e: 8, k: 4, format: "mxfp4" }), PREFILL, { groupedTiling: {} }),
    ];
    // route and combine are shared; gate_up and down per variant; bucket per bm
    expect(await compileNodeKernels(kernels)).toBeGreaterThanOrEqual(2 * TILED_VARIANTS.length + 2 * 4);
  });


  it("gpt-oss-20b (MXFP4 and dense bf16) and the tiny model (hidden 64, intermediate 32, 4 experts top-2; bf16 and f32)", async () => {
    const kernels: NodeKernels[] = [
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" }), DECODE, LOOP),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "dense", bias: "bf16" }), DECODE),
      emitMoeExperts(moeNode({ dtype: "f32", t: "tokens", d: 64, inter: 32, e: 4, k: 2, format: "dense" }), DECODE),
      emitMoeExperts(moeNode({ dtype: "bf16", t: "tokens", d: 64, inter: 32, e: 4, k: 2, format: "mxfp4" }), DECODE, LOOP),
    ];
    expect(await compileNodeKernels(kernels)).toBe(12);
  });
});

// ---- inputs and the oracle -----------------------------------------------------------------------

/** Random inputs of a moeExperts node: MXFP4 scale codes in [scales[0], scales[1]) (119..124 unless given). */
function randomInputs(node: NodeOf<"moeExperts">, sym: SymbolValues, seed: number, scales: readonly [number, number] = [119, 125]): HostTensor[] {
  const rand = seededRandom(seed);
  return node.inputs.map((n, idx) => {
    const shape = evalShape(n.shape, sym);
    if (n.dtype === "fp4e2m1x2") return randomTensor(n.dtype, shape, rand, 0, 256);
    if (n.dtype === "e8m0") return randomTensor(n.dtype, shape, rand, scales[0], scales[1]);
    // x and router in ±1, biases in ±0.5; dense weights scaled so activations reach the ±7 clamp now and then
    const denseWeight = node.attrs.weightFormat === "dense" && (idx === 3 || idx === 5);
    const amp = idx <= 2 ? 1 : denseWeight ? 4 / Math.sqrt(shape[1]!) : 0.5;
    return randomTensor(n.dtype, shape, rand, -amp, amp);
  });
}

/** Reads element i of a flat tensor as a number (already in its dtype). */
type Reader = (i: number) => number;

/**
 * gpt-oss MoE for the given tokens in f64 with the interpreter's roundings (builder expansion in x's
 * dtype), reading weights through `r` and decoding only the experts a token selects.
 */
function moeOracle(c: { dtype: DType; d: number; inter: number; e: number; k: number; format: "dense" | "mxfp4"; tokens: number }, r: Reader[]): Float64Array {
  const { dtype: dt, d, inter, e, k } = c;
  const rd = (x: number) => roundTo(dt, x);
  const [x, rw, rb] = [r[0]!, r[1]!, r[2]!];
  const nb = d / 32;
  const nbi = inter / 32;
  const mx = (blocks: Reader, scales: Reader, row: number, nblk: number, i: number) => {
    const b = Math.floor(i / 32);
    const byte = blocks((row * nblk + b) * 16 + ((i % 32) >> 1));
    return rd(decodeE2m1(i % 2 === 0 ? byte & 15 : byte >> 4) * decodeE8m0(scales(row * nblk + b)));
  };
  const gateW = c.format === "dense" ? (ex: number, i: number, o: number) => r[3]!((ex * d + i) * 2 * inter + o) : (ex: number, i: number, o: number) => mx(r[3]!, r[4]!, ex * 2 * inter + o, nb, i);
  const gateB = c.format === "dense" ? r[4]! : r[5]!;
  const downW = c.format === "dense" ? (ex: number, i: number, o: number) => r[5]!((ex * inter + i) * d + o) : (ex: number, i: number, o: number) => mx(r[6]!, r[7]!, ex * d + o, nbi, i);
  const downB = c.format === "dense" ? r[6]! : r[8]!;
  const out = new Float64Array(c.tokens * d);
  const lim = rd(7);
  const negLim = rd(-7);
  const alpha = rd(1.702);
  for (let t = 0; t < c.tokens; t++) {
    const logits = Array.from({ length: e }, (_, ex) => {
      let acc = 0;
      for (let i = 0; i < d; i++) acc += x(t * d + i) * rw(ex * d + i);
      return rd(rd(acc) + rd(rb(ex)));
    });
    const order = logits.map((_, i) => i).sort((a, b) => {
      const [va, vb] = [logits[a]!, logits[b]!];
      if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? -1 : 1;
      return va !== vb && !Number.isNaN(va) ? vb - va : a - b;
    });
    const picked = order.slice(0, k);
    const m = Math.max(...picked.map((i) => logits[i]!));
    const ex = picked.map((i) => rd(Math.exp(rd(logits[i]! - m))));
    const sum = rd(ex.reduce((a, b) => a + b, 0));
    const weights = ex.map((v) => rd(v / sum));
    const ys = picked.map((expert, j) => {
      const h = new Float64Array(inter);
      for (let cidx = 0; cidx < inter; cidx++) {
        const col = (o: number) => {
          let acc = 0;
          for (let i = 0; i < d; i++) acc += x(t * d + i) * gateW(expert, i, o);
          return rd(rd(acc) + rd(gateB(expert * 2 * inter + o)));
        };
        const g = rd(Math.min(col(2 * cidx), lim));
        const u = rd(Math.min(Math.max(col(2 * cidx + 1), negLim), lim));
        const glu = rd(g * rd(1 / (1 + Math.exp(-rd(g * alpha)))));
        h[cidx] = rd(rd(u + 1) * glu);
      }
      const y = new Float64Array(d);
      for (let o = 0; o < d; o++) {
        let acc = 0;
        for (let i = 0; i < inter; i++) acc += h[i]! * downW(expert, i, o);
        y[o] = rd(rd(rd(acc) + rd(downB(expert * d + o))) * weights[j]!);
      }
      return y;
    });
    for (let o = 0; o < d; o++) out[t * d + o] = rd(ys.reduce((a, y) => a + y[o]!, 0));
  }
  return out;
}

const worst: Record<string, number> = {};
function relErr(gpu: HostTensor, ref: Float64Array | HostTensor): number {
  const r = "data" in ref ? ref.data : ref;
  let maxErr = 0;
  let maxRef = 0;
  r.forEach((v, i) => {
    maxRef = Math.max(maxRef, Math.abs(v));
    maxErr = Math.max(maxErr, Math.abs(v - gpu.data[i]!));
  });
  return maxErr / Math.max(maxRef, 1e-30);
}

/**
 * Tokens the GPU may route differently from the interpreter: some router logit's sum sits so close to a
 * rounding boundary of the dtype that an f32 sum (error ≤ d·2⁻²⁴·Σ|x·w|) may round it the other way,
 * and the k-th and (k+1)-th largest logits are within 2 ulps (so a 1-ulp change can swap an expert).
 */
function nearTies(inputs: readonly HostTensor[], dt: DType, d: number, e: number, k: number, tokens: number): Set<number> {
  const [x, rw, rb] = [inputs[0]!.data, inputs[1]!.data, inputs[2]!.data];
  const mant = dt === "bf16" ? 7 : dt === "f16" ? 10 : 23;
  const ulp = (v: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(v), 2 ** -100))) - mant);
  const out = new Set<number>();
  for (let t = 0; t < tokens; t++) {
    let uncertain = false;
    const logits = Array.from({ length: e }, (_, ex) => {
      let acc = 0;
      let mag = 0;
      for (let i = 0; i < d; i++) {
        acc += x[t * d + i]! * rw[ex * d + i]!;
        mag += Math.abs(x[t * d + i]! * rw[ex * d + i]!);
      }
      const err = d * 2 ** -24 * mag;
      if (roundTo(dt, acc - err) !== roundTo(dt, acc + err)) uncertain = true;
      return roundTo(dt, roundTo(dt, acc) + roundTo(dt, rb[ex]!));
    }).sort((a, b) => b - a);
    if (uncertain && logits[k - 1]! - logits[k]! <= 2 * ulp(logits[k - 1]!)) out.add(t);
  }
  return out;
}

/** The rows of a [T, d] tensor not in `skip`. */
function dropRows(t: HostTensor, skip: ReadonlySet<number>, d: number): HostTensor {
  const rows = t.data.length / d;
  const keep = Array.from({ length: rows }, (_, r) => r).filter((r) => !skip.has(r));
  const data = new Float64Array(keep.length * d);
  keep.forEach((r, i) => data.set(t.data.subarray(r * d, (r + 1) * d), i * d));
  return { dtype: t.dtype, shape: [keep.length, d], data };
}

// ---- a raw-bytes runner for the 20b-shaped case (no f64 copies of 40 MB of weights) and timings ----


/** Fast seeded random bytes (xorshift32). */
function randomBytes(n: number, seed: number, lo = 0, hi = 256): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + ((s >>> 0) % (hi - lo));
  }
  return out;
}

describeGpu("moeExperts kernels match the interpreter (GPU)", () => {
  const cases: { dtype: DType; format: "dense" | "mxfp4"; bias?: DType; tokens: readonly number[] }[] = [
    { dtype: "bf16", format: "mxfp4", tokens: [1, 3, 50, 783] },
    { dtype: "bf16", format: "dense", bias: "bf16", tokens: [1, 3, 50, 783] },
    { dtype: "f32", format: "mxfp4", tokens: [1, 3, 50] },
    { dtype: "f32", format: "dense", tokens: [1, 3, 50] },
    { dtype: "f16", format: "mxfp4", bias: "f16", tokens: [3] },
  ];
  for (const c of cases) {
    it(`${c.format} ${c.dtype} (hidden 256, intermediate 128, 8 experts top-4) at ${c.tokens.join(", ")} tokens`, async () => {
      const node = moeNode({ dtype: c.dtype, t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: c.format, ...(c.bias ? { bias: c.bias } : {}) });
      const kernels = emitMoeExperts(node, DECODE, LOOP);
      for (const n of c.tokens) {
        const sym = { tokens: n };
        const inputs = randomInputs(node, sym, 17 * n + c.format.length);
        const names = c.format === "dense" ? DENSE_NAMES : MXFP4_NAMES;
        const ref = interpretNode(node, { inputs: Object.fromEntries(names.map((name, i) => [name, inputs[i]!])) }, sym);
        const gpu = await runNodeKernels(node, kernels, inputs, sym);
        expectClose(gpu, ref, c.dtype === "f32" ? 1e-5 : 1e-2, `${c.format} ${c.dtype} tokens=${n}`);
        const key = `${c.format} ${c.dtype}`;
        worst[key] = Math.max(worst[key] ?? 0, relErr(gpu, ref));
        if (n === 3) {
          // the oracle used for the 20b-shaped case agrees with the interpreter bit for bit here
          const oracle = moeOracle({ dtype: c.dtype, d: 256, inter: 128, e: 8, k: 4, format: c.format, tokens: n }, inputs.map((t) => (i: number) => t.data[i]!));
          expect(relErr({ ...ref, data: oracle }, ref)).toBe(0);
        }
      }
    });
  }

  it("gpt-oss-20b-shaped decode step (2880/2880, 32 experts, top-4, MXFP4, bf16; 1 token) against the oracle, with timings", async () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    const sym = { tokens: 1 };
    const rand = seededRandom(2880);
    const small = (i: number, lo: number, hi: number) => tensorToBytes(randomTensor(node.inputs[i]!.dtype, evalShape(node.inputs[i]!.shape, sym), rand, lo, hi));
    const bytes: Uint8Array[] = [
      small(0, -1, 1), small(1, -1, 1), small(2, -1, 1),
      randomBytes(numElements(evalShape(node.inputs[3]!.shape, sym)), 11), randomBytes(numElements(evalShape(node.inputs[4]!.shape, sym)), 12, 119, 123), small(5, -1, 1),
      randomBytes(numElements(evalShape(node.inputs[6]!.shape, sym)), 13), randomBytes(numElements(evalShape(node.inputs[7]!.shape, sym)), 14, 119, 123), small(8, -1, 1),
    ];
    const kernels = emitMoeExperts(node, DECODE, LOOP);
    const { out, msPerLaunch: ms } = await runRawKernels(kernels, bytes, 2880 * 2, sym, { timeIterations: 50 });
    const gpu = tensorFromBytes("bf16", [1, 2880], out);
    const readers: Reader[] = bytes.map((b, i) => {
      const n = node.inputs[i]!;
      if (n.dtype === "fp4e2m1x2" || n.dtype === "e8m0") return (j: number) => b[j]!;
      const t = tensorFromBytes(n.dtype, evalShape(n.shape, sym), b);
      return (j: number) => t.data[j]!;
    });
    const ref = moeOracle({ dtype: "bf16", ...MOE_20B, format: "mxfp4", tokens: 1 }, readers);
    const rel = relErr(gpu, ref);
    worst["mxfp4 bf16 20b decode"] = rel;
    expectClose(gpu, { dtype: "bf16", shape: [1, 2880], data: ref }, 1e-2, "20b decode");
    // bytes a decode step must move: 4 experts' gate_up + down (blocks + scales) and the router
    const weightBytes = 4 * (5760 * 90 * 17 + 2880 * 90 * 17) + 32 * 2880 * 2;
    const totalMs = ms.reduce((a, b) => a + b, 0);
    console.log(
      `moe 20b decode (1 token, MXFP4): route ${(ms[0]! * 1e3).toFixed(1)} us, gate_up ${(ms[1]! * 1e3).toFixed(1)} us, down ${(ms[2]! * 1e3).toFixed(1)} us; ` +
        `total ${(totalMs * 1e3).toFixed(1)} us for ${(weightBytes / 1e6).toFixed(1)} MB = ${(weightBytes / totalMs / 1e6).toFixed(0)} GB/s; rel err ${rel.toExponential(2)}`,
    );
    // the token-looping prefill path at 128 tokens (timing only: what a grouped GEMM would replace)
    const prefill = { tokens: 128 };
    const xs = tensorToBytes(randomTensor("bf16", [128, 2880], rand, -1, 1));
    const { msPerLaunch: preLaunches } = await runRawKernels(kernels, [xs, ...bytes.slice(1)], 128 * 2880 * 2, prefill, { timeIterations: 5 });
    const preMs = preLaunches.reduce((a, b) => a + b, 0);
    console.log(
      `moe 20b prefill (128 tokens, MXFP4, token loop): route ${(preLaunches[0]! * 1e3).toFixed(1)} us, gate_up ${(preLaunches[1]! * 1e3).toFixed(1)} us, ` +
        `down ${(preLaunches[2]! * 1e3).toFixed(1)} us; total ${(preMs * 1e3).toFixed(1)} us = ${((preMs * 1e3) / 128).toFixed(1)} us/token`,
    );
  });

  const groupedCases: { dtype: DType; bias?: DType; tokens: readonly number[] }[] = [
    { dtype: "bf16", tokens: [1, 3, 50, 783, 4096] },
    { dtype: "f32", tokens: [1, 3, 50, 783] },
    { dtype: "f16", bias: "f16", tokens: [3, 50, 783] },
  ];
  for (const c of groupedCases) {
    it(`grouped-GEMM prefill path, MXFP4 ${c.dtype} (hidden 256, intermediate 128, 8 experts top-4) at ${c.tokens.join(", ")} tokens against the interpreter`, async () => {
      const node = moeNode({ dtype: c.dtype, t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4", ...(c.bias ? { bias: c.bias } : {}) });
      const kernels = emitMoeExperts(node, PREFILL);
      expect(kernels.launches).toHaveLength(5);
      for (const n of c.tokens) {
        const sym = { tokens: n };
        const inputs = randomInputs(node, sym, 31 * n + 7);
        const ref = interpretNode(node, { inputs: Object.fromEntries(MXFP4_NAMES.map((name, i) => [name, inputs[i]!])) }, sym);
        const gpu = await runNodeKernels(node, kernels, inputs, sym);
        // A token whose k-th and (k+1)-th router logits are within 2 ulps, with a logit whose sum sits by a
        // rounding boundary, may pick another expert on the GPU: those rows are left out. The filter uses the
        // worst-case f32 error bound, so it flags more than flip (H100: 10 of 783 bf16 tokens); at most 5%.
        const skip = nearTies(inputs, c.dtype, 256, 8, 4, n);
        expect(skip.size, `near-tie tokens at ${n}`).toBeLessThanOrEqual(Math.max(1, Math.ceil(n / 20)));
        const what = `grouped mxfp4 ${c.dtype} tokens=${n} (${skip.size} near-tie rows left out)`;
        const [g, r] = [dropRows(gpu, skip, 256), dropRows(ref, skip, 256)];
        // f32: only the summation order differs (SIMT f32 sums vs f64). bf16/f16: the interpreter's rounding
        // points; an h element may round to the neighbouring value when the f32 GEMM sum sits by a rounding
        // boundary, so allow ~2.5 ulps of bf16 at the output's largest magnitude (as the token loop's tests).
        expectClose(g, r, c.dtype === "f32" ? 1e-5 : 1e-2, what);
        const key = `grouped mxfp4 ${c.dtype}`;
        worst[key] = Math.max(worst[key] ?? 0, relErr(g, r));
      }
    }, 300_000);
  }

  // the tiled variants at awkward counts; hidden 320 / intermediate 96 (3 MXFP4 blocks) gives down a partial last
  // 64-value k-tile and gate_up a partial column tile (192 rows)
  const tiledCases: { dtype: DType; bias?: DType; d: number; inter: number; variants: readonly Partial<GroupedTiling>[]; tokens: readonly number[] }[] = [
    { dtype: "bf16", d: 256, inter: 128, variants: TILED_VARIANTS, tokens: [17, 100, 255] },
    { dtype: "bf16", d: 320, inter: 96, variants: [{}, { bk: 32 }, { bm: 32, dequant: "byte" }], tokens: [17, 255] },
    { dtype: "f16", bias: "f16", d: 256, inter: 128, variants: [{}, { dequant: "byte" }, { bm: 32, bk: 32 }], tokens: [17, 100] },
  ];
  // warpgroup MMAs (sm_90a only): 128 × 128, 128 × 256, 64 × 128 and 64 × 256, four A stages; a K tail (hidden 320), f16
  const hopper = gpuHasWgmma();
  const WGMMA_TILED: readonly Partial<GroupedTiling>[] = [
    { bm: 128, minBlocks: 2, wgmma: true }, { bm: 64, minBlocks: 3, wgmma: true }, { bm: 128, bn: 256, minBlocks: 1, wgmma: true }, { bm: 64, bn: 256, aStages: 4, minBlocks: 1, wgmma: true },
  ];
  if (hopper) {
    tiledCases.push(
      { dtype: "bf16", d: 256, inter: 128, variants: WGMMA_TILED, tokens: [17, 100, 255] },
      { dtype: "bf16", d: 320, inter: 96, variants: WGMMA_TILED.slice(0, 2), tokens: [17, 255] },
      { dtype: "f16", bias: "f16", d: 256, inter: 128, variants: WGMMA_TILED.slice(0, 2), tokens: [17, 100] },
    );
  }
  for (const c of tiledCases) {
    it(`tiled grouped GEMMs, MXFP4 ${c.dtype} (hidden ${c.d}, intermediate ${c.inter}), ${c.variants.length} tilings at ${c.tokens.join(", ")} tokens against the interpreter`, async () => {
      const node = moeNode({ dtype: c.dtype, t: "tokens", d: c.d, inter: c.inter, e: 8, k: 4, format: "mxfp4", ...(c.bias ? { bias: c.bias } : {}) });
      for (const n of c.tokens) {
        const sym = { tokens: n };
        const inputs = randomInputs(node, sym, 29 * n + c.d);
        const ref = interpretNode(node, { inputs: Object.fromEntries(MXFP4_NAMES.map((name, i) => [name, inputs[i]!])) }, sym);
        const skip = nearTies(inputs, c.dtype, c.d, 8, 4, n);
        const base = dropRows(await runNodeKernels(node, emitMoeExperts(node, PREFILL), inputs, sym), skip, c.d);
        for (const v of c.variants) {
          const kernels = emitMoeExperts(node, PREFILL, { groupedTiling: { ...GROUPED_TILING, ...v } });
          const gpu = await runNodeKernels(node, kernels, inputs, sym);
          const what = `tiled ${kernels.launches[2]!.kernel.entry.split("_").pop()} mxfp4 ${c.dtype} d${c.d} tokens=${n} (${skip.size} near-tie rows left out)`;
          const [g, r] = [dropRows(gpu, skip, c.d), dropRows(ref, skip, c.d)];
          expectClose(g, r, 1e-2, what);
          // the same weights, roundings and routing as the default kernel: only the mma's k order differs
          expectClose(g, base, 1e-2, `${what} vs the default grouped kernel`);
          const key = `tiled grouped mxfp4 ${c.dtype}`;
          worst[key] = Math.max(worst[key] ?? 0, relErr(g, r));
        }
      }
    }, 300_000);
  }

  it("grouped path is bitwise deterministic across runs (bf16, 783 tokens)", async () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", d: 256, inter: 128, e: 8, k: 4, format: "mxfp4" });
    const kernels = emitMoeExperts(node, PREFILL);
    const sym = { tokens: 783 };
    const inputs = randomInputs(node, sym, 4242).map(tensorToBytes);
    const a = await runRawKernels(kernels, inputs, 783 * 256 * 2, sym);
    const b = await runRawKernels(kernels, inputs, 783 * 256 * 2, sym);
    expect(Buffer.from(a.out).equals(Buffer.from(b.out))).toBe(true);
  });

  it("gpt-oss-20b-shaped grouped path (MXFP4 bf16): against the oracle at 5 tokens and the token loop at 300 (same routing kernel)", async () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    const rand = seededRandom(977);
    const shapeOf = (i: number, sym: SymbolValues) => evalShape(node.inputs[i]!.shape, sym);
    const weights = (sym: SymbolValues): Uint8Array[] => [
      tensorToBytes(randomTensor("bf16", shapeOf(1, sym), rand, -1, 1)), tensorToBytes(randomTensor("f32", shapeOf(2, sym), rand, -1, 1)),
      randomBytes(numElements(shapeOf(3, sym)), 21), randomBytes(numElements(shapeOf(4, sym)), 22, 119, 123), tensorToBytes(randomTensor("f32", shapeOf(5, sym), rand, -1, 1)),
      randomBytes(numElements(shapeOf(6, sym)), 23), randomBytes(numElements(shapeOf(7, sym)), 24, 119, 123), tensorToBytes(randomTensor("f32", shapeOf(8, sym), rand, -1, 1)),
    ];
    const w = weights({ tokens: 1 });
    const grouped = emitMoeExperts(node, PREFILL);
    const loop = emitMoeExperts(node, DECODE, LOOP);
    // 5 tokens: the f64 oracle (selected experts only)
    {
      const sym = { tokens: 5 };
      const bytes = [tensorToBytes(randomTensor("bf16", [5, 2880], rand, -1, 1)), ...w];
      const { out } = await runRawKernels(grouped, bytes, 5 * 2880 * 2, sym);
      const readers: Reader[] = bytes.map((b, i) => {
        const n = node.inputs[i]!;
        if (n.dtype === "fp4e2m1x2" || n.dtype === "e8m0") return (j: number) => b[j]!;
        const t = tensorFromBytes(n.dtype, evalShape(n.shape, sym), b);
        return (j: number) => t.data[j]!;
      });
      const ref = moeOracle({ dtype: "bf16", ...MOE_20B, format: "mxfp4", tokens: 5 }, readers);
      const gpu = tensorFromBytes("bf16", [5, 2880], out);
      worst["grouped mxfp4 bf16 20b, 5 tokens"] = relErr(gpu, ref);
      expectClose(gpu, { dtype: "bf16", shape: [5, 2880], data: ref }, 1e-2, "20b grouped, 5 tokens");
    }
    // 300 tokens: grouped vs token loop (both route with the same kernel, so expert choices agree exactly)
    {
      const sym = { tokens: 300 };
      const bytes = [tensorToBytes(randomTensor("bf16", [300, 2880], rand, -1, 1)), ...w];
      const a = tensorFromBytes("bf16", [300, 2880], (await runRawKernels(grouped, bytes, 300 * 2880 * 2, sym)).out);
      const b = tensorFromBytes("bf16", [300, 2880], (await runRawKernels(loop, bytes, 300 * 2880 * 2, sym)).out);
      worst["grouped vs token loop, 20b, 300 tokens"] = relErr(a, b);
      expectClose(a, b, 1e-2, "20b grouped vs token loop, 300 tokens");
    }
  }, 300_000);


  // the stream variant at the awkward counts of its own buckets; hidden 320 and intermediate 96 leave a partial
  // last 128-value chunk of K (10 and 3 MXFP4 blocks) and partial column tiles (2·96 = 192 gate_up rows)
  // weights as the mma's A: 8..64-row tiles (rows past 8·⌈rows/8⌉ skipped), whole-K A staging (aStages 64) and rings
  const WEIGHTS_A = { weights: "a", dequant: "lut" } as const;
  const streamCases: { dtype: DType; bias?: DType; d: number; inter: number; counts: readonly number[]; tiling?: (bucket: number) => Partial<StreamTiling>; label?: string; routing?: "logits"; scales?: [number, number] }[] = [
    // the default: weights as the mma's A, 16-row tiles, all of K's A staged, immediate raw tables (bf16) or per block scale (f16)
    { dtype: "bf16", d: 320, inter: 96, counts: [1, 3, 17, 100, 255] },
    { dtype: "bf16", d: 256, inter: 128, counts: [2, 50] },
    { dtype: "f16", bias: "f16", d: 320, inter: 96, counts: [3, 100] },
    // the previous kernels (weights as the mma's B, router logits and a selecting bucket), per byte and by prmt table
    { dtype: "bf16", d: 320, inter: 96, counts: [1, 17, 255], tiling: previousStreamTiling, label: "weights b, logits", routing: "logits" },
    { dtype: "f16", bias: "f16", d: 320, inter: 96, counts: [3, 100], tiling: previousStreamTiling, label: "weights b, logits", routing: "logits" },
    { dtype: "bf16", d: 320, inter: 96, counts: [3, 17, 100], tiling: (b) => ({ ...previousStreamTiling(b), dequant: "lut" }), label: "weights b, lut" },
    { dtype: "f16", bias: "f16", d: 320, inter: 96, counts: [3, 100], tiling: (b) => ({ ...previousStreamTiling(b), dequant: "lut" }), label: "weights b, lut" },
    // other tilings of weights as A (bf16: immediate raw tables by default), and tables built per block scale
    { dtype: "bf16", d: 320, inter: 96, counts: [1, 3, 17, 100], tiling: () => ({ bm: 8 }), label: "weights a, 8 rows" },
    { dtype: "bf16", d: 320, inter: 96, counts: [3, 17, 255], tiling: () => ({ bm: 16, nj: 2 }), label: "weights a, 16 rows, 2 tiles a warp" },
    { dtype: "bf16", d: 320, inter: 96, counts: [17, 100], tiling: () => ({ bm: 24, aStages: 2 }), label: "weights a, 24 rows, 2-stage ring" },
    { dtype: "bf16", d: 256, inter: 128, counts: [50, 255], tiling: () => ({ bm: 64, aStages: 3, minBlocks: 1 }), label: "weights a, 64 rows, 3-stage ring" },
    { dtype: "f16", bias: "f16", d: 320, inter: 96, counts: [3, 100], tiling: () => ({ bm: 32, minBlocks: 1 }), label: "weights a, 32 rows" },
    { dtype: "bf16", d: 320, inter: 96, counts: [3, 17, 100], tiling: () => ({ aStages: 4, minBlocks: 4, pf: 2 }), label: "weights a, 4-stage ring, 2 chunks ahead" },
    { dtype: "bf16", d: 256, inter: 128, counts: [1, 50], tiling: () => ({ bm: 8, minBlocks: 3, pf: 3 }), label: "weights a, 8 rows, 3 chunks ahead" },
    { dtype: "bf16", d: 320, inter: 96, counts: [1, 3, 17, 100, 255], tiling: () => ({ dequant: "lut" }), label: "weights a, a table per block scale" },
    { dtype: "bf16", d: 256, inter: 128, counts: [2, 50], tiling: () => ({ bm: 8, dequant: "lut" }), label: "weights a, 8 rows, a table per block scale" },
    // the default bf16 tables (immediate, of the raw bf16's bytes) at scale codes 0 .. 135: past 128 a chunk takes
    // mx_dequant2's second multiply (most chunks of a warp mix both kinds of rows at 122 .. 131); and "unit"'s
    { dtype: "bf16", d: 320, inter: 96, counts: [1, 3, 17, 100, 255], tiling: () => ({ dequant: "unit" }), label: "weights a, constant tables" },
    { dtype: "bf16", d: 320, inter: 96, counts: [3, 100], tiling: () => ({ dequant: "raw" }), label: "weights a, raw tables, scales 122..131", scales: [122, 132] },
    { dtype: "bf16", d: 256, inter: 128, counts: [17], tiling: () => ({ dequant: "raw" }), label: "weights a, raw tables, scales 0..135", scales: [0, 136] },
    { dtype: "bf16", d: 320, inter: 96, counts: [17], tiling: () => ({ dequant: "unit" }), label: "weights a, constant tables, scales 0..135", scales: [0, 136] },
  ];
  for (const c of streamCases) {
    it(`stream path${c.label ? ` (${c.label})` : ""}, MXFP4 ${c.dtype} (hidden ${c.d}, intermediate ${c.inter}, 8 experts top-4) at ${c.counts.join(", ")} tokens, each with its bucket's tiling, against the interpreter`, async () => {
      const node = moeNode({ dtype: c.dtype, t: "tokens", d: c.d, inter: c.inter, e: 8, k: 4, format: "mxfp4", ...(c.bias ? { bias: c.bias } : {}) });
      for (const n of c.counts) {
        const bucket = 2 ** Math.ceil(Math.log2(n));
        const kernels = emitMoeExperts(node, { tokens: bucket }, { path: "stream", ...(c.tiling ? { streamTiling: c.tiling(bucket) } : {}), ...(c.routing ? { streamRouting: c.routing } : {}) });
        expect(kernels.launches[2]!.kernel.entry).toMatch(/^moe_ggateup_stream_/);
        const sym = { tokens: n };
        const inputs = randomInputs(node, sym, 53 * n + c.d, c.scales);
        const ref = interpretNode(node, { inputs: Object.fromEntries(MXFP4_NAMES.map((name, i) => [name, inputs[i]!])) }, sym);
        const gpu = await runNodeKernels(node, kernels, inputs, sym);
        const skip = nearTies(inputs, c.dtype, c.d, 8, 4, n);
        expect(skip.size, `near-tie tokens at ${n}`).toBeLessThanOrEqual(Math.max(1, Math.ceil(n / 20)));
        const [g, r] = [dropRows(gpu, skip, c.d), dropRows(ref, skip, c.d)];
        expectClose(g, r, 1e-2, `stream mxfp4 ${c.dtype} d${c.d} tokens=${n} (bucket ${bucket}, ${skip.size} near-tie rows left out)`);
        const key = `stream mxfp4 ${c.dtype}${c.label ? ` ${c.label}` : ""}`;
        worst[key] = Math.max(worst[key] ?? 0, relErr(g, r));
      }
    }, 300_000);
  }

  it("gpt-oss-20b-shaped stream path (MXFP4 bf16) against the token loop at 1, 7, 64 and 256 tokens (the same routing), with timings", async () => {
    const node = moeNode({ dtype: "bf16", t: "tokens", ...MOE_20B, format: "mxfp4" });
    const rand = seededRandom(4111);
    const shapeOf = (i: number) => evalShape(node.inputs[i]!.shape, { tokens: 1 });
    const w = [
      tensorToBytes(randomTensor("bf16", shapeOf(1), rand, -1, 1)), tensorToBytes(randomTensor("f32", shapeOf(2), rand, -1, 1)),
      randomBytes(numElements(shapeOf(3)), 31), randomBytes(numElements(shapeOf(4)), 32, 119, 123), tensorToBytes(randomTensor("f32", shapeOf(5), rand, -1, 1)),
      randomBytes(numElements(shapeOf(6)), 33), randomBytes(numElements(shapeOf(7)), 34, 119, 123), tensorToBytes(randomTensor("f32", shapeOf(8), rand, -1, 1)),
    ];
    const loop = emitMoeExperts(node, DECODE, LOOP);
    for (const t of [1, 7, 64, 256]) {
      const sym = { tokens: t };
      const stream = emitMoeExperts(node, { tokens: 2 ** Math.ceil(Math.log2(t)) }, { path: "stream" });
      const bytes = [tensorToBytes(randomTensor("bf16", [t, 2880], rand, -1, 1)), ...w];
      const a = await runRawKernels(stream, bytes, t * 2880 * 2, sym, { timeIterations: 20 });
      const b = tensorFromBytes("bf16", [t, 2880], (await runRawKernels(loop, bytes, t * 2880 * 2, sym)).out);
      const got = tensorFromBytes("bf16", [t, 2880], a.out);
      worst[`stream vs token loop, 20b, ${t} tokens`] = relErr(got, b);
      expectClose(got, b, 1e-2, `20b stream vs token loop, ${t} tokens`);
      console.log(`moe 20b stream path, ${t} tokens: ${a.msPerLaunch.map((ms) => (ms * 1e3).toFixed(1)).join(" + ")} us`);
    }
  }, 300_000);

  it("reports the worst relative errors", () => {
    console.log(`moeExperts worst relative error: ${JSON.stringify(worst)}`);
    expect(Object.keys(worst).length).toBeGreaterThan(0);
  });
});
