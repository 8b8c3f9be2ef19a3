// fusedLinear: the matmul kernels with the bias added in their store epilogue, against the interpreter.
import { describe, expect, it } from "vitest";
import { emitFusedLinear } from "../../src/codegen/matmul.js";
import { defineModel, Tensor } from "../../src/ir/builder.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import type { NodeOf } from "../../src/ir/node.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

function linearNode(dtype: "f32" | "bf16", n: number, k: number, transposeB: boolean): NodeOf<"fusedLinear"> {
  let node: NodeOf<"fusedLinear"> | undefined;
  defineModel("linear", (b) => {
    const t = b.sym("tokens", 8192);
    const x = b.param("x", dtype, [t, k]);
    const w = b.param("w", dtype, transposeB ? [n, k] : [k, n]);
    const bias = b.param("bias", dtype, [n]);
    node = b.table.make("fusedLinear", { transposeB }, [x.node, w.node, bias.node]);
    b.entry("e", (e) => e.output("y", new Tensor(node!)));
  });
  return node!;
}

const bounds = { tokens: 8192 };

describe("fusedLinear kernels", () => {
  it("take the bias after the output and name it in the kernel", () => {
    const launch = emitFusedLinear(linearNode("bf16", 5760, 2880, true)).launches[0]!;
    expect(launch.kernel.source).toContain("const elem_t* __restrict__ bias");
    expect(launch.args.slice(0, 4)).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "output" }, { kind: "input", index: 2 }]);
  });
});

describeNvrtc("fusedLinear kernels compile", () => {
  it("for gpt-oss 20b projections, decode (GEMV) and prefill (GEMM) paths", async () => {
    const kernels = [
      emitFusedLinear(linearNode("bf16", 4096, 2880, true), { symbolBounds: { tokens: 1 } }),
      emitFusedLinear(linearNode("bf16", 4096, 2880, true), { symbolBounds: bounds }),
      emitFusedLinear(linearNode("f32", 64, 64, true), { symbolBounds: bounds }),
      emitFusedLinear(linearNode("f32", 64, 48, false), { symbolBounds: { tokens: 1 } }),
    ];
    expect(await compileNodeKernels(kernels)).toBe(4);
  });
});

describeGpu("fusedLinear on the GPU", () => {
  const cases = [
    { dtype: "bf16", n: 520, k: 256, transposeB: true },
    { dtype: "f32", n: 100, k: 72, transposeB: true },
    { dtype: "bf16", n: 96, k: 64, transposeB: false },
  ] as const;
  for (const c of cases) {
    for (const tokens of [1, 3, 50, 783]) {
      it(`matches the interpreter: ${c.dtype} ${c.transposeB ? "x·Wᵀ" : "x·W"} [${c.n}×${c.k}], ${tokens} tokens`, async () => {
        const node = linearNode(c.dtype, c.n, c.k, c.transposeB);
        const rand = seededRandom(tokens * 7 + c.n);
        const params = {
          x: randomTensor(c.dtype, [tokens, c.k], rand),
          w: randomTensor(c.dtype, c.transposeB ? [c.n, c.k] : [c.k, c.n], rand),
          bias: randomTensor(c.dtype, [c.n], rand, -4, 4),
        };
        const symbols = { tokens };
        const gpu = await runNodeKernels(node, emitFusedLinear(node, { symbolBounds: symbols }), [params.x, params.w, params.bias], symbols);
        expectClose(gpu, interpretNode(node, { params }, symbols), c.dtype === "f32" ? 1e-5 : 1e-2);
      });
    }
  }
});
