// fusedLinear: the matmul kernels with the bias added in their store epilogue, against the interpreter.
import { describe, expect, it } from "vitest";
import { emitFusedLinear, emitGroupedLinear } from "../../src/codegen/matmul.js";
import { compile } from "../../src/compile/compile.js";
import { interpret } from "../../src/ir/interpret.js";
import { Device, PlanExecutor } from "../../runtime/index.js";
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

/** Three linear layers of one x [tokens, k] (q/k/v-like), as a model: the pipeline groups them. */
function threeLinears(dtype: "bf16" | "f32", ns: readonly number[], k: number, maxTokens: number) {
  return defineModel("three-linears", (b) => {
    const t = b.sym("tokens", maxTokens);
    b.entry("e", (e) => {
      const x = e.input("x", dtype, [t, k]);
      ns.forEach((n, i) => e.output(`y${i}`, b.linear(x, b.param(`w${i}`, dtype, [n, k]), b.param(`b${i}`, dtype, [n]))));
    });
  });
}

function groupedNodes(ns: readonly number[], k: number): NodeOf<"groupedLinear">[] {
  let nodes: NodeOf<"groupedLinear">[] = [];
  defineModel("grouped", (b) => {
    const x = b.param("x", "bf16", [b.sym("tokens", 1), k]);
    const ins = [x.node, ...ns.flatMap((n, i) => [b.param(`w${i}`, "bf16", [n, k]).node, b.param(`b${i}`, "bf16", [n]).node])];
    nodes = ns.map((_, result) => b.table.make("groupedLinear", { result }, ins) as NodeOf<"groupedLinear">);
    b.entry("e", (e) => nodes.forEach((n, i) => e.output(`y${i}`, new Tensor(n))));
  });
  return nodes;
}

describe("fusedLinear kernels", () => {
  it("take the bias after the output and name it in the kernel", () => {
    const launch = emitFusedLinear(linearNode("bf16", 5760, 2880, true)).launches[0]!;
    expect(launch.kernel.source).toContain("const elem_t* __restrict__ bias");
    expect(launch.args.slice(0, 4)).toEqual([{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "output" }, { kind: "input", index: 2 }]);
  });
});

describe("groupedLinear kernels", () => {
  it("run every layer's 16-row tiles in one GEMV launch, each layer's output bound as its sibling", () => {
    const { launches } = emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 1 } });
    expect(launches).toHaveLength(1);
    expect(launches[0]!.grid[1]).toEqual({ dims: [], scale: 256 + 32 + 32, divisor: 1 });
    expect(launches[0]!.args.slice(0, 7)).toEqual([
      { kind: "input", index: 0 },
      { kind: "input", index: 1 }, { kind: "sibling", result: "0" }, { kind: "input", index: 2 },
      { kind: "input", index: 3 }, { kind: "sibling", result: "1" }, { kind: "input", index: 4 },
    ]);
  });

  it("keep a launch per layer on the GEMM path", () => {
    expect(emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 4096 } }).launches).toHaveLength(3);
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

  it("for the grouped q/k/v GEMV of gpt-oss 20b", async () => {
    expect(await compileNodeKernels([emitGroupedLinear(groupedNodes([4096, 512, 512], 2880), { symbolBounds: { tokens: 1 } })])).toBe(1);
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

describeGpu("groupedLinear on the GPU", () => {
  for (const [maxTokens, tokensList] of [[8, [1, 3, 8]], [64, [50, 17]], [512, [300]]] as const) {
    it(`computes each layer as its own linear would (bf16, ${maxTokens <= 256 ? `one grouped GEMV, up to ${maxTokens} rows` : "a GEMM per layer"})`, async () => {
      const device = Device.open(0);
      const ns = [520, 16, 48];
      const graph = threeLinears("bf16", ns, 256, maxTokens);
      const { plan } = await compile(graph, { arch: device.info.arch, cacheDir: false });
      expect(plan.opCounts["groupedLinear"]).toBe(3);
      expect(plan.entries[0]!.buckets[0]!.launches.filter((l) => l.op === "groupedLinear")).toHaveLength(maxTokens <= 256 ? 1 : 3);
      const exec = await PlanExecutor.load(plan, device, { cacheDir: false });
      try {
        const rand = seededRandom(maxTokens);
        const params = Object.fromEntries(ns.flatMap((n, i) => [[`w${i}`, randomTensor("bf16", [n, 256], rand)], [`b${i}`, randomTensor("bf16", [n], rand, -4, 4)]]));
        exec.setParams(params);
        for (const tokens of tokensList) {
          const inputs = { x: randomTensor("bf16", [tokens, 256], rand) };
          const gpu = exec.run("e", inputs);
          const ref = interpret(graph, "e", inputs, params);
          ns.forEach((_, i) => expectClose(gpu[`y${i}`]!, ref[`y${i}`]!, 1e-2, `y${i} at ${tokens} tokens`));
        }
      } finally {
        exec.dispose();
      }
    });
  }
});
