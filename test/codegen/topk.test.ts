// Top-k codegen: mode choice (warp, block, two-pass split), geometry, scratch and the sibling pair
// (pure); router top-4 and vocab arg-max at gpt-oss sizes compile (NVRTC); values and indices against
// the interpreter with ties and NaNs, in every mode (GPU).
import { beforeAll, describe, expect, it } from "vitest";
import { type ArgBinding, evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import { emitTopk, emitTopkPair } from "../../src/codegen/topk.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Shape, evalShape, numElements } from "../../src/ir/shape.js";
import { Device, compileKernels } from "../../runtime/index.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

const table = new NodeTable();
const input = (name: string, dtype: DType, shape: Shape) => table.make("input", { name, dtype, shape }, []);
function topk(name: string, dtype: DType, shape: Shape, k: number): { values: NodeOf<"topk">; indices: NodeOf<"topk"> } {
  const x = input(name, dtype, shape);
  return { values: table.make("topk", { k, result: "values" }, [x]), indices: table.make("topk", { k, result: "indices" }, [x]) };
}
const SIZES = [1, 3, 50, 783, 4096];

describe("topk codegen (pure)", () => {
  it("router top-4 of 32: one warp per row, one expert per lane (128 experts: 4 per lane, 8-byte loads)", () => {
    const { indices } = topk("logits", "bf16", ["tokens", 32], 4);
    const l = emitTopk(indices).launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 50 }))).toEqual([7, 1, 1]);
    expect(l.args).toEqual([{ kind: "output" }, { kind: "input", index: 0 }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }]);
    expect(l.kernel.source).toContain("union { unsigned short raw; unsigned short e[1]; } u;");
    expect(emitTopk(topk("logits128", "bf16", ["tokens", 128], 4).indices).launches[0]!.kernel.source).toContain("union { uint2 raw; unsigned short e[4]; } u;");
    expect(l.kernel.source).toContain("int* __restrict__ indices, const unsigned short* __restrict__ x");
    expect(l.kernel.source).not.toContain("values[");
  });

  it("arg-max over the vocab: chunk pass (rows × 50 blocks of 4096 entries, 16-byte loads) and merge pass, candidates in scratch", () => {
    const { indices } = topk("vocab", "bf16", ["rows", 201088], 1);
    const k = emitTopk(indices);
    expect(k.launches).toHaveLength(2);
    const [chunks, merge] = k.launches as [NodeKernels["launches"][0], NodeKernels["launches"][0]];
    expect(chunks.grid.map((g) => evalSize(g, { rows: 3 }))).toEqual([150, 1, 1]);
    expect(chunks.kernel.source).toContain("union { uint4 raw; unsigned short e[8]; } u;");
    expect(chunks.kernel.source).toContain("topk_take(v, bv, bi)");
    expect(merge.grid.map((g) => evalSize(g, { rows: 3 }))).toEqual([1, 1, 1]);
    expect(k.scratchBytes.map((s) => evalSize(s, { rows: 3 }))).toEqual([3 * 50 * 4, 3 * 50 * 4]);
    expect(chunks.args.slice(0, 3)).toEqual([{ kind: "input", index: 0 }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }]);
    expect(merge.args.slice(0, 3)).toEqual([{ kind: "output" }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }]);
    expect(chunks.kernel.entry).toBe(`${merge.kernel.entry.replace(/_merge$/, "")}_chunks`);
  });

  it("long rows take a block each; symbolic rows too", () => {
    const l = emitTopk(topk("long", "f32", [3, 5000], 3).values).launches[0]!;
    expect(l.grid.map((g) => evalSize(g, {}))).toEqual([3, 1, 1]);
    expect(l.kernel.source).toContain("__shared__ val_t shv[9];");
    const s = emitTopk(topk("sym", "f32", [3, "tokens"], 2).values).launches[0]!;
    expect(s.args.at(-1)).toEqual({ kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } });
  });

  it("the sibling pair writes values and indices in one launch", () => {
    const { values, indices } = topk("logits", "bf16", ["tokens", 32], 4);
    const pair = emitTopkPair(indices, values);
    expect(pair.launches[0]!.args.slice(0, 3)).toEqual([{ kind: "sibling", result: "values" }, { kind: "output" }, { kind: "input", index: 0 }]);
    expect(pair.launches[0]!.kernel.source).toContain("unsigned short* __restrict__ values, int* __restrict__ indices");
    expect(() => emitTopkPair(values, indices)).toThrow(/"indices" node and then the "values" node/);
    expect(() => emitTopkPair(indices, topk("other", "bf16", ["tokens", 32], 4).values)).toThrow(/not siblings/);
  });
});

describeNvrtc("topk kernels compile (NVRTC)", () => {
  it("gpt-oss: router top-4 of 32 (20b) and 128 (120b) values, indices and the pair; greedy arg-max over 201088; block and split generic k", async () => {
    const r20 = topk("r20", "bf16", ["tokens", 32], 4);
    const r120 = topk("r120", "bf16", ["tokens", 128], 4);
    const kernels = [
      emitTopk(r20.values), emitTopk(r20.indices), emitTopkPair(r20.indices, r20.values) as unknown as NodeKernels, emitTopk(r120.indices),
      emitTopk(topk("vocab", "bf16", ["rows", 201088], 1).indices), emitTopk(topk("vocabf", "f32", ["rows", 201088], 1).indices),
      emitTopk(topk("blk", "f32", ["rows", 5000], 8).values), emitTopk(topk("spl", "bf16", ["rows", 201088], 50).values),
      emitTopk(topk("ints", "i32", ["tokens", 37], 5).indices),
    ];
    expect(await compileNodeKernels(kernels)).toBe(kernels.reduce((n, k) => n + k.launches.length, 0));
  });
});

interface Case {
  readonly name: string;
  readonly pair: { values: NodeOf<"topk">; indices: NodeOf<"topk"> };
  readonly sizes?: readonly number[];
  /** Values drawn from a few levels (ties) and NaNs. */
  readonly ties?: boolean;
}

function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

/** The pair launch as the kernels of one result: the other result goes to scratch. */
function pairAs(pair: NodeKernels, want: "values" | "indices", otherBytes: { dims: readonly string[]; scale: number; divisor: number }): NodeKernels {
  const extra = pair.scratchBytes.length;
  return {
    scratchBytes: [...pair.scratchBytes, otherBytes],
    launches: pair.launches.map((l) => ({
      ...l,
      args: l.args.map((a): ArgBinding => {
        if (a.kind === "sibling") return want === "values" ? { kind: "output" } : { kind: "scratch", index: extra };
        if (a.kind === "output" && want === "values") return { kind: "scratch", index: extra };
        return a as ArgBinding;
      }),
    })),
  };
}

async function runCase(c: Case, tokens: number): Promise<void> {
  const symbols = { tokens };
  const x = c.pair.values.inputs[0]!;
  if (x.op !== "input") throw new Error("topk cases read an input");
  const rand = seededRandom(seedOf(`${c.name}#${tokens}`));
  const shape = evalShape(x.shape, symbols);
  const t: HostTensor = randomTensor(x.dtype, shape, rand, x.dtype === "i32" ? -20 : -3, x.dtype === "i32" ? 20 : 3);
  if (c.ties) for (let i = 0; i < t.data.length; i++) t.data[i] = i % 17 === 5 && x.dtype !== "i32" ? NaN : Math.round(t.data[i]! * 2) / 2;
  const inputs = { [x.attrs.name]: t };
  const rows = numElements(shape.slice(0, -1));
  const k = c.pair.values.attrs.k;
  for (const node of [c.pair.values, c.pair.indices]) {
    const ref = interpretNode(node, { inputs }, symbols);
    expectClose(await runNodeKernels(node, emitTopk(node), [t], symbols), ref, 0, `${c.name} ${node.attrs.result} at tokens = ${tokens}`);
    const pair = emitTopkPair(c.pair.indices, c.pair.values);
    const other = node.attrs.result === "values" ? 4 : x.dtype === "i32" ? 4 : x.dtype === "f32" ? 4 : 2;
    const viaPair = pairAs(pair, node.attrs.result, { dims: [], scale: rows * k * other, divisor: 1 });
    expectClose(await runNodeKernels(node, viaPair, [t], symbols), ref, 0, `${c.name} ${node.attrs.result} through the pair at tokens = ${tokens}`);
  }
}

function cases(): Case[] {
  return [
    { name: "router top-4 of 32, bf16", pair: topk("r32", "bf16", ["tokens", 32], 4), ties: true },
    { name: "router top-4 of 32, bf16, distinct values", pair: topk("r32", "bf16", ["tokens", 32], 4) },
    { name: "router top-4 of 128, f32", pair: topk("r128", "f32", ["tokens", 128], 4), ties: true },
    { name: "top-7 of 50, f32 (scalar loads)", pair: topk("w50", "f32", ["tokens", 50], 7), ties: true },
    { name: "top-5 of 37, i32", pair: topk("i37", "i32", ["tokens", 37], 5), ties: true },
    { name: "top-3 of 1500, bf16 (block per row)", pair: topk("b1500", "bf16", ["tokens", 1500], 3), ties: true, sizes: [1, 3, 50, 783] },
    { name: "top-1 along a symbolic axis, f32 [3, tokens]", pair: topk("sym", "f32", [3, "tokens"], 1), ties: true },
    { name: "top-2 along a symbolic axis, bf16 [2, tokens]", pair: topk("sym2", "bf16", [2, "tokens"], 2), ties: true, sizes: [3, 50, 783, 4096] },
    { name: "arg-max over 201088, bf16 (two passes)", pair: topk("vocab", "bf16", ["tokens", 201088], 1), sizes: [1, 3, 20] },
    { name: "arg-max over 201088, f32, ties and NaNs", pair: topk("vocabf", "f32", ["tokens", 201088], 1), ties: true, sizes: [1, 3] },
    { name: "top-5 of 40000, f32 (two passes)", pair: topk("t40k", "f32", ["tokens", 40000], 5), ties: true, sizes: [1, 3, 20] },
  ];
}

describeGpu("topk kernels match the interpreter (GPU)", () => {
  const all = cases();
  beforeAll(async () => {
    const ks = all.flatMap((c) => [emitTopk(c.pair.values), emitTopk(c.pair.indices), emitTopkPair(c.pair.indices, c.pair.values) as unknown as NodeKernels]);
    await compileKernels(ks.flatMap((k) => k.launches.map((l) => l.kernel)), { arch: Device.open(0).info.arch, cache: false });
  }, 300_000);
  for (const c of all) {
    it(c.name, async () => {
      for (const n of c.sizes ?? SIZES) await runCase(c, n);
    }, 120_000);
  }
});
