// Movement codegen (transpose, slice, concat, gather, scatter): index mapping, vector widths and
// launch geometry (pure); the gpt-oss-20b specializations compile (NVRTC); every op bit-exact against
// the interpreter at awkward token counts, out-of-range and repeated indices included (GPU).
import { beforeAll, describe, expect, it } from "vitest";
import { evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import { MOVEMENT_EMITTERS, emitConcat, emitGather, emitScatter, emitSlice, emitTranspose } from "../../src/codegen/movement.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type Node, NodeTable } from "../../src/ir/node.js";
import { type Shape, type SymbolValues, evalShape } from "../../src/ir/shape.js";
import { Device, compileKernels } from "../../runtime/index.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

const table = new NodeTable();
const input = (name: string, dtype: DType, shape: Shape) => table.make("input", { name, dtype, shape }, []);
const SIZES = [1, 3, 50, 783, 4096];

const transpose = (x: Node, perm: number[]) => table.make("transpose", { perm }, [x]);
const slice = (x: Node, axis: number, start: number, end: number | string, step = 1) => table.make("slice", { axis, start, end, step }, [x]);
const concat = (xs: Node[], axis: number) => table.make("concat", { axis }, xs);
const gather = (x: Node, idx: Node, axis = 0) => table.make("gather", { axis }, [x, idx]);
const scatter = (x: Node, idx: Node, upd: Node, axis = 0) => table.make("scatter", { axis }, [x, idx, upd]);

describe("movement codegen (pure)", () => {
  it("reshape has no kernel (it is a view)", () => {
    expect(Object.keys(MOVEMENT_EMITTERS).sort()).toEqual(["concat", "gather", "scatter", "slice", "transpose"]);
  });

  it("a transpose that keeps the last dim is a strided copy with 16-byte vectors", () => {
    const k = emitTranspose(transpose(input("q", "f32", ["tokens", 8, 64]), [1, 0, 2]));
    const l = k.launches[0]!;
    expect(l.kernel.family).toBe("elementwise");
    expect(l.kernel.source).toContain("const u64 n0 = 8ull;");
    expect(l.kernel.source).toContain("const u64 off0 = c0 * 64ull + c1 * 512ull + c2;");
    expect(l.kernel.source).toContain("*reinterpret_cast<const uint4*>(in0 + off0)");
    expect(l.grid.map((g) => evalSize(g, { tokens: 50 }))).toEqual([Math.ceil((50 * 512) / 4 / 256), 1, 1]);
  });

  it("a transpose that moves the last dim goes through 32×32 shared-memory tiles", () => {
    const k = emitTranspose(transpose(input("m", "bf16", ["tokens", 2880]), [1, 0]));
    const l = k.launches[0]!;
    expect(l.kernel.family).toBe("movement");
    expect(l.block).toEqual([32, 8, 1]);
    expect(l.grid.map((g) => evalSize(g, { tokens: 783 }))).toEqual([90, Math.ceil(783 / 32), 1]);
    expect(l.kernel.source).toContain("__shared__ unsigned short tile[32][33];");
    const sym = emitTranspose(transpose(input("m2", "f32", [5, "tokens"]), [1, 0])).launches[0]!;
    expect(sym.grid.map((g) => evalSize(g, { tokens: 783 }))).toEqual([Math.ceil(783 / 32), 1, 1]);
    const batched = emitTranspose(transpose(input("m3", "f32", [4, "tokens", 6]), [0, 2, 1])).launches[0]!;
    expect(batched.grid.map((g) => evalSize(g, { tokens: 100 }))).toEqual([4, 4, 1]);
    expect(batched.kernel.source).toContain("outBase += c * 6ull * (u64)s0;");
  });

  it("slices bake start and step into the source offset and stay vectorized when aligned", () => {
    const half = emitSlice(slice(input("r", "bf16", ["tokens", 8, 64]), 2, 32, 64)).launches[0]!.kernel.source;
    expect(half).toContain("const u64 off0 = 32ull + c0 * 64ull + c1;");
    expect(half).toContain("uint4");
    const odd = emitSlice(slice(input("s", "bf16", ["tokens", 10]), 1, 1, 9, 2)).launches[0]!.kernel.source;
    expect(odd).toContain("in0[off0 + j * 2ull]");
    const sym = emitSlice(slice(input("p", "f32", [3, "tokens+1"]), 1, 0, "tokens"));
    expect(sym.launches[0]!.args.slice(2).map((a) => (a.kind === "i32" ? a.value.dims : []))).toEqual([["tokens"], ["tokens+1"]]);
  });

  it("concat: one launch over the output, vector width from every operand's width", () => {
    const kv = emitConcat(concat([input("kc", "bf16", ["past", 8, 64]), input("kn", "bf16", ["tokens", 8, 64])], 0)).launches[0]!;
    expect(kv.args.slice(0, 3)).toEqual([{ kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }]);
    expect(kv.kernel.source).toContain("*reinterpret_cast<uint4*>(out + e)");
    expect(kv.grid.map((g) => evalSize(g, { past: 37, tokens: 50 }))).toEqual([Math.ceil((87 * 512) / 8 / 256), 1, 1]);
    const sink = emitConcat(concat([input("sc", "f32", [64, "tokens", "past+tokens"]), input("sk", "f32", [64, "tokens", 1])], 2)).launches[0]!;
    expect(sink.kernel.source).toContain("*reinterpret_cast<unsigned int*>(out + e)");
  });

  it("the embedding gather moves 16 bytes per thread and needs no division by the token count", () => {
    const k = emitGather(gather(input("embed", "bf16", [201088, 2880]), input("ids", "i32", ["tokens"])));
    const l = k.launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 50 }))).toEqual([Math.ceil((50 * 2880) / 8 / 256), 1, 1]);
    expect(l.kernel.source).toContain("const u64 o = 0, j = t;");
    expect(l.kernel.source).toContain("uint4 v = {0u, 0u, 0u, 0u};");
    expect(l.kernel.source).toContain("const u64 size = 201088ull;");
  });

  it("scatter: copy with owner reset, claim, write; owner is scratch i32[size]", () => {
    const k = emitScatter(scatter(input("cache", "bf16", ["past", 8, 64]), input("slots", "i32", ["tokens"]), input("upd", "bf16", ["tokens", 8, 64])));
    expect(k.launches.map((l) => l.kernel.entry.replace(/^.*_/, ""))).toEqual(["copy", "claim", "write"]);
    expect(k.scratchBytes.map((s) => evalSize(s, { past: 37 }))).toEqual([37 * 4]);
    expect(k.launches[0]!.args.slice(0, 3)).toEqual([{ kind: "output" }, { kind: "input", index: 0 }, { kind: "scratch", index: 0 }]);
    expect(k.launches[1]!.args.slice(0, 2)).toEqual([{ kind: "input", index: 1 }, { kind: "scratch", index: 0 }]);
    expect(k.launches[2]!.args.slice(0, 4)).toEqual([{ kind: "output" }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: 0 }]);
    expect(k.launches[0]!.kernel.source).toContain("if (out != x && e <");
    expect(new Set(k.launches.map((l) => l.kernel.source)).size).toBe(1);
  });
});

/** gpt-oss-20b's movement nodes (bf16; decode and prefill shapes). */
function gptOssNodes(): Node[] {
  const kvh = 8;
  const hd = 64;
  return [
    concat([input("kc", "bf16", ["past", kvh, hd]), input("kn", "bf16", ["tokens", kvh, hd])], 0),
    concat([input("kc", "bf16", ["past", kvh, hd]), input("k1", "bf16", [1, kvh, hd])], 0),
    concat([input("pc", "i32", ["windowPast"]), input("pn", "i32", ["tokens"])], 0),
    concat([input("r1", "bf16", ["tokens", 64, 32]), input("r2", "bf16", ["tokens", 64, 32])], 2),
    concat([input("sc", "f32", [64, "tokens", "past+tokens"]), input("sk", "f32", [64, "tokens", 1])], 2),
    slice(input("qr", "bf16", ["tokens", 64, 64]), 2, 32, 64),
    slice(input("gu", "bf16", ["tokens", 4, 2880, 2]), 3, 1, 2),
    slice(input("pr", "f32", [64, "tokens", "past+tokens+1"]), 2, 0, "past+tokens"),
    transpose(input("qf", "f32", ["tokens", 8, 8, 64]), [1, 2, 0, 3]),
    transpose(input("kf", "f32", ["past+tokens", 8, 64]), [1, 0, 2]),
    transpose(input("hm", "bf16", ["tokens", 2880]), [1, 0]),
    gather(input("embed", "bf16", [201088, 2880]), input("ids", "i32", ["tokens"])),
    gather(input("x", "bf16", ["tokens", 2880]), input("rows", "i32", ["rows"])),
    gather(input("gub", "bf16", [32, 5760]), input("experts", "i32", ["tokens", 4])),
    scatter(input("cache", "bf16", [4096, kvh, hd]), input("slots", "i32", ["tokens"]), input("kn", "bf16", ["tokens", kvh, hd])),
  ];
}

const EMIT: Record<string, (n: never) => NodeKernels> = MOVEMENT_EMITTERS as never;

describeNvrtc("movement kernels compile (NVRTC)", () => {
  it("gpt-oss-20b: KV and rope concats, sink column, rope/swiglu/softmax slices, attention transposes, embedding and row gathers, KV scatter", async () => {
    const kernels = gptOssNodes().map((n) => EMIT[n.op]!(n as never));
    expect(await compileNodeKernels(kernels)).toBe(kernels.reduce((n, k) => n + k.launches.length, 0));
  });
});

// ---- GPU ------------------------------------------------------------------------------------------

interface Case {
  readonly name: string;
  readonly node: Node;
  readonly kernels: NodeKernels;
  /** Index inputs take values in [lo, hi). */
  readonly indexRange?: readonly [number, number];
  readonly sizes?: readonly number[];
  readonly symbols?: (tokens: number) => SymbolValues;
}

function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

function leafName(n: Node): string {
  if (n.op !== "input") throw new Error(`test nodes read inputs only, got ${n.op}`);
  return n.attrs.name;
}

async function runCase(c: Case, tokens: number): Promise<void> {
  const symbols = c.symbols?.(tokens) ?? { tokens, past: 37 };
  const rand = seededRandom(seedOf(`${c.name}#${tokens}`));
  const named: Record<string, HostTensor> = {};
  c.node.inputs.forEach((x, i) => {
    const shape = evalShape(x.shape, symbols);
    const isIndex = (c.node.op === "gather" || c.node.op === "scatter") && i === 1;
    const [lo, hi] = isIndex ? c.indexRange! : x.dtype === "u8" ? [0, 256] : x.dtype === "i32" || x.dtype === "i64" ? [-1000, 1000] : [-3, 3];
    named[leafName(x)] ??= randomTensor(x.dtype, shape, rand, lo, hi);
  });
  const gpu = await runNodeKernels(c.node, c.kernels, c.node.inputs.map((x) => named[leafName(x)]!), symbols);
  expectClose(gpu, interpretNode(c.node, { inputs: named }, symbols), 0, `${c.name} at tokens = ${tokens}`);
}

function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, node: Node, extra: Partial<Case> = {}) => out.push({ name, node, kernels: EMIT[node.op]!(node as never), ...extra });
  add("transpose f32 [tokens, 8, 64] [1, 0, 2]", transpose(input("t1", "f32", ["tokens", 8, 64]), [1, 0, 2]));
  add("transpose f32 [tokens, 8, 8, 64] [1, 2, 0, 3]", transpose(input("t2", "f32", ["tokens", 8, 8, 64]), [1, 2, 0, 3]));
  add("transpose bf16 [tokens, 50] [1, 0] (tiled)", transpose(input("t3", "bf16", ["tokens", 50]), [1, 0]));
  add("transpose f32 [4, tokens, 6] [0, 2, 1] (tiled, batch)", transpose(input("t4", "f32", [4, "tokens", 6]), [0, 2, 1]));
  add("transpose f32 [5, tokens] [1, 0] (tiled, symbolic A)", transpose(input("t5", "f32", [5, "tokens"]), [1, 0]));
  add("transpose u8 [tokens, 5, 7] [2, 1, 0] (tiled, batch)", transpose(input("t6", "u8", ["tokens", 5, 7]), [2, 1, 0]));
  add("transpose i64 [tokens, 3] [1, 0] (tiled)", transpose(input("t7", "i64", ["tokens", 3]), [1, 0]));
  add("slice bf16 [tokens, 8, 64] axis 2 [32:64]", slice(input("s1", "bf16", ["tokens", 8, 64]), 2, 32, 64));
  add("slice f32 [3, tokens+1] axis 1 [0:tokens]", slice(input("s2", "f32", [3, "tokens+1"]), 1, 0, "tokens"));
  add("slice bf16 [tokens, 10] axis 1 [1:9:2]", slice(input("s3", "bf16", ["tokens", 10]), 1, 1, 9, 2));
  add("slice f32 [tokens, 6] axis 0 [0:1]", slice(input("s4", "f32", ["tokens", 6]), 0, 0, 1));
  add("slice i32 [tokens, 4, 6, 2] axis 3 [1:2]", slice(input("s5", "i32", ["tokens", 4, 6, 2]), 3, 1, 2));
  add("concat bf16 [past, 8, 64] ++ [tokens, 8, 64] axis 0", concat([input("c1a", "bf16", ["past", 8, 64]), input("c1b", "bf16", ["tokens", 8, 64])], 0));
  add("concat bf16 [past = 0, 8, 64] ++ [tokens, 8, 64] axis 0 (empty cache)", concat([input("c1a", "bf16", ["past", 8, 64]), input("c1b", "bf16", ["tokens", 8, 64])], 0), { symbols: (tokens) => ({ tokens, past: 0 }), sizes: [1, 50] });
  add("concat i32 [past] ++ [tokens]", concat([input("c2a", "i32", ["past"]), input("c2b", "i32", ["tokens"])], 0));
  add("concat f32 [4, tokens, past+tokens] ++ [4, tokens, 1] axis 2 (sink column)", concat([input("c3a", "f32", [4, "tokens", "past+tokens"]), input("c3b", "f32", [4, "tokens", 1])], 2), { sizes: [1, 3, 50, 783] });
  add("concat bf16 [tokens, 8, 32] ++ [tokens, 8, 32] axis 2 (rope)", concat([input("c4a", "bf16", ["tokens", 8, 32]), input("c4b", "bf16", ["tokens", 8, 32])], 2));
  add("concat f32 [tokens, 2] ++ [tokens, 3] ++ [tokens, 1] axis 1", concat([input("c5a", "f32", ["tokens", 2]), input("c5b", "f32", ["tokens", 3]), input("c5c", "f32", ["tokens", 1])], 1));
  add("gather bf16 [1000, 2880] by i32 [tokens] (embedding; ids out of range read 0)", gather(input("g1", "bf16", [1000, 2880]), input("g1i", "i32", ["tokens"])), { indexRange: [-3, 1010] });
  add("gather f32 [50, 7] axis 1 by i32 [tokens]", gather(input("g2", "f32", [50, 7]), input("g2i", "i32", ["tokens"]), 1), { indexRange: [-2, 9] });
  add("gather bf16 [32, 576] by i32 [tokens, 4] (expert bias)", gather(input("g3", "bf16", [32, 576]), input("g3i", "i32", ["tokens", 4])), { indexRange: [0, 32] });
  add("gather f32 [20, 3] by i64 [tokens]", gather(input("g4", "f32", [20, 3]), input("g4i", "i64", ["tokens"])), { indexRange: [-5, 25] });
  add("gather u8 [tokens, 6] axis 1 by i32 [5] (symbolic outer)", gather(input("g5", "u8", ["tokens", 6]), input("g5i", "i32", [5]), 1), { indexRange: [-1, 7] });
  add("scatter bf16 [64, 8, 64] at i32 [tokens] (repeats: the last wins; out of range skipped)", scatter(input("k1", "bf16", [64, 8, 64]), input("k1i", "i32", ["tokens"]), input("k1u", "bf16", ["tokens", 8, 64])), { indexRange: [-4, 70] });
  add("scatter f32 [3, 40] axis 1 at i32 [tokens]", scatter(input("k2", "f32", [3, 40]), input("k2i", "i32", ["tokens"]), input("k2u", "f32", [3, "tokens"]), 1), { indexRange: [-2, 42] });
  add("scatter i32 [tokens, 5] at i64 [7]", scatter(input("k3", "i32", ["tokens", 5]), input("k3i", "i64", [7]), input("k3u", "i32", [7, 5])), { indexRange: [-1, 5] });
  return out;
}

describeGpu("movement kernels match the interpreter bit for bit (GPU)", () => {
  const all = cases();
  beforeAll(async () => {
    await compileKernels(all.flatMap((c) => c.kernels.launches.map((l) => l.kernel)), { arch: Device.open(0).info.arch, cache: false });
  }, 300_000);
  for (const c of all) {
    it(c.name, async () => {
      for (const n of c.sizes ?? SIZES) await runCase(c, n);
    });
  }
});
