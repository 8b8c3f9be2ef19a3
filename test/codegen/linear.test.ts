// fusedLinear: the matmul kernels with the bias added in their store epilogue, against the interpreter.
import { describe, expect, it } from "vitest";
import { DEFAULT_GEMM_TILE, emitFusedLinear, emitGroupedLinear, type GemmTile, gemmTileFor, MAX_SPLIT_K, SPLIT_K_TARGET_BLOCKS, WGMMA_GEMM_TILES, WIDE_DECODE_GEMM_TILES } from "../../src/codegen/matmul.js";
import { compile } from "../../src/compile/compile.js";
import { interpret } from "../../src/ir/interpret.js";
import { Device, PlanExecutor } from "../../runtime/index.js";
import { defineModel, Tensor } from "../../src/ir/builder.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import type { NodeOf } from "../../src/ir/node.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

function linearNode(dtype: "f32" | "bf16", n: number, k: number, transposeB: boolean): NodeOf<"fusedLinear"> {
  let node: NodeOf<"fusedLinear"> | undefined;
  defineModel("linear", (b) => {
    const t = b.sym("tokens", 8192);
    const x = b.param("x", dtype, [t, k]);
    const w = b.param("w", dtype, transposeB ? [n, k] : [k, n]);
    const bias = b.param("bias", dtype, [n]);
    node = b.table.make("fusedLinear", { transposeB }, [x.node, w.node, bias.node]);
    b.entry("e", (e) => e.output("y", new Tensor(node!)));
  });
  return node!;
}

const bounds = { tokens: 8192 };

/** Three linear layers of one x [tokens, k] (q/k/v-like), as a model: the pipeline groups them. */
function threeLinears(dtype: "bf16" | "f32", ns: readonly number[], k: number, maxTokens: number) {
  return defineModel("three-linears", (b) => {
    const t = b.sym("tokens", maxTokens);
    b.entry("e", (e) => {
      const x = e.input("x", dtype, [t, k]);
      ns.forEach((n, i) => e.output(`y${i}`, b.linear(x, b.param(`w${i}`, dtype, [n, k]), b.param(`b${i}`, dtype, [n]))));
    });
  });
}

function groupedNodes(ns: readonly number[], k: number): NodeOf<"groupedLinear">[] {
  let nodes: NodeOf<"groupedLinear">[] = [];
  defineModel("grouped", (b) => {
    const x = b.param("x", "bf16", [b.sym("tokens", 1), k]);
    const ins = [x.node, ...ns.flatMap((n, i) => [b.param(`w${i}`, "bf16", [n, k]).node, b.param(`b${i}`, "bf16", [n]).node])];
    nodes = ns.map((_, result) => b.table.make("groupedLinear", { result }, ins) as NodeOf<"groupedLinear">);
    b.entry("e", (e) => nodes.forEach((n, i) => e.output(`y${i}`, new Tensor(n))));
  });
  return nodes;
}

describe("fusedLinear kernels", () => {
  it("take the bias after the output and name it in the kernel", () => {
    const launch = emitFusedLinear(linearNode("bf16", 5760, 2880, true)).launches[0]!;
    expect(launch.kernel.source).toContain("const elem_t* __restrict__ bias");
    expect(launch.args.slice(0, 4)).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "output" }, { kind: "input", index: 2 }]);
  });
});

describe("groupedLinear kernels", () => {
  it("run every layer's 16-row tiles in one GEMV launch, each layer's output bound as its sibling", () => {
    const { launches } = emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 1 } });
    expect(launches).toHaveLength(1);
    expect(launches[0]!.grid[1]).toEqual({ dims: [], scale: 256 + 32 + 32, divisor: 1 });
    expect(launches[0]!.args.slice(0, 7)).toEqual([
      { kind: "input", index: 0 },
      { kind: "input", index: 1 }, { kind: "sibling", result: "0" }, { kind: "input", index: 2 },
      { kind: "input", index: 3 }, { kind: "sibling", result: "1" }, { kind: "input", index: 4 },
    ]);
  });

  it("keep a launch per layer on the GEMM path", () => {
    expect(emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 4096 } }).launches).toHaveLength(3);
  });

  it("at decode sizes on the GEMM path, one split-K GEMM over every layer's column tiles and one reduce writing each layer", () => {
    const k = emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 256 } });
    expect(k.launches.map((l) => l.kernel.entry)).toEqual([
      "gemm_grouped_mma_bf16_n4096_n512_n512_k2880_t128x32s4sk2", "gemm_splitk_reduce_grouped_bias_bf16_n4096_n512_n512_sk2_v4",
    ]);
    // 32 + 4 + 4 column tiles × 2 row tiles → 2 splits
    expect(k.launches[0]!.grid.map((g) => g.scale)).toEqual([40, 1, 2]);
    expect(k.launches[0]!.kernel.source).toContain("w = w2; N = 512; n0 = (blockIdx.x - 36) * BN; colBase = 4608;");
    expect(k.scratchBytes).toEqual([{ dims: ["tokens"], scale: 2 * 5120 * 4, divisor: 1 }]);
    expect(k.launches[1]!.args.slice(0, 7)).toEqual([
      { kind: "scratch", index: 0 },
      { kind: "sibling", result: "0" }, { kind: "input", index: 2 }, { kind: "sibling", result: "1" }, { kind: "input", index: 4 },
      { kind: "sibling", result: "2" }, { kind: "input", index: 6 },
    ]);
  });

  it("a split-K GEMM and its reduce per layer when a layer's N is no multiple of 4, one scratch buffer for the widest partials", () => {
    const k = emitGroupedLinear(groupedNodes([4096, 510, 512], 2880), { symbolBounds: { tokens: 256 } });
    expect(k.launches.map((l) => l.kernel.entry.split("_")[0] + (l.kernel.entry.includes("reduce") ? "-reduce" : ""))).toEqual(["gemm", "gemm-reduce", "gemm", "gemm-reduce", "gemm", "gemm-reduce"]);
    // q: 32 column tiles × 2 row tiles → 3 splits; k, v: 4 × 2 → 11 (at most 90 k-tiles / 8)
    expect(k.launches.map((l) => l.grid[2].scale)).toEqual([3, 1, 11, 1, 11, 1]);
    expect(k.scratchBytes).toEqual([{ dims: ["tokens"], scale: Math.max(3 * 4096, 11 * 510, 11 * 512) * 4, divisor: 1 }]);
    expect(k.launches[1]!.args).toEqual([{ kind: "scratch", index: 0 }, { kind: "sibling", result: "0" }, { kind: "input", index: 2 }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }, { kind: "i32", value: { dims: [4096], scale: 1, divisor: 1 } }]);
  });
});

describe("split-K GEMM tiles (pure)", () => {
  const shape = (n: number, k: number) => ({ dtype: "bf16" as const, rows: ["tokens"], batch: [], n, k, transposeB: true, bShared: true, bFormat: "dense" as const });
  it("split K at decode sizes until about two blocks an SM run; 64-row tiles up to 64 rows; none for prefill, batches or MXFP4", () => {
    expect(gemmTileFor(shape(5120, 2880), "gemm-mma", 64)).toMatchObject({ rows: 64, splitK: Math.ceil(SPLIT_K_TARGET_BLOCKS / 40) });
    expect(gemmTileFor(shape(5120, 2880), "gemm-mma", 256)).toMatchObject({ rows: 128, splitK: Math.ceil(SPLIT_K_TARGET_BLOCKS / 80) });
    // o_proj: 23 column tiles, 128 k-tiles
    expect(gemmTileFor(shape(2880, 4096), "gemm-mma", 128)).toMatchObject({ rows: 128, splitK: 6 });
    // lm_head: 1571 column tiles are blocks enough, in 64 × 128 × 64 tiles up to 64 rows, 128 × 256 × 64 up to 256;
    // prefill's the default
    for (const m of [33, 64]) expect(gemmTileFor(shape(201088, 2880), "gemm-mma", m)).toEqual({ warpN: 32, k: 64, stages: 4, rows: 64 });
    for (const m of [65, 128, 256]) expect(gemmTileFor(shape(201088, 2880), "gemm-mma", m)).toEqual({ warpN: 64, k: 64, stages: 3 });
    expect([WIDE_DECODE_GEMM_TILES.upTo64, WIDE_DECODE_GEMM_TILES.upTo256].map((t) => t.splitK ?? 1)).toEqual([1, 1]);
    expect(gemmTileFor(shape(201088, 2880), "gemm-mma", 2048)).toEqual(DEFAULT_GEMM_TILE);
    // few k-tiles: each split keeps 8 (K 512 → 16 k-tiles → 2 splits)
    expect(gemmTileFor(shape(512, 512), "gemm-mma", 16)).toMatchObject({ rows: 64, splitK: 2 });
    expect(gemmTileFor(shape(5120, 2880), "gemm-mma", 2048).splitK ?? 1).toBe(1);
    expect(gemmTileFor({ ...shape(5120, 2880), bShared: false, batch: [4] }, "gemm-mma", 64).splitK ?? 1).toBe(1);
    expect(gemmTileFor({ ...shape(5120, 2880), bFormat: "mxfp4" }, "gemm-mma", 64).splitK ?? 1).toBe(1);
    expect(gemmTileFor(shape(5120, 2880), "gemv-mma", 64).splitK ?? 1).toBe(1);
  });

  it("on a target with warpgroup MMA (sm_90a): wgmma tiles for 128-row tiles (with their split) and prefill, 64-row ones kept", () => {
    const wg = (n: number, k: number, m: number) => gemmTileFor(shape(n, k), "gemm-mma", m, true);
    expect(wg(5120, 2880, 256)).toEqual({ ...WGMMA_GEMM_TILES.decode, splitK: Math.ceil(SPLIT_K_TARGET_BLOCKS / 80) });
    expect(wg(2880, 4096, 128)).toEqual({ ...WGMMA_GEMM_TILES.decode, splitK: 6 });
    expect(wg(201088, 2880, 256)).toEqual(WGMMA_GEMM_TILES.decode);
    expect(wg(5120, 2880, 2048)).toEqual(WGMMA_GEMM_TILES.prefill);
    // up to 64 rows the 64-row tiles (a wgmma tile has 128)
    expect(wg(5120, 2880, 64)).toEqual(gemmTileFor(shape(5120, 2880), "gemm-mma", 64));
    expect(wg(201088, 2880, 64)).toEqual(WIDE_DECODE_GEMM_TILES.upTo64);
    // not for MXFP4, plain or batched B
    expect(gemmTileFor({ ...shape(5120, 2880), bFormat: "mxfp4" }, "gemm-mma", 2048, true)).toEqual(DEFAULT_GEMM_TILE);
    expect(gemmTileFor({ ...shape(5120, 2880), transposeB: false }, "gemm-mma", 2048, true)).toEqual(DEFAULT_GEMM_TILE);
    expect(gemmTileFor({ ...shape(5120, 2880), bShared: false, batch: [4] }, "gemm-mma", 2048, true)).toEqual(DEFAULT_GEMM_TILE);
    for (const t of [WGMMA_GEMM_TILES.decode, WGMMA_GEMM_TILES.prefill]) expect(t).toMatchObject({ wgmma: true, k: 64 });
    // the plan's kernels follow: the same layer lowered for sm_90a and for another target
    const node = linearNode("bf16", 5120, 2880, true);
    expect(emitFusedLinear(node, { symbolBounds: { tokens: 2048 }, wgmma: true }).launches[0]!.kernel.source).toContain("wgmma.mma_async");
    expect(emitFusedLinear(node, { symbolBounds: { tokens: 2048 } }).launches[0]!.kernel.source).not.toContain("wgmma");
  });

  it("emit the GEMM's f32 partials into scratch and a reduce that adds the bias; reject splits the kernel cannot take", () => {
    const node = linearNode("bf16", 520, 488, true);
    const k = emitFusedLinear(node, { path: "gemm-mma", gemmTile: { warpN: 32, k: 32, stages: 4, rows: 64, splitK: 3 }, symbolBounds: { tokens: 100 } });
    expect(k.launches.map((l) => l.kernel.entry)).toEqual(["gemm_bias_mma_bf16_nt_n520_k488_t128x32s4r64sk3", "gemm_splitk_reduce_bias_bf16_n520_sk3_v4"]);
    expect(k.launches[0]!.kernel.source).toContain("float* __restrict__ part");
    expect(k.launches[0]!.args[2]).toEqual({ kind: "scratch", index: 0 });
    expect(k.launches[0]!.grid.map((g) => g.scale)).toEqual([5, 1, 3]);
    expect(k.scratchBytes).toEqual([{ dims: ["tokens"], scale: 3 * 520 * 4, divisor: 1 }]);
    expect(() => emitFusedLinear(linearNode("bf16", 96, 64, false), { path: "gemm-mma", gemmTile: { warpN: 32, k: 32, stages: 4, splitK: 2 } })).toThrow(/a split-K GEMM takes a dense x·Wᵀ/);
    expect(() => emitFusedLinear(node, { path: "gemm-mma", gemmTile: { warpN: 32, k: 32, stages: 4, splitK: MAX_SPLIT_K + 1 } })).toThrow(/bad GEMM tile/);
    expect(() => emitFusedLinear(node, { path: "gemm-mma", gemmTile: { warpN: 32, k: 32, stages: 4, rows: 96 as 64 } })).toThrow(/bad GEMM tile/);
  });
});

describeNvrtc("fusedLinear kernels compile", () => {
  it("for gpt-oss 20b projections, decode (GEMV) and prefill (GEMM) paths", async () => {
    const kernels = [
      emitFusedLinear(linearNode("bf16", 4096, 2880, true), { symbolBounds: { tokens: 1 } }),
      emitFusedLinear(linearNode("bf16", 4096, 2880, true), { symbolBounds: bounds }),
      emitFusedLinear(linearNode("f32", 64, 64, true), { symbolBounds: bounds }),
      emitFusedLinear(linearNode("f32", 64, 48, false), { symbolBounds: { tokens: 1 } }),
    ];
    expect(await compileNodeKernels(kernels)).toBe(4);
  });

  it("split-K GEMMs and their reduces: 64- and 128-row tiles, N a multiple of 4 or odd, for gpt-oss 20b q/k/v and o_proj", async () => {
    const tile = (rows: 64 | 128, splitK: number): GemmTile => ({ warpN: 32, k: 32, stages: 4, rows, splitK });
    const kernels = [
      emitFusedLinear(linearNode("bf16", 5120, 2880, true), { symbolBounds: { tokens: 256 } }),
      emitFusedLinear(linearNode("bf16", 2880, 4096, true), { path: "gemm-mma", symbolBounds: { tokens: 64 } }),
      emitFusedLinear(linearNode("bf16", 97, 200, true), { path: "gemm-mma", gemmTile: tile(64, 5) }),
      emitFusedLinear(linearNode("bf16", 520, 488, true), { path: "gemm-mma", gemmTile: tile(128, 4) }),
      // lm_head at 64 rows in 64 × 256 tiles (a bench variant)
      emitFusedLinear(linearNode("bf16", 201088, 2880, true), { path: "gemm-mma", gemmTile: { warpN: 64, k: 32, stages: 4, rows: 64 } }),
      // lm_head's own tiles at buckets 64 and 256
      ...[64, 256].map((m) => emitFusedLinear(linearNode("bf16", 201088, 2880, true), { path: "gemm-mma", symbolBounds: { tokens: m } })),
    ];
    expect(await compileNodeKernels(kernels)).toBe(11);
  });

  it("for the grouped q/k/v GEMV of gpt-oss 20b, and its grouped split-K GEMM and reduce", async () => {
    expect(await compileNodeKernels([emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 1 } })])).toBe(1);
    expect(await compileNodeKernels([emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 64 } })])).toBe(2);
  });
});

describeGpu("fusedLinear on the GPU", () => {
  const cases = [
    { dtype: "bf16", n: 520, k: 256, transposeB: true },
    { dtype: "f32", n: 100, k: 72, transposeB: true },
    { dtype: "bf16", n: 96, k: 64, transposeB: false },
  ] as const;
  for (const c of cases) {
    for (const tokens of [1, 3, 50, 783]) {
      it(`matches the interpreter: ${c.dtype} ${c.transposeB ? "x·Wᵀ" : "x·W"} [${c.n}×${c.k}], ${tokens} tokens`, async () => {
        const node = linearNode(c.dtype, c.n, c.k, c.transposeB);
        const rand = seededRandom(tokens * 7 + c.n);
        const params = {
          x: randomTensor(c.dtype, [tokens, c.k], rand),
          w: randomTensor(c.dtype, c.transposeB ? [c.n, c.k] : [c.k, c.n], rand),
          bias: randomTensor(c.dtype, [c.n], rand, -4, 4),
        };
        const symbols = { tokens };
        const gpu = await runNodeKernels(node, emitFusedLinear(node, { symbolBounds: symbols }), [params.x, params.w, params.bias], symbols);
        expectClose(gpu, interpretNode(node, { params }, symbols), c.dtype === "f32" ? 1e-5 : 1e-2);
      });
    }
  }
});

describeGpu("split-K and skinny GEMM tiles on the GPU", () => {
  // 64- and 128-row tiles; K of 15¼ k-tiles (488) and of 7 (200: with 5 splits of 2, the last takes none and adds
  // zeros); N a multiple of 4 (the reduce's 4-wide path), odd (scalar stores)
  const cases: { n: number; k: number; tile: GemmTile }[] = [
    { n: 520, k: 488, tile: { warpN: 32, k: 32, stages: 4, rows: 64, splitK: 3 } },
    { n: 520, k: 488, tile: { warpN: 32, k: 32, stages: 4, rows: 128, splitK: 4 } },
    { n: 97, k: 200, tile: { warpN: 32, k: 32, stages: 4, rows: 64, splitK: 5 } },
    // 64 × 256 tiles, no split (a bench/codegen-matmul.ts variant for lm_head at 64 rows)
    { n: 520, k: 488, tile: { warpN: 64, k: 32, stages: 4, rows: 64 } },
    // k 64 tiles of 64 rows (lm_head's up to 64 rows: 64 × 128 × 64 s4); K 488 is 7⅝ k-tiles of 64
    { n: 520, k: 488, tile: { warpN: 64, k: 64, stages: 3, rows: 64 } },
    { n: 97, k: 488, tile: { warpN: 64, k: 64, stages: 4, rows: 64 } },
    { n: 520, k: 488, tile: { warpN: 32, k: 64, stages: 4, rows: 64 } },
  ];
  for (const c of cases) {
    it(`match the interpreter: bf16 x·Wᵀ [${c.n}×${c.k}] + bias, ${c.tile.rows}×${4 * c.tile.warpN} tiles, K split ${c.tile.splitK ?? 1} ways, at 1, 3, 17, 100, 255 tokens`, async () => {
      const node = linearNode("bf16", c.n, c.k, true);
      for (const tokens of [1, 3, 17, 100, 255]) {
        const rand = seededRandom(tokens * 13 + c.n);
        const params = { x: randomTensor("bf16", [tokens, c.k], rand), w: randomTensor("bf16", [c.n, c.k], rand), bias: randomTensor("bf16", [c.n], rand, -4, 4) };
        const symbols = { tokens };
        const kernels = emitFusedLinear(node, { path: "gemm-mma", gemmTile: c.tile, symbolBounds: { tokens: 256 } });
        expect(kernels.launches).toHaveLength((c.tile.splitK ?? 1) > 1 ? 2 : 1);
        const gpu = await runNodeKernels(node, kernels, [params.x, params.w, params.bias], symbols);
        expectClose(gpu, interpretNode(node, { params }, symbols), 1e-2, `${tokens} tokens`);
      }
    });
  }
});

describeGpu("groupedLinear on the GPU", () => {
  // up to 32 rows one grouped GEMV; at 256 one grouped split-K GEMM and its reduce (K 1024: 32 k-tiles, 4 splits);
  // past it a GEMM per layer
  const launchesAt = (maxTokens: number) => (maxTokens <= 32 ? 1 : maxTokens <= 256 ? 2 : 3);
  for (const [maxTokens, tokensList] of [[8, [1, 3, 8]], [32, [30, 17]], [256, [255, 3]], [512, [300]]] as const) {
    it(`computes each layer as its own linear would (bf16, ${maxTokens <= 32 ? `one grouped GEMV, up to ${maxTokens} rows` : maxTokens <= 256 ? "one grouped split-K GEMM and reduce" : "a GEMM per layer"})`, async () => {
      const device = Device.open(0);
      const ns = [520, 16, 48];
      const k = maxTokens === 256 ? 1024 : 256;
      const graph = threeLinears("bf16", ns, k, maxTokens);
      const { plan } = await compile(graph, { arch: device.info.arch, cacheDir: false });
      expect(plan.opCounts["groupedLinear"]).toBe(3);
      expect(plan.entries[0]!.buckets[0]!.launches.filter((l) => l.op === "groupedLinear")).toHaveLength(launchesAt(maxTokens));
      const exec = await PlanExecutor.load(plan, device, { cacheDir: false });
      try {
        const rand = seededRandom(maxTokens);
        const params = Object.fromEntries(ns.flatMap((n, i) => [[`w${i}`, randomTensor("bf16", [n, k], rand)], [`b${i}`, randomTensor("bf16", [n], rand, -4, 4)]]));
        exec.setParams(params);
        for (const tokens of tokensList) {
          const inputs = { x: randomTensor("bf16", [tokens, k], rand) };
          const gpu = exec.run("e", inputs);
          const ref = interpret(graph, "e", inputs, params);
          ns.forEach((_, i) => expectClose(gpu[`y${i}`]!, ref[`y${i}`]!, 1e-2, `y${i} at ${tokens} tokens`));
        }
      } finally {
        exec.dispose();
      }
    });
  }
});
