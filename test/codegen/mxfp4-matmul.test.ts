// mxfp4Matmul codegen: path choice and sources (pure), the gpt-oss shapes compile (NVRTC), and every path
// against the interpreter on a GPU: rows 1, 3, 50, 783, 4096, N and block-count tails, scales on both
// sides of the one-multiply range (≤ 128 and > 128), the extreme scale codes 0 and 255 (NaN), bf16/f16/f32.
import { describe, expect, it } from "vitest";
import { type ArgBinding, evalSize } from "../../src/lower/kernel.js";
import type { MatmulPath } from "../../src/codegen/matmul.js";
import { emitMxfp4Matmul, mxfp4MatmulPath } from "../../src/codegen/mxfp4-matmul.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Dim, evalShape, type SymbolValues } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

function mxNode(dtype: DType, rows: Dim[], n: number, k: number): NodeOf<"mxfp4Matmul"> {
  const table = new NodeTable();
  const x = table.make("input", { name: "x", dtype, shape: [...rows, k] }, []);
  const blocks = table.make("input", { name: "blocks", dtype: "fp4e2m1x2", shape: [n, k / 32, 16] }, []);
  const scales = table.make("input", { name: "scales", dtype: "e8m0", shape: [n, k / 32] }, []);
  return table.make("mxfp4Matmul", {}, [x, blocks, scales]);
}

function i32Arg(a: ArgBinding | undefined, sym: SymbolValues): number {
  if (a?.kind !== "i32") throw new Error(`expected an i32 argument, got ${JSON.stringify(a)}`);
  return evalSize(a.value, sym);
}

describe("mxfp4Matmul codegen (pure)", () => {
  it("chooses the tensor-core GEMV for bf16 decode, the SIMT GEMV for f16/f32, the GEMMs for many rows", () => {
    expect(mxfp4MatmulPath(mxNode("bf16", [1], 5760, 2880))).toBe("gemv-mma");
    expect(mxfp4MatmulPath(mxNode("f32", [1], 5760, 2880))).toBe("gemv-rows");
    expect(mxfp4MatmulPath(mxNode("f16", [2, 4], 5760, 2880))).toBe("gemv-rows");
    expect(mxfp4MatmulPath(mxNode("bf16", ["tokens"], 5760, 2880))).toBe("gemm-mma");
    expect(mxfp4MatmulPath(mxNode("bf16", ["tokens"], 5760, 2880), { symbolBounds: { tokens: 8 } })).toBe("gemv-mma");
    expect(mxfp4MatmulPath(mxNode("f32", ["tokens"], 5760, 2880))).toBe("gemm-simt");
  });

  it("reads the packed weight: (x, blocks, scales) bound in order, geometry by 16 weight rows or 128×128 tiles", () => {
    const gemv = emitMxfp4Matmul(mxNode("bf16", [1], 5760, 2880)).launches[0]!;
    expect(gemv.kernel.entry).toBe("mxfp4_gemv_mma_bf16_n5760_k2880");
    expect(gemv.kernel.source).toContain("fma.rn.bf16x2");
    expect(gemv.kernel.source).toContain("const int K = 2880;");
    expect(gemv.grid.map((g) => evalSize(g, {}))).toEqual([360, 1, 1]);
    expect(gemv.args.slice(0, 4)).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "output" }]);
    const gemm = emitMxfp4Matmul(mxNode("bf16", [2, "tokens"], 2880, 2880)).launches[0]!;
    expect(gemm.kernel.entry).toBe("mxfp4_gemm_mma_bf16_n2880_k2880");
    expect(gemm.kernel.source).toContain("mm_store_fp4");
    expect(gemm.grid.map((g) => evalSize(g, { tokens: 4096 }))).toEqual([23, 64, 1]);
    expect(i32Arg(gemm.args[4], { tokens: 4096 })).toBe(8192);
    for (const l of [gemv, gemm]) expect(l.kernel.source).not.toMatch(/#include\s*</);
    expect(emitMxfp4Matmul(mxNode("f32", [1], 64, 64)).launches[0]!.kernel.source).toContain("mv_load_w");
  });
});

describeNvrtc("mxfp4Matmul kernels compile (NVRTC)", () => {
  it("gpt-oss-20b expert shapes (gate_up 5760×2880, down 2880×2880) for decode and prefill, f32 and f16", async () => {
    const nodes = [
      mxNode("bf16", [1], 5760, 2880),
      mxNode("bf16", [1], 2880, 2880),
      mxNode("bf16", ["tokens"], 5760, 2880),
      mxNode("f32", [1], 5760, 2880),
      mxNode("f32", ["tokens"], 2880, 2880),
      mxNode("f16", ["tokens"], 2880, 2880),
    ];
    expect(await compileNodeKernels(nodes.map((n) => emitMxfp4Matmul(n)))).toBe(nodes.length);
  });
});

interface Scales {
  lo: number;
  hi: number;
  special?: boolean;
}

function inputs(node: NodeOf<"mxfp4Matmul">, sym: SymbolValues, seed: number, scales: Scales): HostTensor[] {
  const rand = seededRandom(seed);
  const shapes = node.inputs.map((n) => evalShape(n.shape, sym));
  const x = randomTensor(node.dtype, shapes[0]!, rand, -1, 1);
  const blocks = randomTensor("fp4e2m1x2", shapes[1]!, rand, 0, 256);
  const s = randomTensor("e8m0", shapes[2]!, rand, scales.lo, scales.hi + 1);
  if (scales.special) {
    const data = Array.from(s.data);
    data[0] = 0; // 2^-127, a subnormal scale
    data[1] = 255; // NaN: the whole output column is NaN
    data[data.length - 1] = 254;
    return [x, blocks, hostTensor("e8m0", s.shape, data)];
  }
  return [x, blocks, s];
}

const NORMAL: Scales = { lo: 116, hi: 134 };

async function check(node: NodeOf<"mxfp4Matmul">, sym: SymbolValues, expected: MatmulPath, seed: number, scales: Scales = NORMAL): Promise<void> {
  expect(mxfp4MatmulPath(node)).toBe(expected);
  const tensors = inputs(node, sym, seed, scales);
  const gpu = await runNodeKernels(node, emitMxfp4Matmul(node), tensors, sym);
  const ref = interpretNode(node, { inputs: { x: tensors[0]!, blocks: tensors[1]!, scales: tensors[2]! } }, sym);
  expectClose(gpu, ref, node.dtype === "f32" ? 1e-5 : 1e-2, `${expected} ${node.dtype}${JSON.stringify(node.inputs[0]!.shape)} n ${node.shape.at(-1)} ${JSON.stringify(sym)}`);
}

describeGpu("mxfp4Matmul kernels match the interpreter (GPU)", () => {
  it("GEMV on tensor cores (bf16): 20b gate_up and down at M = 1, 3, 8; N and block-count tails", async () => {
    for (const m of [1, 3, 8]) {
      await check(mxNode("bf16", [m], 5760, 2880), {}, "gemv-mma", m);
      await check(mxNode("bf16", [m], 2880, 2880), {}, "gemv-mma", m + 10);
    }
    await check(mxNode("bf16", [2], 1000, 96), {}, "gemv-mma", 3);
    await check(mxNode("bf16", [1, 3], 40, 32), {}, "gemv-mma", 4);
  });

  it("scale codes 0 and 255 and large scales give what dequantMxfp4 gives (GEMV and GEMM, bf16 and f32)", async () => {
    await check(mxNode("bf16", [2], 300, 256), {}, "gemv-mma", 5, { lo: 100, hi: 200, special: true });
    await check(mxNode("f32", [2], 300, 256), {}, "gemv-rows", 6, { lo: 100, hi: 200, special: true });
    await check(mxNode("bf16", ["tokens"], 300, 256), { tokens: 50 }, "gemm-mma", 7, { lo: 100, hi: 200, special: true });
    await check(mxNode("f32", ["tokens"], 300, 256), { tokens: 50 }, "gemm-simt", 8, { lo: 100, hi: 200, special: true });
  });

  it("GEMV, SIMT path: f32 and f16 (dequantized values rounded to f16)", async () => {
    for (const m of [1, 3]) {
      await check(mxNode("f32", [m], 1000, 2880), {}, "gemv-rows", m);
      await check(mxNode("f16", [m], 1000, 2880), {}, "gemv-rows", m + 1, { lo: 100, hi: 140 });
    }
  });

  for (const t of [1, 3, 50, 783, 4096]) {
    it(`GEMM, tokens = ${t}: bf16 and f16 on tensor cores, f32 SIMT`, async () => {
      const [n, k] = t <= 50 ? [392, 2880] : t === 783 ? [136, 2880] : [200, 256];
      await check(mxNode("bf16", ["tokens"], n, k), { tokens: t }, "gemm-mma", t);
      await check(mxNode("f16", ["tokens"], 72, 160), { tokens: t }, "gemm-mma", t + 1, { lo: 110, hi: 135 });
      if (t <= 783) await check(mxNode("f32", ["tokens"], 70, 96), { tokens: t }, "gemm-simt", t + 2);
    });
  }
});
