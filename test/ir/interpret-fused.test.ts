// Fused ops in the reference interpreter. Each fused node is built directly (`b.table.make`) beside
// the builder expansion it stands for, and the two must agree BIT FOR BIT (the interpreter evaluates
// a fused op with exactly the roundings of the expansion, so a fusion pass never changes results),
// in f32 and bf16. Each is also checked against an independent f64 formula with a tolerance.

import { describe, expect, it } from "vitest";
import { type ExpertWeight, type ModelBuilder, Tensor } from "../../src/ir/builder.js";
import { type HostTensor, hostTensor } from "../../src/ir/host-tensor.js";
import type { FusedInstr, Op, OpAttrs } from "../../src/ir/ops.js";
import {
  SIZES, bf16, decodeMxfp4, expectClose, expectIdentical, expectRepresentable, maxAbs, rand, refAttention, refMoe, refRmsNorm, rngFor,
  roundFloat, runModel,
} from "./helpers.js";

const FLOATS = ["f32", "bf16"] as const;
type Float = (typeof FLOATS)[number];

/** A fused node built directly in the model's interning table. */
function fused<K extends Op>(b: ModelBuilder, op: K, attrs: OpAttrs[K], inputs: readonly Tensor[]): Tensor {
  return new Tensor(b.table.make(op, attrs, inputs.map((t) => t.node)));
}

/** Unit roundoff of a dtype: the largest relative error of one rounding (24 and 8 significant bits). */
const unit = (dtype: Float) => (dtype === "f32" ? 2 ** -24 : 2 ** -8);

describe("fusedRmsNorm = rmsNorm(x (+ residual)) of the builder", () => {
  const [d, eps] = [48, 1e-5];
  for (const dtype of FLOATS)
    it.each(SIZES)(`${dtype}: with and without residual, normed and sum results, n = %i`, (n) => {
      const r = rngFor(`fused rmsnorm ${dtype}`, n);
      // row scales from 10^−4 (where eps dominates mean(s²) and its f32 rounding shows) to 10
      const scaled = () => hostTensor(dtype, [n, d], Array.from({ length: n * d }, (_, f) => (r() * 2 - 1) * 10 ** ((Math.floor(f / d) % 6) - 4)));
      const x = scaled();
      const res = scaled();
      const w = rand(dtype, [d], r, 0.5, 1.5);
      const out = runModel({ x, res, w }, (b, v) => {
        const sum = b.add(v.x, v.res);
        return {
          fNormed: fused(b, "fusedRmsNorm", { eps, hasResidual: false, result: "normed" }, [v.x, v.w]),
          eNormed: b.rmsNorm(v.x, v.w, eps),
          fResNormed: fused(b, "fusedRmsNorm", { eps, hasResidual: true, result: "normed" }, [v.x, v.res, v.w]),
          fResSum: fused(b, "fusedRmsNorm", { eps, hasResidual: true, result: "sum" }, [v.x, v.res, v.w]),
          eResNormed: b.rmsNorm(sum, v.w, eps),
          eResSum: sum,
        };
      }, { shapes: { x: ["n", d], res: ["n", d] } });
      expectIdentical(out.fNormed.data, out.eNormed.data, "normed");
      expectIdentical(out.fResNormed.data, out.eResNormed.data, "residual normed");
      expectIdentical(out.fResSum.data, out.eResSum.data, "residual sum");
      expect(out.fResSum.dtype).toBe(dtype);
      expectRepresentable(dtype, out.fResNormed.data);

      // independent: s = x + residual stored in x's dtype, then w · s / sqrt(mean(s²) + eps) in f64
      const s = Array.from(x.data, (v, i) => roundFloat(dtype, v + res.data[i]!));
      expectIdentical(out.fResSum.data, s, "sum formula");
      // f32: a handful of roundings of 2^−24; bf16: the output rounding (up to 2^−8) on top
      const rel = dtype === "f32" ? 2 ** -20 : 2 ** -7;
      expectClose(out.fNormed.data, refRmsNorm(x.data, w.data, d, eps), (e) => rel * Math.abs(e), "normed formula");
      expectClose(out.fResNormed.data, refRmsNorm(s, w.data, d, eps), (e) => rel * Math.abs(e), "residual formula");
    });
});

describe("sinkAttention = the builder's attention", () => {
  interface Case {
    readonly sinks: boolean;
    readonly window: number;
    readonly batch: number; // 0: no batch dim
  }
  const cases: Case[] = [
    { sinks: true, window: 0, batch: 0 },
    { sinks: false, window: 0, batch: 2 },
    { sinks: true, window: 3, batch: 2 },
    { sinks: false, window: 3, batch: 0 },
  ];
  const [h, kvh, d] = [4, 2, 16];
  const scale = 0.25;
  for (const c of cases)
    for (const dtype of FLOATS)
      it.each(SIZES)(`${dtype}, ${c.sinks ? "sinks" : "no sinks"}, window ${c.window}, ${c.batch ? `batch ${c.batch}` : "no batch"}, n = %i`, (n) => {
        const r = rngFor(`fused attention ${dtype} ${JSON.stringify(c)}`, n);
        const nb = Math.max(c.batch, 1);
        const s = n + 2;
        // batch element bi holds positions bi·5 + i in shuffled slots, plus two empty (−1) slots
        const qpos: number[] = [];
        const kpos: number[] = [];
        for (let bi = 0; bi < nb; bi++) {
          const pos = Array.from({ length: n }, (_, i) => bi * 5 + i);
          qpos.push(...pos);
          const slots = [...pos, -1, -1];
          for (let i = slots.length - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [slots[i], slots[j]] = [slots[j]!, slots[i]!];
          }
          kpos.push(...slots);
        }
        const lead = c.batch ? [c.batch] : [];
        const q = rand(dtype, [...lead, n, h, d], r, -1.5, 1.5);
        const k = rand(dtype, [...lead, s, kvh, d], r, -1.5, 1.5);
        const v = rand(dtype, [...lead, s, kvh, d], r);
        const qp = hostTensor("i32", [...lead, n], qpos);
        const kp = hostTensor("i32", [...lead, s], kpos);
        const sinks = rand(dtype, [h], r, -1, 3);
        const out = runModel({ q, k, v, qp, kp, sinks }, (b, x) => {
          const opts = { qpos: x.qp, kpos: x.kp, window: c.window, scale, ...(c.sinks ? { sinks: x.sinks } : {}) };
          const ins = [x.q, x.k, x.v, x.qp, x.kp, ...(c.sinks ? [x.sinks] : [])];
          return { f: fused(b, "sinkAttention", { scale, window: c.window, hasSinks: c.sinks }, ins), e: b.attention(x.q, x.k, x.v, opts) };
        }, {
          shapes: { q: [...lead, "n", h, d], k: [...lead, "s", kvh, d], v: [...lead, "s", kvh, d], qp: [...lead, "n"], kp: [...lead, "s"] },
        });
        expect(out.f.shape).toEqual([...lead, n, h, d]);
        expectIdentical(out.f.data, out.e.data, "fused vs expansion");
        const ref = refAttention(q.data, k.data, v.data, qpos, kpos, { batch: nb, t: n, h, s, kvh, d }, scale, c.window, c.sinks ? sinks.data : undefined);
        // f32: scores of magnitude up to ~10 carry about 2^−22 relative error into the exponentials; bf16 adds the output rounding (2^−8)
        const [rel, abs] = dtype === "f32" ? [1e-6, 1e-6] : [2 ** -7, 1e-6];
        expectClose(out.f.data, ref.out, (e) => rel * Math.abs(e) + abs, "f64 formula");
      });
});

describe("sinkAttention with nothing visible", () => {
  for (const dtype of FLOATS)
    it(`${dtype}: a query whose keys are all empty or in its future puts all mass on the sink: output 0, as the expansion`, () => {
      const r = rngFor(`fused attention empty ${dtype}`);
      const [h, kvh, d, s] = [2, 1, 8, 4];
      const q = rand(dtype, [2, h, d], r);
      const k = rand(dtype, [s, kvh, d], r);
      const v = rand(dtype, [s, kvh, d], r);
      const qp = hostTensor("i32", [2], [0, 3]); // query 0 sees nothing; query 1 sees position 3
      const kp = hostTensor("i32", [s], [-1, 3, 5, -1]);
      const sinks = rand(dtype, [h], r, -1, 1);
      const out = runModel({ q, k, v, qp, kp, sinks }, (b, x) => ({
        f: fused(b, "sinkAttention", { scale: 0.5, window: 0, hasSinks: true }, [x.q, x.k, x.v, x.qp, x.kp, x.sinks]),
        e: b.attention(x.q, x.k, x.v, { qpos: x.qp, kpos: x.kp, sinks: x.sinks, scale: 0.5 }),
      }));
      expectIdentical(out.f.data, out.e.data, "fused vs expansion");
      expectIdentical(out.f.data.subarray(0, h * d), new Array<number>(h * d).fill(0), "query 0", false);
      const ref = refAttention(q.data, k.data, v.data, qp.data, kp.data, { batch: 1, t: 2, h, s, kvh, d }, 0.5, 0, sinks.data);
      expectClose(out.f.data, ref.out, (e) => 2 ** -7 * Math.abs(e) + 1e-6, "f64 formula");
    });
});

describe("moeExperts = the builder's moe (router → top-k → softmax → clamped SwiGLU experts → weighted sum)", () => {
  const [dm, e, inter, topK, limit, alpha] = [32, 4, 32, 2, 7, 1.702];
  for (const format of ["dense", "mxfp4"] as const)
    for (const dtype of FLOATS)
      it.each(SIZES)(`${format} ${dtype}, n = %i`, (n) => {
        const r = rngFor(`fused moe ${format} ${dtype}`, n);
        const x = rand(dtype, [n, dm], r, -1, 1);
        const rw = rand(dtype, [e, dm], r, -0.5, 0.5);
        const rb = rand("f32", [e], r, -0.5, 0.5);
        const gb = rand("f32", [e, 2 * inter], r, -1, 1);
        const db = rand("f32", [e, dm], r, -1, 1);
        // dense weights are input-major [E, in, out]; MXFP4 ones are [E, out, in/32, 16] blocks with [E, out, in/32] scales
        const w: Record<string, HostTensor> =
          format === "dense"
            ? { gw: rand(dtype, [e, dm, 2 * inter], r, -1, 1), dw: rand(dtype, [e, inter, dm], r, -0.3, 0.3) }
            : {
                gBlk: rand("fp4e2m1x2", [e, 2 * inter, dm / 32, 16], r, 0, 256),
                gSc: rand("e8m0", [e, 2 * inter, dm / 32], r, 124, 128),
                dBlk: rand("fp4e2m1x2", [e, dm, inter / 32, 16], r, 0, 256),
                dSc: rand("e8m0", [e, dm, inter / 32], r, 120, 124),
              };
        const out = runModel({ x }, (b, v) => {
          const p = (name: string) => b.param(name, w[name]!.dtype, w[name]!.shape);
          const [rwT, rbT, gbT, dbT] = [b.param("rw", dtype, [e, dm]), b.param("rb", "f32", [e]), b.param("gb", "f32", [e, 2 * inter]), b.param("db", "f32", [e, dm])];
          let gateUp: ExpertWeight, down: ExpertWeight, experts: Tensor[];
          if (format === "dense") {
            [gateUp, down] = [{ weight: p("gw") }, { weight: p("dw") }];
            experts = [p("gw"), gbT, p("dw"), dbT];
          } else {
            [gateUp, down] = [{ blocks: p("gBlk"), scales: p("gSc") }, { blocks: p("dBlk"), scales: p("dSc") }];
            experts = [p("gBlk"), p("gSc"), gbT, p("dBlk"), p("dSc"), dbT];
          }
          return {
            f: fused(b, "moeExperts", { topK, limit, alpha, weightFormat: format }, [v.x, rwT, rbT, ...experts]),
            e: b.moe(v.x, { routerWeight: rwT, routerBias: rbT, gateUp, gateUpBias: gbT, down, downBias: dbT, topK, limit, alpha }),
          };
        }, { shapes: { x: ["n", dm] }, params: { rw, rb, gb, db, ...w } });
        expect(out.f.shape).toEqual([n, dm]);
        expectIdentical(out.f.data, out.e.data, "fused vs expansion");

        let gateUpAt: (ex: number, i: number, o: number) => number;
        let downAt: (ex: number, i: number, o: number) => number;
        if (format === "dense") {
          gateUpAt = (ex, i, o) => w.gw!.data[(ex * dm + i) * 2 * inter + o]!;
          downAt = (ex, i, o) => w.dw!.data[(ex * inter + i) * dm + o]!;
        } else {
          const g = decodeMxfp4(w.gBlk!.data, w.gSc!.data, e * 2 * inter, dm / 32); // [E, 2I, D]
          const dn = decodeMxfp4(w.dBlk!.data, w.dSc!.data, e * dm, inter / 32); // [E, D, I]
          gateUpAt = (ex, i, o) => g[(ex * 2 * inter + o) * dm + i]!;
          downAt = (ex, i, o) => dn[(ex * dm + o) * inter + i]!;
        }
        const expected = refMoe({
          x: x.data, routerW: rw.data, routerB: rb.data, gateUp: gateUpAt, gateUpB: gb.data, down: downAt, downB: db.data,
          tokens: n, hidden: dm, experts: e, inter, topK, limit, alpha, roundLogit: (v) => roundFloat(dtype, v),
        });
        // errors are relative to the scale of each token's terms, not to each (possibly cancelling) output
        const rowMax = Array.from({ length: n }, (_, t) => maxAbs(expected.subarray(t * dm, (t + 1) * dm)));
        const rel = dtype === "f32" ? 2 ** -20 : 2 ** -4;
        expectClose(out.f.data, expected, (_, i) => rel * (rowMax[Math.floor(i / dm)]! + 1), "f64 formula");
      });
});

describe("mxfp4Matmul = matmul(x, dequantMxfp4(blocks, scales)ᵀ)", () => {
  const [nOut, nb] = [5, 2];
  const k = nb * 32;
  for (const dtype of FLOATS)
    it.each(SIZES)(`${dtype}: x [n, 64] and batched x [2, n, 64], n = %i`, (n) => {
      const r = rngFor(`fused mxfp4 matmul ${dtype}`, n);
      const x = rand(dtype, [n, k], r);
      const xb = rand(dtype, [2, n, k], r);
      const blocks = rand("fp4e2m1x2", [nOut, nb, 16], r, 0, 256);
      const scales = rand("e8m0", [nOut, nb], r, 122, 130);
      const out = runModel({ x, xb, blocks, scales }, (b, v) => {
        const wd = b.dequantMxfp4(v.blocks, v.scales, dtype);
        return {
          f: fused(b, "mxfp4Matmul", {}, [v.x, v.blocks, v.scales]),
          e: b.matmul(v.x, wd, { transposeB: true }),
          fb: fused(b, "mxfp4Matmul", {}, [v.xb, v.blocks, v.scales]),
          eb: b.matmul(v.xb, wd, { transposeB: true }),
        };
      }, { shapes: { x: ["n", k], xb: [2, "n", k] } });
      expect(out.f.shape).toEqual([n, nOut]);
      expect(out.fb.shape).toEqual([2, n, nOut]);
      expectIdentical(out.f.data, out.e.data, "fused vs expansion");
      expectIdentical(out.fb.data, out.eb.data, "batched fused vs expansion");
      // independent: Σ_p x[m, p] · decode(w)[o, p] in f64
      const wf = decodeMxfp4(blocks.data, scales.data, nOut, nb);
      for (const [got, xs, rows] of [[out.f, x, n], [out.fb, xb, 2 * n]] as const) {
        const expected: number[] = [];
        const tol: number[] = [];
        for (let m = 0; m < rows; m++)
          for (let o = 0; o < nOut; o++) {
            let [acc, mag] = [0, 0];
            for (let p = 0; p < k; p++) {
              acc += xs.data[m * k + p]! * wf[o * k + p]!;
              mag += Math.abs(xs.data[m * k + p]! * wf[o * k + p]!);
            }
            expected.push(acc);
            tol.push(2 * unit(dtype) * mag);
          }
        expectClose(got.data, expected, (_, i) => tol[i]!, "f64 formula");
      }
    });
});

describe("fusedElementwise = its chain of primitives", () => {
  // out = bf16(bf16(bf16(q + c) + y) + bf16(0.1)) where p = f32(x)·f32(y), w = p > f32(0.3) ? exp(p) − z : p,
  // c = clamp(w, −1.5, 1.5), q = f32(trunc(trunc(c·f32(9.7)) / 3)) (i32 division); y [4] and z [n, 1]
  // broadcast to [n, 4]; constants hold their dtype's value (0.3, 9.7 and 0.1 are not representable)
  const body: FusedInstr[] = [
    { op: "input", index: 0 }, // 0 x
    { op: "input", index: 1 }, // 1 y (bf16 [4])
    { op: "cast", to: "f32", a: 0 }, // 2
    { op: "cast", to: "f32", a: 1 }, // 3
    { op: "binary", fn: "mul", a: 2, b: 3 }, // 4 p
    { op: "constant", value: 0.3, dtype: "f32" }, // 5
    { op: "compare", fn: "gt", a: 4, b: 5 }, // 6
    { op: "unary", fn: "exp", a: 4 }, // 7
    { op: "input", index: 2 }, // 8 z (f32 [n, 1])
    { op: "binary", fn: "sub", a: 7, b: 8 }, // 9
    { op: "ternary", fn: "where", a: 6, b: 9, c: 4 }, // 10 w
    { op: "constant", value: -1.5, dtype: "f32" }, // 11
    { op: "constant", value: 1.5, dtype: "f32" }, // 12
    { op: "ternary", fn: "clamp", a: 10, b: 11, c: 12 }, // 13 c
    { op: "constant", value: 9.7, dtype: "f32" }, // 14
    { op: "binary", fn: "mul", a: 13, b: 14 }, // 15
    { op: "cast", to: "i32", a: 15 }, // 16
    { op: "constant", value: 3, dtype: "i32" }, // 17
    { op: "binary", fn: "div", a: 16, b: 17 }, // 18
    { op: "cast", to: "f32", a: 18 }, // 19 q
    { op: "binary", fn: "add", a: 19, b: 13 }, // 20
    { op: "cast", to: "bf16", a: 20 }, // 21
    { op: "binary", fn: "add", a: 21, b: 1 }, // 22
    { op: "constant", value: 0.1, dtype: "bf16" }, // 23
    { op: "binary", fn: "add", a: 22, b: 23 }, // 24
  ];
  for (const dtype of FLOATS)
    it.each(SIZES)(`x ${dtype}, casts, compare, where, clamp, i32 division, broadcast inputs, n = %i`, (n) => {
      const r = rngFor(`fused elementwise ${dtype}`, n);
      const x = rand(dtype, [n, 4], r, -2, 2);
      const y = rand("bf16", [4], r, -1.5, 1.5);
      const z = rand("f32", [n, 1], r, -1, 1);
      const out = runModel({ x, y, z }, (b, v) => {
        const p = b.mul(b.cast(v.x, "f32"), b.cast(v.y, "f32"));
        const w = b.where(b.gt(p, 0.3), b.sub(b.exp(p), v.z), p);
        const c = b.clamp(w, -1.5, 1.5);
        const q = b.cast(b.div(b.cast(b.mul(c, 9.7), "i32"), 3), "f32");
        return {
          f: fused(b, "fusedElementwise", { body, shape: ["n", 4] }, [v.x, v.y, v.z]),
          e: b.add(b.add(b.cast(b.add(q, c), "bf16"), v.y), 0.1),
        };
      }, { shapes: { x: ["n", 4], z: ["n", 1] } });
      expect(out.f.dtype).toBe("bf16");
      expect(out.f.shape).toEqual([n, 4]);
      expectIdentical(out.f.data, out.e.data, "fused vs expansion");
      const expected = Array.from({ length: n * 4 }, (_, f) => {
        const [yv, zv] = [y.data[f % 4]!, z.data[Math.floor(f / 4)]!];
        const p = x.data[f]! * yv;
        const w = p > Math.fround(0.3) ? Math.exp(p) - zv : p;
        const c = Math.min(Math.max(w, -1.5), 1.5);
        const q = Math.trunc(Math.trunc(c * Math.fround(9.7)) / 3);
        return bf16(bf16(bf16(q + c) + yv) + bf16(0.1));
      });
      // the explicit bf16 casts are part of the formula; f32 intermediates may move a value across a bf16 rounding boundary
      expectClose(out.f.data, expected, (e) => 2 ** -7 * Math.abs(e) + 1e-6, "f64 formula");
    });

  it("an all-f32 chain with a broadcast scalar input matches its primitives and the formula exactly", () => {
    // out = max(a, s) · rsqrt(a² + 1) − s, with s a [1] input broadcast to [n, 3]
    const chain: FusedInstr[] = [
      { op: "input", index: 0 },
      { op: "input", index: 1 },
      { op: "binary", fn: "max", a: 0, b: 1 },
      { op: "binary", fn: "mul", a: 0, b: 0 },
      { op: "constant", value: 1, dtype: "f32" },
      { op: "binary", fn: "add", a: 3, b: 4 },
      { op: "unary", fn: "rsqrt", a: 5 },
      { op: "binary", fn: "mul", a: 2, b: 6 },
      { op: "binary", fn: "sub", a: 7, b: 1 },
    ];
    for (const n of SIZES) {
      const r = rngFor("fused elementwise f32", n);
      const a = rand("f32", [n, 3], r, -3, 3);
      const s = rand("f32", [1], r);
      const out = runModel({ a, s }, (b, v) => ({
        f: fused(b, "fusedElementwise", { body: chain, shape: ["n", 3] }, [v.a, v.s]),
        e: b.sub(b.mul(b.max(v.a, v.s), b.rsqrt(b.add(b.mul(v.a, v.a), 1))), v.s),
      }), { shapes: { a: ["n", 3] } });
      expectIdentical(out.f.data, out.e.data, `fused vs expansion n=${n}`);
      const f = Math.fround;
      const sv = s.data[0]!;
      expectIdentical(out.f.data, Array.from(a.data, (v) => f(f(Math.max(v, sv) * f(1 / Math.sqrt(f(f(v * v) + 1)))) - sv)), `formula n=${n}`);
    }
  });
});
