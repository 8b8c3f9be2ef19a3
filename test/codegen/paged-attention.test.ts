// pagedAttention codegen: kernel choice and geometry (pure), every variant compiles (NVRTC), and the kernels
// against the interpreter on a GPU: ragged batches of decodes and prefill chunks at awkward context lengths
// (1, 3, 127, 128, 129, 1000), block sizes 16 and 32, sliding windows, sinks, missing blocks, f32 and bf16.
import { describe, expect, it } from "vitest";
import { decodeSplits, emitPagedAttention, emitSeqTokenRanges, MAX_DECODE_SPLITS, pagedUsesTensorCores } from "../../src/codegen/paged-attention.js";
import { evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type Node, type NodeOf, NodeTable } from "../../src/ir/node.js";
import type { SymbolValues } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

interface Shape {
  readonly dtype: DType;
  readonly h: number;
  readonly kvh: number;
  readonly d: number;
  readonly blockSize: number;
  readonly maxBlocks: number;
  readonly window: number;
  readonly sinks: boolean;
  readonly poolRows: number;
}

function pagedNode(s: Shape): { node: NodeOf<"pagedAttention">; ranges: NodeOf<"seqTokenRanges"> } {
  const table = new NodeTable();
  const input = (name: string, dtype: DType, shape: (number | string)[]) => table.make("input", { name, dtype, shape }, []);
  const tokenSeqs = input("token_seqs", "i32", ["tokens"]);
  const contextLens = input("context_lens", "i32", ["seqs"]);
  const ranges = table.make("seqTokenRanges", {}, [tokenSeqs, contextLens]) as NodeOf<"seqTokenRanges">;
  const ins = [
    input("q", s.dtype, ["tokens", s.h, s.d]),
    input("k", s.dtype, ["tokens", s.kvh, s.d]),
    input("v", s.dtype, ["tokens", s.kvh, s.d]),
    input("kpool", s.dtype, [s.poolRows, s.kvh, s.d]),
    input("vpool", s.dtype, [s.poolRows, s.kvh, s.d]),
    input("positions", "i32", ["tokens"]),
    tokenSeqs,
    contextLens,
    input("block_table", "i32", ["seqs", s.maxBlocks]),
    ranges,
    ...(s.sinks ? [input("sinks", s.dtype, [s.h])] : []),
  ];
  const node = table.make("pagedAttention", { scale: 1 / Math.sqrt(s.d), window: s.window, blockSize: s.blockSize, hasSinks: s.sinks }, ins) as NodeOf<"pagedAttention">;
  return { node, ranges };
}

const GPT_OSS = { h: 64, kvh: 8, d: 64 } as const;

describe("pagedAttention codegen (pure)", () => {
  it("bf16 gpt-oss shapes take the tensor-core decode and prefill kernels; f32 the generic one", () => {
    const bf = pagedNode({ dtype: "bf16", ...GPT_OSS, blockSize: 16, maxBlocks: 256, window: 128, sinks: true, poolRows: 4096 }).node;
    expect(pagedUsesTensorCores(bf)).toBe(true);
    const k = emitPagedAttention(bf, { tokens: 2, seqs: 2 });
    expect(k.launches.map((l) => l.kernel.name.split("_")[1])).toEqual(["decode", "prefill", "combine"]);
    // one token: it is its sequence's only one, so the decode kernel takes it and no prefill kernel is launched
    expect(emitPagedAttention(bf, { tokens: 1, seqs: 1 }).launches.map((l) => l.kernel.name.split("_")[1])).toEqual(["decode", "combine"]);
    expect(k.launches[0]!.kernel.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
    expect(k.launches[0]!.kernel.source).toContain(`#define PA_Z ${MAX_DECODE_SPLITS}`);
    const f32 = pagedNode({ dtype: "f32", h: 4, kvh: 2, d: 16, blockSize: 4, maxBlocks: 8, window: 0, sinks: false, poolRows: 64 }).node;
    expect(pagedUsesTensorCores(f32)).toBe(false);
    const g = emitPagedAttention(f32, { tokens: 8 });
    expect(g.launches).toHaveLength(1);
    expect(g.launches[0]!.kernel.source).not.toContain("mma.sync");
  });

  it("splits fill the GPU at small batches and vanish at large ones (the bucket's token bound picks them)", () => {
    expect(decodeSplits(1, 8)).toBe(MAX_DECODE_SPLITS);
    expect(decodeSplits(4, 8)).toBe(9);
    expect(decodeSplits(64, 8)).toBe(1);
    const node = pagedNode({ dtype: "bf16", ...GPT_OSS, blockSize: 16, maxBlocks: 256, window: 0, sinks: true, poolRows: 4096 }).node;
    const big = emitPagedAttention(node, { tokens: 256, seqs: 256 });
    expect(big.launches).toHaveLength(2); // one split: no combine launch
    const sym: SymbolValues = { tokens: 200, seqs: 150 };
    expect(big.launches[0]!.grid.map((x) => evalSize(x, sym))).toEqual([200, 8, 1]);
    expect(big.launches[1]!.grid.map((x) => evalSize(x, sym))).toEqual([25, 8, 1]); // 8 tokens (64 rows) per prefill block
  });
});

describe("pagedAttention kernels compile (NVRTC)", () => {
  it("every variant: bf16/f16 gpt-oss with and without splits, windows, sinks; f32 and odd shapes generic; the ranges kernel", async () => {
    const kernels: NodeKernels[] = [];
    for (const dtype of ["bf16", "f16"] as const)
      for (const [window, sinks, tokens] of [[128, true, 1], [0, true, 256], [0, false, 4]] as const) {
        kernels.push(emitPagedAttention(pagedNode({ dtype, ...GPT_OSS, blockSize: 16, maxBlocks: 64, window, sinks, poolRows: 1024 }).node, { tokens }));
      }
    kernels.push(emitPagedAttention(pagedNode({ dtype: "bf16", h: 4, kvh: 2, d: 16, blockSize: 32, maxBlocks: 4, window: 3, sinks: true, poolRows: 256 }).node, { tokens: 2 }));
    kernels.push(emitPagedAttention(pagedNode({ dtype: "f32", h: 64, kvh: 8, d: 64, blockSize: 16, maxBlocks: 64, window: 128, sinks: true, poolRows: 1024 }).node, { tokens: 1 }));
    kernels.push(emitPagedAttention(pagedNode({ dtype: "bf16", h: 6, kvh: 2, d: 128, blockSize: 16, maxBlocks: 8, window: 0, sinks: false, poolRows: 128 }).node, { tokens: 1 }));
    const { ranges } = pagedNode({ dtype: "bf16", ...GPT_OSS, blockSize: 16, maxBlocks: 8, window: 0, sinks: false, poolRows: 128 });
    kernels.push(emitSeqTokenRanges(ranges));
    expect(await compileNodeKernels(kernels)).toBeGreaterThan(10);
  });
});

/** A ragged batch: per sequence, `cached` positions in the pool and `fresh` new tokens (contiguous, in order). */
function randomBatch(s: Shape, seqs: readonly { cached: number; fresh: number; missing?: number[] }[], seed: number): { inputs: Record<string, HostTensor>; symbols: SymbolValues } {
  const rand = seededRandom(seed);
  const free = Array.from({ length: s.poolRows / s.blockSize }, (_, i) => i).sort(() => rand() - 0.5);
  const table: number[] = [];
  for (const sq of seqs) {
    const blocks = Math.ceil(sq.cached / s.blockSize);
    for (let j = 0; j < s.maxBlocks; j++) table.push(j < blocks && !(sq.missing ?? []).includes(j) ? free.pop()! : -1);
  }
  const order = seqs.flatMap((sq, i) => Array.from({ length: sq.fresh }, (_, j) => [i, sq.cached + j] as const));
  const t = order.length;
  const amp = 1;
  return {
    inputs: {
      q: randomTensor(s.dtype, [t, s.h, s.d], rand, -amp, amp),
      k: randomTensor(s.dtype, [t, s.kvh, s.d], rand, -amp, amp),
      v: randomTensor(s.dtype, [t, s.kvh, s.d], rand, -amp, amp),
      kpool: randomTensor(s.dtype, [s.poolRows, s.kvh, s.d], rand, -amp, amp),
      vpool: randomTensor(s.dtype, [s.poolRows, s.kvh, s.d], rand, -amp, amp),
      positions: hostTensor("i32", [t], order.map(([, p]) => p)),
      token_seqs: hostTensor("i32", [t], order.map(([i]) => i)),
      context_lens: hostTensor("i32", [seqs.length], seqs.map((sq) => sq.cached)),
      block_table: hostTensor("i32", [seqs.length, s.maxBlocks], table),
      sinks: randomTensor(s.dtype, [s.h], rand, -1, 1),
    },
    symbols: { tokens: t, seqs: seqs.length },
  };
}

async function checkAgainstInterpreter(s: Shape, seqs: readonly { cached: number; fresh: number; missing?: number[] }[], seed: number, bound: number): Promise<void> {
  const { node, ranges } = pagedNode(s);
  const { inputs, symbols } = randomBatch(s, seqs, seed);
  const ref = interpretNode(node, { inputs }, symbols);
  const rangeValues = interpretNode(ranges, { inputs }, symbols);
  const operands = node.inputs.map((n: Node) => (n === ranges ? rangeValues : inputs[(n as NodeOf<"input">).attrs.name]!));
  const gpu = await runNodeKernels(node, emitPagedAttention(node, { tokens: bound, seqs: bound }), operands, symbols);
  expectClose(gpu, ref, s.dtype === "f32" ? 2e-5 : 2e-2, `${s.dtype} B=${s.blockSize} window ${s.window} ${JSON.stringify(seqs)}`);
}

describeGpu("pagedAttention kernels match the interpreter", () => {
  const shapes: Shape[] = [
    { dtype: "bf16", ...GPT_OSS, blockSize: 16, maxBlocks: 72, window: 0, sinks: true, poolRows: 4096 },
    { dtype: "bf16", ...GPT_OSS, blockSize: 32, maxBlocks: 36, window: 128, sinks: true, poolRows: 4096 },
    { dtype: "bf16", ...GPT_OSS, blockSize: 16, maxBlocks: 72, window: 128, sinks: false, poolRows: 4096 },
    { dtype: "f32", ...GPT_OSS, blockSize: 16, maxBlocks: 72, window: 128, sinks: true, poolRows: 4096 },
    { dtype: "bf16", h: 4, kvh: 2, d: 16, blockSize: 4, maxBlocks: 300, window: 4, sinks: true, poolRows: 4096 },
  ];
  for (const s of shapes) {
    it(`${s.dtype} h${s.h}/${s.kvh} d${s.d} B=${s.blockSize} window ${s.window}${s.sinks ? " sinks" : ""}: decodes at 1, 3, 127, 128, 129, 1000 cached; chunks; missing blocks`, async () => {
      // decodes alone (batch 1 and 6) at awkward context lengths, each with 1 and 16 splits
      for (const bound of [1, 256]) await checkAgainstInterpreter(s, [{ cached: 1000, fresh: 1 }], 1, bound);
      await checkAgainstInterpreter(s, [1, 3, 127, 128, 129, 1000].map((cached) => ({ cached, fresh: 1 })), 2, 8);
      // prefill chunks: a first chunk, later chunks after 127/128/129 cached positions, with decodes beside them
      await checkAgainstInterpreter(s, [{ cached: 0, fresh: 100 }, { cached: 5, fresh: 1 }, { cached: 129, fresh: 3 }, { cached: 128, fresh: 64 }, { cached: 0, fresh: 1 }], 3, 256);
      await checkAgainstInterpreter(s, [{ cached: 127, fresh: 200 }, { cached: 1000, fresh: 1 }], 4, 256);
      // a released block in the visible range reads as zeros (sliding groups release only invisible ones)
      await checkAgainstInterpreter(s, [{ cached: 300, fresh: 2, missing: [1, 2] }, { cached: 60, fresh: 1, missing: [0] }], 5, 16);
    });
  }
});
