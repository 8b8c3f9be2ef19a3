// matmul codegen: path choice, emitted sources and geometry (pure), the gpt-oss specializations compile
// (NVRTC), and every path against the interpreter on a GPU at awkward sizes (M = 1, 3, 50, 783, 4096,
// N and K tails, batched and shared weights, f32/bf16/f16), plus the 20b prefill shape on sampled rows.
import { describe, expect, it } from "vitest";
import { type ArgBinding, evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import { emitMatmul, GEMM_MMA_SHARED_BYTES, type GemmTile, gemvKsplit, matmulPath, type MatmulPath } from "../../src/codegen/matmul.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Dim, evalShape, type SymbolValues } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc, gpuHasWgmma } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

interface MmCase {
  dtype: DType;
  a: Dim[];
  b: Dim[];
  transposeB: boolean;
}

function matmulNode(c: MmCase): NodeOf<"matmul"> {
  const table = new NodeTable();
  const a = table.make("input", { name: "a", dtype: c.dtype, shape: c.a }, []);
  const b = table.make("input", { name: "b", dtype: c.dtype, shape: c.b }, []);
  return table.make("matmul", { transposeB: c.transposeB }, [a, b]);
}

/** x·Wᵀ with W [n, k] shared, x [...rows, k]. */
const linear = (dtype: DType, rows: Dim[], n: number, k: number): MmCase => ({ dtype, a: [...rows, k], b: [n, k], transposeB: true });

function i32Arg(a: ArgBinding | undefined, sym: SymbolValues): number {
  if (a?.kind !== "i32") throw new Error(`expected an i32 argument, got ${JSON.stringify(a)}`);
  return evalSize(a.value, sym);
}

describe("matmul codegen (pure)", () => {
  it("chooses the tensor-core GEMV where it beats the (split-K) GEMM (≤ 32 rows), other GEMVs for M ≤ 8, and tensor cores for bf16/f16 when aligned", () => {
    const path = (c: MmCase, bounds?: Record<string, number>): MatmulPath => matmulPath(matmulNode(c), bounds ? { symbolBounds: bounds } : {});
    expect(path(linear("bf16", [1], 5760, 2880))).toBe("gemv-mma");
    expect(path(linear("f16", [8], 5760, 2880))).toBe("gemv-mma");
    expect(path(linear("bf16", [9], 5760, 2880))).toBe("gemv-mma");
    expect(path(linear("bf16", [32], 5760, 2880))).toBe("gemv-mma");
    expect(path(linear("bf16", [33], 5760, 2880))).toBe("gemm-mma");
    expect(path(linear("bf16", [64], 2880, 4096))).toBe("gemm-mma"); // o_proj
    expect(path(linear("bf16", ["rows"], 201088, 2880), { rows: 32 })).toBe("gemv-mma");
    expect(path(linear("bf16", ["rows"], 201088, 2880), { rows: 64 })).toBe("gemm-mma"); // lm_head
    expect(path(linear("bf16", ["rows"], 2880, 2880), { rows: 64 })).toBe("gemm-mma");
    expect(path(linear("bf16", ["tokens"], 2880, 2880))).toBe("gemm-mma");
    expect(path(linear("bf16", ["rows"], 201088, 2880), { rows: 4 })).toBe("gemv-mma");
    expect(path(linear("bf16", ["rows"], 201088, 2880), { rows: 4096 })).toBe("gemm-mma");
    expect(path(linear("f32", [1], 5760, 2880))).toBe("gemv-rows");
    expect(path(linear("bf16", [1], 64, 100))).toBe("gemv-rows");
    expect(path(linear("bf16", ["tokens"], 64, 100))).toBe("gemm-simt");
    expect(path(linear("f32", ["tokens"], 64, 64))).toBe("gemm-simt");
    expect(path({ dtype: "bf16", a: ["tokens", 4, 1, 64], b: ["tokens", 4, 64, 128], transposeB: false })).toBe("gemv-cols");
    expect(path({ dtype: "bf16", a: ["tokens", 64], b: [64, 128], transposeB: false })).toBe("gemm-mma");
    expect(path({ dtype: "bf16", a: ["tokens", 64], b: [64, 100], transposeB: false })).toBe("gemm-simt");
  });

  it("geometry: GEMV tiles of 16 weight rows × 8–64 x rows (x tiles on grid x); GEMM tiles of 128×128 with 64 KiB shared; batch on z", () => {
    const gemv = emitMatmul(matmulNode(linear("bf16", [1], 201088, 2880))).launches[0]!;
    expect(gemv.grid.map((g) => evalSize(g, {}))).toEqual([1, 12568, 1]);
    expect(gemv.block).toEqual([256, 1, 1]);
    expect(gemv.kernel.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
    expect(gemv.kernel.source).toContain("M, 201088, 2880, blockIdx.y);"); // static N and K baked into the tile call
    expect(gemv.kernel.source).toContain("#define MMT 8");
    // few weight tiles over long rows (o_proj) split K over 16 warps at decode sizes; lm_head's 12568 tiles keep 8
    const oProj = emitMatmul(matmulNode(linear("bf16", [1], 2880, 4096))).launches[0]!;
    expect(oProj.block).toEqual([512, 1, 1]);
    expect(oProj.kernel.source).toContain("#define KSPLIT 16");
    expect(oProj.kernel.name).toMatch(/_w16$/);
    expect(gemv.kernel.source).toContain("#define KSPLIT 8");
    expect(gemvKsplit(180, 4096, 8)).toBe(16);
    expect(gemvKsplit(180, 4096, 32)).toBe(8); // 16 warps' partials of 32 x rows exceed the static shared memory
    expect(gemvKsplit(180, 512, 8)).toBe(8); // short rows: a warp would get one or two chunks
    expect(gemvKsplit(12568, 2880, 8)).toBe(8);
    const wide = emitMatmul(matmulNode(linear("bf16", ["rows"], 2880, 2880)), { path: "gemv-mma", symbolBounds: { rows: 128 } }).launches[0]!;
    expect(wide.kernel.source).toContain("#define MMT 64");
    expect(wide.kernel.name).toMatch(/_m64$/);
    expect(wide.grid.map((g) => evalSize(g, { rows: 130 }))).toEqual([3, 180, 1]);
    expect(gemv.args).toEqual([
      { kind: "input", index: 0 },
      { kind: "input", index: 1 },
      { kind: "output" },
      { kind: "i32", value: { dims: [1], scale: 1, divisor: 1 } },
      { kind: "i32", value: { dims: [201088], scale: 1, divisor: 1 } },
      { kind: "i32", value: { dims: [2880], scale: 1, divisor: 1 } },
    ]);
    const gemm = emitMatmul(matmulNode({ dtype: "f16", a: [3, "tokens", 2880], b: [3, 2880, 2880], transposeB: true })).launches[0]!;
    expect(gemm.grid.map((g) => evalSize(g, { tokens: 4096 }))).toEqual([23, 32, 3]);
    expect(gemm.sharedBytes).toBe(GEMM_MMA_SHARED_BYTES);
    expect(GEMM_MMA_SHARED_BYTES).toBe(65536);
    expect(gemm.kernel.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32");
    expect(gemm.kernel.source).toContain("w += bz * (long long)N * K;");
    const shared = emitMatmul(matmulNode(linear("bf16", [2, "tokens"], 2880, 2880))).launches[0]!;
    expect(shared.grid.map((g) => evalSize(g, { tokens: 100 }))).toEqual([23, 2, 1]);
    expect(i32Arg(shared.args[3], { tokens: 100 })).toBe(200);
    expect(shared.kernel.source).not.toContain("w += bz");
    const symN = emitMatmul(matmulNode({ dtype: "f32", a: ["tokens", 64], b: ["tokens", 64], transposeB: true })).launches[0]!;
    expect(symN.kernel.source).toContain("const int N = N_;");
    expect(symN.grid.map((g) => evalSize(g, { tokens: 130 }))).toEqual([3, 3, 1]);
  });

  it("names specializations apart, and emits no system headers", () => {
    const names = [
      linear("bf16", [1], 5760, 2880),
      linear("bf16", [1], 2880, 4096),
      linear("f16", [1], 5760, 2880),
      linear("bf16", ["tokens"], 5760, 2880),
      { dtype: "bf16", a: ["tokens", 2880], b: [2880, 5760], transposeB: false },
      { dtype: "bf16", a: [2, "tokens", 2880], b: [2, 5760, 2880], transposeB: true },
    ].map((c) => emitMatmul(matmulNode(c as MmCase)).launches[0]!.kernel);
    expect(new Set(names.map((k) => k.entry)).size).toBe(names.length);
    for (const k of names) expect(k.source).not.toMatch(/#include\s*</);
  });

  it("GEMM tiles: wider tiles change the grid, the shared bytes and the name; bad tiles are rejected", () => {
    const node = matmulNode(linear("bf16", ["tokens"], 2880, 2880));
    const wide = emitMatmul(node, { gemmTile: { warpN: 64, k: 64, stages: 3 } }).launches[0]!;
    expect(wide.kernel.entry).toBe("gemm_mma_bf16_nt_n2880_k2880_t256x64s3");
    expect(wide.sharedBytes).toBe(3 * (128 + 256) * 64 * 2);
    expect(wide.grid.map((g) => evalSize(g, { tokens: 4096 }))).toEqual([12, 32, 1]);
    expect(wide.kernel.source).toContain("#define WNT 64");
    expect(() => emitMatmul(node, { gemmTile: { warpN: 48 as 32, k: 32, stages: 4 } })).toThrow(/bad GEMM tile/);
    // warpgroup MMAs: 128 rows, k 64, a dense x·Wᵀ in 16 bits; 1024 bytes more shared memory, to align the stages
    const wg = emitMatmul(node, { gemmTile: { warpN: 32, k: 64, stages: 4, wgmma: true } }).launches[0]!;
    expect(wg.kernel.entry).toMatch(/_t128x64s4w$/);
    expect(wg.sharedBytes).toBe(4 * 256 * 64 * 2 + 1024);
    expect(wg.kernel.source).toContain("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16");
    expect(emitMatmul(node, { gemmTile: { warpN: 32, k: 64, stages: 4 } }).launches[0]!.kernel.source).not.toContain("wgmma");
    expect(() => emitMatmul(node, { gemmTile: { warpN: 32, k: 32, stages: 4, wgmma: true } })).toThrow(/a wgmma GEMM takes .* rows 128, k 64 and at least 3 stages/);
    expect(() => emitMatmul(node, { gemmTile: { warpN: 32, k: 64, stages: 4, rows: 64, wgmma: true } })).toThrow(/a wgmma GEMM takes/);
  });

  it("rejects integer matmuls, naming the node", () => {
    expect(() => emitMatmul(matmulNode({ dtype: "i32", a: [2, 3], b: [3, 4], transposeB: false }))).toThrow(
      /tsgc codegen: matmul \(a i32\[2, 3\], b i32\[3, 4\], transposeB false\): only f32, bf16 and f16 matmuls have kernels, got i32/,
    );
  });
});

describeNvrtc("matmul kernels compile (NVRTC)", () => {
  it("gpt-oss-20b decode and prefill projections (bf16), f32, f16, batched and plain-layout variants", async () => {
    const cases: MmCase[] = [
      linear("bf16", [1], 4096, 2880), // q_proj decode (GEMV)
      linear("bf16", [1], 201088, 2880), // lm_head decode
      linear("bf16", ["tokens"], 2880, 4096), // o_proj prefill (GEMM)
      { dtype: "bf16", a: ["tokens", 4, 1, 2880], b: ["tokens", 4, 2880, 5760], transposeB: false }, // dense MoE expansion
      { dtype: "bf16", a: ["tokens", 2880], b: [2880, 5760], transposeB: false },
      linear("f32", [1], 512, 2880),
      linear("f32", ["tokens"], 512, 2880),
      linear("f16", ["tokens"], 512, 64),
    ];
    expect(await compileNodeKernels(cases.map((c) => emitMatmul(matmulNode(c))))).toBe(cases.length);
  });
});

function inputs(node: NodeOf<"matmul">, sym: SymbolValues, seed: number): { tensors: HostTensor[]; named: Record<string, HostTensor> } {
  const rand = seededRandom(seed);
  const [a, b] = node.inputs.map((n) => randomTensor(n.dtype, evalShape(n.shape, sym), rand, -1, 1)) as [HostTensor, HostTensor];
  return { tensors: [a, b], named: { a, b } };
}

async function check(c: MmCase, sym: SymbolValues, expected: MatmulPath, seed = 1, gemmTile?: GemmTile): Promise<void> {
  const node = matmulNode(c);
  expect(matmulPath(node)).toBe(expected);
  const { tensors, named } = inputs(node, sym, seed);
  const kernels: NodeKernels = emitMatmul(node, gemmTile ? { gemmTile } : {});
  const gpu = await runNodeKernels(node, kernels, tensors, sym);
  expectClose(gpu, interpretNode(node, { inputs: named }, sym), c.dtype === "f32" ? 1e-5 : 1e-2, `${expected} ${JSON.stringify(c)} ${JSON.stringify(sym)}`);
}

describeGpu("matmul kernels match the interpreter (GPU)", () => {
  it("GEMV on tensor cores (bf16 x·Wᵀ): 20b q, kv and o projections at M = 1, 3, 8; N tail; f16", async () => {
    for (const m of [1, 3, 8]) {
      await check(linear("bf16", [m], 4096, 2880), {}, "gemv-mma", m);
      await check(linear("bf16", [m], 512, 2880), {}, "gemv-mma", m + 10);
      await check(linear("bf16", [m], 2880, 4096), {}, "gemv-mma", m + 20);
    }
    await check(linear("bf16", [2], 1000, 2880), {}, "gemv-mma", 5);
    await check(linear("bf16", [5], 40, 72), {}, "gemv-mma", 6);
    await check(linear("f16", [4], 1000, 520), {}, "gemv-mma", 7);
    await check(linear("bf16", [2, 3], 264, 128), {}, "gemv-mma", 8);
  });

  it("GEMV on tensor cores with batched weights (the MXFP4 MoE expansion's [T, k, 1, D] · [T, k, 2I, D]ᵀ)", async () => {
    for (const t of [1, 3, 50]) await check({ dtype: "bf16", a: ["tokens", 4, 1, 64], b: ["tokens", 4, 128, 64], transposeB: true }, { tokens: t }, "gemv-mma", t);
  });

  it("GEMV, SIMT paths: f32 x·Wᵀ, odd K, and b [K, N] (the dense MoE expansion)", async () => {
    for (const m of [1, 3]) await check(linear("f32", [m], 1000, 2880), {}, "gemv-rows", m);
    await check(linear("bf16", [3], 50, 100), {}, "gemv-rows", 4);
    await check(linear("f32", [2], 33, 7), {}, "gemv-rows", 5);
    for (const t of [1, 3, 50]) await check({ dtype: "bf16", a: ["tokens", 4, 1, 64], b: ["tokens", 4, 64, 128], transposeB: false }, { tokens: t }, "gemv-cols", t);
    await check({ dtype: "f32", a: [2, 50], b: [50, 33], transposeB: false }, {}, "gemv-cols", 6);
    await check({ dtype: "bf16", a: [8, 72], b: [72, 1000], transposeB: false }, {}, "gemv-cols", 7);
  });

  for (const t of [1, 3, 50, 783, 4096]) {
    it(`GEMM on tensor cores, tokens = ${t}: x·Wᵀ bf16 (K 2880 where affordable), b [K, N], f16, batched`, async () => {
      const [n, k] = t <= 50 ? [392, 2880] : t === 783 ? [136, 2880] : [200, 256];
      await check(linear("bf16", ["tokens"], n, k), { tokens: t }, "gemm-mma", t);
      await check({ dtype: "bf16", a: ["tokens", 320], b: [320, 264], transposeB: false }, { tokens: t }, "gemm-mma", t + 1);
      await check(linear("f16", ["tokens"], 72, 136), { tokens: t }, "gemm-mma", t + 2);
      if (t <= 783) await check({ dtype: "bf16", a: [2, "tokens", 64], b: [2, 96, 64], transposeB: true }, { tokens: t }, "gemm-mma", t + 3);
    });
  }

  it("GEMM tile variants (256-wide, k 64, 3 stages), both weight layouts, with M, N and K tails", async () => {
    const tiles: GemmTile[] = [{ warpN: 64, k: 32, stages: 3 }, { warpN: 32, k: 64, stages: 3 }, { warpN: 64, k: 64, stages: 3 }];
    for (const tile of tiles) {
      for (const t of [3, 783]) {
        await check(linear("bf16", ["tokens"], 392, 2880), { tokens: t }, "gemm-mma", t, tile);
        await check(linear("bf16", ["tokens"], 300, 200), { tokens: t }, "gemm-mma", t + 1, tile);
        await check({ dtype: "bf16", a: ["tokens", 320], b: [320, 264], transposeB: false }, { tokens: t }, "gemm-mma", t + 2, tile);
      }
    }
  });

  // warpgroup MMAs need sm_90's architecture-specific target (H100, H200)
  const hopper = gpuHasWgmma();
  it.skipIf(!hopper)("GEMM tiles of warpgroup MMAs (sm_90a): 128 and 256 columns, split K, f16, with M, N and K tails", async () => {
    const tiles: GemmTile[] = [{ warpN: 32, k: 64, stages: 4, wgmma: true }, { warpN: 64, k: 64, stages: 3, wgmma: true }, { warpN: 32, k: 64, stages: 3, wgmma: true, splitK: 3 }];
    for (const tile of tiles) {
      for (const t of [3, 200, 783]) {
        await check(linear("bf16", ["tokens"], 392, 2880), { tokens: t }, "gemm-mma", t, tile);
        // K 200: a partial last k-tile (zero-filled past K)
        await check(linear("bf16", ["tokens"], 300, 200), { tokens: t }, "gemm-mma", t + 1, tile);
        await check(linear("f16", ["tokens"], 136, 1000), { tokens: t }, "gemm-mma", t + 2, tile);
      }
    }
  });

  it("GEMM, SIMT path: f32 both layouts, bf16 with K not a multiple of 8", async () => {
    for (const t of [1, 50, 783]) {
      await check(linear("f32", ["tokens"], 70, 100), { tokens: t }, "gemm-simt", t);
      await check({ dtype: "f32", a: ["tokens", 33], b: [33, 130], transposeB: false }, { tokens: t }, "gemm-simt", t + 1);
      await check(linear("bf16", ["tokens"], 65, 100), { tokens: t }, "gemm-simt", t + 2);
    }
  });

  it("the 20b prefill shape 4096×2880 · [2880, 2880]ᵀ (bf16) on 64 sampled rows", async () => {
    const node = matmulNode(linear("bf16", ["tokens"], 2880, 2880));
    const sym = { tokens: 4096 };
    const { tensors } = inputs(node, sym, 99);
    const gpu = await runNodeKernels(node, emitMatmul(node), tensors, sym);
    const [a, w] = tensors as [HostTensor, HostTensor];
    const rand = seededRandom(5);
    let maxErr = 0;
    let maxRef = 0;
    for (let s = 0; s < 64; s++) {
      const i = s === 0 ? 4095 : Math.floor(rand() * 4096);
      for (let j = 0; j < 2880; j++) {
        let acc = 0;
        for (let p = 0; p < 2880; p++) acc += a.data[i * 2880 + p]! * w.data[j * 2880 + p]!;
        maxRef = Math.max(maxRef, Math.abs(acc));
        maxErr = Math.max(maxErr, Math.abs(gpu.data[i * 2880 + j]! - acc));
      }
    }
    expect(maxErr / maxRef).toBeLessThan(1e-2);
  });
});
