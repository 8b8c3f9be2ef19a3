// Property test: the pass pipeline preserves the interpreter's outputs bit for bit on random graphs
// of elementwise and reduction ops (with broadcasts, casts, constants and several outputs).
import { describe, expect, it } from "vitest";
import { type ModelBuilder, type Tensor, defineModel } from "../../src/ir/builder.js";
import type { Graph } from "../../src/ir/graph.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import type { BinaryFn, UnaryFn } from "../../src/ir/ops.js";
import { opCounts, runPipeline } from "../../src/passes/pipeline.js";

const WIDTH = 6;
const SAFE_UNARY: UnaryFn[] = ["tanh", "sigmoid", "neg", "abs", "sin", "cos"];
const BINARY: BinaryFn[] = ["add", "sub", "mul", "max", "min"];

/** A random graph: each step applies one op to values built so far; returns 1–2 outputs. */
function randomGraph(seed: number): Graph {
  const rand = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  return defineModel(`random-${seed}`, (b: ModelBuilder) => {
    const t = b.sym("tokens", 16);
    b.entry("main", (e) => {
      const dtype = rand() < 0.5 ? "f32" : "bf16";
      const values: Tensor[] = [e.input("a", dtype, [t, WIDTH]), e.input("b", dtype, [t, WIDTH])];
      if (rand() < 0.5) values.push(b.param("row", dtype, [WIDTH]));
      const steps = 4 + Math.floor(rand() * 12);
      for (let s = 0; s < steps; s++) {
        const x = pick(values);
        const kind = rand();
        let y: Tensor;
        if (kind < 0.3) y = b.unary(pick(SAFE_UNARY), x);
        else if (kind < 0.6) y = b.binary(pick(BINARY), x, rand() < 0.3 ? Math.round(rand() * 40 - 20) / 8 : pick(values));
        else if (kind < 0.7) y = b.cast(b.cast(x, x.dtype === "f32" ? "bf16" : "f32"), x.dtype);
        else if (kind < 0.8) y = b.where(b.gt(x, pick(values)), x, rand() < 0.5 ? 0.5 : pick(values));
        else if (kind < 0.9 && x.rank === 2) y = b.sub(x, b.reduce(pick(["sum", "max", "min", "mean"] as const), x, -1, true));
        else y = b.exp(b.clamp(x, -4, 4));
        if (y.rank === 2) values.push(y);
      }
      e.output("y", values[values.length - 1]!);
      if (rand() < 0.5) e.output("z", values[2 + Math.floor(rand() * (values.length - 2))]!);
    });
  });
}

describe("pipeline on random elementwise/reduction graphs", () => {
  it("keeps every output bit-identical (200 graphs × 3 token counts)", () => {
    let fusedKernels = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const g = randomGraph(seed);
      const fused = runPipeline(g).graph;
      fusedKernels += opCounts(fused)["fusedElementwise"] ?? 0;
      for (const tokens of [1, 3, 7]) {
        const rand = seededRandom(seed * 31 + tokens);
        const inputs = Object.fromEntries(g.entries[0]!.inputs.map((i) => [i.name, randomTensor(i.dtype, [tokens, WIDTH], rand, -3, 3)]));
        const params = Object.fromEntries(g.params.map((p) => [p.name, randomTensor(p.dtype, [WIDTH], rand, -3, 3)]));
        const before = interpret(g, "main", inputs, params);
        const after = interpret(fused, "main", inputs, params);
        for (const name of Object.keys(before)) {
          const x = Array.from(before[name]!.data);
          const y = Array.from(after[name]!.data);
          expect(y.map((v, i) => Object.is(v, x[i]) || (Number.isNaN(v) && Number.isNaN(x[i]))), `graph ${seed}, output ${name}, ${tokens} tokens`).not.toContain(false);
        }
      }
    }
    expect(fusedKernels).toBeGreaterThan(100); // the property is exercised: most graphs fuse something
  });
});
