// Reduce codegen: mode choice, vector widths and launch geometry (pure); the gpt-oss-20b reductions
// compile (NVRTC); sum/max/min/mean on every kind of axis against the interpreter (GPU).
import { beforeAll, describe, expect, it } from "vitest";
import { evalSize } from "../../src/lower/kernel.js";
import { emitReduce } from "../../src/codegen/reduce.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type Node, type NodeOf, NodeTable } from "../../src/ir/node.js";
import type { ReduceFn } from "../../src/ir/ops.js";
import { type Shape, evalShape } from "../../src/ir/shape.js";
import { Device, compileKernels } from "../../runtime/index.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

const table = new NodeTable();
const input = (name: string, dtype: DType, shape: Shape) => table.make("input", { name, dtype, shape }, []);
const reduce = (fn: ReduceFn, x: Node, axis: number, keepDims = false): NodeOf<"reduce"> => table.make("reduce", { fn, axis, keepDims }, [x]);
const SIZES = [1, 3, 50, 783, 4096];

describe("reduce codegen (pure)", () => {
  it("long rows: one block per row, 16-byte loads, mean divides the f32 sum", () => {
    const l = emitReduce(reduce("mean", input("x", "f32", ["tokens", 2880]), 1, true)).launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 783 }))).toEqual([783, 1, 1]);
    expect(l.block).toEqual([256, 1, 1]);
    expect(l.kernel.source).toContain("union { uint4 raw; float e[4]; } v;");
    expect(l.kernel.source).toContain("__fdiv_rn(v, (float)size)");
    expect(l.kernel.source).toContain("__shared__ acc_t part[8];");
  });

  it("short static rows: one warp per row, 8 rows per block, spread over the lanes before loads widen", () => {
    const l = emitReduce(reduce("max", input("r", "bf16", ["tokens", 4]), 1, true)).launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 50 }))).toEqual([7, 1, 1]);
    expect(l.kernel.source).toContain("union { unsigned short raw; unsigned short e[1]; } v;");
    expect(emitReduce(reduce("sum", input("r2", "bf16", ["tokens", 512]), 1)).launches[0]!.kernel.source).toContain("union { uint4 raw; unsigned short e[8]; } v;");
    expect(l.kernel.source).toContain("(a != a || b != b) ? __int_as_float(0x7fc00000)");
    expect(l.kernel.source).not.toContain("__shared__");
  });

  it("softmax rows of symbolic length take a block each; the length is an argument", () => {
    const k = emitReduce(reduce("sum", input("s", "f32", [64, "tokens", "past+tokens+1"]), 2, true));
    const l = k.launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 3, past: 10 }))).toEqual([192, 1, 1]);
    expect(l.args.slice(2).map((a) => (a.kind === "i32" ? a.value.dims[0] : a.kind))).toEqual(["tokens", "past+tokens+1"]);
  });

  it("an inner axis: threads walk the contiguous dim, the axis is split across threadIdx.y", () => {
    const moe = emitReduce(reduce("sum", input("m", "bf16", ["tokens", 4, 2880]), 1)).launches[0]!;
    expect(moe.block).toEqual([64, 4, 1]);
    expect(moe.grid.map((g) => evalSize(g, { tokens: 10 }))).toEqual([60, 1, 1]);
    expect(moe.kernel.source).toContain("__shared__ acc_t part[4][512];");
    const first = emitReduce(reduce("sum", input("f", "f32", ["tokens", 40]), 0)).launches[0]!;
    expect(first.block).toEqual([32, 8, 1]);
    expect(first.grid.map((g) => evalSize(g, { tokens: 10 }))).toEqual([1, 1, 1]);
    const symInner = emitReduce(reduce("max", input("g", "f32", [3, 5, "tokens"]), 1)).launches[0]!;
    expect(symInner.grid.map((g) => evalSize(g, { tokens: 1000 }))).toEqual([Math.ceil(1000 / 32), 3, 1]);
  });

  it("integers accumulate in i64 and wrap into their dtype", () => {
    const src = emitReduce(reduce("sum", input("i", "i32", ["tokens", 7]), 1)).launches[0]!.kernel.source;
    expect(src).toContain("typedef long long acc_t;");
    expect(src).toContain("return (int)(v);");
  });
});

describeNvrtc("reduce kernels compile (NVRTC)", () => {
  it("gpt-oss-20b: rmsnorm mean, softmax max/sum (prefill and decode rows), router-weight softmax, MoE weighted sum; f32 and bf16", async () => {
    const kernels = [
      reduce("mean", input("x", "f32", ["tokens", 2880]), 1, true),
      reduce("max", input("s", "f32", [64, "tokens", "past+tokens+1"]), 2, true),
      reduce("sum", input("s", "f32", [64, "tokens", "past+tokens+1"]), 2, true),
      reduce("max", input("d", "f32", [64, 1, "past+2"]), 2, true),
      reduce("max", input("w", "bf16", ["tokens", 4]), 1, true),
      reduce("sum", input("w", "bf16", ["tokens", 4]), 1, true),
      reduce("sum", input("m", "bf16", ["tokens", 4, 2880]), 1),
      reduce("sum", input("mf", "f32", ["tokens", 4, 2880]), 1),
      reduce("min", input("i", "i32", ["tokens", 7]), 0),
    ].map(emitReduce);
    expect(await compileNodeKernels(kernels)).toBe(kernels.length);
  });
});

interface Case {
  readonly name: string;
  readonly node: NodeOf<"reduce">;
  readonly tol: number;
  readonly nan?: boolean;
  readonly sizes?: readonly number[];
}

function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

async function runCase(c: Case, tokens: number): Promise<void> {
  const symbols = { tokens, past: 37 };
  const x = c.node.inputs[0]!;
  if (x.op !== "input") throw new Error("reduce cases read an input");
  const rand = seededRandom(seedOf(`${c.name}#${tokens}`));
  const [lo, hi] = x.dtype === "u8" ? [0, 256] : x.dtype === "i32" ? [-1e6, 1e6] : [-3, 3];
  const t: HostTensor = randomTensor(x.dtype, evalShape(x.shape, symbols), rand, lo, hi);
  if (c.nan) for (let i = 7; i < t.data.length; i += 997) t.data[i] = NaN;
  const gpu = await runNodeKernels(c.node, emitReduce(c.node), [t], symbols);
  expectClose(gpu, interpretNode(c.node, { inputs: { [x.attrs.name]: t } }, symbols), c.tol, `${c.name} at tokens = ${tokens}`);
}

function cases(): Case[] {
  const tol = (fn: ReduceFn, d: DType) => (fn === "max" || fn === "min" ? 0 : d === "f32" ? 1e-5 : 1e-2);
  const out: Case[] = [];
  const add = (fn: ReduceFn, dt: DType, shape: Shape, axis: number, extra: Partial<Case> = {}) => {
    const node = reduce(fn, input(`x_${dt}_${shape.join("x")}`, dt, shape), axis, true);
    out.push({ name: `${fn} ${dt} [${shape.join(", ")}] axis ${axis}`, node, tol: tol(fn, dt), ...extra });
  };
  add("mean", "f32", ["tokens", 2880], 1); // rmsnorm: block per row
  add("mean", "bf16", ["tokens", 64], 1);
  add("max", "f32", [3, "tokens", 41], 2, { nan: true }); // warp per row, NaN propagates
  add("sum", "f32", [3, "tokens", 41], 2);
  add("max", "bf16", ["tokens", 4], 1); // router-weight softmax
  add("sum", "bf16", ["tokens", 4], 1);
  add("max", "f32", ["tokens", 1500], 1, { nan: true }); // block per row
  add("sum", "f32", [3, "tokens"], 1); // symbolic row length
  add("max", "f32", [2, "tokens+past"], 1);
  add("sum", "bf16", ["tokens", 4, 288], 1); // MoE weighted sum: strided
  add("sum", "f32", ["tokens", 40], 0); // symbolic axis, strided
  add("min", "f32", ["tokens", 3, 5], 1, { nan: true }); // strided, scalar loads
  add("min", "f16", ["tokens", 20], 1);
  add("max", "f32", [2, 5, "tokens"], 1); // symbolic inner
  add("sum", "i32", ["tokens", 7], 1);
  add("max", "i32", ["tokens", 5], 0);
  add("sum", "u8", ["tokens", 9], 1); // wraps modulo 256
  return out;
}

describeGpu("reduce kernels match the interpreter (GPU)", () => {
  const all = cases();
  beforeAll(async () => {
    await compileKernels(all.flatMap((c) => emitReduce(c.node).launches.map((l) => l.kernel)), { arch: Device.open(0).info.arch, cache: false });
  }, 300_000);
  for (const c of all) {
    it(c.name, async () => {
      for (const n of c.sizes ?? SIZES) await runCase(c, n);
    });
  }
});
