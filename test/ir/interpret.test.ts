// The CPU reference interpreter, op by op and for the gpt-oss building blocks, against formulas
// written here in plain f64 loops. Every expectation is computed independently of the interpreter
// and the builder: f64 math, then the dtype's rounding (Math.fround for f32, `bf16` from ./helpers.ts
// for bf16). Variable dims take the sizes 1, 3 and 50 through a symbol, with fresh seeded inputs.
// (bf16 rounding edge cases and the MX code tables are tested in dtype.test.ts.)

import { describe, expect, it } from "vitest";
import { ModelBuilder, type Tensor, ropeInverseFrequencies } from "../../src/ir/builder.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, hostTensor } from "../../src/ir/host-tensor.js";
import { evaluateNodes } from "../../src/ir/interpret.js";
import type { BinaryFn, CompareFn, ReduceFn, UnaryFn } from "../../src/ir/ops.js";
import {
  SIZES, bf16, decodeMxfp4, e2m1, e8m0, expectClose, expectIdentical, expectRepresentable, rand, refAttention,
  refRmsNorm, refSwiglu, refTopk, rngFor, roundFloat, runModel,
} from "./helpers.js";

const FLOATS = ["f32", "bf16"] as const;

/** Row-major flat index of `idx` in `shape`. */
function flat(shape: readonly number[], idx: readonly number[]): number {
  let f = 0;
  shape.forEach((d, i) => (f = f * d + idx[i]!));
  return f;
}

/** Every multi-index of `shape`, row-major. */
function* indices(shape: readonly number[]): Generator<number[]> {
  const total = shape.reduce((a, b) => a * b, 1);
  for (let f = 0; f < total; f++) {
    const idx = new Array<number>(shape.length);
    let rest = f;
    for (let a = shape.length - 1; a >= 0; a--) {
      idx[a] = rest % shape[a]!;
      rest = Math.floor(rest / shape[a]!);
    }
    yield idx;
  }
}

// ---- 1. primitive ops ----------------------------------------------------------------------------

describe("unary ops: round(dtype, f(x)) with f the f64 function", () => {
  const fns: Record<UnaryFn, { f: (x: number) => number; lo: number; hi: number }> = {
    exp: { f: Math.exp, lo: -6, hi: 6 },
    log: { f: Math.log, lo: 0.01, hi: 20 },
    sqrt: { f: Math.sqrt, lo: 0.01, hi: 20 },
    rsqrt: { f: (x) => 1 / Math.sqrt(x), lo: 0.01, hi: 20 },
    sigmoid: { f: (x) => 1 / (1 + Math.exp(-x)), lo: -8, hi: 8 },
    tanh: { f: Math.tanh, lo: -3, hi: 3 },
    neg: { f: (x) => -x, lo: -5, hi: 5 },
    abs: { f: Math.abs, lo: -5, hi: 5 },
    sin: { f: Math.sin, lo: -10, hi: 10 },
    cos: { f: Math.cos, lo: -10, hi: 10 },
  };
  for (const dtype of FLOATS)
    for (const [fn, { f, lo, hi }] of Object.entries(fns) as [UnaryFn, (typeof fns)[UnaryFn]][]) {
      it(`${fn} ${dtype}`, () => {
        for (const n of SIZES) {
          const x = rand(dtype, [n, 4], rngFor(`unary ${fn} ${dtype}`, n), lo, hi);
          const { y } = runModel({ x }, (b, v) => ({ y: b.unary(fn, v.x) }), { shapes: { x: ["n", 4] } });
          expect(y.dtype).toBe(dtype);
          expectIdentical(y.data, Array.from(x.data, (v) => roundFloat(dtype, f(v))), `${fn} n=${n}`);
        }
      });
    }

  it("neg and abs on i32", () => {
    for (const n of SIZES) {
      const x = rand("i32", [n, 3], rngFor("unary i32", n), -1000, 1000);
      const { neg, abs } = runModel({ x }, (b, v) => ({ neg: b.neg(v.x), abs: b.abs(v.x) }), { shapes: { x: ["n", 3] } });
      expectIdentical(neg.data, Array.from(x.data, (v) => -v), "neg", false);
      expectIdentical(abs.data, Array.from(x.data, (v) => Math.abs(v)), "abs");
    }
  });
});

describe("binary ops", () => {
  const floatFns: Record<BinaryFn, (a: number, b: number) => number> = {
    add: (a, b) => a + b,
    sub: (a, b) => a - b,
    mul: (a, b) => a * b,
    div: (a, b) => a / b,
    min: (a, b) => (a < b ? a : b),
    max: (a, b) => (a > b ? a : b),
    pow: (a, b) => a ** b,
  };
  for (const dtype of FLOATS)
    for (const [fn, f] of Object.entries(floatFns) as [BinaryFn, (a: number, b: number) => number][]) {
      it(`${fn} ${dtype}: round(dtype, a ∘ b)`, () => {
        for (const n of SIZES) {
          const r = rngFor(`binary ${fn} ${dtype}`, n);
          const a = rand(dtype, [n, 5], r, fn === "pow" ? 0.1 : -4, 4);
          const c = rand(dtype, [n, 5], r, -3, 3);
          const { y } = runModel({ a, c }, (b, v) => ({ y: b.binary(fn, v.a, v.c) }), { shapes: { a: ["n", 5], c: ["n", 5] } });
          expectIdentical(y.data, Array.from(a.data, (v, i) => roundFloat(dtype, f(v, c.data[i]!))), `${fn} n=${n}`);
        }
      });
    }

  it("i32 add, sub, mul, min, max and div truncating toward zero", () => {
    for (const n of SIZES) {
      const r = rngFor("binary i32", n);
      const a = rand("i32", [n, 6], r, -100, 100);
      const c = hostTensor("i32", [n, 6], Array.from(rand("i32", [n, 6], r, -9, 9).data, (v) => (v === 0 ? 4 : v)));
      const out = runModel({ a, c }, (b, v) => ({
        add: b.add(v.a, v.c), sub: b.sub(v.a, v.c), mul: b.mul(v.a, v.c), min: b.min(v.a, v.c), max: b.max(v.a, v.c), div: b.div(v.a, v.c),
      }), { shapes: { a: ["n", 6], c: ["n", 6] } });
      const pair = (f: (x: number, y: number) => number) => Array.from(a.data, (x, i) => f(x, c.data[i]!));
      expectIdentical(out.add.data, pair((x, y) => x + y), "add", false);
      expectIdentical(out.sub.data, pair((x, y) => x - y), "sub", false);
      expectIdentical(out.mul.data, pair((x, y) => x * y), "mul", false);
      expectIdentical(out.min.data, pair((x, y) => (x < y ? x : y)), "min");
      expectIdentical(out.max.data, pair((x, y) => (x > y ? x : y)), "max");
      // truncated quotient: (a − rem(a, b)) / b, with JS % the remainder carrying a's sign
      expectIdentical(out.div.data, pair((x, y) => (x - (x % y)) / y), "div", false);
      expect(out.div.dtype).toBe("i32");
    }
    // the cases that tell truncation from flooring
    const a = hostTensor("i32", [6], [7, -7, 7, -7, 1, -1]);
    const c = hostTensor("i32", [6], [2, 2, -2, -2, 3, 3]);
    expectIdentical(runModel({ a, c }, (b, v) => ({ q: b.div(v.a, v.c) })).q.data, [3, -3, -3, 3, 0, 0], "div", false);
  });

  it("a number operand becomes a constant of the tensor's dtype (bf16: 0.1 is rounded first)", () => {
    for (const n of SIZES) {
      const x = rand("bf16", [n, 4], rngFor("scalar operand", n), -8, 8);
      const { y, z } = runModel({ x }, (b, v) => ({ y: b.mul(v.x, 0.1), z: b.sub(3, v.x) }), { shapes: { x: ["n", 4] } });
      expectIdentical(y.data, Array.from(x.data, (v) => bf16(v * bf16(0.1))), "x·0.1");
      expectIdentical(z.data, Array.from(x.data, (v) => bf16(3 - v)), "3 − x");
    }
  });

  it("broadcasts [n, 1] against [1, 5] and [5] numpy-style", () => {
    for (const n of SIZES) {
      const r = rngFor("binary broadcast", n);
      const col = rand("f32", [n, 1], r);
      const row = rand("f32", [1, 5], r);
      const vec = rand("f32", [5], r);
      const { y } = runModel({ col, row, vec }, (b, v) => ({ y: b.mul(b.add(v.col, v.row), v.vec) }), { shapes: { col: ["n", 1] } });
      expect(y.shape).toEqual([n, 5]);
      const expected: number[] = [];
      for (let i = 0; i < n; i++) for (let j = 0; j < 5; j++) expected.push(Math.fround(Math.fround(col.data[i]! + row.data[j]!) * vec.data[j]!));
      expectIdentical(y.data, expected, `n=${n}`);
    }
  });
});

describe("compare, where, clamp", () => {
  const cmp: Record<CompareFn, (a: number, b: number) => boolean> = {
    eq: (a, b) => a === b, ne: (a, b) => a !== b, lt: (a, b) => a < b, le: (a, b) => a <= b, gt: (a, b) => a > b, ge: (a, b) => a >= b,
  };
  for (const dtype of ["f32", "i32"] as const)
    it(`compare ${dtype}: bool 1/0, equal elements included`, () => {
      for (const n of SIZES) {
        const r = rngFor(`compare ${dtype}`, n);
        const a = rand(dtype, [n, 6], r, -5, 5);
        // every third element of c copies a, so eq/le/ge see exact equality
        const c = hostTensor(dtype, [n, 6], Array.from(rand(dtype, [n, 6], r, -5, 5).data, (v, i) => (i % 3 === 0 ? a.data[i]! : v)));
        const out = runModel({ a, c }, (b, v) => {
          const o = {} as Record<CompareFn, Tensor>;
          for (const fn of Object.keys(cmp) as CompareFn[]) o[fn] = b.compare(fn, v.a, v.c);
          return o;
        }, { shapes: { a: ["n", 6], c: ["n", 6] } });
        for (const [fn, f] of Object.entries(cmp) as [CompareFn, (a: number, b: number) => boolean][]) {
          expect(out[fn].dtype).toBe("bool");
          expectIdentical(out[fn].data, Array.from(a.data, (v, i) => (f(v, c.data[i]!) ? 1 : 0)), `${fn} n=${n}`);
        }
      }
    });

  it("compare follows IEEE 754 with NaN: only ne holds", () => {
    const a = hostTensor("f32", [4], [NaN, 1, NaN, -Infinity]);
    const c = hostTensor("f32", [4], [1, NaN, NaN, -Infinity]);
    const out = runModel({ a, c }, (b, v) => {
      const o = {} as Record<CompareFn, Tensor>;
      for (const fn of Object.keys(cmp) as CompareFn[]) o[fn] = b.compare(fn, v.a, v.c);
      return o;
    });
    for (const [fn, f] of Object.entries(cmp) as [CompareFn, (a: number, b: number) => boolean][]) {
      expectIdentical(out[fn].data, Array.from(a.data, (v, i) => (f(v, c.data[i]!) ? 1 : 0)), fn);
    }
    expectIdentical(out.ne.data, [1, 1, 1, 0]);
    expectIdentical(out.eq.data, [0, 0, 0, 1]);
  });

  it("where(cond, a, b) picks a where cond holds; broadcast row and scalar −Infinity operands", () => {
    for (const n of SIZES) {
      const r = rngFor("where", n);
      const cond = hostTensor("bool", [n, 4], Array.from({ length: n * 4 }, () => (r() < 0.5 ? 1 : 0)));
      const a = rand("f32", [n, 4], r);
      const row = rand("f32", [4], r);
      const { y, z } = runModel({ cond, a, row }, (b, v) => ({ y: b.where(v.cond, v.a, v.row), z: b.where(v.cond, v.a, -Infinity) }), {
        shapes: { cond: ["n", 4], a: ["n", 4] },
      });
      expectIdentical(y.data, Array.from(a.data, (v, i) => (cond.data[i] ? v : row.data[i % 4]!)), "where row");
      expectIdentical(z.data, Array.from(a.data, (v, i) => (cond.data[i] ? v : -Infinity)), "where −inf");
    }
  });

  for (const dtype of FLOATS)
    it(`clamp ${dtype} = min(max(x, lo), hi), including rows where lo > hi`, () => {
      for (const n of SIZES) {
        const r = rngFor(`clamp ${dtype}`, n);
        const [x, lo, hi] = [rand(dtype, [n, 5], r, -3, 3), rand(dtype, [n, 5], r, -2, 1), rand(dtype, [n, 5], r, -1, 2)];
        const { y, s } = runModel({ x, lo, hi }, (b, v) => ({ y: b.clamp(v.x, v.lo, v.hi), s: b.clamp(v.x, -1.5, 0.7) }), {
          shapes: { x: ["n", 5], lo: ["n", 5], hi: ["n", 5] },
        });
        expectIdentical(y.data, Array.from(x.data, (v, i) => Math.min(Math.max(v, lo.data[i]!), hi.data[i]!)), "clamp");
        expectIdentical(s.data, Array.from(x.data, (v) => Math.min(Math.max(v, -1.5), roundFloat(dtype, 0.7))), "clamp scalars");
      }
    });
});

describe("cast", () => {
  it("f32 → bf16 rounds to nearest, ties to even, at every magnitude", () => {
    for (const n of SIZES) {
      const r = rngFor("cast bf16", n);
      const x = hostTensor("f32", [n, 8], Array.from({ length: n * 8 }, () => (r() - 0.5) * 2 ** Math.floor(r() * 60 - 30)));
      const { y } = runModel({ x }, (b, v) => ({ y: b.cast(v.x, "bf16") }), { shapes: { x: ["n", 8] } });
      expect(y.dtype).toBe("bf16");
      expectIdentical(y.data, Array.from(x.data, bf16), `n=${n}`);
    }
  });

  it("i32 → bf16 rounds integers beyond 256 (257 → 256, 259 → 260); i32 → f32 beyond 2^24", () => {
    const x = hostTensor("i32", [6], [255, 257, 259, -261, 1000, 16777217]);
    const { h, f } = runModel({ x }, (b, v) => ({ h: b.cast(v.x, "bf16"), f: b.cast(v.x, "f32") }));
    expectIdentical(h.data, [255, 256, 260, -260, 1000, 16777216]);
    expectIdentical(f.data, [255, 257, 259, -261, 1000, 16777216]);
    for (const n of SIZES) {
      const xi = rand("i32", [n, 3], rngFor("cast i32", n), -5000, 5000);
      const out = runModel({ xi }, (b, v) => ({ h: b.cast(v.xi, "bf16") }), { shapes: { xi: ["n", 3] } });
      expectIdentical(out.h.data, Array.from(xi.data, bf16), "i32 → bf16", false);
    }
  });

  it("f32 → i32 truncates toward zero; bf16 → f32 is exact; f32 ↔ bool", () => {
    for (const n of SIZES) {
      const r = rngFor("cast misc", n);
      const x = rand("f32", [n, 6], r, -50, 50);
      const h = rand("bf16", [n, 6], r, -50, 50);
      // deliberately some exact zeros (and a −0) for the bool cast
      const z = hostTensor("f32", [n, 6], Array.from(rand("f32", [n, 6], r).data, (v, i) => (i % 4 === 0 ? 0 : i % 4 === 1 && i < 6 ? -0 : v)));
      const out = runModel({ x, h, z }, (b, v) => ({
        i: b.cast(v.x, "i32"), f: b.cast(v.h, "f32"), bo: b.cast(v.z, "bool"), back: b.cast(b.cast(v.z, "bool"), "f32"),
      }), { shapes: { x: ["n", 6], h: ["n", 6], z: ["n", 6] } });
      expectIdentical(out.i.data, Array.from(x.data, (v) => (v < 0 ? Math.ceil(v) : Math.floor(v))), "f32 → i32", false);
      expectIdentical(out.f.data, h.data, "bf16 → f32");
      expectIdentical(out.bo.data, Array.from(z.data, (v) => (v !== 0 ? 1 : 0)), "f32 → bool");
      expectIdentical(out.back.data, Array.from(z.data, (v) => (v !== 0 ? 1 : 0)), "bool → f32");
    }
  });
});

describe("reductions: f64 accumulation rounded once, on every axis, keepDims or not", () => {
  const refs: Record<ReduceFn, (xs: number[]) => number> = {
    sum: (xs) => xs.reduce((a, b) => a + b, 0),
    mean: (xs) => xs.reduce((a, b) => a + b, 0) / xs.length,
    max: (xs) => xs.reduce((a, b) => (b > a ? b : a), -Infinity),
    min: (xs) => xs.reduce((a, b) => (b < a ? b : a), Infinity),
  };
  const cases: [DType, ReduceFn[]][] = [["f32", ["sum", "mean", "max", "min"]], ["bf16", ["sum", "mean", "max", "min"]], ["i32", ["sum", "max", "min"]]];
  for (const [dtype, fns] of cases)
    for (const fn of fns)
      it(`${fn} ${dtype}`, () => {
        for (const n of SIZES) {
          const shape = [n, 3, 4];
          const x = rand(dtype, shape, rngFor(`reduce ${fn} ${dtype}`, n), -10, 10);
          for (let axis = 0; axis < 3; axis++)
            for (const keepDims of [false, true]) {
              const { y } = runModel({ x }, (b, v) => ({ y: b.reduce(fn, v.x, axis, keepDims) }), { shapes: { x: ["n", 3, 4] } });
              const outShape = shape.map((d, i) => (i === axis ? 1 : d));
              expect(y.shape).toEqual(keepDims ? outShape : shape.filter((_, i) => i !== axis));
              const groups: number[][] = Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, () => []);
              for (const idx of indices(shape)) groups[flat(outShape, idx.map((v, i) => (i === axis ? 0 : v)))]!.push(x.data[flat(shape, idx)]!);
              const round = dtype === "i32" ? (v: number) => v : (v: number) => roundFloat(dtype, v);
              expectIdentical(y.data, groups.map((g) => round(refs[fn](g))), `${fn} axis ${axis} keepDims ${keepDims} n=${n}`, false);
            }
        }
      });
});

describe("matmul: f64 dot products rounded once", () => {
  /** out[b][i][j] = Σ_p a[b][i][p] · B(b, p, j) */
  function refMatmul(a: HostTensor, batch: number, m: number, k: number, n: number, bAt: (bi: number, p: number, j: number) => number, round: (x: number) => number): number[] {
    const out: number[] = [];
    for (let bi = 0; bi < batch; bi++)
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += a.data[(bi * m + i) * k + p]! * bAt(bi, p, j);
          out.push(round(acc));
        }
    return out;
  }

  for (const dtype of FLOATS) {
    const round = (x: number) => roundFloat(dtype, x);
    it(`plain [n, 7]·[7, 4] and a variable contraction [3, n]·[n, 5] (${dtype})`, () => {
      for (const n of SIZES) {
        const r = rngFor(`matmul plain ${dtype}`, n);
        const [a, w, a2, w2] = [rand(dtype, [n, 7], r), rand(dtype, [7, 4], r), rand(dtype, [3, n], r), rand(dtype, [n, 5], r)];
        const out = runModel({ a, w, a2, w2 }, (b, v) => ({ y: b.matmul(v.a, v.w), y2: b.matmul(v.a2, v.w2) }), {
          shapes: { a: ["n", 7], a2: [3, "n"], w2: ["n", 5] },
        });
        expect(out.y.shape).toEqual([n, 4]);
        expectIdentical(out.y.data, refMatmul(a, 1, n, 7, 4, (_, p, j) => w.data[p * 4 + j]!, round), "plain", false);
        expectIdentical(out.y2.data, refMatmul(a2, 1, 3, n, 5, (_, p, j) => w2.data[p * 5 + j]!, round), "variable K", false);
      }
    });

    it(`transposeB [n, 7]·[4, 7]ᵀ (${dtype})`, () => {
      for (const n of SIZES) {
        const r = rngFor(`matmul tb ${dtype}`, n);
        const [a, w] = [rand(dtype, [n, 7], r), rand(dtype, [4, 7], r)];
        const { y } = runModel({ a, w }, (b, v) => ({ y: b.matmul(v.a, v.w, { transposeB: true }) }), { shapes: { a: ["n", 7] } });
        expectIdentical(y.data, refMatmul(a, 1, n, 7, 4, (_, p, j) => w.data[j * 7 + p]!, round), `n=${n}`, false);
      }
    });

    it(`batched [2, n, 6]·[2, 6, 3], and a rank-2 rhs shared over the batch, plain and transposed (${dtype})`, () => {
      for (const n of SIZES) {
        const r = rngFor(`matmul batched ${dtype}`, n);
        const [a, w, shared, sharedT] = [rand(dtype, [2, n, 6], r), rand(dtype, [2, 6, 3], r), rand(dtype, [6, 3], r), rand(dtype, [3, 6], r)];
        const out = runModel({ a, w, shared, sharedT }, (b, v) => ({
          y: b.matmul(v.a, v.w), ys: b.matmul(v.a, v.shared), yt: b.matmul(v.a, v.sharedT, { transposeB: true }),
        }), { shapes: { a: [2, "n", 6] } });
        expect(out.y.shape).toEqual([2, n, 3]);
        expectIdentical(out.y.data, refMatmul(a, 2, n, 6, 3, (bi, p, j) => w.data[(bi * 6 + p) * 3 + j]!, round), "batched", false);
        expectIdentical(out.ys.data, refMatmul(a, 2, n, 6, 3, (_, p, j) => shared.data[p * 3 + j]!, round), "shared", false);
        expectIdentical(out.yt.data, refMatmul(a, 2, n, 6, 3, (_, p, j) => sharedT.data[j * 6 + p]!, round), "shared transposed", false);
      }
    });
  }
});

describe("data movement", () => {
  it("reshape keeps the row-major data; transpose permutes axes", () => {
    for (const n of SIZES) {
      const x = rand("f32", [n, 3, 4], rngFor("reshape transpose", n));
      const out = runModel({ x }, (b, v) => ({ r: b.reshape(v.x, ["n", 2, 6]), r2: b.reshape(v.x, [12, "n"]), t: b.transpose(v.x, [2, 0, 1]) }), {
        shapes: { x: ["n", 3, 4] },
      });
      expect(out.r.shape).toEqual([n, 2, 6]);
      expect(out.r2.shape).toEqual([12, n]);
      expectIdentical(out.r.data, x.data);
      expectIdentical(out.r2.data, x.data);
      expect(out.t.shape).toEqual([4, n, 3]);
      const expected: number[] = [];
      for (let c = 0; c < 4; c++) for (let a = 0; a < n; a++) for (let b2 = 0; b2 < 3; b2++) expected.push(x.data[(a * 3 + b2) * 4 + c]!);
      expectIdentical(out.t.data, expected, `transpose n=${n}`);
    }
  });

  it("slice with a step, a static window of a symbolic axis, and a symbolic end", () => {
    for (const n of SIZES) {
      const r = rngFor("slice", n);
      const x = rand("f32", [n, 9], r);
      const pad = rand("f32", [2, 9], r);
      const out = runModel({ x, pad }, (b, v) => {
        const padded = b.concat([v.x, v.pad], 0); // [n+2, 9]
        return {
          stepped: b.slice(v.x, 1, 1, 8, 3), // columns 1, 4, 7
          first: b.slice(v.x, 0, 0, 1), // row 0 of a symbolic axis
          back: b.slice(padded, 0, 0, "n"), // the first n rows of n+2
        };
      }, { shapes: { x: ["n", 9] } });
      expect(out.stepped.shape).toEqual([n, 3]);
      const stepped: number[] = [];
      for (let i = 0; i < n; i++) for (const c of [1, 4, 7]) stepped.push(x.data[i * 9 + c]!);
      expectIdentical(out.stepped.data, stepped, "stepped");
      expectIdentical(out.first.data, x.data.slice(0, 9), "first row");
      expect(out.back.shape).toEqual([n, 9]);
      expectIdentical(out.back.data, x.data, "symbolic end");
    }
  });

  it("concat along a symbolic axis (dims n + m) and along a static one", () => {
    for (const n of SIZES) {
      const r = rngFor("concat", n);
      const m = 4 - (n % 3); // a second, different size
      const [a, c, w] = [rand("f32", [n, 3], r), rand("f32", [m, 3], r), rand("f32", [n, 2], r)];
      const out = runModel({ a, c, w }, (b, v) => ({ rows: b.concat([v.a, v.c], 0), cols: b.concat([v.w, v.a, v.w], 1) }), {
        shapes: { a: ["n", 3], c: ["m", 3], w: ["n", 2] },
      });
      expect(out.rows.shape).toEqual([n + m, 3]);
      expectIdentical(out.rows.data, [...a.data, ...c.data], "rows");
      const cols: number[] = [];
      for (let i = 0; i < n; i++) cols.push(...w.data.slice(i * 2, i * 2 + 2), ...a.data.slice(i * 3, i * 3 + 3), ...w.data.slice(i * 2, i * 2 + 2));
      expectIdentical(out.cols.data, cols, "cols");
    }
  });

  it("gather on axis 0 and 1 with 1-D and 2-D indices; an out-of-range index reads 0", () => {
    for (const n of SIZES) {
      const r = rngFor("gather", n);
      const x = rand("f32", [5, 4], r);
      const idx = rand("i32", [n], r, -2, 7); // about a third out of range
      const idx2 = hostTensor("i32", [2, 3], [4, -1, 0, 5, 2, 2]);
      const out = runModel({ x, idx, idx2 }, (b, v) => ({ rows: b.gather(v.x, v.idx, 0), cols: b.gather(v.x, v.idx, 1), grid: b.gather(v.x, v.idx2, 0) }), {
        shapes: { idx: ["n"] },
      });
      const at = (i: number, j: number) => (i >= 0 && i < 5 && j >= 0 && j < 4 ? x.data[i * 4 + j]! : 0);
      expect(out.rows.shape).toEqual([n, 4]);
      expectIdentical(out.rows.data, Array.from({ length: n * 4 }, (_, f) => at(idx.data[Math.floor(f / 4)]!, f % 4)), "rows");
      expect(out.cols.shape).toEqual([5, n]);
      expectIdentical(out.cols.data, Array.from({ length: 5 * n }, (_, f) => at(Math.floor(f / n), idx.data[f % n]!)), "cols");
      expect(out.grid.shape).toEqual([2, 3, 4]);
      expectIdentical(out.grid.data, Array.from({ length: 24 }, (_, f) => at(idx2.data[Math.floor(f / 4)]!, f % 4)), "2-D indices");
    }
  });

  it("scatter replaces the indexed slices on axis 0 and 1; out-of-range indices are skipped", () => {
    for (const n of SIZES) {
      const r = rngFor("scatter", n);
      const x = rand("f32", [6, n], r);
      const idx = hostTensor("i32", [4], [4, -1, 1, 6]);
      const upd0 = rand("f32", [4, n], r);
      const y = rand("f32", [n, 6], r);
      const upd1 = rand("f32", [n, 4], r);
      const out = runModel({ x, idx, upd0, y, upd1 }, (b, v) => ({ s0: b.scatter(v.x, v.idx, v.upd0, 0), s1: b.scatter(v.y, v.idx, v.upd1, 1) }), {
        shapes: { x: [6, "n"], upd0: [4, "n"], y: ["n", 6], upd1: ["n", 4] },
      });
      const e0 = Array.from(x.data);
      [4, 1].forEach((row) => {
        const j = row === 4 ? 0 : 2; // position of the in-range index in idx
        for (let c = 0; c < n; c++) e0[row * n + c] = upd0.data[j * n + c]!;
      });
      expectIdentical(out.s0.data, e0, "axis 0");
      const e1 = Array.from(y.data);
      for (let i = 0; i < n; i++) {
        e1[i * 6 + 4] = upd1.data[i * 4 + 0]!;
        e1[i * 6 + 1] = upd1.data[i * 4 + 2]!;
      }
      expectIdentical(out.s1.data, e1, "axis 1");
    }
  });

  it("broadcast right-aligns and repeats size-1 dims", () => {
    for (const n of SIZES) {
      const r = rngFor("broadcast", n);
      const x = rand("bf16", [3, 1], r);
      const row = rand("bf16", [n], r);
      const out = runModel({ x, row }, (b, v) => ({ y: b.broadcast(v.x, [2, 3, "n"]), z: b.broadcast(v.row, [3, "n"]) }), { shapes: { row: ["n"] } });
      expect(out.y.shape).toEqual([2, 3, n]);
      expectIdentical(out.y.data, Array.from({ length: 6 * n }, (_, f) => x.data[Math.floor(f / n) % 3]!), "column");
      expectIdentical(out.z.data, Array.from({ length: 3 * n }, (_, f) => row.data[f % n]!), "row");
    }
  });

  it("iota counts along its axis (bf16 iota rounds 257 to 256)", () => {
    for (const n of SIZES) {
      const dummy = rand("f32", [n], rngFor("iota", n));
      const out = runModel({ dummy }, (b) => ({ a0: b.iota(["n", 4], 0), a1: b.iota(["n", 4], 1, "f32") }), { shapes: { dummy: ["n"] } });
      expect(out.a0.dtype).toBe("i32");
      expectIdentical(out.a0.data, Array.from({ length: 4 * n }, (_, f) => Math.floor(f / 4)), "axis 0");
      expectIdentical(out.a1.data, Array.from({ length: 4 * n }, (_, f) => f % 4), "axis 1");
    }
    const b = new ModelBuilder("iota");
    const [big] = evaluateNodes([b.iota([300], 0, "bf16").node], { symbols: {}, inputs: {}, params: {} });
    expectIdentical(big!.data, Array.from({ length: 300 }, (_, i) => bf16(i)));
    expect(big!.data[257]).toBe(256);
  });
});

describe("topk", () => {
  it("values descending with their i32 indices; ties to the lower index; NaN ranks highest", () => {
    for (const n of SIZES) {
      const r = rngFor("topk", n);
      // few distinct values so ties are common; a NaN in every third row, a −Infinity in every fourth
      const vals = Array.from({ length: n * 8 }, (_, f) => (f % 8 === 5 && (f >> 3) % 3 === 0 ? NaN : f % 8 === 2 && (f >> 3) % 4 === 0 ? -Infinity : Math.floor(r() * 4) - 1.5));
      const x = hostTensor("f32", [n, 8], vals);
      const out = runModel({ x }, (b, v) => {
        const { values, indices: idx } = b.topk(v.x, 3);
        return { values, idx };
      }, { shapes: { x: ["n", 8] } });
      expect(out.idx.dtype).toBe("i32");
      expect(out.values.shape).toEqual([n, 3]);
      const expIdx: number[] = [];
      for (let row = 0; row < n; row++) expIdx.push(...refTopk(x.data.subarray(row * 8, row * 8 + 8), 3));
      expectIdentical(out.idx.data, expIdx, `indices n=${n}`);
      expectIdentical(out.values.data, expIdx.map((i, f) => x.data[Math.floor(f / 3) * 8 + i]!), `values n=${n}`);
    }
    const x = hostTensor("f32", [1, 7], [1, 3, 3, NaN, 2, 3, NaN]);
    const { v, i } = runModel({ x }, (b, t) => ({ v: b.topk(t.x, 5).values, i: b.topk(t.x, 5).indices }));
    expectIdentical(i.data, [3, 6, 1, 2, 5]);
    expectIdentical(v.data, [NaN, NaN, 3, 3, 3]);
  });
});

describe("dequantMxfp4", () => {
  const scales = [0, 1, 100, 126, 127, 128, 130, 200, 254, 255];
  it("decodes every E2M1 code in both nibbles × E8M0 scales incl. 255 = NaN; low nibble = even element", () => {
    // row s, block 0: byte j holds code j in the low nibble and code 15 − j in the high one;
    // block 1 swaps them, so each code appears at even and odd positions under every scale
    const rows = scales.length;
    const blocks: number[] = [];
    for (let s = 0; s < rows; s++) {
      for (let j = 0; j < 16; j++) blocks.push(j | ((15 - j) << 4));
      for (let j = 0; j < 16; j++) blocks.push((15 - j) | (j << 4));
    }
    const scaleData = scales.flatMap((s) => [s, s]);
    for (const dtype of FLOATS) {
      const out = runModel({ dummy: hostTensor("f32", [1], [1]) }, (b) => ({
        y: b.dequantMxfp4(b.param("w_blocks", "fp4e2m1x2", [rows, 2, 16]), b.param("w_scales", "e8m0", [rows, 2]), dtype),
      }), { params: { w_blocks: hostTensor("fp4e2m1x2", [rows, 2, 16], blocks), w_scales: hostTensor("e8m0", [rows, 2], scaleData) } });
      expect(out.y.shape).toEqual([rows, 64]);
      expect(out.y.dtype).toBe(dtype);
      const expected: number[] = [];
      for (let s = 0; s < rows; s++)
        for (let blk = 0; blk < 2; blk++)
          for (let j = 0; j < 16; j++) {
            const [lo, hi] = blk === 0 ? [j, 15 - j] : [15 - j, j];
            expected.push(roundFloat(dtype, e2m1(lo) * e8m0(scales[s]!)), roundFloat(dtype, e2m1(hi) * e8m0(scales[s]!)));
          }
      expectIdentical(out.y.data, expected, dtype); // signed zeros included: code 8 is −0
      // spot checks of the layout: row with scale 127, block 0, byte 1 = 0xE1 → [0.5, −4]
      const r127 = scales.indexOf(127) * 64;
      expect([out.y.data[r127 + 2], out.y.data[r127 + 3]]).toEqual([0.5, -4]);
      expect(Number.isNaN(out.y.data[scales.indexOf(255) * 64 + 5]!)).toBe(true);
      expect(out.y.data[scales.indexOf(254) * 64 + 14]).toBe(Infinity); // 6 · 2^127 overflows f32 and bf16
    }
  });

  it("random blocks with leading dims [2, n, nb] match the f64 decode", () => {
    for (const n of SIZES) {
      const r = rngFor("dequant random", n);
      const blocks = rand("fp4e2m1x2", [2, n, 3, 16], r, 0, 256);
      const sc = rand("e8m0", [2, n, 3], r, 110, 140);
      const { y } = runModel({ blocks, sc }, (b, v) => ({ y: b.dequantMxfp4(v.blocks, v.sc, "f32") }), { shapes: { blocks: [2, "n", 3, 16], sc: [2, "n", 3] } });
      expect(y.shape).toEqual([2, n, 96]);
      expectIdentical(y.data, decodeMxfp4(blocks.data, sc.data, 2 * n, 3), `n=${n}`);
    }
  });
});

describe("leaves", () => {
  it("literal rounds its data to its dtype; constant fills a symbolic shape, −Infinity included", () => {
    for (const n of SIZES) {
      const dummy = rand("f32", [n], rngFor("leaves", n));
      const data = [0.1, 1 / 3, -2.718281828, 1e-3, 65504.5, 3.14159];
      const out = runModel({ dummy }, (b) => ({
        lf: b.literal(data, "f32", [2, 3]),
        lb: b.literal(data, "bf16", [3, 2]),
        ninf: b.constant(-Infinity, "f32", ["n", 2]),
        ninfB: b.constant(-Infinity, "bf16", [2, "n"]),
        c: b.constant(0.1, "bf16", ["n"]),
        // −Infinity is a usable mask value: exp(−inf) = 0
        e: b.exp(b.add(b.constant(-Infinity, "f32", ["n"]), b.constant(1, "f32", ["n"]))),
      }), { shapes: { dummy: ["n"] } });
      expect(out.lf.shape).toEqual([2, 3]);
      expectIdentical(out.lf.data, data.map(Math.fround));
      expectIdentical(out.lb.data, data.map(bf16));
      expect(out.ninf.shape).toEqual([n, 2]);
      expectIdentical(out.ninf.data, new Array<number>(2 * n).fill(-Infinity));
      expectIdentical(out.ninfB.data, new Array<number>(2 * n).fill(-Infinity));
      expectIdentical(out.c.data, new Array<number>(n).fill(bf16(0.1)));
      expectIdentical(out.e.data, new Array<number>(n).fill(0));
    }
  });
});

// ---- 2. the gpt-oss building blocks ----------------------------------------------------------------

describe("RMSNorm: w · x / sqrt(mean(x²) + eps)", () => {
  const d = 64;
  const eps = 1e-5;
  for (const dtype of FLOATS)
    it.each(SIZES)(`${dtype} input, n = %i`, (n) => {
      const r = rngFor(`rmsnorm ${dtype}`, n);
      // rows of very different scales: the result must not depend on it
      const x = hostTensor(dtype, [n, d], Array.from({ length: n * d }, (_, f) => (r() * 2 - 1) * 10 ** ((Math.floor(f / d) % 5) - 2)));
      const w = rand(dtype, [d], r, 0.5, 1.5);
      const { y } = runModel({ x, w }, (b, v) => ({ y: b.rmsNorm(v.x, v.w, eps) }), { shapes: { x: ["n", d] } });
      expect(y.dtype).toBe(dtype);
      expectRepresentable(dtype, y.data);
      const expected = refRmsNorm(x.data, w.data, d, eps);
      // f32: a handful of roundings of 2^−24 each; bf16: the output rounding (up to 2^−8) on top
      const rel = dtype === "f32" ? 2 ** -20 : 2 ** -7;
      expectClose(y.data, expected, (e) => rel * Math.abs(e) + 1e-30, `n=${n}`);
    });
});

describe("sink softmax: each probability row sums to 1 − exp(s − m) / Σ", () => {
  it.each(SIZES)("builder attention with one-hot values: output row = probability row, n = %i", (n) => {
    // T = S = n queries and keys, causal; v for key j is the unit vector e_j, so out[i, h, :] is the
    // probability row of (i, h) and its sum is the mass left after the sink column takes its share
    const [h, kvh, d] = [4, 2, 64];
    const r = rngFor("sink softmax", n);
    const q = rand("f32", [n, h, d], r, -0.6, 0.6);
    const k = rand("f32", [n, kvh, d], r, -0.6, 0.6);
    const v = hostTensor("f32", [n, kvh, d], Array.from({ length: n * kvh * d }, (_, f) => (f % d === Math.floor(f / (kvh * d)) ? 1 : 0)));
    const pos = hostTensor("i32", [n], Array.from({ length: n }, (_, i) => i));
    const sinks = hostTensor("f32", [h], [-1.5, 0.3, 2.5, 6]); // from a small share to most of the mass
    const scale = 0.125;
    const { o } = runModel({ q, k, v, pos, sinks }, (b, x) => ({ o: b.attention(x.q, x.k, x.v, { qpos: x.pos, kpos: x.pos, sinks: x.sinks, scale }) }), {
      shapes: { q: ["n", h, d], k: ["n", kvh, d], v: ["n", kvh, d], pos: ["n"] },
    });
    const ref = refAttention(q.data, k.data, v.data, pos.data, pos.data, { batch: 1, t: n, h, s: n, kvh, d }, scale, 0, sinks.data);
    expectClose(o.data, ref.out, (e) => 1e-6 + 1e-6 * Math.abs(e), "probabilities");
    for (let i = 0; i < n; i++)
      for (let head = 0; head < h; head++) {
        let rowSum = 0;
        for (let c = 0; c < d; c++) rowSum += o.data[(i * h + head) * d + c]!;
        const share = ref.sinkShare[i * h + head]!;
        expect(share).toBeGreaterThan(0);
        expect(Math.abs(rowSum - (1 - share))).toBeLessThan(2e-6);
      }
  });

  it.each(SIZES)("softmax over [scores, sink] built from primitives, sink column dropped, n = %i", (n) => {
    const r = rngFor("sink softmax primitives", n);
    const scores = rand("f32", [3, n], r, -4, 4);
    const sink = rand("f32", [3, 1], r, -2, 3);
    const { p, sums } = runModel({ scores, sink }, (b, x) => {
      const probs = b.slice(b.softmax(b.concat([x.scores, x.sink], 1), -1), 1, 0, "n");
      return { p: probs, sums: b.sum(probs, 1) };
    }, { shapes: { scores: [3, "n"] } });
    for (let row = 0; row < 3; row++) {
      const vals = Array.from(scores.data.subarray(row * n, row * n + n));
      const s = sink.data[row]!;
      const m = Math.max(s, ...vals);
      const z = vals.reduce((a, v) => a + Math.exp(v - m), Math.exp(s - m));
      expectClose(p.data.subarray(row * n, row * n + n), vals.map((v) => Math.exp(v - m) / z), (e) => 2e-6 * e + 1e-9, `row ${row}`);
      expect(Math.abs(sums.data[row]! - (1 - Math.exp(s - m) / z))).toBeLessThan(1e-6);
    }
  });
});

describe("YaRN RoPE", () => {
  const [d, theta, factor, orig] = [64, 150000, 32, 4096];
  const yarn = { factor, originalContext: orig, betaFast: 32, betaSlow: 1, truncate: false };
  /** DESIGN.md: extrap_i = θ^(−2i/d), interp_i = extrap_i / factor, corr(n) = d·ln(orig / (n·2π)) / (2·ln θ), linear ramp between corr(β_fast) and corr(β_slow). */
  const corr = (rot: number) => (d * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
  const [low, high] = [corr(32), corr(1)];
  const expectedInvFreq = Array.from({ length: d / 2 }, (_, i) => {
    const extrap = theta ** ((-2 * i) / d);
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    return (extrap / factor) * ramp + extrap * (1 - ramp);
  });

  it("inverse frequencies follow DESIGN.md's formula (low ≈ 8.0928, high ≈ 17.3980)", () => {
    expect(low).toBeCloseTo(8.0928, 4);
    expect(high).toBeCloseTo(17.398, 4);
    const inv = ropeInverseFrequencies(d, { theta, yarn });
    expectClose(inv, expectedInvFreq, (e) => 1e-14 * e, "inv_freq");
    // below the ramp the frequency is the plain one, above it the interpolated one
    expect(inv[0]).toBe(1);
    expect(inv[8]).toBeCloseTo(theta ** (-16 / d), 15);
    expect(inv[18]! / (theta ** (-36 / d) / factor)).toBeCloseTo(1, 14);
  });

  for (const dtype of FLOATS)
    it.each(SIZES)(`${dtype} rope = half-split rotation with cos and sin scaled by 0.1·ln(32) + 1, n = %i`, (n) => {
      const h = 2;
      const r = rngFor(`rope ${dtype}`, n);
      const x = rand(dtype, [n, h, d], r);
      const pos = hostTensor("i32", [n], Array.from({ length: n }, () => Math.floor(r() * 5000)));
      const { y } = runModel({ x, pos }, (b, v) => ({ y: b.rope(v.x, v.pos, { theta, yarn }) }), { shapes: { x: ["n", h, d], pos: ["n"] } });
      const conc = 0.1 * Math.log(32) + 1;
      const expected = new Float64Array(n * h * d);
      const tol = new Float64Array(n * h * d);
      for (let t = 0; t < n; t++)
        for (let head = 0; head < h; head++)
          for (let i = 0; i < d / 2; i++) {
            const angle = pos.data[t]! * expectedInvFreq[i]!;
            const [c, s] = [conc * Math.cos(angle), conc * Math.sin(angle)];
            const base = (t * h + head) * d;
            const [x1, x2] = [x.data[base + i]!, x.data[base + i + d / 2]!];
            expected[base + i] = x1 * c - x2 * s;
            expected[base + i + d / 2] = x2 * c + x1 * s;
            // the graph computes the angle in f32 (error up to about angle · 2^−23), then rounds cos,
            // sin and each product and sum to the dtype (unit roundoff 2^−24 or 2^−8; bounded by 3 · 2u)
            const unit = dtype === "f32" ? 2 ** -23 : 2 ** -7;
            const err = conc * (Math.abs(x1) + Math.abs(x2)) * (angle * 2 ** -23 + 3 * unit) + 1e-7;
            tol[base + i] = err;
            tol[base + i + d / 2] = err;
          }
      expectClose(y.data, expected, (_, i) => tol[i]!, `n=${n}`);
    });
});

describe("clamped SwiGLU: (clamp(up, −7, 7) + 1) · min(gate, 7) · sigmoid(1.702 · min(gate, 7))", () => {
  for (const dtype of FLOATS)
    it.each(SIZES)(`${dtype}, gate and up beyond ±7, n = %i`, (n) => {
      const inter = 16;
      const gu = rand(dtype, [n, 2 * inter], rngFor(`swiglu ${dtype}`, n), -12, 12);
      expect(Array.from(gu.data).some((v) => Math.abs(v) > 7)).toBe(true);
      const { y } = runModel({ gu }, (b, v) => ({ y: b.swiglu(v.gu, 7, 1.702) }), { shapes: { gu: ["n", 2 * inter] } });
      expect(y.shape).toEqual([n, inter]);
      const expected = Array.from({ length: n * inter }, (_, f) => refSwiglu(gu.data[2 * f]!, gu.data[2 * f + 1]!, 7, 1.702));
      // each of ~6 roundings contributes a unit roundoff of the dtype (2^−24, 2^−8) on terms up to 8 · 7
      const unit = dtype === "f32" ? 2 ** -24 : 2 ** -8;
      expectClose(y.data, expected, (e) => 8 * unit * (Math.abs(e) + 1), `n=${n}`);
    });
});

describe("router: linear with bias → top-4 of 32 logits → softmax over those 4", () => {
  it.each(SIZES)("n = %i tokens", (n) => {
    const [dm, e, k] = [16, 32, 4];
    const r = rngFor("router", n);
    const x = rand("f32", [n, dm], r);
    const w = rand("f32", [e, dm], r);
    const bias = rand("f32", [e], r, -0.5, 0.5);
    const out = runModel({ x, w, bias }, (b, v) => {
      const { indices: idx, weights } = b.topkRouting(b.linear(v.x, v.w, v.bias), k);
      return { idx, weights };
    }, { shapes: { x: ["n", dm] } });
    const expIdx: number[] = [];
    const expW: number[] = [];
    for (let t = 0; t < n; t++) {
      const logits = Array.from({ length: e }, (_, ex) => {
        let acc = bias.data[ex]!;
        for (let c = 0; c < dm; c++) acc += x.data[t * dm + c]! * w.data[ex * dm + c]!;
        return acc;
      });
      const top = refTopk(logits, k);
      const z = top.reduce((a, i) => a + Math.exp(logits[i]! - logits[top[0]!]!), 0);
      expIdx.push(...top);
      expW.push(...top.map((i) => Math.exp(logits[i]! - logits[top[0]!]!) / z));
    }
    expect(out.idx.shape).toEqual([n, k]);
    expectIdentical(out.idx.data, expIdx, "expert indices");
    expectClose(out.weights.data, expW, (v) => 1e-6 * (v + 1e-3), "routing weights");
    for (let t = 0; t < n; t++) expect(Math.abs(out.weights.data.subarray(t * k, t * k + k).reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-6);
  });
});

describe("attention masks (builder attention vs the f64 reference)", () => {
  interface MaskCase {
    readonly name: string;
    readonly h: number;
    readonly kvh: number;
    readonly window: number;
    /** query positions and key positions (−1 = empty slot) for n tokens */
    readonly positions: (n: number, r: () => number) => { qpos: number[]; kpos: number[] };
  }
  const iota = (n: number) => Array.from({ length: n }, (_, i) => i);
  const cases: MaskCase[] = [
    { name: "causal", h: 2, kvh: 2, window: 0, positions: (n) => ({ qpos: iota(n), kpos: iota(n) }) },
    { name: "sliding window 4: itself and the previous 3", h: 2, kvh: 1, window: 4, positions: (n) => ({ qpos: iota(n), kpos: iota(n) }) },
    {
      // a ring-buffer cache: the n positions in shuffled slots, with 4 empty slots (−1) among them
      name: "kpos −1 empty slots in a shuffled cache",
      h: 2, kvh: 2, window: 0,
      positions: (n, r) => {
        const slots = [...iota(n), -1, -1, -1, -1];
        for (let i = slots.length - 1; i > 0; i--) {
          const j = Math.floor(r() * (i + 1));
          [slots[i], slots[j]] = [slots[j]!, slots[i]!];
        }
        return { qpos: iota(n), kpos: slots };
      },
    },
    { name: "decode: one query at position n − 1 + 7 with a window of 5 over a cache", h: 2, kvh: 2, window: 5,
      positions: (n) => ({ qpos: [n + 6], kpos: Array.from({ length: n + 7 }, (_, i) => (i % 5 === 4 ? -1 : i)) }) },
    { name: "GQA: 6 heads on 3 kv heads (head h reads kv head ⌊h/2⌋)", h: 6, kvh: 3, window: 0, positions: (n) => ({ qpos: iota(n), kpos: iota(n) }) },
    { name: "GQA: 4 heads on 2 kv heads, sliding window 2", h: 4, kvh: 2, window: 2, positions: (n) => ({ qpos: iota(n), kpos: iota(n) }) },
  ];
  for (const c of cases)
    it.each(SIZES)(`${c.name}, n = %i`, (n) => {
      const d = 8;
      const r = rngFor(`mask ${c.name}`, n);
      const { qpos, kpos } = c.positions(n, r);
      const [t, s] = [qpos.length, kpos.length];
      const q = rand("f32", [t, c.h, d], r, -2, 2);
      const k = rand("f32", [s, c.kvh, d], r, -2, 2);
      const v = rand("f32", [s, c.kvh, d], r);
      const qp = hostTensor("i32", [t], qpos);
      const kp = hostTensor("i32", [s], kpos);
      const { o } = runModel({ q, k, v, qp, kp }, (b, x) => ({ o: b.attention(x.q, x.k, x.v, { qpos: x.qp, kpos: x.kp, window: c.window }) }), {
        shapes: { q: ["n", c.h, d], k: ["s", c.kvh, d], v: ["s", c.kvh, d], qp: ["n"], kp: ["s"] },
      });
      const ref = refAttention(q.data, k.data, v.data, qpos, kpos, { batch: 1, t, h: c.h, s, kvh: c.kvh, d }, 1 / Math.sqrt(d), c.window);
      expectClose(o.data, ref.out, (e) => 1e-6 * (1 + Math.abs(e)), `n=${n}`);
    });

  it("the masks matter: a masked key's value never reaches the output, a visible one does", () => {
    // query at position 5, window 3: sees positions 3, 4, 5; slot 0 holds position 6 (future), slot 1 is empty
    const kpos = [6, -1, 2, 3, 4, 5];
    const run = (vals: number[]) =>
      runModel({ q: hostTensor("f32", [1, 1, 1], [0.3]), k: hostTensor("f32", [6, 1, 1], [1, 1, 1, 1, 1, 1]), v: hostTensor("f32", [6, 1, 1], vals) }, (b, x) => ({
        o: b.attention(x.q, x.k, x.v, { qpos: b.literal([5], "i32"), kpos: b.literal(kpos, "i32"), window: 3 }),
      })).o.data[0]!;
    const base = run([100, 100, 100, 1, 2, 3]);
    expect(base).toBeCloseTo(2, 6); // equal scores: the mean of the three visible values
    expect(run([-7, 9, 55, 1, 2, 3])).toBe(base);
    expect(run([100, 100, 100, 1, 2, 6])).toBeCloseTo(3, 6);
  });
});

// keep the f64 helpers honest about their own inputs
describe("test references", () => {
  it("bf16() agrees with hostTensor's bf16 rounding on random magnitudes (both sides of the oracle)", () => {
    const r = rngFor("bf16 self-check");
    const xs = Array.from({ length: 2000 }, () => (r() - 0.5) * 2 ** Math.floor(r() * 260 - 135));
    expectIdentical(hostTensor("bf16", [xs.length], xs).data, xs.map(bf16));
  });
});
