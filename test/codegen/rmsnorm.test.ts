// fusedRmsNorm codegen: emitted sources and geometry (pure), the gpt-oss specializations compile
// (NVRTC), and every variant against the interpreter on a GPU at awkward row counts.
import { describe, expect, it } from "vitest";
import { type ArgBinding, evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import { emitFusedRmsNorm, emitResidualRmsNormPair, rmsNormGeometry } from "../../src/codegen/rmsnorm.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import type { Dim } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

interface NormCase {
  dtype: DType;
  wdtype?: DType;
  rows: readonly Dim[];
  d: number;
  eps?: number;
}

function normNodes(c: NormCase, residual: boolean): { normed: NodeOf<"fusedRmsNorm">; sum: NodeOf<"fusedRmsNorm"> | undefined } {
  const table = new NodeTable();
  const x = table.make("input", { name: "x", dtype: c.dtype, shape: [...c.rows, c.d] }, []);
  const w = table.make("input", { name: "w", dtype: c.wdtype ?? c.dtype, shape: [c.d] }, []);
  const eps = c.eps ?? 1e-5;
  if (!residual) return { normed: table.make("fusedRmsNorm", { eps, hasResidual: false, result: "normed" }, [x, w]), sum: undefined };
  const r = table.make("input", { name: "r", dtype: c.dtype, shape: [...c.rows, c.d] }, []);
  return {
    normed: table.make("fusedRmsNorm", { eps, hasResidual: true, result: "normed" }, [x, r, w]),
    sum: table.make("fusedRmsNorm", { eps, hasResidual: true, result: "sum" }, [x, r, w]),
  };
}

const GPT_OSS = { d: 2880, rows: ["tokens"] } as const;

describe("fusedRmsNorm codegen (pure)", () => {
  it("geometry: 16-byte vectors, one block per row, threads cover the row once", () => {
    expect(rmsNormGeometry(2880, "bf16")).toEqual({ vec: 8, threads: 384, vectorsPerThread: 1 });
    expect(rmsNormGeometry(2880, "f32")).toEqual({ vec: 4, threads: 512, vectorsPerThread: 2 });
    expect(rmsNormGeometry(100, "f16")).toEqual({ vec: 4, threads: 32, vectorsPerThread: 1 });
    expect(rmsNormGeometry(7, "f32")).toEqual({ vec: 1, threads: 32, vectorsPerThread: 1 });
    const { normed } = normNodes({ dtype: "bf16", ...GPT_OSS, rows: ["tokens"] }, false);
    const k = emitFusedRmsNorm(normed);
    const l = k.launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 783 }))).toEqual([783, 1, 1]);
    expect(l.block).toEqual([384, 1, 1]);
    expect(l.args).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "output" }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }]);
    expect(k.scratchBytes).toEqual([]);
  });

  it("bakes D, the vector width and eps exactly; no system headers", () => {
    const { normed } = normNodes({ dtype: "bf16", ...GPT_OSS, rows: [2, "tokens"] }, true);
    const src = emitFusedRmsNorm(normed).launches[0]!.kernel.source;
    expect(src).toContain("#define D 2880");
    expect(src).toContain("#define VEC 8");
    expect(src).toContain("__int_as_float(0x3727c5ac)"); // fround(1e-5)
    expect(src).toContain("const unsigned short* __restrict__ residual");
    expect(src).not.toContain("out_sum");
    expect(src).not.toMatch(/#include\s*</);
  });

  it("the sum result is a separate kernel and the pair writes both, binding the sum to its sibling", () => {
    const { normed, sum } = normNodes({ dtype: "bf16", ...GPT_OSS }, true);
    const s = emitFusedRmsNorm(sum!);
    expect(s.launches[0]!.kernel.source).toContain("out_sum");
    expect(s.launches[0]!.kernel.source).not.toContain("sqrtf");
    expect(s.launches[0]!.args.slice(0, 4)).toEqual([0, 1, 2].map((index) => ({ kind: "input", index })).concat([{ kind: "output" } as never]));
    const pair = emitResidualRmsNormPair(normed, sum!);
    const l = pair.launches[0]!;
    expect(l.kernel.entry).not.toBe(emitFusedRmsNorm(normed).launches[0]!.kernel.entry);
    expect(l.args.slice(0, 5)).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "sibling", result: "sum" }, { kind: "output" }]);
    expect(l.kernel.source).toMatch(/out_sum,\s*unsigned short\* __restrict__ out,/);
  });

  it("rejects what it cannot run, naming the node", () => {
    const { normed, sum } = normNodes({ dtype: "bf16", d: 64, rows: [3] }, true);
    expect(() => emitResidualRmsNormPair(sum!, normed)).toThrow(/fusedRmsNorm \(x bf16\[3, 64\], result sum\): the pair needs one "normed" and one "sum" node/);
    const other = normNodes({ dtype: "bf16", d: 64, rows: [3], eps: 1e-6 }, true);
    expect(() => emitResidualRmsNormPair(normed, other.sum!)).toThrow(/is not its sibling/);
    const table = new NodeTable();
    const x = table.make("input", { name: "x", dtype: "bf16", shape: [3, "n"] }, []);
    const w = table.make("input", { name: "w", dtype: "bf16", shape: ["n"] }, []);
    expect(() => emitFusedRmsNorm(table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: false, result: "normed" }, [x, w]))).toThrow(/the normalized dim must be static, got n/);
  });
});

describeNvrtc("fusedRmsNorm kernels compile (NVRTC)", () => {
  it("gpt-oss-20b (bf16, D 2880: plain, residual sum, pair) and the f32 / f16 / odd-width variants", async () => {
    const bf = normNodes({ dtype: "bf16", ...GPT_OSS }, true);
    const plain = normNodes({ dtype: "bf16", ...GPT_OSS }, false);
    const f32 = normNodes({ dtype: "f32", ...GPT_OSS }, true);
    const odd = normNodes({ dtype: "f16", wdtype: "f32", d: 100, rows: [5] }, false);
    const kernels: (NodeKernels | NodeKernels)[] = [
      emitFusedRmsNorm(plain.normed),
      emitFusedRmsNorm(bf.sum!),
      emitResidualRmsNormPair(bf.normed, bf.sum!),
      emitFusedRmsNorm(f32.normed),
      emitFusedRmsNorm(odd.normed),
    ];
    expect(await compileNodeKernels(kernels as NodeKernels[])).toBe(5);
  });
});

/** The pair launch with its sibling binding mapped: `want` "normed" runs as is, "sum" swaps the two outputs. */
function pairAs(pair: NodeKernels, want: "normed" | "sum"): NodeKernels {
  return {
    scratchBytes: [],
    launches: pair.launches.map((l) => ({
      ...l,
      args: l.args.map((a): ArgBinding => {
        if (a.kind === "sibling") return want === "sum" ? { kind: "output" } : { kind: "scratch", index: 0 };
        if (a.kind === "output" && want === "sum") return { kind: "scratch", index: 0 };
        return a;
      }),
    })),
  };
}

function inputsFor(c: NormCase, rows: number, residual: boolean, seed: number): { tensors: HostTensor[]; named: Record<string, HostTensor> } {
  const rand = seededRandom(seed);
  const shape = [...c.rows.map((r) => (typeof r === "number" ? r : rows)), c.d];
  const x = randomTensor(c.dtype, shape, rand, -3, 3);
  const w = randomTensor(c.wdtype ?? c.dtype, [c.d], rand, 0.5, 1.5);
  if (!residual) return { tensors: [x, w], named: { x, w } };
  const r = randomTensor(c.dtype, shape, rand, -3, 3);
  return { tensors: [x, r, w], named: { x, r, w } };
}

const tolerance = (d: DType) => (d === "f32" ? 1e-5 : 1e-2);

describeGpu("fusedRmsNorm kernels match the interpreter (GPU)", () => {
  for (const rows of [1, 3, 50, 783, 4096]) {
    it(`gpt-oss-20b D 2880, bf16, ${rows} rows: plain, residual normed, residual sum`, async () => {
      const c: NormCase = { dtype: "bf16", ...GPT_OSS };
      const sym = { tokens: rows };
      const plain = normNodes(c, false).normed;
      const a = inputsFor(c, rows, false, rows);
      expectClose(await runNodeKernels(plain, emitFusedRmsNorm(plain), a.tensors, sym), interpretNode(plain, { inputs: a.named }, sym), 1e-2, "plain");
      const { normed, sum } = normNodes(c, true);
      const b = inputsFor(c, rows, true, rows + 1);
      expectClose(await runNodeKernels(normed, emitFusedRmsNorm(normed), b.tensors, sym), interpretNode(normed, { inputs: b.named }, sym), 1e-2, "normed");
      const sumRef = interpretNode(sum!, { inputs: b.named }, sym);
      expectClose(await runNodeKernels(sum!, emitFusedRmsNorm(sum!), b.tensors, sym), sumRef, 0, "sum");
    });
  }

  for (const rows of [3, 783]) {
    it(`the pair kernel writes both results (bf16, ${rows} rows)`, async () => {
      const c: NormCase = { dtype: "bf16", ...GPT_OSS };
      const sym = { tokens: rows };
      const { normed, sum } = normNodes(c, true);
      const pair = emitResidualRmsNormPair(normed, sum!);
      const b = inputsFor(c, rows, true, 7 * rows);
      const withScratch = (k: NodeKernels): NodeKernels => ({ ...k, scratchBytes: [{ dims: ["tokens"], scale: c.d * 2, divisor: 1 }] });
      expectClose(await runNodeKernels(normed, withScratch(pairAs(pair, "normed")), b.tensors, sym), interpretNode(normed, { inputs: b.named }, sym), 1e-2, "pair normed");
      expectClose(await runNodeKernels(sum!, withScratch(pairAs(pair, "sum")), b.tensors, sym), interpretNode(sum!, { inputs: b.named }, sym), 0, "pair sum");
    });
  }

  const others: [string, NormCase, boolean][] = [
    ["f32 D 2880 (two vectors per thread), residual", { dtype: "f32", ...GPT_OSS }, true],
    ["f16 D 100 with an f32 weight (8-byte vectors)", { dtype: "f16", wdtype: "f32", d: 100, rows: ["tokens"] }, false],
    ["f32 D 7 (scalar), eps 1e-6, batch dims", { dtype: "f32", d: 7, rows: [2, "tokens"], eps: 1e-6 }, true],
    ["bf16 D 64 with an f32 weight (tiny model)", { dtype: "bf16", wdtype: "f32", d: 64, rows: ["tokens"] }, true],
  ];
  for (const [what, c, residual] of others) {
    it(what, async () => {
      for (const rows of [1, 50, 783]) {
        const sym = { tokens: rows };
        const { normed, sum } = normNodes(c, residual);
        const inp = inputsFor(c, rows, residual, rows + 11);
        expectClose(await runNodeKernels(normed, emitFusedRmsNorm(normed), inp.tensors, sym), interpretNode(normed, { inputs: inp.named }, sym), tolerance(c.dtype), `${what} rows ${rows}`);
        if (sum) expectClose(await runNodeKernels(sum, emitFusedRmsNorm(sum), inp.tensors, sym), interpretNode(sum, { inputs: inp.named }, sym), 0, `${what} sum rows ${rows}`);
      }
    });
  }
});
