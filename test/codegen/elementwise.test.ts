// Elementwise codegen: index mapping and emitted sources (pure); every elementwise specialization of
// gpt-oss-20b and the tiny model (unfused and after the pass pipeline) emits, and the generic families'
// kernels compile (NVRTC); every op against the interpreter at awkward token counts, and the
// bandwidth of the generic kernels at gpt-oss-20b sizes (GPU).
import { randomFillSync } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { findBuiltinModel } from "../../models/index.js";
import { DEQUANT_EMITTERS } from "../../src/codegen/dequant.js";
import {
  ELEMENTWISE_EMITTERS, ONE, ZERO, broadcastStrides, cLiteral, collapseDims, computeType, emitBinary, emitBroadcast, emitCast, emitCompare, emitConstant,
  emitFusedElementwise, emitIota, emitLiteral, emitTernary, emitUnary, monoOf,
} from "../../src/codegen/elementwise.js";
import { type NodeKernels, evalSize } from "../../src/lower/kernel.js";
import { MOVEMENT_EMITTERS, emitConcat, emitGather, emitTranspose } from "../../src/codegen/movement.js";
import { REDUCE_EMITTERS, emitReduce } from "../../src/codegen/reduce.js";
import { TOPK_EMITTERS, emitTopk } from "../../src/codegen/topk.js";
import { emitDequantMxfp4 } from "../../src/codegen/dequant.js";
import { type DType, dtypeBytes } from "../../src/ir/dtype.js";
import { graphNodes } from "../../src/ir/graph.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type Node, NodeTable } from "../../src/ir/node.js";
import type { BinaryFn, CompareFn, FusedInstr, UnaryFn } from "../../src/ir/ops.js";
import { type Shape, type SymbolValues, evalShape, numElements } from "../../src/ir/shape.js";
import { runPipeline } from "../../src/passes/pipeline.js";
import { Arena, Device, type Stream, compileKernels, loadKernels } from "../../runtime/index.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

const table = new NodeTable();
const input = (name: string, dtype: DType, shape: Shape) => table.make("input", { name, dtype, shape }, []);
const SIZES = [1, 3, 50, 783, 4096];

describe("elementwise codegen (pure)", () => {
  it("merges dims every source walks contiguously and drops size-1 dims", () => {
    const same = collapseDims([monoOf("tokens"), monoOf(2880)], [broadcastStrides(["tokens", 2880], ["tokens", 2880])]);
    expect(same.sizes).toEqual([{ c: 2880, syms: ["tokens"] }]);
    expect(same.strides).toEqual([[ONE]]);
    const bias = collapseDims([monoOf("tokens"), monoOf(2880)], [broadcastStrides([2880], ["tokens", 2880]), broadcastStrides(["tokens", 2880], ["tokens", 2880])]);
    expect(bias.sizes).toEqual([monoOf("tokens"), monoOf(2880)]);
    expect(bias.strides).toEqual([[ZERO, ONE], [monoOf(2880), ONE]]);
    const col = collapseDims([monoOf(1), monoOf("tokens"), monoOf(1), monoOf(64)], [broadcastStrides(["tokens", 1, 1], [1, "tokens", 1, 64])]);
    expect(col.sizes).toEqual([monoOf("tokens"), monoOf(64)]);
    expect(col.strides).toEqual([[ONE, ZERO]]);
    expect(collapseDims([], [[], []]).sizes).toEqual([ONE]);
  });

  it("a same-shape bf16 add: one flat dim, 16-byte vectors, no FMA contraction, rounding to bf16", () => {
    const a = input("a", "bf16", ["tokens", 2880]);
    const k = emitBinary(table.make("binary", { fn: "add" }, [a, input("b", "bf16", ["tokens", 2880])]));
    expect(k.launches).toHaveLength(1);
    const l = k.launches[0]!;
    expect(l.grid.map((g) => evalSize(g, { tokens: 50 }))).toEqual([Math.ceil((50 * 2880) / 8 / 256), 1, 1]);
    expect(l.block).toEqual([256, 1, 1]);
    expect(l.args).toEqual([{ kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }]);
    const src = l.kernel.source;
    expect(src).toContain(`extern "C" __global__ void __launch_bounds__(256) ${l.kernel.entry}(`);
    expect(src).toContain("const u64 n0 = 2880ull * (u64)s0;");
    expect(src).toContain("*reinterpret_cast<const uint4*>(in0 + off0)");
    expect(src).toContain("tsgc_round_bf16(__fadd_rn(r0, r1))");
    expect(src).not.toContain("% n");
    expect(src).not.toMatch(/#include\s*</);
    expect(l.kernel.family).toBe("elementwise");
  });

  it("a bias broadcast decomposes the row index by a baked constant and loads the bias as a vector", () => {
    const k = emitBroadcast(table.make("broadcast", { shape: ["tokens", 2880] }, [input("bias", "bf16", [2880])]));
    const src = k.launches[0]!.kernel.source;
    expect(src).toContain("const u64 n1 = 2880ull;");
    expect(src).toContain("const u64 c1 = rest % n1;");
    expect(src).toContain("const u64 off0 = c1;");
    expect(src).toContain("v0.raw = *reinterpret_cast<const uint4*>(in0 + off0)");
    expect(src).toContain("o.e[j] = elementwise_broadcast_bf16_"); // a copy: raw bits, no conversion
    const col = emitBroadcast(table.make("broadcast", { shape: ["tokens", 2880] }, [input("rms", "f32", ["tokens", 1])]));
    expect(col.launches[0]!.kernel.source).toContain("const float x0 = in0[off0];"); // broadcast along the row: one load
  });

  it("kernels that differ only in which symbols they take share one source", () => {
    const mk = (s: string) => emitUnary(table.make("unary", { fn: "exp" }, [input(`x_${s}`, "f32", [64, "tokens", s])])).launches[0]!.kernel;
    expect(mk("past+tokens").source).toBe(mk("tokens+windowPast").source);
    expect(mk("past+tokens").entry).toBe(mk("tokens+windowPast").entry);
  });

  it("constants are exact C literals of their dtype", () => {
    expect(cLiteral("f32", -Infinity)).toBe("__int_as_float(0xff800000)");
    expect(cLiteral("f32", NaN)).toBe("__int_as_float(0x7fc00000)");
    expect(cLiteral("bf16", 1.702)).toBe("1.70312500f");
    expect(cLiteral("f32", 1e-5)).toBe("0.00000999999975f");
    expect(cLiteral("i32", -(2 ** 31))).toBe("(-2147483647 - 1)");
    expect(cLiteral("bool", 5)).toBe("1");
    const k = emitConstant(table.make("constant", { value: -Infinity, dtype: "f32", shape: [64, "tokens", "past+tokens"] }, []));
    expect(k.launches[0]!.args).toEqual([{ kind: "output" }, { kind: "i32", value: { dims: ["past+tokens"], scale: 1, divisor: 1 } }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }]);
  });

  it("iota and literal read no buffers; storage-only dtypes are rejected", () => {
    const io = emitIota(table.make("iota", { axis: 1, dtype: "i32", shape: [3, "tokens", 5] }, []));
    expect(io.launches[0]!.args).toEqual([{ kind: "output" }, { kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } }]);
    expect(io.launches[0]!.kernel.source).toContain("const u64 off0 = c1;");
    const lit = emitLiteral(table.make("literal", { data: [0.1, 2, 3], dtype: "f32", shape: [3] }, []));
    expect(lit.launches[0]!.kernel.source).toContain("__device__ const float table0[3] = {0.100000001f, 2.00000000f, 3.00000000f};");
    expect(() => computeType("fp4e2m1x2")).toThrow(/fp4e2m1x2 is storage-only; only dequantMxfp4 reads it/);
    expect(() => computeType("e8m0")).toThrow(/storage-only/);
  });
});

// ---- gpt-oss: every node of my families emits; their kernels compile --------------------------

const FAMILY_EMITTERS: Record<string, (n: never) => NodeKernels> = {
  ...ELEMENTWISE_EMITTERS, ...MOVEMENT_EMITTERS, ...REDUCE_EMITTERS, ...TOPK_EMITTERS, ...DEQUANT_EMITTERS,
} as never;

function emitAll(nodes: readonly Node[]): NodeKernels[] {
  return nodes.filter((n) => FAMILY_EMITTERS[n.op]).map((n) => FAMILY_EMITTERS[n.op]!(n as never));
}

/** One kernel per class: family, op label and dtype, whether it decomposes coordinates, whether it moves 16-byte vectors. */
function representatives(all: readonly NodeKernels[]): NodeKernels[] {
  const seen = new Map<string, NodeKernels>();
  for (const k of all) {
    const l = k.launches[0]!;
    const body = /_body\([^)]*\) \{\n([^}]*)\}/.exec(l.kernel.source)?.[1]?.replace(/\s+/g, " ") ?? "";
    const key = `${l.kernel.name.replace(/_[0-9a-f]{10}.*$/, "")} ${/const u64 c1 =/.test(l.kernel.source)} ${/uint4/.test(l.kernel.source)} ${k.launches.length} ${body}`;
    if (!seen.has(key)) seen.set(key, k);
  }
  return [...seen.values()];
}

function uniqueSources(all: readonly NodeKernels[]): NodeKernels[] {
  const seen = new Map<string, NodeKernels>();
  for (const k of all) seen.set(k.launches.map((l) => l.kernel.source).join("\0"), k);
  return [...seen.values()];
}

describe("gpt-oss graphs (pure)", () => {
  it("every primitive elementwise, movement, reduce, topk and dequant node of 20b and tiny emits kernels with valid bindings", () => {
    for (const [model, dtype] of [["gpt-oss-20b", "bf16"], ["gpt-oss-20b", "f32"], ["gpt-oss-tiny", "bf16"]] as const) {
      const nodes = graphNodes(findBuiltinModel(model).build({ dtype }));
      const mine = nodes.filter((n) => FAMILY_EMITTERS[n.op]);
      expect(mine.length).toBeGreaterThan(100);
      for (const n of mine) {
        const k = FAMILY_EMITTERS[n.op]!(n as never);
        expect(k.launches.length).toBeGreaterThan(0);
        for (const l of k.launches) {
          for (const a of l.args) {
            if (a.kind === "input") expect(a.index).toBeLessThan(n.inputs.length);
            if (a.kind === "scratch") expect(a.index).toBeLessThan(k.scratchBytes.length);
          }
          expect(l.kernel.source).toContain(`__global__ void __launch_bounds__(`);
          expect(l.kernel.source).toContain(` ${l.kernel.entry}(`);
        }
      }
    }
  });
});

describeNvrtc("generic kernels of gpt-oss-20b and tiny compile (NVRTC)", () => {
  it("one kernel of each class (family, op, dtype, index mapping, vector width, body) of the five generic families, from 20b and tiny after the pass pipeline and 20b unfused (bf16, f32)", async () => {
    const fused = ["gpt-oss-20b", "gpt-oss-tiny"].flatMap((m) => emitAll(graphNodes(runPipeline(findBuiltinModel(m).build({ dtype: "bf16" })).graph)));
    const unfused = (["bf16", "f32"] as const).flatMap((dtype) => emitAll(graphNodes(findBuiltinModel("gpt-oss-20b").build({ dtype }))));
    const kernels = representatives([...fused, ...unfused]);
    expect(kernels.length).toBeGreaterThan(40);
    const started = performance.now();
    expect(await compileNodeKernels(kernels)).toBe(kernels.reduce((n, k) => n + k.launches.length, 0));
    console.info(`compiled ${kernels.length} generic kernels, one per class of the ${uniqueSources([...fused, ...unfused]).length} distinct ones, in ${(performance.now() - started).toFixed(0)} ms`);
  }, 240_000);
});

// ---- GPU: each op against the interpreter -----------------------------------------------------

interface Case {
  readonly name: string;
  readonly node: Node;
  readonly kernels: NodeKernels;
  readonly tol: number;
  /** Values of input `name` for the given symbols. */
  readonly gen?: (name: string, dtype: DType, shape: number[], rand: () => number) => HostTensor | undefined;
  readonly sizes?: readonly number[];
}

function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

/** Random values: floats in [-3, 3), integers in [-50, 50), bools 0/1; every 13th float NaN when `nan`. */
function randomInput(dtype: DType, shape: number[], rand: () => number, opts: { lo?: number; hi?: number; nan?: boolean } = {}): HostTensor {
  const t = dtype === "bool" ? randomTensor("bool", shape, rand, 0, 2) : randomTensor(dtype, shape, rand, opts.lo ?? (dtype === "i32" || dtype === "i64" ? -50 : dtype === "u8" ? 0 : -3), opts.hi ?? (dtype === "i32" || dtype === "i64" ? 50 : dtype === "u8" ? 256 : 3));
  if (opts.nan) for (let i = 5; i < t.data.length; i += 13) t.data[i] = NaN;
  return t;
}

function leafName(n: Node): string {
  if (n.op !== "input") throw new Error(`test nodes read inputs only, got ${n.op}`);
  return n.attrs.name;
}

async function runCase(c: Case, tokens: number): Promise<number> {
  const symbols: SymbolValues = { tokens, past: 37 };
  const rand = seededRandom(seedOf(`${c.name}#${tokens}`));
  const named: Record<string, HostTensor> = {};
  for (const x of c.node.inputs) {
    const name = leafName(x);
    const shape = evalShape(x.shape, symbols);
    named[name] ??= c.gen?.(name, x.dtype, shape, rand) ?? randomInput(x.dtype, shape, rand);
  }
  const gpu = await runNodeKernels(c.node, c.kernels, c.node.inputs.map((x) => named[leafName(x)]!), symbols);
  const ref = interpretNode(c.node, { inputs: named }, symbols);
  expectClose(gpu, ref, c.tol, `${c.name} at tokens = ${tokens}`);
  let err = 0;
  let top = 0;
  ref.data.forEach((r, i) => {
    if (Number.isFinite(r)) top = Math.max(top, Math.abs(r));
    if (Number.isFinite(r) && Number.isFinite(gpu.data[i]!)) err = Math.max(err, Math.abs(r - gpu.data[i]!));
  });
  return top > 0 ? err / top : err;
}

const FLOATS = ["f32", "bf16"] as const;
const tolOf = (d: DType) => (d === "f32" ? 1e-5 : d === "f16" ? 1e-3 : d === "bf16" ? 1e-2 : 0);
const shape2 = (inner: number): Shape => ["tokens", inner];

function unaryCases(): Case[] {
  const fns: UnaryFn[] = ["exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "neg", "abs", "sin", "cos"];
  const cases: Case[] = [];
  for (const dt of [...FLOATS, "f16"] as const) {
    for (const fn of fns) {
      if (dt === "f16" && !["exp", "sigmoid", "rsqrt"].includes(fn)) continue;
      const node = table.make("unary", { fn }, [input(`u_${dt}`, dt, shape2(40))]);
      cases.push({ name: `unary ${fn} ${dt}`, node, kernels: emitUnary(node), tol: tolOf(dt) });
    }
  }
  for (const fn of ["neg", "abs"] as const) {
    for (const dt of ["i32", "i64"] as const) {
      const node = table.make("unary", { fn }, [input(`ui_${dt}`, dt, shape2(33))]);
      cases.push({ name: `unary ${fn} ${dt}`, node, kernels: emitUnary(node), tol: 0 });
    }
  }
  return cases;
}

function binaryCases(): Case[] {
  const fns: BinaryFn[] = ["add", "sub", "mul", "div", "min", "max", "pow"];
  const cases: Case[] = [];
  for (const dt of [...FLOATS, "i32", "u8"] as const) {
    for (const fn of fns) {
      const node = table.make("binary", { fn }, [input(`ba_${dt}`, dt, shape2(3)), input(`bb_${dt}`, dt, shape2(3))]);
      const gen = (name: string, d: DType, shape: number[], rand: () => number): HostTensor => {
        // exponents small enough that x ** y is exact in f64 (a wrapped integer power keeps only low bits)
        if (fn === "pow") return name.startsWith("ba") ? randomInput(d, shape, rand, d === "i32" || d === "u8" ? { lo: 0, hi: 7 } : { lo: 0.5, hi: 2 }) : randomInput(d, shape, rand, { lo: d === "u8" ? 0 : -3, hi: 4 });
        if (d === "i32" || d === "u8") return randomInput(d, shape, rand, d === "u8" ? {} : { lo: -9, hi: 9 }); // division by zero included
        return randomInput(d, shape, rand, { nan: fn === "min" || fn === "max" });
      };
      cases.push({ name: `binary ${fn} ${dt}`, node, kernels: emitBinary(node), tol: fn === "div" && dt !== "f32" ? 1e-2 : tolOf(dt), gen });
    }
  }
  return cases;
}

function otherCases(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, node: Node, kernels: NodeKernels, tol: number, gen?: Case["gen"], sizes?: readonly number[]) =>
    cases.push({ name, node, kernels, tol, ...(gen ? { gen } : {}), ...(sizes ? { sizes } : {}) });
  // compare: coarse values so that ties happen, NaNs included
  const coarse = (_n: string, d: DType, shape: number[], rand: () => number) => {
    const t = randomInput(d, shape, rand, { lo: -3, hi: 3 });
    for (let i = 0; i < t.data.length; i++) t.data[i] = d === "f32" && i % 11 === 3 ? NaN : Math.round(t.data[i]!);
    return t;
  };
  for (const fn of ["eq", "ne", "lt", "le", "gt", "ge"] as CompareFn[]) {
    for (const dt of ["f32", "i32"] as const) {
      const node = table.make("compare", { fn }, [input(`ca_${dt}`, dt, shape2(17)), input(`cb_${dt}`, dt, shape2(17))]);
      add(`compare ${fn} ${dt}`, node, emitCompare(node), 0, coarse);
    }
  }
  for (const dt of [...FLOATS, "i32"] as const) {
    const where = table.make("ternary", { fn: "where" }, [input("wc", "bool", shape2(24)), input(`wa_${dt}`, dt, shape2(24)), input(`wb_${dt}`, dt, shape2(24))]);
    add(`where ${dt}`, where, emitTernary(where), 0);
    const clamp = table.make("ternary", { fn: "clamp" }, [input(`cx_${dt}`, dt, shape2(24)), input(`clo_${dt}`, dt, shape2(24)), input(`chi_${dt}`, dt, shape2(24))]);
    add(`clamp ${dt}`, clamp, emitTernary(clamp), 0, (n, d, s, r) => randomInput(d, s, r, n.startsWith("cx") ? { nan: d === "f32" } : n.startsWith("clo") ? { lo: -2, hi: 0 } : { lo: 0, hi: 2 }));
  }
  const casts: [DType, DType, { lo?: number; hi?: number; nan?: boolean }][] = [
    ["f32", "bf16", {}], ["bf16", "f32", {}], ["f32", "f16", { lo: -7e4, hi: 7e4 }], ["f16", "f32", {}], ["bf16", "f16", {}],
    ["f32", "i32", { lo: -6e9, hi: 6e9, nan: true }], ["f32", "u8", { lo: -600, hi: 600 }], ["f32", "bool", { lo: -1, hi: 1, nan: true }],
    ["f32", "i64", { lo: -1e12, hi: 1e12 }], ["i64", "f32", { lo: -1e12, hi: 1e12 }], ["i32", "f32", { lo: -2e9, hi: 2e9 }], ["i32", "bf16", { lo: -2e5, hi: 2e5 }],
    ["i32", "u8", { lo: -1000, hi: 1000 }], ["i32", "bool", { lo: -2, hi: 2 }], ["bool", "f32", {}], ["u8", "i32", {}], ["bf16", "i32", { lo: -300, hi: 300 }],
  ];
  for (const [from, to, range] of casts) {
    const node = table.make("cast", { to }, [input(`cast_${from}`, from, shape2(21))]);
    add(`cast ${from} → ${to}`, node, emitCast(node), 0, (_n, d, s, r) => {
      const t = randomInput(d, s, r, range);
      if (to === "bool") for (let i = 0; i < t.data.length; i += 7) t.data[i] = 0; // zeros matter for bool
      return t;
    });
  }
  const bcasts: [DType, Shape, Shape][] = [
    ["bf16", [2880], ["tokens", 2880]],
    ["f32", ["tokens", 1], ["tokens", 2880]],
    ["f32", [8, 1, "tokens", 64], [8, 8, "tokens", 64]],
    ["i32", [1, "tokens", 1], [4, "tokens", 7]],
    ["bool", [], [3, "tokens"]],
    ["bf16", [3, 1, 5], ["tokens", 3, 4, 5]],
  ];
  for (const [dt, from, to] of bcasts) {
    const node = table.make("broadcast", { shape: to }, [input(`bc_${dt}_${from.join("x")}`, dt, from)]);
    add(`broadcast ${dt} [${from.join(", ")}] → [${to.join(", ")}]`, node, emitBroadcast(node), 0, undefined, to.includes(2880) ? [1, 3, 50, 783] : SIZES);
  }
  for (const [value, dt, shape] of [[-Infinity, "f32", [4, "tokens", "past+tokens"]], [1.702, "bf16", ["tokens", 4, 30]], [128, "i32", ["tokens", 3]], [0, "bool", ["tokens"]]] as const) {
    const node = table.make("constant", { value, dtype: dt, shape }, []);
    add(`constant ${value} ${dt}`, node, emitConstant(node), 0);
  }
  for (const [axis, dt, shape] of [[1, "i32", [3, "tokens", 5]], [0, "bf16", ["tokens", 3]], [1, "f32", ["tokens", 9]], [0, "u8", ["tokens"]]] as const) {
    const node = table.make("iota", { axis, dtype: dt, shape }, []);
    add(`iota axis ${axis} ${dt} [${shape.join(", ")}]`, node, emitIota(node), 0);
  }
  const freq = Array.from({ length: 32 }, (_, i) => 150000 ** (-i / 32));
  for (const [data, dt, shape] of [[freq, "f32", [1, 32]], [[1, -2, 3, 70000, 5, 6], "i32", [2, 3]]] as const) {
    const node = table.make("literal", { data, dtype: dt, shape }, []);
    add(`literal ${dt} [${shape.join(", ")}]`, node, emitLiteral(node), 0, undefined, [1]);
  }
  // fused bodies: the rope rotation gpt-oss leaves after fusion, an rmsnorm-like chain with broadcasts,
  // and a mask (compare, where, integer arithmetic, casts)
  const rope: FusedInstr[] = [
    { op: "input", index: 0 }, { op: "input", index: 1 }, { op: "binary", fn: "mul", a: 0, b: 1 },
    { op: "input", index: 2 }, { op: "input", index: 3 }, { op: "binary", fn: "mul", a: 3, b: 4 }, { op: "binary", fn: "sub", a: 2, b: 5 },
  ];
  const ropeNode = table.make("fusedElementwise", { body: rope, shape: ["tokens", 64, 32] }, [
    input("x1", "bf16", ["tokens", 64, 32]), input("cos", "bf16", ["tokens", 1, 32]), input("x2", "bf16", ["tokens", 64, 32]), input("sin", "bf16", ["tokens", 1, 32]),
  ]);
  add("fused rope rotation bf16 [tokens, 64, 32]", ropeNode, emitFusedElementwise(ropeNode), 1e-2);
  const norm: FusedInstr[] = [
    { op: "input", index: 0 }, { op: "cast", to: "f32", a: 0 }, { op: "input", index: 1 }, { op: "constant", value: 1e-5, dtype: "f32" },
    { op: "binary", fn: "add", a: 2, b: 3 }, { op: "unary", fn: "rsqrt", a: 4 }, { op: "binary", fn: "mul", a: 1, b: 5 },
    { op: "input", index: 2 }, { op: "cast", to: "f32", a: 7 }, { op: "binary", fn: "mul", a: 8, b: 6 }, { op: "cast", to: "bf16", a: 9 },
  ];
  const normNode = table.make("fusedElementwise", { body: norm, shape: ["tokens", 2880] }, [input("nx", "bf16", ["tokens", 2880]), input("ms", "f32", ["tokens", 1]), input("nw", "bf16", [2880])]);
  add("fused norm-like chain bf16 [tokens, 2880] with [tokens, 1] and [2880] broadcasts", normNode, emitFusedElementwise(normNode), 1e-2, (n, d, s, r) => randomInput(d, s, r, n === "ms" ? { lo: 0.1, hi: 2 } : {}));
  const mask: FusedInstr[] = [
    { op: "input", index: 0 }, { op: "input", index: 1 }, { op: "binary", fn: "sub", a: 0, b: 1 }, { op: "constant", value: 5, dtype: "i32" },
    { op: "compare", fn: "lt", a: 2, b: 3 }, { op: "constant", value: 0, dtype: "i32" }, { op: "compare", fn: "ge", a: 1, b: 5 },
    { op: "constant", value: 0, dtype: "bool" }, { op: "ternary", fn: "where", a: 4, b: 6, c: 7 },
    { op: "input", index: 2 }, { op: "constant", value: -Infinity, dtype: "f32" }, { op: "ternary", fn: "where", a: 8, b: 9, c: 10 },
    { op: "cast", to: "bf16", a: 11 }, { op: "unary", fn: "exp", a: 12 },
  ];
  const maskNode = table.make("fusedElementwise", { body: mask, shape: [4, "tokens", "past+tokens"] }, [
    input("qp", "i32", [1, "tokens", 1]), input("kp", "i32", [1, 1, "past+tokens"]), input("sc", "f32", [4, "tokens", "past+tokens"]),
  ]);
  add("fused sliding mask + exp [4, tokens, past+tokens]", maskNode, emitFusedElementwise(maskNode), 1e-2, (n, d, s, r) => randomInput(d, s, r, n === "sc" ? {} : { lo: -2, hi: 60 }), [1, 3, 50, 783]);
  return cases;
}

describeGpu("elementwise kernels match the interpreter (GPU)", () => {
  const cases = [...unaryCases(), ...binaryCases(), ...otherCases()];
  const worst: string[] = [];

  beforeAll(async () => {
    // compile everything at once, in parallel; the runs below are served from the in-process memo
    const sources = uniqueSources(cases.map((c) => c.kernels)).flatMap((k) => k.launches.map((l) => l.kernel));
    await compileKernels(sources, { arch: Device.open(0).info.arch, cache: false });
  }, 300_000);

  for (const c of cases) {
    it(c.name, async () => {
      let err = 0;
      for (const n of c.sizes ?? SIZES) err = Math.max(err, await runCase(c, n));
      worst.push(`${c.name}: max rel err ${err.toExponential(2)}`);
    });
  }

  it("summary", () => {
    console.info(`elementwise GPU cases (tokens ${SIZES.join(", ")}):\n  ${worst.join("\n  ")}`);
    expect(worst.length).toBe(cases.length);
  });
});

// ---- GPU: bandwidth at gpt-oss-20b sizes -----------------------------------------------------

interface Timed {
  readonly name: string;
  readonly node: Node;
  readonly kernels: NodeKernels;
  readonly symbols: SymbolValues;
  /** Bytes that must move: inputs read once (or as stated), the output written once. */
  readonly bytes: number;
  /** Contents of input i (default: random bytes). */
  readonly fill?: (i: number, bytes: Uint8Array) => void;
}

function bytesOf(n: Node, symbols: SymbolValues): number {
  return numElements(evalShape(n.shape, symbols)) * dtypeBytes(n.dtype);
}

async function timeLaunches(t: Timed, device: Device): Promise<number> {
  const loaded = await loadKernels(device, t.kernels.launches.map((l) => l.kernel), { cache: false });
  const sizes = [...t.node.inputs.map((x) => bytesOf(x, t.symbols)), bytesOf(t.node, t.symbols), ...t.kernels.scratchBytes.map((s) => evalSize(s, t.symbols))];
  const offsets: number[] = [];
  let total = 0;
  for (const s of sizes) {
    offsets.push(total);
    total += Math.ceil(Math.max(s, 1) / 256) * 256;
  }
  const arena = Arena.allocate(device, total);
  try {
    t.node.inputs.forEach((_, i) => {
      const chunk = new Uint8Array(Math.min(sizes[i]!, 64 << 20));
      for (let at = 0; at < sizes[i]!; at += chunk.length) {
        const part = chunk.subarray(0, Math.min(chunk.length, sizes[i]! - at));
        randomFillSync(part);
        t.fill?.(i, part);
        arena.view(offsets[i]! + at, part.length).copyFromHost(part);
      }
    });
    const nIn = t.node.inputs.length;
    const runAll = (stream: Stream) => t.kernels.launches.forEach((l, li) => {
      const args = l.args.map((a) => {
        switch (a.kind) {
          case "input": return { ptr: arena.pointer + BigInt(offsets[a.index]!) };
          case "output": return { ptr: arena.pointer + BigInt(offsets[nIn]!) };
          case "scratch": return { ptr: arena.pointer + BigInt(offsets[nIn + 1 + a.index]!) };
          case "i32": return { i32: evalSize(a.value, t.symbols) };
          case "f32": return { f32: a.value };
          case "sibling": throw new Error("timed kernels compute one node each");
        }
      });
      loaded.kernels[li]!.launch({ grid: l.grid.map((g) => evalSize(g, t.symbols)) as [number, number, number], block: l.block, sharedBytes: l.sharedBytes, args, stream });
    });
    // replay a captured graph of `iters` runs: host launch overhead stays out of the numbers
    const stream = device.createStream();
    const iters = 20;
    runAll(stream);
    const graph = stream.capture(() => {
      for (let i = 0; i < iters; i++) runAll(stream);
    });
    graph.launch();
    const times: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const start = device.createEvent({ timing: true }).record(stream);
      graph.launch();
      const stop = device.createEvent({ timing: true }).record(stream);
      stop.synchronize();
      times.push(stop.elapsedMsSince(start) / iters);
      start.dispose();
      stop.dispose();
    }
    graph.dispose();
    stream.synchronize();
    stream.dispose();
    device.synchronize();
    return times.sort((a, b) => a - b)[2]!;
  } finally {
    arena.free();
  }
}

describeGpu("generic kernels at gpt-oss-20b sizes (GPU timing)", () => {
  it("moves bytes near HBM bandwidth", async () => {
    const device = Device.open(0);
    const T = 4096;
    const sym = { tokens: T, past: 4096, rows: 64 };
    const ids = (range: number) => (_i: number, b: Uint8Array) => {
      const v = new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
      for (let i = 0; i < v.length; i++) v[i] = (v[i]! >>> 1) % range;
    };
    const cases: Timed[] = [];
    const push = (name: string, node: Node, kernels: NodeKernels, symbols: SymbolValues, bytes: number, fill?: Timed["fill"]) => cases.push({ name, node, kernels, symbols, bytes, ...(fill ? { fill } : {}) });
    const addN = table.make("binary", { fn: "add" }, [input("ta", "bf16", ["tokens", 2880]), input("tb", "bf16", ["tokens", 2880])]);
    push("add bf16 [4096, 2880]", addN, emitBinary(addN), sym, 3 * T * 2880 * 2);
    const bias = table.make("broadcast", { shape: ["tokens", 2880] }, [input("tbias", "bf16", [2880])]);
    push("broadcast bias bf16 [2880] → [4096, 2880]", bias, emitBroadcast(bias), sym, T * 2880 * 2);
    const rope = otherCases().find((c) => c.name.startsWith("fused rope"))!;
    push("fused rope rotation bf16 [4096, 64, 32]", rope.node, rope.kernels, sym, 3 * T * 64 * 32 * 2);
    const cast = table.make("cast", { to: "bf16" }, [input("tc", "f32", ["tokens", 2880])]);
    push("cast f32 → bf16 [4096, 2880]", cast, emitCast(cast), sym, T * 2880 * 6);
    const emb = table.make("gather", { axis: 0 }, [input("embed", "bf16", [201088, 2880]), input("ids", "i32", ["tokens"])]);
    push("embedding gather [201088, 2880] × 4096 ids", emb, emitGather(emb), sym, 2 * T * 2880 * 2, (i, b) => i === 1 && ids(201088)(i, b));
    push("embedding gather, 1 id (decode)", emb, emitGather(emb), { tokens: 1 }, 2 * 2880 * 2, (i, b) => i === 1 && ids(201088)(i, b));
    const kv = table.make("concat", { axis: 0 }, [input("kcache", "bf16", ["past", 8, 64]), input("knew", "bf16", ["tokens", 8, 64])]);
    push("concat kv cache [4096, 8, 64] ++ [1, 8, 64]", kv, emitConcat(kv), { past: 4096, tokens: 1 }, 2 * 4097 * 512 * 2);
    const tr = table.make("transpose", { perm: [1, 0, 2] }, [input("tq", "f32", ["tokens", 8, 64])]);
    push("transpose f32 [4096, 8, 64] → [8, 4096, 64]", tr, emitTranspose(tr), sym, 2 * T * 512 * 4);
    const tt = table.make("transpose", { perm: [1, 0] }, [input("tm", "bf16", ["tokens", 2880])]);
    push("transpose bf16 [4096, 2880] → [2880, 4096] (tiled)", tt, emitTranspose(tt), sym, 2 * T * 2880 * 2);
    const mean = table.make("reduce", { fn: "mean", axis: 1, keepDims: true }, [input("rm", "f32", ["tokens", 2880])]);
    push("reduce mean f32 [4096, 2880] axis 1", mean, emitReduce(mean), sym, T * 2880 * 4);
    const moeSum = table.make("reduce", { fn: "sum", axis: 1, keepDims: false }, [input("rs", "bf16", ["tokens", 4, 2880])]);
    push("reduce sum bf16 [4096, 4, 2880] axis 1", moeSum, emitReduce(moeSum), sym, T * 5 * 2880 * 2);
    const router = table.make("topk", { k: 4, result: "indices" }, [input("logits", "bf16", ["tokens", 32])]);
    push("topk 4 of 32 bf16 [4096, 32]", router, emitTopk(router), sym, T * 32 * 2 + T * 16);
    const argmax = table.make("topk", { k: 1, result: "indices" }, [input("vocab", "bf16", ["rows", 201088])]);
    push("argmax bf16 [1, 201088] (decode)", argmax, emitTopk(argmax), { rows: 1 }, 201088 * 2);
    push("argmax bf16 [64, 201088]", argmax, emitTopk(argmax), { rows: 64 }, 64 * 201088 * 2);
    const dq = table.make("dequantMxfp4", { dtype: "bf16" }, [input("gub", "fp4e2m1x2", [32, 5760, 90, 16]), input("gus", "e8m0", [32, 5760, 90])]);
    push("dequantMxfp4 gate_up [32, 5760, 90, 16] → bf16", dq, emitDequantMxfp4(dq), {}, 32 * 5760 * 90 * (16 + 1 + 64), (i, b) => i === 1 && b.forEach((v, j) => (b[j] = 118 + (v % 16))));
    const lines: string[] = [];
    for (const c of cases) {
      const ms = await timeLaunches(c, device);
      lines.push(`${c.name.padEnd(56)} ${(ms * 1000).toFixed(1).padStart(9)} µs ${((c.bytes / (ms / 1000)) / 1e9).toFixed(0).padStart(6)} GB/s`);
    }
    console.info(`${device.info.name}: median of 5 replays of a graph of 20 runs (L2 is 50 MB: small cases run from it)\n${lines.join("\n")}`);
    expect(lines.length).toBe(cases.length);
  }, 300_000);
});
