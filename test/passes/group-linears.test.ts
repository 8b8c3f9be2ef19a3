// Linear layers of one input grouped into one launch: which layers group, and that nothing changes value.
import { describe, expect, it } from "vitest";
import { defineModel } from "../../src/ir/builder.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import { opCounts, runPipeline } from "../../src/passes/pipeline.js";

function model(dtype: "bf16" | "f32", opts: { otherInput?: boolean; noBias?: boolean } = {}) {
  return defineModel("linears", (b) => {
    const t = b.sym("tokens", 8);
    b.entry("e", (e) => {
      const x = e.input("x", dtype, [t, 32]);
      const x2 = opts.otherInput ? e.input("x2", dtype, [t, 32]) : x;
      e.output("q", b.linear(x, b.param("wq", dtype, [64, 32]), b.param("bq", dtype, [64])));
      e.output("k", b.linear(x, b.param("wk", dtype, [16, 32]), opts.noBias ? undefined : b.param("bk", dtype, [16])));
      e.output("v", b.linear(x2, b.param("wv", dtype, [16, 32]), b.param("bv", dtype, [16])));
    });
  });
}

describe("group-linears", () => {
  it("groups the biased linears of one bf16 input and keeps every value bit-exact", () => {
    const g = model("bf16");
    const fused = runPipeline(g).graph;
    expect(opCounts(fused)["groupedLinear"]).toBe(3);
    expect(opCounts(fused)["fusedLinear"]).toBeUndefined();
    const rand = seededRandom(3);
    const params = Object.fromEntries(g.params.map((p) => [p.name, randomTensor("bf16", p.shape as number[], rand)]));
    const inputs = { x: randomTensor("bf16", [5, 32], rand) };
    const [a, b] = [interpret(g, "e", inputs, params), interpret(fused, "e", inputs, params)];
    for (const name of ["q", "k", "v"]) expect(Array.from(b[name]!.data)).toEqual(Array.from(a[name]!.data));
  });

  it("leaves alone f32 layers, layers of another input and layers without a bias", () => {
    expect(opCounts(runPipeline(model("f32")).graph)["groupedLinear"]).toBeUndefined();
    expect(opCounts(runPipeline(model("bf16", { otherInput: true })).graph)["groupedLinear"]).toBe(2); // q and k only
    expect(opCounts(runPipeline(model("bf16", { noBias: true })).graph)["groupedLinear"]).toBe(2); // q and v
    expect(opCounts(runPipeline(model("bf16", { otherInput: true, noBias: true })).graph)["groupedLinear"]).toBeUndefined();
  });
});
