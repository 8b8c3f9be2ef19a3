// sinkAttention codegen: emitted sources and geometry (pure), every gpt-oss specialization compiles
// (NVRTC), and prefill/decode kernels against the interpreter on a GPU at awkward sizes, with sinks,
// sliding windows, empty cache slots and batch dims; plus a timing of the 20b-shaped kernels.
import { describe, expect, it } from "vitest";
import { DECODE_SPLIT, emitSinkAttention, PREFILL_ROWS, usesDecodeKernel } from "../../src/codegen/attention.js";
import { evalSize, type NodeKernels } from "../../src/lower/kernel.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, hostTensor, randomTensor, seededRandom, tensorToBytes } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Dim, evalShape, numElements, type SymbolValues } from "../../src/ir/shape.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels, runRawKernels } from "./harness.js";

interface AttnCase {
  dtype: DType;
  t: Dim;
  s: Dim;
  h: number;
  kvh: number;
  d: number;
  window: number;
  sinks?: DType;
  batch?: Dim[];
  scale?: number;
  /** Rows of k and v when more than the S keys (a KV cache read in place); default S. */
  rows?: number;
}

function attentionNode(c: AttnCase): NodeOf<"sinkAttention"> {
  const table = new NodeTable();
  const batch = c.batch ?? [];
  const input = (name: string, dtype: DType, shape: Dim[]) => table.make("input", { name, dtype, shape }, []);
  const ins = [
    input("q", c.dtype, [...batch, c.t, c.h, c.d]),
    input("k", c.dtype, [...batch, c.rows ?? c.s, c.kvh, c.d]),
    input("v", c.dtype, [...batch, c.rows ?? c.s, c.kvh, c.d]),
    input("qpos", "i32", [...batch, c.t]),
    input("kpos", "i32", [...batch, c.s]),
  ];
  if (c.sinks) ins.push(input("sinks", c.sinks, [c.h]));
  return table.make("sinkAttention", { scale: c.scale ?? 1 / Math.sqrt(c.d), window: c.window, hasSinks: c.sinks !== undefined }, ins);
}

const GPT_OSS_20B = { h: 64, kvh: 8, d: 64 } as const;

describe("sinkAttention codegen (pure)", () => {
  it("emits the tensor-core prefill kernel for bf16 and the SIMT one for f32", () => {
    const bf = emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "past+tokens", ...GPT_OSS_20B, window: 128, sinks: "bf16" }));
    expect(bf.launches).toHaveLength(1);
    const src = bf.launches[0]!.kernel.source;
    expect(src).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
    expect(src).toContain("#define ATT_WINDOW 128");
    expect(src).toContain("#define ATT_G 8");
    expect(src).toContain("__reduce_or_sync"); // masked key tiles are skipped from a per-chunk bitmask
    expect(src).toContain("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16");
    expect(src).toContain(`extern "C" __global__`);
    expect(src).not.toMatch(/#include\s*</);
    expect(bf.launches[0]!.sharedBytes).toBe(0);
    const f32 = emitSinkAttention(attentionNode({ dtype: "f32", t: "tokens", s: "tokens", h: 8, kvh: 2, d: 64, window: 0 }));
    expect(f32.launches[0]!.kernel.source).not.toContain("mma.sync");
    expect(f32.launches[0]!.sharedBytes).toBeGreaterThan(0);
    expect(f32.launches[0]!.sharedBytes).toBeLessThanOrEqual(48 * 1024);
    expect(f32.launches[0]!.kernel.entry).not.toBe(bf.launches[0]!.kernel.entry);
  });

  it("prefill geometry: one block per 64 (query, head) rows of each kv head, batch on z; args bind operands then T and S", () => {
    const k = emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "past+tokens", ...GPT_OSS_20B, window: 0, sinks: "f32", batch: [2] }));
    const l = k.launches[0]!;
    const sym: SymbolValues = { tokens: 783, past: 17 };
    expect(l.grid.map((g) => evalSize(g, sym))).toEqual([Math.ceil((783 * 8) / PREFILL_ROWS), 8, 2]);
    expect(l.block).toEqual([128, 1, 1]);
    expect(l.args.slice(0, 7)).toEqual([0, 1, 2, 3, 4, 5].map((index) => ({ kind: "input", index })).concat([{ kind: "output" } as never]));
    expect(l.args.slice(7).map((a) => (a.kind === "i32" ? evalSize(a.value, sym) : a.kind))).toEqual([783, 800, 800]) // T, S and the rows of k and v (= S here);
    expect(k.scratchBytes).toEqual([]);
  });

  it("decode: split-KV over ceil(S/64) blocks per kv head plus a combine launch per (row, kv head); scratch covers every split", () => {
    const node = attentionNode({ dtype: "bf16", t: 1, s: "past+1", ...GPT_OSS_20B, window: 0, sinks: "bf16" });
    expect(usesDecodeKernel(node)).toBe(true);
    const k = emitSinkAttention(node);
    expect(k.launches.map((l) => l.kernel.entry)).toEqual([expect.stringMatching(/^attention_decode_/), expect.stringMatching(/^attention_combine_/)]);
    for (const past of [0, 127, 128, 4095, 10000]) {
      const sym = { past };
      const s = past + 1;
      const splits = Math.ceil(s / DECODE_SPLIT);
      expect(k.launches[0]!.grid.map((g) => evalSize(g, sym))).toEqual([splits, 8, 1]);
      expect(evalSize(k.scratchBytes[0]!, sym)).toBeGreaterThanOrEqual(splits * 8 * 8 * 64 * 4);
      expect(evalSize(k.scratchBytes[1]!, sym)).toBeGreaterThanOrEqual(splits * 8 * 8 * 2 * 4);
    }
    expect(k.launches[1]!.grid.map((g) => evalSize(g, { past: 5 }))).toEqual([8, 8, 1]);
    expect(k.launches[1]!.block).toEqual([128, 1, 1]);
    expect(k.launches[1]!.args).toEqual([{ kind: "output" }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }, expect.objectContaining({ kind: "i32" })]);
    // T·G above 16 rows goes to the prefill kernel even when T is static
    expect(usesDecodeKernel(attentionNode({ dtype: "bf16", t: 3, s: "past", ...GPT_OSS_20B, window: 0 }))).toBe(false);
    expect(usesDecodeKernel(attentionNode({ dtype: "bf16", t: 2, s: "past", ...GPT_OSS_20B, window: 0 }))).toBe(true);
  });

  it("bakes the scale exactly and names every specialization apart", () => {
    const a = emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "tokens", h: 8, kvh: 2, d: 64, window: 0, scale: 0.125 }));
    expect(a.launches[0]!.kernel.source).toContain("__int_as_float(0x3e000000)");
    const names = new Set(
      [
        { window: 0 }, { window: 128 }, { window: 0, sinks: "bf16" as DType }, { window: 0, scale: 0.2 },
      ].map((o) => emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "tokens", h: 8, kvh: 2, d: 64, ...o })).launches[0]!.kernel.entry),
    );
    expect(names.size).toBe(4);
  });

  it("rejects what it cannot run, naming the node", () => {
    expect(() => emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "tokens", h: 8, kvh: 2, d: 80, window: 0 }))).toThrow(/head dim 80 is not supported/);
    const table = new NodeTable();
    const i = (name: string, dtype: DType, shape: Dim[]) => table.make("input", { name, dtype, shape }, []);
    const node = table.make("sinkAttention", { scale: 0.125, window: 0, hasSinks: false }, [
      i("q", "bf16", [4, 8, 64]), i("k", "bf16", [4, 2, 64]), i("v", "bf16", [4, 2, 64]), i("qp", "i64", [4]), i("kp", "i64", [4]),
    ]);
    expect(() => emitSinkAttention(node)).toThrow(/sinkAttention .*positions must be i32/);
  });
});

describeNvrtc("sinkAttention kernels compile (NVRTC)", () => {
  it("gpt-oss-20b prefill and decode (sliding and full, bf16) and the tiny model's (f32, head dim 16)", async () => {
    const kernels: NodeKernels[] = [];
    for (const window of [0, 128]) {
      kernels.push(emitSinkAttention(attentionNode({ dtype: "bf16", t: "tokens", s: "past+tokens", ...GPT_OSS_20B, window, sinks: "bf16" })));
      kernels.push(emitSinkAttention(attentionNode({ dtype: "bf16", t: 1, s: window ? "windowPast+1" : "past+1", ...GPT_OSS_20B, window, sinks: "bf16" })));
    }
    kernels.push(emitSinkAttention(attentionNode({ dtype: "f32", t: "tokens", s: "past+tokens", h: 4, kvh: 2, d: 16, window: 4, sinks: "f32" })));
    kernels.push(emitSinkAttention(attentionNode({ dtype: "f32", t: 1, s: "past+1", h: 4, kvh: 2, d: 16, window: 0, sinks: "f32" })));
    expect(await compileNodeKernels(kernels)).toBe(9);
  });
});

// ---- GPU -----------------------------------------------------------------------------------------

interface Positions {
  qpos: number[];
  kpos: number[];
}

/** Prefill: T new tokens at positions base .. base+T−1 attending to themselves (S = T). */
function prefillPositions(t: number, base: number): Positions {
  const p = Array.from({ length: t }, (_, i) => base + i);
  return { qpos: p, kpos: p };
}

/**
 * Decode: one query at position `at`; a cache of S slots holding a shuffled set of earlier positions
 * (a ring buffer), every 5th slot empty (−1), and the query's own key last.
 */
function decodePositions(s: number, at: number, rand: () => number): Positions {
  const kpos = Array.from({ length: s }, (_, j) => (j === s - 1 ? at : j % 5 === 3 ? -1 : at - s + 1 + j));
  for (let j = s - 2; j > 0; j--) {
    const r = Math.floor(rand() * (j + 1));
    [kpos[j], kpos[r]] = [kpos[r]!, kpos[j]!];
  }
  return { qpos: [at], kpos };
}

function randomInputs(node: NodeOf<"sinkAttention">, sym: SymbolValues, pos: (b: number) => Positions, seed: number): Record<string, HostTensor> {
  const rand = seededRandom(seed);
  const shapeOf = (i: number) => evalShape(node.inputs[i]!.shape, sym);
  const [qs, ks] = [shapeOf(0), shapeOf(1)];
  const batch = qs.slice(0, -3).reduce((a, b) => a * b, 1);
  const qpos: number[] = [];
  const kpos: number[] = [];
  for (let b = 0; b < batch; b++) {
    const p = pos(b);
    qpos.push(...p.qpos);
    kpos.push(...p.kpos);
  }
  const dtype = node.inputs[0]!.dtype;
  const out: Record<string, HostTensor> = {
    q: randomTensor(dtype, qs, rand, -2, 2),
    k: randomTensor(dtype, ks, rand, -2, 2),
    v: randomTensor(dtype, ks, rand, -1, 1),
    qpos: hostTensor("i32", shapeOf(3), qpos),
    kpos: hostTensor("i32", shapeOf(4), kpos),
  };
  if (node.attrs.hasSinks) out["sinks"] = randomTensor(node.inputs[5]!.dtype, shapeOf(5), rand, -1, 3);
  return out;
}

async function check(node: NodeOf<"sinkAttention">, sym: SymbolValues, pos: (b: number) => Positions, seed: number, what: string): Promise<number> {
  const inputs = randomInputs(node, sym, pos, seed);
  const ref = interpretNode(node, { inputs }, sym);
  const ordered = ["q", "k", "v", "qpos", "kpos", "sinks"].filter((n) => inputs[n]).map((n) => inputs[n]!);
  const gpu = await runNodeKernels(node, emitSinkAttention(node), ordered, sym);
  const tol = node.dtype === "f32" ? 2e-5 : 1e-2;
  expectClose(gpu, ref, tol, what);
  let maxErr = 0;
  let maxRef = 0;
  ref.data.forEach((r, i) => {
    if (Number.isFinite(r)) {
      maxRef = Math.max(maxRef, Math.abs(r));
      maxErr = Math.max(maxErr, Math.abs(r - gpu.data[i]!));
    }
  });
  return maxErr / Math.max(maxRef, 1e-30);
}

const worst: Record<string, number> = {};
function record(key: string, rel: number): void {
  worst[key] = Math.max(worst[key] ?? 0, rel);
}

describeGpu("sinkAttention kernels match the interpreter (GPU)", () => {
  const prefillCases: { dtype: DType; window: number; sinks?: DType }[] = [
    { dtype: "bf16", window: 0 },
    { dtype: "bf16", window: 0, sinks: "bf16" },
    { dtype: "bf16", window: 128 },
    { dtype: "bf16", window: 128, sinks: "f32" },
    { dtype: "f32", window: 0, sinks: "f32" },
    { dtype: "f32", window: 128 },
  ];
  for (const n of [1, 3, 50, 783]) {
    it(`prefill T = S = ${n}: bf16 (tensor cores) and f32, causal and window 128, with and without sinks`, async () => {
      for (const [i, c] of prefillCases.entries()) {
        const node = attentionNode({ ...c, t: "tokens", s: "tokens", h: 8, kvh: 2, d: 64 });
        const rel = await check(node, { tokens: n }, () => prefillPositions(n, 7), 100 * n + i, `prefill ${JSON.stringify(c)} n=${n}`);
        record(`prefill ${c.dtype}`, rel);
      }
    });
  }

  it("prefill T = S = 4096 with window 128 and sinks (bf16, 20b head grouping) skips masked tiles and stays exact", async () => {
    const node = attentionNode({ dtype: "bf16", t: "tokens", s: "tokens", h: 2, kvh: 1, d: 64, window: 128, sinks: "bf16" });
    record("prefill bf16", await check(node, { tokens: 4096 }, () => prefillPositions(4096, 0), 4096, "prefill 4096 window"));
  });

  it("prefill with a past (S = past + T), batch dims, f16 and head dim 128 and 16", async () => {
    const past = 40;
    const withPast = (t: number) => (b: number) => {
      const kpos = Array.from({ length: past + t }, (_, j) => (j < past ? (j % 7 === 2 ? -1 : j) : j));
      return { qpos: Array.from({ length: t }, (_, i) => past + i + b), kpos };
    };
    const cases: [AttnCase, string][] = [
      [{ dtype: "bf16", t: "tokens", s: "past+tokens", h: 8, kvh: 2, d: 64, window: 16, sinks: "bf16", batch: [2] }, "bf16 batch"],
      [{ dtype: "f16", t: "tokens", s: "past+tokens", h: 4, kvh: 1, d: 128, window: 0, sinks: "f16" }, "f16 d128"],
      [{ dtype: "f32", t: "tokens", s: "past+tokens", h: 4, kvh: 2, d: 16, window: 4, sinks: "f32", batch: [2] }, "f32 d16 (tiny)"],
      [{ dtype: "bf16", t: "tokens", s: "past+tokens", h: 4, kvh: 2, d: 16, window: 0, sinks: "bf16" }, "bf16 d16 (tiny)"],
    ];
    for (const [i, [c, what]] of cases.entries()) {
      for (const t of [3, 50]) {
        const rel = await check(attentionNode(c), { tokens: t, past }, withPast(t), 7000 + 10 * i + t, `prefill ${what} t=${t}`);
        record(`prefill ${c.dtype}`, rel);
      }
    }
  });

  for (const s of [1, 3, 50, 783, 4096]) {
    it(`decode T = 1, S = ${s}: 20b heads, bf16 and f32, full and window 128, empty slots`, async () => {
      const cases: { dtype: DType; window: number; sinks?: DType }[] = [
        { dtype: "bf16", window: 0, sinks: "bf16" },
        { dtype: "bf16", window: 128, sinks: "bf16" },
        { dtype: "f32", window: 0 },
        { dtype: "f32", window: 128, sinks: "f32" },
      ];
      for (const [i, c] of cases.entries()) {
        const node = attentionNode({ ...c, t: 1, s: "past", ...GPT_OSS_20B });
        expect(usesDecodeKernel(node)).toBe(true);
        const rand = seededRandom(s * 31 + i);
        const rel = await check(node, { past: s }, () => decodePositions(s, s + 5, rand), 900 + s + i, `decode ${JSON.stringify(c)} S=${s}`);
        record(`decode ${c.dtype}`, rel);
      }
    });
  }

  it("reads the first S keys of larger k and v in place (a KV cache of 200 rows per sequence), decode and prefill", async () => {
    const rand = seededRandom(17);
    for (const [t, s] of [[1, 70], [1, 1], [5, 130]] as const) {
      for (const dtype of ["bf16", "f32"] as const) {
        const node = attentionNode({ dtype, t, s: "kvLen", rows: 200, ...GPT_OSS_20B, window: 0, sinks: dtype, batch: [2] });
        expect(usesDecodeKernel(node)).toBe(t * 8 <= 16);
        const pos = () => {
          const p = decodePositions(s, s + 2, rand);
          return { qpos: Array.from({ length: t }, (_, i) => s + 2 - (t - 1 - i)), kpos: p.kpos };
        };
        record(`decode ${dtype}`, await check(node, { kvLen: s }, pos, 40 + s + t, `in place t=${t} S=${s} ${dtype}`));
      }
    }
  });

  it("decode with batch dims, T = 2, f16, head dim 128 and 16, and a row that sees nothing (NaN without sinks, 0 with)", async () => {
    const rand = seededRandom(5);
    const cases: [AttnCase, number][] = [
      [{ dtype: "bf16", t: 2, s: "past", h: 16, kvh: 2, d: 64, window: 0, sinks: "bf16", batch: [3] }, 700],
      [{ dtype: "f16", t: 1, s: "past", h: 8, kvh: 2, d: 128, window: 0, sinks: "f16" }, 300],
      [{ dtype: "f32", t: 1, s: "past", h: 4, kvh: 2, d: 16, window: 4, sinks: "f32" }, 20],
    ];
    for (const [c, s] of cases) {
      const t = c.t as number;
      const pos = () => {
        const p = decodePositions(s, s + 3, rand);
        return { qpos: Array.from({ length: t }, (_, i) => s + 3 - (t - 1 - i)), kpos: p.kpos };
      };
      record(`decode ${c.dtype}`, await check(attentionNode(c), { past: s }, pos, s, `decode ${JSON.stringify(c)}`));
    }
    // every slot empty: no sink → NaN (as the reference), sink → 0
    for (const sinks of [undefined, "f32" as DType]) {
      const node = attentionNode({ dtype: "f32", t: 1, s: "past", h: 8, kvh: 2, d: 64, window: 0, ...(sinks ? { sinks } : {}) });
      await check(node, { past: 300 }, () => ({ qpos: [5], kpos: Array.from({ length: 300 }, () => -1) }), 1, `all empty, sinks=${sinks}`);
    }
  });

  it("times the gpt-oss-20b kernels (bf16, 64 q / 8 kv heads, sinks): prefill 4096 tokens causal and window 128, decode at 4096 and 128 keys", async () => {
    const lines: string[] = [];
    const cases: [AttnCase, SymbolValues, string, { flops?: number; bytes?: number }][] = [
      [{ dtype: "bf16", t: "tokens", s: "tokens", ...GPT_OSS_20B, window: 0, sinks: "bf16" }, { tokens: 4096 }, "prefill 4096 causal", { flops: 4 * 4096 * 2048.5 * 64 * 64 }],
      [{ dtype: "bf16", t: "tokens", s: "tokens", ...GPT_OSS_20B, window: 128, sinks: "bf16" }, { tokens: 4096 }, "prefill 4096 window 128", { flops: 4 * 4096 * 128 * 64 * 64 }],
      [{ dtype: "bf16", t: 1, s: "past", ...GPT_OSS_20B, window: 0, sinks: "bf16" }, { past: 4096 }, "decode S=4096", { bytes: 2 * 4096 * 8 * 64 * 2 }],
      [{ dtype: "bf16", t: 1, s: "past", ...GPT_OSS_20B, window: 128, sinks: "bf16" }, { past: 128 }, "decode S=128 window", { bytes: 2 * 128 * 8 * 64 * 2 }],
    ];
    for (const [c, sym, what, work] of cases) {
      const node = attentionNode(c);
      const n = (i: number) => evalShape(node.inputs[i]!.shape, sym);
      const rand = seededRandom(3);
      const isDecode = c.t === 1;
      const s = n(1)[0]!;
      const pos = isDecode ? { qpos: [s - 1], kpos: Array.from({ length: s }, (_, j) => j) } : prefillPositions(s, 0);
      const inputs = [
        tensorToBytes(randomTensor("bf16", n(0), rand, -2, 2)), tensorToBytes(randomTensor("bf16", n(1), rand, -2, 2)), tensorToBytes(randomTensor("bf16", n(2), rand, -1, 1)),
        tensorToBytes(hostTensor("i32", n(3), pos.qpos)), tensorToBytes(hostTensor("i32", n(4), pos.kpos)), tensorToBytes(randomTensor("bf16", n(5), rand, -1, 3)),
      ];
      const ms = (await runRawKernels(emitSinkAttention(node), inputs, numElements(evalShape(node.shape, sym)) * 2, sym, { timeIterations: isDecode ? 200 : 20 })).msPerLaunch;
      const total = ms.reduce((a, b) => a + b, 0);
      const rate = work.flops ? `${(work.flops / total / 1e9).toFixed(0)} TFLOP/s` : `${(work.bytes! / total / 1e6).toFixed(0)} GB/s (K+V ${(work.bytes! / 1e6).toFixed(2)} MB)`;
      lines.push(`${what}: ${ms.map((m) => `${(m * 1e3).toFixed(1)} us`).join(" + ")} = ${(total * 1e3).toFixed(1)} us, ${rate}`);
    }
    console.log(`sinkAttention timings (gpt-oss-20b shapes):\n  ${lines.join("\n  ")}`);
  });

  it("reports the worst relative errors", () => {
    console.log(`sinkAttention worst relative error vs interpreter: ${JSON.stringify(worst)}`);
    expect(Object.keys(worst).length).toBeGreaterThan(0);
  });
});

