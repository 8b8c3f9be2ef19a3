// Each fusion fires on its pattern (builder form and hand-written variants), declines near misses,
// and leaves the interpreter's outputs unchanged.
import { describe, expect, it } from "vitest";
import { type ModelBuilder, type Tensor, defineModel } from "../../src/ir/builder.js";
import { type Graph, entryNodes, graphNodes } from "../../src/ir/graph.js";
import type { NodeOf } from "../../src/ir/node.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import { evalShape } from "../../src/ir/shape.js";
import { canonicalize } from "../../src/passes/canonicalize.js";
import { fuseElementwise } from "../../src/passes/fuse-elementwise.js";
import { fuseLinear } from "../../src/passes/fuse-linear.js";
import { fuseMxfp4Matmul } from "../../src/passes/fuse-mxfp4-matmul.js";
import { fuseResidualRmsNorm } from "../../src/passes/fuse-residual-rmsnorm.js";
import { fuseRmsNorm } from "../../src/passes/fuse-rmsnorm.js";
import { opCounts, runPipeline } from "../../src/passes/pipeline.js";
import { type Pass, applyRulePass } from "../../src/passes/rewrite.js";
import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_20B, GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { recomputeLogits } from "../engine/reference.js";
import { randomParams } from "../../src/loader/random-params.js";

type Dt = "f32" | "bf16";

/** A one-entry model `main(x: dtype[tokens, d]) -> y` with params declared by `body`. */
function model(dtype: Dt, d: number, body: (b: ModelBuilder, x: Tensor) => Tensor): Graph {
  return defineModel("m", (b) => {
    const t = b.sym("tokens", 64);
    b.entry("main", (e) => e.output("y", body(b, e.input("x", dtype, [t, d]))));
  });
}

function randomLeaves(g: Graph, tokens: number, seed: number): { inputs: Record<string, HostTensor>; params: Record<string, HostTensor> } {
  const rand = seededRandom(seed);
  const symbols = { ...g.symbols, tokens };
  const inputs: Record<string, HostTensor> = {};
  for (const i of g.entries[0]!.inputs) inputs[i.name] = randomTensor(i.dtype, evalShape(i.shape, symbols), rand, -2, 2);
  const params: Record<string, HostTensor> = {};
  for (const p of g.params) {
    params[p.name] = p.dtype === "e8m0" ? randomTensor(p.dtype, evalShape(p.shape, symbols), rand, 120, 130) : randomTensor(p.dtype, evalShape(p.shape, symbols), rand, p.dtype === "fp4e2m1x2" ? 0 : -1, p.dtype === "fp4e2m1x2" ? 256 : 1);
  }
  return { inputs, params };
}

/** Runs `passes` and checks the outputs on random data at several token counts: bit-exact, or within `tol`. */
function expectSameOutputs(before: Graph, after: Graph, tol = 0): void {
  for (const tokens of [1, 3, 50]) {
    const { inputs, params } = randomLeaves(before, tokens, tokens);
    const a = interpret(before, "main", inputs, params);
    const b = interpret(after, "main", inputs, params);
    for (const name of Object.keys(a)) {
      const x = a[name]!.data;
      const y = b[name]!.data;
      if (tol === 0) expect(Array.from(y)).toEqual(Array.from(x));
      else {
        let err = 0;
        let ref = 0;
        x.forEach((v, i) => ((err = Math.max(err, Math.abs(v - y[i]!))), (ref = Math.max(ref, Math.abs(v)))));
        expect(err / ref).toBeLessThanOrEqual(tol);
      }
    }
  }
}

function run(g: Graph, ...passes: Pass[]): Graph {
  return passes.reduce((acc, p) => (p.kind === "rules" ? applyRulePass(acc, p).graph : p.run(acc)), g);
}

describe("rmsnorm fusion", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    it(`fuses the builder's rmsNorm (${dtype}) bit-exactly`, () => {
      const g = model(dtype, 24, (b, x) => b.rmsNorm(x, b.param("w", dtype, [24]), 1e-5));
      const fused = run(g, fuseRmsNorm);
      expect(opCounts(fused)).toEqual({ input: 1, param: 1, fusedRmsNorm: 1 });
      expectSameOutputs(g, fused);
    });
  }

  it("fuses hand-written variants: sum·(1/n), operands commuted", () => {
    const g = model("f32", 16, (b, x) => {
      const ms = b.mul(b.sum(b.mul(x, x), -1, true), 1 / 16);
      const normed = b.mul(b.rsqrt(b.add(1e-6, ms)), x);
      return b.mul(normed, b.param("w", "f32", [16]));
    });
    const fused = run(g, fuseRmsNorm);
    expect(opCounts(fused)["fusedRmsNorm"]).toBe(1);
    expectSameOutputs(g, fused, 1e-6);
  });

  it("declines near misses: eps outside the rsqrt, wrong length, not cast back", () => {
    const epsOutside = model("f32", 16, (b, x) => b.mul(b.param("w", "f32", [16]), b.mul(x, b.add(b.rsqrt(b.mean(b.mul(x, x), -1, true)), 1e-5))));
    const wrongLength = model("f32", 16, (b, x) => b.mul(b.param("w", "f32", [16]), b.mul(x, b.rsqrt(b.add(b.mul(b.sum(b.mul(x, x), -1, true), 1 / 8), 1e-5)))));
    const staysF32 = model("bf16", 16, (b, x) => {
      const xf = b.cast(x, "f32");
      return b.mul(b.cast(b.param("w", "bf16", [16]), "f32"), b.mul(xf, b.rsqrt(b.add(b.mean(b.mul(xf, xf), -1, true), 1e-5))));
    });
    for (const g of [epsOutside, wrongLength, staysF32]) expect(opCounts(run(g, fuseRmsNorm))["fusedRmsNorm"]).toBeUndefined();
  });
});

describe("residual + rmsnorm fusion", () => {
  it("fuses the add into the norm and keeps the sum for its other users", () => {
    const g = model("bf16", 32, (b, x) => {
      const h = b.add(x, b.linear(x, b.param("proj", "bf16", [32, 32])));
      return b.add(h, b.rmsNorm(h, b.param("w", "bf16", [32]), 1e-5));
    });
    const fused = run(g, fuseRmsNorm, fuseResidualRmsNorm);
    const counts = opCounts(fused);
    expect(counts["fusedRmsNorm"]).toBe(2); // the "sum" and "normed" siblings
    expect(counts["binary"]).toBe(1); // only the final add remains
    expectSameOutputs(g, fused);
  });
});

describe("mxfp4 matmul fusion", () => {
  it("reads the packed weight directly and computes the same values", () => {
    const g = model("bf16", 64, (b, x) => {
      const w = b.mxfp4Param("proj", [48, 64]);
      return b.matmul(x, b.dequantMxfp4(w.blocks, w.scales, "bf16"), { transposeB: true });
    });
    const fused = run(g, fuseMxfp4Matmul);
    expect(opCounts(fused)).toEqual({ input: 1, param: 2, mxfp4Matmul: 1 });
    expectSameOutputs(g, fused);
  });

  it("declines a weight used untransposed", () => {
    const g = model("f32", 64, (b, x) => {
      const w = b.mxfp4Param("proj", [64, 64]);
      return b.matmul(x, b.dequantMxfp4(w.blocks, w.scales, "f32"));
    });
    expect(opCounts(run(g, fuseMxfp4Matmul))["mxfp4Matmul"]).toBeUndefined();
  });
});

describe("elementwise fusion", () => {
  it("fuses a chain with broadcasts and constants into one kernel, bit-exactly", () => {
    const g = model("bf16", 8, (b, x) => {
      const bias = b.param("bias", "bf16", [8]);
      const gate = b.min(b.add(x, bias), 7);
      return b.cast(b.mul(gate, b.sigmoid(b.mul(gate, 1.702))), "f32");
    });
    const fused = run(g, canonicalize, fuseElementwise);
    expect(opCounts(fused)).toEqual({ input: 1, param: 1, fusedElementwise: 1 });
    expectSameOutputs(g, fused);
  });

  it("keeps a value with several users materialized", () => {
    const g = model("f32", 8, (b, x) => {
      const e = b.exp(b.neg(x));
      return b.add(b.matmul(e, b.param("w", "f32", [8, 8])), b.mul(e, 2));
    });
    const fused = run(g, canonicalize, fuseElementwise);
    const counts = opCounts(fused);
    expect(counts["fusedElementwise"]).toBe(2); // exp(neg(x)) and add(matmul, mul(e, 2))
    expect(counts["unary"]).toBeUndefined();
    expectSameOutputs(g, fused);
  });
});

describe("canonicalization", () => {
  it("folds constants and simplifies views and casts", () => {
    const g = model("bf16", 4, (b, x) => {
      const folded = b.exp(b.literal([0, 1, 2, 3], "f32", [4]));
      const roundTrip = b.cast(b.cast(x, "f32"), "bf16");
      const reshaped = b.reshape(b.reshape(roundTrip, [x.shape[0]!, 2, 2]), [x.shape[0]!, 4]);
      return b.add(b.cast(reshaped, "f32"), folded);
    });
    const c = run(g, canonicalize);
    const counts = opCounts(c);
    expect(counts["literal"]).toBe(1);
    expect(counts["unary"]).toBeUndefined();
    expect(counts["reshape"]).toBeUndefined();
    expect(counts["cast"]).toBe(1);
    expectSameOutputs(g, c);
  });
});

describe("the whole pipeline", () => {
  it("is a fixpoint: running it twice changes nothing", () => {
    const g = model("bf16", 32, (b, x) => b.rmsNorm(b.add(x, b.exp(x)), b.param("w", "bf16", [32]), 1e-5));
    const once = runPipeline(g).graph;
    const twice = runPipeline(once).graph;
    expect(twice.entries[0]!.outputs[0]!.node).toBe(once.entries[0]!.outputs[0]!.node);
  });
});

describe("sink attention fusion", () => {
  /** q [T, 4, 8], k/v [keys, 2, 8] with positions; returns attention as the builder writes it. */
  function attentionModel(opts: { window?: number; sinks?: boolean; strictCausal?: boolean }): Graph {
    return defineModel("attn", (b) => {
      const t = b.sym("tokens", 64);
      b.sym("keys", 80);
      b.entry("main", (e) => {
        const q = e.input("q", "bf16", [t, 4, 8]);
        const k = e.input("k", "bf16", ["keys", 2, 8]);
        const v = e.input("v", "bf16", ["keys", 2, 8]);
        const qpos = e.input("qpos", "i32", [t]);
        const kpos = e.input("kpos", "i32", ["keys"]);
        const sinks = opts.sinks ? b.param("sinks", "f32", [4]) : undefined;
        if (opts.strictCausal) {
          // a near miss: a query may not see itself (kpos < qpos); must not fuse
          const full = [4, t, "keys"];
          const qp = b.broadcast(b.reshape(qpos, [1, t, 1]), full);
          const kp = b.broadcast(b.reshape(kpos, [1, 1, "keys"]), full);
          const visible = b.and(b.ge(kp, 0), b.lt(kp, qp));
          const qf = b.transpose(b.reshape(b.cast(q, "f32"), [t, 2, 2, 8]), [1, 2, 0, 3]);
          const kg = b.broadcast(b.reshape(b.transpose(b.cast(k, "f32"), [1, 0, 2]), [2, 1, "keys", 8]), [2, 2, "keys", 8]);
          const scores = b.mul(b.reshape(b.matmul(qf, kg, { transposeB: true }), full), 0.25);
          const probs = b.softmax(b.where(visible, scores, -Infinity));
          const vg = b.broadcast(b.reshape(b.transpose(b.cast(v, "f32"), [1, 0, 2]), [2, 1, "keys", 8]), [2, 2, "keys", 8]);
          e.output("y", b.cast(b.transpose(b.reshape(b.matmul(b.reshape(probs, [2, 2, t, "keys"]), vg), [4, t, 8]), [1, 0, 2]), "bf16"));
          return;
        }
        e.output("y", b.attention(q, k, v, { qpos, kpos, ...(opts.window ? { window: opts.window } : {}), ...(sinks ? { sinks } : {}) }));
      });
    });
  }

  function attentionLeaves(g: Graph, tokens: number, past: number, seed: number) {
    const rand = seededRandom(seed);
    const s = past + tokens;
    // cache slots: positions 0..past-1 with one empty slot (−1), then the new tokens
    const kpos = [...Array.from({ length: past }, (_, i) => (i === 1 ? -1 : i)), ...Array.from({ length: tokens }, (_, i) => past + i)];
    return {
      inputs: {
        q: randomTensor("bf16", [tokens, 4, 8], rand),
        k: randomTensor("bf16", [s, 2, 8], rand),
        v: randomTensor("bf16", [s, 2, 8], rand),
        qpos: hostTensor("i32", [tokens], Array.from({ length: tokens }, (_, i) => past + i)),
        kpos: hostTensor("i32", [s], kpos),
      },
      params: g.params.length ? { sinks: randomTensor("f32", [4], rand) } : {},
    };
  }

  for (const variant of [{ sinks: true }, { sinks: true, window: 3 }, { window: 5 }, {}]) {
    it(`fuses ${JSON.stringify(variant)} bit-exactly`, () => {
      const g = attentionModel(variant);
      const fused = runPipeline(g).graph;
      expect(opCounts(fused)["sinkAttention"]).toBe(1);
      expect(opCounts(fused)["matmul"]).toBeUndefined();
      for (const [tokens, past] of [[1, 4], [3, 0], [7, 5]] as const) {
        const { inputs, params } = attentionLeaves(g, tokens, past, tokens * 10 + past);
        expect(Array.from(interpret(fused, "main", inputs, params)["y"]!.data)).toEqual(Array.from(interpret(g, "main", inputs, params)["y"]!.data));
      }
    });
  }

  it("declines a mask that is not the causal position rule", () => {
    expect(opCounts(runPipeline(attentionModel({ strictCausal: true })).graph)["sinkAttention"]).toBeUndefined();
  });
});

describe("the gpt-oss pipeline", () => {
  for (const [dtype, experts] of [["f32", "dense"], ["bf16", "mxfp4"]] as const) {
    it(`fuses every layer of the tiny model (${dtype}, ${experts}) and keeps its logits bit-exact`, () => {
      const config = { ...GPT_OSS_TINY, intermediateSize: 32, hiddenSize: 64 };
      const bounds = { dtype, experts, maxTokensPerStep: 32, maxSeqsPerStep: 32, maxContext: 32 } as const;
      const g = gptOssModel(config, bounds);
      const layout = gptOssLayout(config, bounds);
      const fused = runPipeline(g).graph;
      const counts = opCounts(fused);
      expect(counts["pagedAttention"]).toBe(2); // one per layer: the pools read in place
      expect(counts["sinkAttention"]).toBeUndefined();
      expect(counts["moeExperts"]).toBe(2);
      expect(counts["fusedRmsNorm"]).toBeGreaterThanOrEqual(4);
      expect(counts["dequantMxfp4"]).toBeUndefined();
      expect(counts["seqTokenRanges"]).toBe(1); // shared by both layers
      const params = randomParams(g, 5);
      const ids = [4, 8, 15, 16, 23, 42, 7, 99, 1];
      expect(Array.from(recomputeLogits(fused, layout, params, ids).data)).toEqual(Array.from(recomputeLogits(g, layout, params, ids).data));
    });
  }

  it("fuses the 20b graph: one attention, MoE and two norms per layer, no dequantMxfp4 left", () => {
    const g = gptOssModel(GPT_OSS_20B, { dtype: "bf16" });
    const fusedGraph = runPipeline(g).graph;
    const counts = opCounts(fusedGraph);
    // every norm reads its bf16 weight itself (a weight shared by two matches is not claimed by one)
    expect(graphNodes(fusedGraph).filter((n) => n.op === "cast" && n.inputs[0]!.op === "param")).toEqual([]);
    expect(counts["pagedAttention"]).toBe(24);
    expect(counts["moeExperts"]).toBe(24);
    expect(counts["fusedRmsNorm"]).toBe(96);
    expect(counts["dequantMxfp4"]).toBeUndefined();
  });
});

describe("rope fusion", () => {
  function ropeModel(dtype: Dt, swapHalves = false): Graph {
    return defineModel("rope", (b) => {
      const t = b.sym("tokens", 64);
      b.entry("main", (e) => {
        const x = e.input("x", dtype, [t, 4, 16]);
        const pos = e.input("pos", "i32", [t]);
        if (!swapHalves) {
          e.output("y", b.rope(x, pos, { theta: 150000, yarn: { factor: 32, originalContext: 4096, betaFast: 32, betaSlow: 1 } }));
          return;
        }
        // a near miss: the second half rotates with the wrong sign (x2·cos − x1·sin)
        const angles = b.mul(b.reshape(b.cast(pos, "f32"), [t, 1]), b.literal([1, 0.5, 0.25, 0.125, 0.1, 0.05, 0.02, 0.01], "f32", [1, 8]));
        const cos = b.cast(b.reshape(b.cos(angles), [t, 1, 8]), dtype);
        const sin = b.cast(b.reshape(b.sin(angles), [t, 1, 8]), dtype);
        const first = b.slice(x, -1, 0, 8);
        const second = b.slice(x, -1, 8, 16);
        e.output("y", b.concat([b.sub(b.mul(first, cos), b.mul(second, sin)), b.sub(b.mul(second, cos), b.mul(first, sin))], -1));
      });
    });
  }

  for (const dtype of ["f32", "bf16"] as const) {
    it(`turns the builder's rope (${dtype}) into one fused op, bit-exactly`, () => {
      const g = ropeModel(dtype);
      const fused = runPipeline(g).graph;
      const counts = opCounts(fused);
      expect(counts["fusedRope"]).toBe(1);
      expect(counts["slice"]).toBeUndefined();
      expect(counts["concat"]).toBeUndefined();
      for (const tokens of [1, 3, 50]) {
        const rand = seededRandom(tokens);
        const inputs = { x: randomTensor(dtype, [tokens, 4, 16], rand), pos: hostTensor("i32", [tokens], Array.from({ length: tokens }, (_, i) => 1000 + 37 * i)) };
        expect(Array.from(interpret(fused, "main", inputs, {})["y"]!.data)).toEqual(Array.from(interpret(g, "main", inputs, {})["y"]!.data));
      }
    });
  }

  it("declines a rotation that is not the half-split one", () => {
    expect(opCounts(runPipeline(ropeModel("f32", true)).graph)["fusedRope"]).toBeUndefined();
  });
});

describe("linear (matmul + bias) fusion", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    it(`folds the bias into the matmul (${dtype}), bit-exactly`, () => {
      const g = model(dtype, 16, (b, x) => b.linear(x, b.param("w", dtype, [24, 16]), b.param("bias", dtype, [24])));
      const fused = run(g, canonicalize, fuseLinear);
      expect(opCounts(fused)).toEqual({ input: 1, param: 2, fusedLinear: 1 });
      expectSameOutputs(g, fused);
    });
  }

  it("takes a bias of another dtype through its cast, and declines a bias that is not a column vector", () => {
    const castBias = model("bf16", 16, (b, x) => b.linear(x, b.param("w", "bf16", [24, 16]), b.param("bias", "f32", [24])));
    const fused = run(castBias, canonicalize, fuseLinear);
    expect(opCounts(fused)).toEqual({ input: 1, param: 2, cast: 1, fusedLinear: 1 });
    expectSameOutputs(castBias, fused);
    const rowBias = model("f32", 16, (b, x) => b.add(b.matmul(x, b.param("w", "f32", [16, 24])), b.param("m", "f32", [x.shape[0]!, 1])));
    expect(opCounts(run(rowBias, canonicalize, fuseLinear))["fusedLinear"]).toBeUndefined();
  });
});
