// Every op's shape and dtype rule, valid and invalid; errors name the op, the operand shapes and the
// caller's file:line. The table is a mapped type over Op, so a new op without a test fails to compile.
import { describe, expect, it } from "vitest";
import { type ModelBuilder, Tensor, defineModel } from "../../src/ir/builder.js";
import { IRError } from "../../src/ir/node.js";
import type { Op } from "../../src/ir/ops.js";
import { formatShape } from "../../src/ir/shape.js";

/** Runs `body` inside a model builder with a `tokens` symbol declared. */
function withBuilder(body: (b: ModelBuilder) => void): void {
  defineModel("t", (b) => {
    b.sym("tokens", 16);
    b.sym("past", 8);
    b.sym("seqs", 4);
    b.sym("blocks", 4);
    body(b);
    b.entry("e", (e) => e.output("y", b.constant(1, "f32")));
  });
}

function typeOf(t: Tensor): string {
  return `${t.dtype}${formatShape(t.shape)}`;
}

function expectIRError(fn: () => unknown, ...fragments: string[]): IRError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(IRError);
  const err = caught as IRError;
  for (const f of fragments) expect(err.message).toContain(f);
  expect(err.message).toMatch(/type-rules\.test\.ts:\d+:\d+/);
  return err;
}

interface OpCase {
  valid: (b: ModelBuilder) => void;
  invalid: (b: ModelBuilder) => void;
}

const x34 = (b: ModelBuilder, dtype: "f32" | "bf16" = "f32") => b.constant(0.5, dtype, [3, 4]);

const CASES: { [K in Op]: OpCase } = {
  input: {
    valid: (b) => {
      const t = b.inputNode("ids", "i32", ["tokens"]);
      expect(typeOf(t)).toBe("i32[tokens]");
    },
    invalid: (b) => expectIRError(() => b.inputNode("x", "f32", [-1]), "input", "invalid dim -1"),
  },
  param: {
    valid: (b) => expect(typeOf(b.param("w", "bf16", [4, 8]))).toBe("bf16[4, 8]"),
    invalid: (b) => expectIRError(() => b.param("w2", "f32", [2.5]), "param", "invalid dim 2.5"),
  },
  state: {
    valid: (b) => {
      expect(typeOf(b.state("kv", "bf16", [16, 2, 8]))).toBe("bf16[16, 2, 8]");
      expect(typeOf(b.state("pool", "bf16", ["past", 2, 8]))).toBe("bf16[past, 2, 8]"); // sized at load
    },
    invalid: (b) => expectIRError(() => b.state("kv2", "f32", ["past+1", 2]), "state kv2", "a number or one symbol"),
  },
  constant: {
    valid: (b) => expect(typeOf(b.constant(-Infinity, "f32", ["tokens", 2]))).toBe("f32[tokens, 2]"),
    invalid: (b) => expectIRError(() => b.constant(1, "f32", [-3]), "constant", "invalid dim -3"),
  },
  literal: {
    valid: (b) => expect(typeOf(b.literal([1, 2, 3, 4, 5, 6], "f32", [2, 3]))).toBe("f32[2, 3]"),
    invalid: (b) => expectIRError(() => b.literal([1, 2, 3], "f32", [2, 2]), "literal", "needs 4 values, got 3"),
  },
  iota: {
    valid: (b) => expect(typeOf(b.iota(["tokens", 4], 1))).toBe("i32[tokens, 4]"),
    invalid: (b) => expectIRError(() => b.iota([4], 1), "iota", "axis 1 is out of range"),
  },
  unary: {
    valid: (b) => expect(typeOf(b.exp(x34(b, "bf16")))).toBe("bf16[3, 4]"),
    invalid: (b) => expectIRError(() => b.exp(b.constant(1, "i32", [3])), "unary", "i32[3]", "must be a float type"),
  },
  binary: {
    valid: (b) => expect(typeOf(b.add(x34(b), b.constant(1, "f32", [4])))).toBe("f32[3, 4]"),
    invalid: (b) => expectIRError(() => b.add(x34(b), x34(b, "bf16")), "binary", "f32[3, 4], bf16[3, 4]", "dtypes differ"),
  },
  ternary: {
    valid: (b) => {
      const cond = b.gt(x34(b), 0);
      expect(typeOf(b.where(cond, x34(b), 0))).toBe("f32[3, 4]");
      expect(typeOf(b.clamp(x34(b), -7, 7))).toBe("f32[3, 4]");
    },
    invalid: (b) => expectIRError(() => b.where(x34(b), x34(b), x34(b)), "ternary", "condition must be bool"),
  },
  compare: {
    valid: (b) => expect(typeOf(b.lt(x34(b), 1))).toBe("bool[3, 4]"),
    invalid: (b) => expectIRError(() => b.lt(x34(b), b.constant(1, "i32", [3, 4])), "compare", "dtypes differ"),
  },
  cast: {
    valid: (b) => expect(typeOf(b.cast(x34(b), "bf16"))).toBe("bf16[3, 4]"),
    invalid: (b) => expectIRError(() => b.cast(x34(b), "e8m0"), "cast", "MX storage types"),
  },
  reduce: {
    valid: (b) => {
      expect(typeOf(b.mean(x34(b), -1, true))).toBe("f32[3, 1]");
      expect(typeOf(b.sum(x34(b), 0))).toBe("f32[4]");
    },
    invalid: (b) => expectIRError(() => b.mean(b.constant(1, "i32", [3]), 0), "reduce", "must be a float type"),
  },
  matmul: {
    valid: (b) => {
      const x = b.constant(1, "f32", ["tokens", 8]);
      expect(typeOf(b.matmul(x, b.param("w", "f32", [16, 8]), { transposeB: true }))).toBe("f32[tokens, 16]");
      expect(typeOf(b.matmul(b.constant(1, "f32", [2, 3, 8]), b.constant(1, "f32", [2, 8, 5])))).toBe("f32[2, 3, 5]");
    },
    invalid: (b) => expectIRError(() => b.matmul(x34(b), x34(b)), "matmul", "f32[3, 4], f32[3, 4]", "contraction dims differ"),
  },
  reshape: {
    valid: (b) => expect(typeOf(b.reshape(b.constant(1, "f32", ["tokens", 4, 8]), ["tokens", 32]))).toBe("f32[tokens, 32]"),
    invalid: (b) => expectIRError(() => b.reshape(x34(b), [5, 2]), "reshape", "cannot reshape [3, 4] to [5, 2]"),
  },
  transpose: {
    valid: (b) => expect(typeOf(b.transpose(b.constant(1, "f32", [2, 3, 4]), [2, 0, 1]))).toBe("f32[4, 2, 3]"),
    invalid: (b) => expectIRError(() => b.transpose(x34(b), [0, 0]), "transpose", "not a permutation"),
  },
  slice: {
    valid: (b) => {
      expect(typeOf(b.slice(b.constant(1, "f32", [3, 10]), 1, 1, 10, 2))).toBe("f32[3, 5]");
      expect(typeOf(b.slice(b.constant(1, "f32", ["tokens+1"]), 0, 0, "tokens"))).toBe("f32[tokens]");
    },
    invalid: (b) => expectIRError(() => b.slice(x34(b), 1, 0, 9), "slice", "end 9 exceeds dim 4"),
  },
  concat: {
    valid: (b) => expect(typeOf(b.concat([b.constant(1, "f32", ["past", 2]), b.constant(1, "f32", ["tokens", 2])], 0))).toBe("f32[past+tokens, 2]"),
    invalid: (b) => expectIRError(() => b.concat([x34(b), b.constant(1, "f32", [3, 5])], 0), "concat", "differ in dim 1"),
  },
  gather: {
    valid: (b) => expect(typeOf(b.gather(b.param("emb", "bf16", [100, 8]), b.inputNode("ids", "i32", ["tokens"])))).toBe("bf16[tokens, 8]"),
    invalid: (b) => expectIRError(() => b.gather(x34(b), x34(b)), "gather", "indices must be an integer type"),
  },
  scatter: {
    valid: (b) => expect(typeOf(b.scatter(x34(b), b.constant(0, "i32", [2]), b.constant(1, "f32", [2, 4])))).toBe("f32[3, 4]"),
    invalid: (b) => expectIRError(() => b.scatter(x34(b), b.constant(0, "i32", [2]), x34(b)), "scatter", "updates must have shape [2, 4]"),
  },
  broadcast: {
    valid: (b) => expect(typeOf(b.broadcast(b.constant(1, "f32", [4]), ["tokens", 4]))).toBe("f32[tokens, 4]"),
    invalid: (b) => expectIRError(() => b.broadcast(x34(b), [3, 5]), "broadcast", "cannot broadcast [3, 4] to [3, 5]"),
  },
  topk: {
    valid: (b) => {
      const { values, indices } = b.topk(b.constant(1, "bf16", ["tokens", 32]), 4);
      expect([typeOf(values), typeOf(indices)]).toEqual(["bf16[tokens, 4]", "i32[tokens, 4]"]);
    },
    invalid: (b) => expectIRError(() => b.topk(x34(b), 5), "topk", "k = 5 is out of range"),
  },
  dequantMxfp4: {
    valid: (b) => {
      const w = b.mxfp4Param("experts.down", [4, 64, 96]);
      expect(typeOf(b.dequantMxfp4(w.blocks, w.scales))).toBe("bf16[4, 64, 96]");
    },
    invalid: (b) => expectIRError(() => b.dequantMxfp4(b.param("blk", "u8", [4, 3, 16]), b.param("sc", "e8m0", [4, 3])), "dequantMxfp4", "blocks must be fp4e2m1x2"),
  },
  fusedRmsNorm: {
    valid: (b) => {
      const n = b.table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: true, result: "sum" }, [x34(b).node, x34(b).node, b.constant(1, "f32", [4]).node]);
      expect(typeOf(new Tensor(n))).toBe("f32[3, 4]");
    },
    invalid: () =>
      withBuilder((b) =>
        expectIRError(() => b.table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: false, result: "normed" }, [x34(b).node, b.constant(1, "f32", [5]).node], { file: "test/ir/type-rules.test.ts", line: 1, column: 1 }), "fusedRmsNorm", "weight length differs"),
      ),
  },
  sinkAttention: {
    valid: (b) => {
      const q = b.constant(1, "bf16", ["tokens", 8, 16]);
      const k = b.constant(1, "bf16", ["past", 2, 16]);
      const n = b.table.make("sinkAttention", { scale: 0.25, window: 4, hasSinks: true }, [q.node, k.node, k.node, b.constant(0, "i32", ["tokens"]).node, b.constant(0, "i32", ["past"]).node, b.constant(0, "f32", [8]).node]);
      expect(typeOf(new Tensor(n))).toBe("bf16[tokens, 8, 16]");
    },
    invalid: (b) => {
      const q = b.constant(1, "f32", [3, 6, 16]).node;
      const k = b.constant(1, "f32", [5, 4, 16]).node;
      const pos = (n: number) => b.constant(0, "i32", [n]).node;
      expectIRError(() => b.table.make("sinkAttention", { scale: 1, window: 0, hasSinks: false }, [q, k, k, pos(3), pos(5)], { file: "test/ir/type-rules.test.ts", line: 2, column: 1 }), "sinkAttention", "static multiple of kv heads");
    },
  },
  pagedAttention: {
    valid: (b) => {
      const c = (dtype: "bf16" | "i32", shape: (number | string)[]) => b.constant(1, dtype, shape).node;
      const n = b.table.make("pagedAttention", { scale: 0.25, window: 0, blockSize: 16, hasSinks: true }, [
        c("bf16", ["tokens", 8, 16]), c("bf16", ["tokens", 2, 16]), c("bf16", ["tokens", 2, 16]), c("bf16", [64, 2, 16]), c("bf16", [64, 2, 16]),
        c("i32", ["tokens"]), c("i32", ["tokens"]), c("i32", ["seqs"]), c("i32", ["seqs", 4]), b.constant(0, "f32", [8]).node,
      ]);
      expect(typeOf(new Tensor(n))).toBe("bf16[tokens, 8, 16]");
    },
    invalid: (b) => {
      const c = (dtype: "f32" | "i32", shape: (number | string)[]) => b.constant(1, dtype, shape).node;
      expectIRError(
        () => b.table.make("pagedAttention", { scale: 1, window: 0, blockSize: 16, hasSinks: false }, [
          c("f32", [3, 8, 16]), c("f32", [3, 2, 16]), c("f32", [3, 2, 16]), c("f32", [64, 2, 16]), c("f32", [64, 2, 16]),
          c("i32", [3]), c("i32", [3]), c("i32", ["seqs"]), c("i32", ["seqs", "blocks"]),
        ], { file: "test/ir/type-rules.test.ts", line: 4, column: 1 }),
        "pagedAttention", "width (blocks per sequence) must be static",
      );
    },
  },
  sample: {
    valid: (b) => {
      const n = b.sample(b.constant(1, "bf16", ["seqs", 32]), { temperature: b.constant(0, "f32", ["seqs"]), topK: b.constant(0, "i32", ["seqs"]), topP: b.constant(1, "f32", ["seqs"]), uniform: b.constant(0, "f32", ["seqs"]) });
      expect(typeOf(n)).toBe("i32[seqs]");
    },
    invalid: (b) =>
      expectIRError(
        () => b.sample(b.constant(1, "f32", ["seqs", 32]), { temperature: b.constant(0, "f32", ["seqs"]), topK: b.constant(0, "f32", ["seqs"]), topP: b.constant(1, "f32", ["seqs"]), uniform: b.constant(0, "f32", ["seqs"]) }),
        "sample", "topK must be i32[seqs]",
      ),
  },
  seqTokenRanges: {
    valid: (b) => {
      const n = b.table.make("seqTokenRanges", {}, [b.constant(0, "i32", ["tokens"]).node, b.constant(0, "i32", ["seqs"]).node]);
      expect(typeOf(new Tensor(n))).toBe("i32[seqs, 2]");
    },
    invalid: (b) =>
      expectIRError(() => b.table.make("seqTokenRanges", {}, [b.constant(0, "i32", ["tokens", 2]).node, b.constant(0, "i32", ["seqs"]).node], { file: "test/ir/type-rules.test.ts", line: 5, column: 1 }), "seqTokenRanges", "tokenSeqs must have rank 1"),
  },
  uniqueIndices: {
    valid: (b) => expect(typeOf(new Tensor(b.table.make("uniqueIndices", {}, [b.constant(0, "i32", ["tokens"]).node])))).toBe("i32[tokens]"),
    invalid: (b) => expectIRError(() => b.table.make("uniqueIndices", {}, [b.constant(0, "f32", ["tokens"]).node], { file: "test/ir/type-rules.test.ts", line: 6, column: 1 }), "uniqueIndices", "indices must be i32"),
  },
  moeExperts: {
    valid: (b) => {
      const p = (name: string, shape: number[]) => b.param(name, "f32", shape).node;
      const n = b.table.make("moeExperts", { topK: 2, limit: 7, alpha: 1.702, weightFormat: "dense" }, [
        b.constant(1, "f32", ["tokens", 8]).node, p("rw", [4, 8]), p("rb", [4]), p("gw", [4, 8, 12]), p("gb", [4, 12]), p("dw", [4, 6, 8]), p("db", [4, 8]),
      ]);
      expect(typeOf(new Tensor(n))).toBe("f32[tokens, 8]");
    },
    invalid: (b) => {
      const p = (name: string, shape: number[]) => b.param(name, "f32", shape).node;
      expectIRError(
        () => b.table.make("moeExperts", { topK: 5, limit: 7, alpha: 1.702, weightFormat: "dense" }, [b.constant(1, "f32", [3, 8]).node, p("rw", [4, 8]), p("rb", [4]), p("gw", [4, 8, 12]), p("gb", [4, 12]), p("dw", [4, 6, 8]), p("db", [4, 8])], { file: "test/ir/type-rules.test.ts", line: 3, column: 1 }),
        "moeExperts", "topK 5 out of range",
      );
    },
  },
  mxfp4Matmul: {
    valid: (b) => {
      const w = b.mxfp4Param("w", [48, 64]);
      expect(typeOf(new Tensor(b.table.make("mxfp4Matmul", {}, [b.constant(1, "bf16", ["tokens", 64]).node, w.blocks.node, w.scales.node])))).toBe("bf16[tokens, 48]");
    },
    invalid: (b) => {
      const w = b.mxfp4Param("w", [48, 64]);
      expectIRError(() => b.table.make("mxfp4Matmul", {}, [x34(b).node, w.blocks.node, w.scales.node], { file: "test/ir/type-rules.test.ts", line: 4, column: 1 }), "mxfp4Matmul", "contraction dims differ");
    },
  },
  fusedLinear: {
    valid: (b) => {
      const n = b.table.make("fusedLinear", { transposeB: true }, [b.constant(1, "bf16", ["tokens", 64]).node, b.param("w", "bf16", [32, 64]).node, b.param("bias", "bf16", [32]).node]);
      expect(typeOf(new Tensor(n))).toBe("bf16[tokens, 32]");
    },
    invalid: (b) =>
      expectIRError(
        () => b.table.make("fusedLinear", { transposeB: true }, [b.constant(1, "bf16", [3, 64]).node, b.param("w", "bf16", [32, 64]).node, b.param("bias", "f32", [32]).node], { file: "test/ir/type-rules.test.ts", line: 7, column: 1 }),
        "fusedLinear", "bias must be bf16, got f32",
      ),
  },  groupedLinear: {
    valid: (b) => {
      const ins = [b.constant(1, "bf16", ["tokens", 64]).node, b.param("wq", "bf16", [32, 64]).node, b.param("bq", "bf16", [32]).node, b.param("wk", "bf16", [8, 64]).node, b.param("bk", "bf16", [8]).node];
      expect(typeOf(new Tensor(b.table.make("groupedLinear", { result: 1 }, ins)))).toBe("bf16[tokens, 8]");
    },
    invalid: (b) =>
      expectIRError(
        () => b.table.make("groupedLinear", { result: 2 }, [b.constant(1, "bf16", [3, 64]).node, b.param("wq", "bf16", [32, 64]).node, b.param("bq", "bf16", [32]).node, b.param("wk", "bf16", [8, 64]).node, b.param("bk", "bf16", [8]).node], { file: "test/ir/type-rules.test.ts", line: 7, column: 1 }),
        "groupedLinear", "result 2 is not one of its 2 layers",
      ),
  },

  fusedRope: {
    valid: (b) => {
      const x = b.constant(1, "bf16", ["tokens", 4, 16]);
      const cs = b.constant(0.5, "bf16", ["tokens", 1, 8]);
      expect(typeOf(new Tensor(b.table.make("fusedRope", {}, [x.node, cs.node, cs.node])))).toBe("bf16[tokens, 4, 16]");
    },
    invalid: (b) => {
      const x = b.constant(1, "bf16", ["tokens", 4, 16]);
      const wrong = b.constant(0.5, "bf16", ["tokens", 1, 16]);
      expectIRError(() => b.table.make("fusedRope", {}, [x.node, wrong.node, wrong.node], { file: "test/ir/type-rules.test.ts", line: 6, column: 1 }), "fusedRope", "cos must be [tokens, 1, 8]");
    },
  },
  fusedElementwise: {
    valid: (b) => {
      const body = [{ op: "input", index: 0 }, { op: "input", index: 1 }, { op: "binary", fn: "mul", a: 0, b: 1 }, { op: "cast", to: "bf16", a: 2 }] as const;
      const n = b.table.make("fusedElementwise", { body, shape: [3, 4] }, [x34(b).node, b.constant(2, "f32", [4]).node]);
      expect(typeOf(new Tensor(n))).toBe("bf16[3, 4]");
    },
    invalid: (b) =>
      expectIRError(() => b.table.make("fusedElementwise", { body: [{ op: "unary", fn: "exp", a: 1 }], shape: [3, 4] }, [x34(b).node], { file: "test/ir/type-rules.test.ts", line: 5, column: 1 }), "fusedElementwise", "not an earlier instruction"),
  },
  allReduce: {
    valid: (b) => expect(typeOf(new Tensor(b.table.make("allReduce", { ranks: 4, seq: 0 }, [b.constant(1, "bf16", ["tokens", 8]).node])))).toBe("bf16[tokens, 8]"),
    invalid: (b) => expectIRError(() => b.table.make("allReduce", { ranks: 0, seq: 0 }, [x34(b).node], { file: "test/ir/type-rules.test.ts", line: 6, column: 1 }), "allReduce", "ranks must be a positive integer"),
  },
  allGather: {
    valid: (b) => expect(typeOf(new Tensor(b.table.make("allGather", { ranks: 4, seq: 1 }, [b.constant(1, "f32", ["seqs", 8]).node])))).toBe("f32[4, seqs, 8]"),
    invalid: (b) => expectIRError(() => b.table.make("allGather", { ranks: 2, seq: -1 }, [x34(b).node], { file: "test/ir/type-rules.test.ts", line: 7, column: 1 }), "allGather", "seq must be a non-negative integer"),
  },
  reduceScatter: {
    valid: (b) => expect(typeOf(new Tensor(b.table.make("reduceScatter", { ranks: 3, seq: 2 }, [b.constant(1, "f32", [3, "tokens", 8]).node])))).toBe("f32[tokens, 8]"),
    invalid: (b) => expectIRError(() => b.table.make("reduceScatter", { ranks: 2, seq: 0 }, [x34(b).node], { file: "test/ir/type-rules.test.ts", line: 8, column: 1 }), "reduceScatter", "a block per rank"),
  },
};

describe("type rules", () => {
  for (const [op, c] of Object.entries(CASES) as [Op, OpCase][]) {
    it(`${op}: derives the result type`, () => withBuilder(c.valid));
    it(`${op}: rejects invalid operands naming op, shapes and site`, () => withBuilder(c.invalid));
  }

  it("points at the exact line of the user's call", () => {
    let err: IRError | undefined;
    let expectedLine = 0;
    withBuilder((b) => {
      const x = b.constant(1, "f32", [3, 4]);
      try {
        expectedLine = Number(/type-rules\.test\.ts:(\d+)/.exec(new Error().stack ?? "")?.[1]) + 1;
        b.matmul(x, x);
      } catch (e) {
        err = e as IRError;
      }
    });
    expect(err?.site?.file).toMatch(/test[\\/]ir[\\/]type-rules\.test\.ts$/);
    expect(err?.site?.line).toBe(expectedLine);
    expect(err?.message).toContain(`type-rules.test.ts:${expectedLine}:`);
  });

  it("names undeclared symbols", () => {
    expect(() => withBuilder((b) => b.param("w", "f32", ["nope", 4]))).toThrow(/undeclared symbol nope/);
  });
});
