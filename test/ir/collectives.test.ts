// Collectives on the reference interpreter: allReduce, allGather and reduceScatter over N simulated ranks
// (interpretRanks), their order by seq, the errors of a rank set whose ranks disagree, and the two ops the sharding
// pass relies on beside them: sample over candidate columns with ids, and moeExperts holding some of the experts.
import { describe, expect, it } from "vitest";
import { defineModel, type ModelBuilder, Tensor } from "../../src/ir/builder.js";
import type { Graph } from "../../src/ir/graph.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { combineCollective } from "../../src/ir/collectives.js";
import { interpret, interpretRanks, sampleCandidates, sampleRow } from "../../src/ir/interpret.js";
import type { Op, OpAttrs } from "../../src/ir/ops.js";

const op = <K extends Op>(b: ModelBuilder, name: K, attrs: OpAttrs[K], inputs: readonly Tensor[]) => new Tensor(b.table.make(name, attrs, inputs.map((t) => t.node)));

/** Rank r of a set: y = collective(x · (r + 1)) for each of the three collectives. */
function rankGraph(ranks: number, rank: number, order: "ascending" | "descending" = "ascending"): Graph {
  return defineModel(`rank${rank}`, (b) => {
    const n = b.sym("n", 8);
    b.entry("run", (e) => {
      const x = e.input("x", "f32", [ranks, n]);
      const mine = b.mul(x, rank + 1);
      const seqs = order === "ascending" ? [0, 1, 2] : [2, 1, 0];
      e.output("sum", op(b, "allReduce", { ranks, seq: seqs[0]! }, [mine]));
      e.output("gathered", op(b, "allGather", { ranks, seq: seqs[1]! }, [b.slice(mine, 0, 0, 1)]));
      e.output("scattered", op(b, "reduceScatter", { ranks, seq: seqs[2]! }, [mine]));
    });
  });
}

describe("collectives over simulated ranks", () => {
  for (const ranks of [1, 2, 3, 4, 8])
    it(`${ranks} ranks: allReduce sums, allGather stacks in rank order, reduceScatter gives rank r its block of the sum`, () => {
      const n = 5;
      const x = hostTensor("f32", [ranks, n], Array.from({ length: ranks * n }, (_, i) => Math.sin(i + 1)));
      const graphs = Array.from({ length: ranks }, (_, r) => rankGraph(ranks, r));
      const results = interpretRanks(graphs, "run", { x }, graphs.map(() => ({})));
      // each rank's operand is rounded to f32, their sum once more
      const total = (v: number) => Math.fround(Array.from({ length: ranks }, (_, q) => Math.fround(v * (q + 1))).reduce((a, b) => a + b, 0));
      results.forEach((res, r) => {
        expect(Array.from(res.outputs.sum!.data)).toEqual(Array.from(x.data, total));
        expect(res.outputs.gathered!.shape).toEqual([ranks, 1, n]);
        expect(Array.from(res.outputs.gathered!.data)).toEqual(Array.from({ length: ranks * n }, (_, i) => Math.fround(x.data[i % n]! * (Math.floor(i / n) + 1))));
        expect(res.outputs.scattered!.shape).toEqual([n]);
        expect(Array.from(res.outputs.scattered!.data)).toEqual(Array.from(x.data.subarray(r * n, (r + 1) * n), total));
      });
    });

  it("every rank meets the collectives in seq order, whatever order the graph lists them in", () => {
    const graphs = [rankGraph(2, 0, "descending"), rankGraph(2, 1, "descending")];
    const x = hostTensor("f32", [2, 3], [1, 2, 3, 4, 5, 6]);
    const [a, b] = interpretRanks(graphs, "run", { x }, [{}, {}]);
    expect(Array.from(a!.outputs.sum!.data)).toEqual([3, 6, 9, 12, 15, 18]);
    expect(Array.from(b!.outputs.scattered!.data)).toEqual([12, 15, 18]);
  });

  it("sums in f64 and rounds once to the dtype (bf16)", () => {
    const t = (v: number) => hostTensor("bf16", [1], [v]);
    const node = { op: "allReduce" as const, attrs: { ranks: 3, seq: 0 }, dtype: "bf16" as const };
    // 1 + 2^-8 + 2^-8: each partial sum in bf16 would round 1 + 2^-8 down to 1; one rounding of the exact sum does not
    expect(combineCollective(node, [t(1), t(2 ** -8), t(2 ** -8)])[0]!.data[0]).toBe(1 + 2 ** -7);
  });

  it("refuses a collective outside a rank set, ranks that disagree, and operands of different shapes", () => {
    const g = rankGraph(2, 0);
    const x = hostTensor("f32", [2, 3], [1, 2, 3, 4, 5, 6]);
    expect(() => interpret(g, "run", { x }, {})).toThrow(/allReduce #0 combines the ranks of a rank set/);
    // the same collectives numbered differently on two ranks: a deadlock on NCCL, an error here
    expect(() => interpretRanks([rankGraph(2, 0), rankGraph(2, 1, "descending")], "run", { x }, [{}, {}])).toThrow(/rank 0 at allReduce #0, rank 1 at reduceScatter #0/);
    const lonely = defineModel("r1", (b) => b.entry("run", (e) => e.output("y", b.add(e.input("x", "f32", [2, 3]), 1))));
    expect(() => interpretRanks([g, lonely], "run", { x }, [{}, {}])).toThrow(/the ranks disagree on their collectives: rank 0 at allReduce #0, rank 1 finished/);
    const node = { op: "allGather" as const, attrs: { ranks: 2, seq: 4 }, dtype: "f32" as const };
    expect(() => combineCollective(node, [hostTensor("f32", [2], [1, 2]), hostTensor("f32", [3], [1, 2, 3])])).toThrow(/allGather #4: rank 1 gives f32\[3\] but rank 0 f32\[2\]/);
  });
});

describe("sample over candidate columns (ids)", () => {
  it("equals sample over the whole row when the candidates hold every kept token, for greedy, top-k and top-p rows", () => {
    const rand = seededRandom(7);
    const vocab = 300;
    for (let trial = 0; trial < 200; trial++) {
      const row = Array.from({ length: vocab }, () => Math.fround((rand() * 2 - 1) * 6));
      if (trial % 7 === 0) row[Math.floor(rand() * vocab)] = row[3]!; // ties to the lower id
      const temperature = trial % 4 === 0 ? 0 : 0.5 + rand();
      const topK = 1 + Math.floor(rand() * 20);
      const topP = trial % 3 === 0 ? 1 : 0.3 + 0.6 * rand();
      const u = rand();
      // candidates: the top 24 by logit (ties to the lower id), shuffled, with unused columns
      const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, 24);
      const cols = [...order, -1, -1].sort(() => rand() - 0.5);
      const got = sampleCandidates(cols.map((i) => (i < 0 ? -Infinity : row[i]!)), cols, temperature, topK, topP, u);
      expect(got).toBe(sampleRow(row, temperature, topK, topP, u));
    }
  });

  it("maps NaN and +inf to −1 and checks the ids' type", () => {
    expect(sampleCandidates([1, NaN], [5, 9], 0, 0, 1, 0)).toBe(-1);
    expect(sampleCandidates([Infinity, 1], [5, 9], 1, 0, 1, 0)).toBe(-1);
    expect(sampleCandidates([2, 3], [9, 5], 0, 0, 1, 0)).toBe(5);
    expect(() =>
      defineModel("s", (b) => b.entry("e", (e) => {
        const rows = (t: "f32" | "i32") => b.constant(0, t, [2]);
        e.output("y", op(b, "sample", {}, [b.constant(1, "f32", [2, 4]), rows("f32"), rows("i32"), rows("f32"), rows("f32"), b.constant(0, "i32", [2, 3])]));
      })),
    ).toThrow(/ids must be i32\[2, 4\]/);
  });
});

describe("moeExperts with some of the experts (expert parallelism)", () => {
  it("the ranks' partial outputs sum to the whole MoE (f32, within rounding)", () => {
    const [t, d, e, inter, k] = [6, 16, 5, 8, 2];
    const r = seededRandom(3);
    const w = {
      x: randomTensor("f32", [t, d], r), rw: randomTensor("f32", [e, d], r), rb: randomTensor("f32", [e], r, -0.1, 0.1),
      gw: randomTensor("f32", [e, d, 2 * inter], r, -0.3, 0.3), gb: randomTensor("f32", [e, 2 * inter], r, -0.1, 0.1),
      dw: randomTensor("f32", [e, inter, d], r, -0.3, 0.3), db: randomTensor("f32", [e, d], r, -0.1, 0.1),
    };
    const slice = (x: HostTensor, first: number, count: number): HostTensor => {
      const per = x.data.length / x.shape[0]!;
      return { dtype: x.dtype, shape: [count, ...x.shape.slice(1)], data: x.data.slice(first * per, (first + count) * per) };
    };
    const moe = (first: number | undefined, count: number) => {
      const g = defineModel("moe", (b) => {
        const p = (name: keyof typeof w) => b.param(name, "f32", name === "rw" || name === "rb" || name === "x" ? w[name].shape : [count, ...w[name].shape.slice(1)]);
        b.entry("e", (en) => {
          const x = en.input("x", "f32", [t, d]);
          const attrs = { topK: k, limit: 7, alpha: 1.702, weightFormat: "dense" as const, ...(first !== undefined ? { firstExpert: first } : {}) };
          en.output("y", op(b, "moeExperts", attrs, [x, p("rw"), p("rb"), p("gw"), p("gb"), p("dw"), p("db")]));
        });
      });
      const params = { rw: w.rw, rb: w.rb, ...Object.fromEntries((["gw", "gb", "dw", "db"] as const).map((n) => [n, slice(w[n], first ?? 0, count)])) };
      return interpret(g, "e", { x: w.x }, params).y!.data;
    };
    const whole = moe(undefined, e);
    const parts = [moe(0, 2), moe(2, 2), moe(4, 1), moe(5, 0)];
    const sum = whole.map((_, i) => parts.reduce((s, p) => s + p[i]!, 0));
    for (let i = 0; i < whole.length; i++) expect(Math.abs(sum[i]! - whole[i]!)).toBeLessThan(1e-6 * Math.max(1, Math.abs(whole[i]!)));
    expect(() => moe(4, 2)).toThrow(/expert weights hold 2 experts from expert 4, which the router's 5 experts do not cover/);
  });
});
