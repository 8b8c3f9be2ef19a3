// Paged attention: the builder's plain-math form (keys gathered through block tables) fuses into one
// pagedAttention op, bit-exact on the interpreter for ragged batches (decodes and prefill chunks together,
// shared and missing blocks, windows, sinks), and near misses do not fuse.
import { describe, expect, it } from "vitest";
import { defineModel, type ModelBuilder, type Tensor } from "../../src/ir/builder.js";
import type { Graph } from "../../src/ir/graph.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import { opCounts, runPipeline } from "../../src/passes/pipeline.js";

const [H, KVH, D, B, MB, P] = [4, 2, 16, 4, 3, 24];

interface Variant {
  readonly dtype?: "f32" | "bf16";
  readonly window?: number;
  readonly sinks?: boolean;
  /** Replace a piece of the expansion (near misses). */
  readonly rows?: (b: ModelBuilder, rows: Tensor) => Tensor;
}

/** step(q, k, v, positions, token_seqs, context_lens, block_table) → attention over a pooled cache. */
function pagedModel(v: Variant = {}): Graph {
  const dtype = v.dtype ?? "f32";
  return defineModel("paged", (b) => {
    const t = b.sym("tokens", 16);
    const s = b.sym("seqs", 8);
    const kPool = b.state("kpool", dtype, [P, KVH, D]);
    const vPool = b.state("vpool", dtype, [P, KVH, D]);
    const sinks = v.sinks ? b.param("sinks", dtype, [H]) : undefined;
    b.entry("step", (e) => {
      const q = e.input("q", dtype, [t, H, D]);
      const k = e.input("k", dtype, [t, KVH, D]);
      const val = e.input("v", dtype, [t, KVH, D]);
      const positions = e.input("positions", "i32", [t]);
      const tokenSeqs = e.input("token_seqs", "i32", [t]);
      const contextLens = e.input("context_lens", "i32", [s]);
      const table = e.input("block_table", "i32", [s, MB]);
      if (v.rows) {
        // a hand-built expansion with one piece replaced
        const slots = MB * B;
        const j = b.iota([slots], 0);
        const lb = b.div(j, B);
        const blocks = b.gather(b.gather(table, tokenSeqs, 0), lb, 1);
        const rows = v.rows(b, b.add(b.mul(blocks, B), b.sub(j, b.mul(lb, B))));
        const cachedPos = b.where(b.lt(j, b.reshape(b.gather(contextLens, tokenSeqs, 0), [t, 1])), j, -1);
        const stepPos = b.where(b.eq(b.reshape(tokenSeqs, [1, t]), b.reshape(tokenSeqs, [t, 1])), b.reshape(positions, [1, t]), -1);
        const every = (x: Tensor) => b.broadcast(b.reshape(x, [1, t, KVH, D]), [t, t, KVH, D]);
        const out = b.attention(b.reshape(q, [t, 1, H, D]), b.concat([b.gather(kPool, rows, 0), every(k)], 1), b.concat([b.gather(vPool, rows, 0), every(val)], 1), {
          qpos: b.reshape(positions, [t, 1]),
          kpos: b.concat([cachedPos, stepPos], 1),
        });
        e.output("out", b.reshape(out, [t, H, D]));
        return;
      }
      e.output("out", b.pagedAttention(q, k, val, kPool, vPool, {
        positions, tokenSeqs, contextLens, blockTable: table, blockSize: B,
        ...(v.window ? { window: v.window } : {}), ...(sinks ? { sinks } : {}),
      }));
    });
  });
}

interface Batch {
  readonly inputs: Record<string, HostTensor>;
  readonly states: Record<string, HostTensor>;
  readonly params: Record<string, HostTensor>;
}

/** A ragged batch: each sequence has `cached` pool positions and `fresh` new tokens (contiguous, in order). */
function batch(dtype: "f32" | "bf16", seqs: readonly { cached: number; fresh: number; blocks: readonly number[] }[], seed: number, shuffle = false): Batch {
  const rand = seededRandom(seed);
  const order: [number, number][] = []; // (seq, i)
  seqs.forEach((sq, s) => { for (let i = 0; i < sq.fresh; i++) order.push([s, i]); });
  if (shuffle) order.sort(() => rand() - 0.5);
  const t = order.length;
  const table = seqs.flatMap((sq) => Array.from({ length: MB }, (_, j) => sq.blocks[j] ?? -1));
  return {
    inputs: {
      q: randomTensor(dtype, [t, H, D], rand, -1, 1),
      k: randomTensor(dtype, [t, KVH, D], rand, -1, 1),
      v: randomTensor(dtype, [t, KVH, D], rand, -1, 1),
      positions: hostTensor("i32", [t], order.map(([s, i]) => seqs[s]!.cached + i)),
      token_seqs: hostTensor("i32", [t], order.map(([s]) => s)),
      context_lens: hostTensor("i32", [seqs.length], seqs.map((sq) => sq.cached)),
      block_table: hostTensor("i32", [seqs.length, MB], table),
    },
    states: { kpool: randomTensor(dtype, [P, KVH, D], rand, -1, 1), vpool: randomTensor(dtype, [P, KVH, D], rand, -1, 1) },
    params: { sinks: randomTensor(dtype, [H], rand, -1, 1) },
  };
}

const MIXED = [
  { cached: 5, fresh: 1, blocks: [3, 0] }, // a decode
  { cached: 0, fresh: 6, blocks: [1, 4] }, // a first prefill chunk
  { cached: 9, fresh: 2, blocks: [2, 5, 1] }, // a later chunk sharing block 1 with sequence 1
  { cached: 11, fresh: 1, blocks: [-1, 5, 3] }, // logical block 0 released (sliding)
];

function outputsOf(g: Graph, b: Batch, params: Record<string, HostTensor>) {
  return interpret(g, "step", b.inputs, params, b.states)["out"]!.data;
}

describe("paged attention fusion", () => {
  for (const variant of [{}, { sinks: true }, { window: 4, sinks: true }, { window: 3 }, { dtype: "bf16" as const, sinks: true, window: 4 }]) {
    it(`fuses into pagedAttention and matches the plain math bit for bit (${JSON.stringify(variant)})`, () => {
      const g = pagedModel(variant);
      const fused = runPipeline(g).graph;
      const counts = opCounts(fused);
      expect(counts["pagedAttention"]).toBe(1);
      expect(counts["sinkAttention"]).toBeUndefined();
      expect(counts["gather"] ?? 0).toBe(0); // the pool is read in place
      const params = variant.sinks ? batch("f32", MIXED, 0).params : {};
      for (const [seed, shuffle] of [[1, false], [2, true], [3, false]] as const) {
        const b = batch(variant.dtype ?? "f32", seed === 3 ? [MIXED[0]!, MIXED[3]!] : MIXED, seed, shuffle);
        const p = variant.sinks ? b.params : params;
        expect(Array.from(outputsOf(fused, b, p))).toEqual(Array.from(outputsOf(g, b, p)));
      }
    });
  }

  it("reads only what the position rule shows: a token sees its own sequence's keys, no others", () => {
    const g = runPipeline(pagedModel()).graph;
    const b = batch("f32", MIXED, 4);
    const base = outputsOf(g, b, {});
    // changing sequence 1's new keys changes only sequence 1's tokens (token indices 1..6)
    const k = b.inputs["k"]!;
    const changed = { ...b, inputs: { ...b.inputs, k: hostTensor("f32", k.shape, Array.from(k.data, (x, i) => (Math.floor(i / (KVH * D)) === 3 ? x + 1 : x))) } };
    const after = outputsOf(g, changed, {});
    for (let t = 0; t < 10; t++) {
      const same = Array.from(after.slice(t * H * D, (t + 1) * H * D)).every((x, i) => x === base[t * H * D + i]);
      // token 3 is sequence 1's third new token (position 2): tokens at positions ≥ 2 of sequence 1 see it
      expect(same).toBe(!(t >= 3 && t <= 6));
    }
  });

  it("does not fuse a near miss (rows off by one)", () => {
    const g = runPipeline(pagedModel({ rows: (b, rows) => b.add(rows, 1) })).graph;
    expect(opCounts(g)["pagedAttention"]).toBeUndefined();
    expect(opCounts(g)["sinkAttention"]).toBe(1);
  });

  it("fuses the hand-written expansion exactly as the builder's", () => {
    const g = runPipeline(pagedModel({ rows: (_b, rows) => rows })).graph;
    expect(opCounts(g)["pagedAttention"]).toBe(1);
  });
});
