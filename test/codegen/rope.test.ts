// The fusedRope kernel: NVRTC compiles the gpt-oss shapes; on a GPU it matches the interpreter.
import { describe, expect, it } from "vitest";
import { emitFusedRope } from "../../src/codegen/rope.js";
import { defineModel, Tensor } from "../../src/ir/builder.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import type { NodeOf } from "../../src/ir/node.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

function ropeNode(dtype: "f32" | "bf16" | "f16", heads: number, d: number): NodeOf<"fusedRope"> {
  let node: NodeOf<"fusedRope"> | undefined;
  defineModel("rope", (b) => {
    const t = b.sym("tokens", 8192);
    const x = b.param("x", dtype, [t, heads, d]);
    const cos = b.param("cos", dtype, [t, 1, d / 2]);
    const sin = b.param("sin", dtype, [t, 1, d / 2]);
    node = b.table.make("fusedRope", {}, [x.node, cos.node, sin.node]);
    b.entry("e", (e) => e.output("y", new Tensor(node!)));
  });
  return node!;
}

describe("rope kernel source", () => {
  it("takes tokens as an argument and bakes in heads and head dim", () => {
    const k = emitFusedRope(ropeNode("bf16", 64, 64));
    expect(k.launches).toHaveLength(1);
    expect(k.launches[0]!.kernel.source).toContain("int s0");
    expect(k.launches[0]!.args.at(-1)).toEqual({ kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } });
  });
});

describeNvrtc("rope kernel compiles", () => {
  it("for gpt-oss 20b q and k heads and the tiny model", async () => {
    expect(await compileNodeKernels([emitFusedRope(ropeNode("bf16", 64, 64)), emitFusedRope(ropeNode("bf16", 8, 64)), emitFusedRope(ropeNode("f32", 4, 16))])).toBe(3);
  });
});

describeGpu("rope kernel on the GPU", () => {
  for (const dtype of ["f32", "bf16", "f16"] as const) {
    for (const tokens of [1, 3, 50, 783, 4096]) {
      it(`matches the interpreter: ${dtype}, ${tokens} tokens`, async () => {
        const node = ropeNode(dtype, 8, 64);
        const rand = seededRandom(tokens);
        const params = {
          x: randomTensor(dtype, [tokens, 8, 64], rand, -4, 4),
          cos: randomTensor(dtype, [tokens, 1, 32], rand, -1.3, 1.3),
          sin: randomTensor(dtype, [tokens, 1, 32], rand, -1.3, 1.3),
        };
        const symbols = { tokens };
        const gpu = await runNodeKernels(node, emitFusedRope(node), [params.x, params.cos, params.sin], symbols);
        // same roundings in the same order: f32 is exact, half types agree to the last bit or one ulp
        expectClose(gpu, interpretNode(node, { params }, symbols), dtype === "f32" ? 0 : 1e-2);
      });
    }
  }
});
