// gpt-oss-20b MoE on one GPU: the moeExperts launches of one layer (hidden 2880, intermediate 2880, 32
// experts, top-4, MXFP4 experts, bf16 activations) at several token counts, token loop vs grouped GEMMs vs
// the weight-streaming variant (for counts up to 512; both emitted for the count's power-of-two
// bucket, as a plan would), with seeded random weights made on the device. GB/s counts the weight bytes of
// the experts the step touches. Each path is captured into a CUDA graph
// (route .. combine) and replayed; per-launch times come from graphs of one launch each.
// FLOPs: 2·T·K·(2I·D + D·I) (the expert GEMMs; routing is ~1%).
//
// The tensor-core grouped GEMMs also run as the previous kernel (grouped/p1: 64×128×32 tiles, per-byte dequantization)
// and at other tilings over GROUPED_TILING (grouped/<tiling tag>, MoeOptions.groupedTiling) beside the bucket's default (groupedTiling). A third argument (or MOE_BENCH_RUNS)
// keeps only the runs whose label contains one of its comma-separated words (the token loop, the reference, and
// the default grouped and stream kernels, the baselines, always run), e.g. "grouped/m" (every tiling), "m64k64s3l,m32k64"
// or "stream/b" (the previous stream kernels); "grouped/route" times the bucket's default kernels with route blocks of 1, 2, 4 and 8 tokens.
//
// MOE_BENCH_EXPERTS=128 gives gpt-oss-120b's 128 experts (the same expert shapes).
//
//   npm run build && node dist/bench/moe-prefill.js [tokens=512,2048] [replays=5] [runs]

import { type DeviceFill, deviceFill } from "../src/engine/device-random.js";
import {
  emitMoeExperts, GROUPED_B_PREFETCH, GROUPED_TILING, type GroupedTiling, groupedTilingTag, type MoePath, previousStreamTiling, type StreamTiling,
} from "../src/codegen/moe.js";
import { evalSize, lowerTarget, type NodeKernels } from "../src/lower/kernel.js";
import { type DType } from "../src/ir/dtype.js";
import { tensorFromBytes } from "../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../src/ir/node.js";
import { type Dim, evalShape, numElements } from "../src/ir/shape.js";
import { Arena, Device, type Kernel, type KernelArg, loadKernels, type Stream } from "../runtime/index.js";

const D = 2880;
const I = 2880;
// gpt-oss-20b's 32 experts, or MOE_BENCH_EXPERTS (120b: 128; the same expert shapes)
const E = Number(process.env["MOE_BENCH_EXPERTS"] ?? 32);
const K = 4;


function moeNode(): NodeOf<"moeExperts"> {
  const table = new NodeTable();
  const i = (name: string, dtype: DType, shape: Dim[]) => table.make("input", { name, dtype, shape }, []);
  return table.make("moeExperts", { topK: K, limit: 7, alpha: 1.702, weightFormat: "mxfp4" }, [
    i("x", "bf16", ["tokens", D]), i("router_w", "bf16", [E, D]), i("router_b", "bf16", [E]),
    i("gate_up_blocks", "fp4e2m1x2", [E, 2 * I, D / 32, 16]), i("gate_up_scales", "e8m0", [E, 2 * I, D / 32]), i("gate_up_b", "bf16", [E, 2 * I]),
    i("down_blocks", "fp4e2m1x2", [E, D, I / 32, 16]), i("down_scales", "e8m0", [E, D, I / 32]), i("down_b", "bf16", [E, D]),
  ]);
}

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

async function main(): Promise<void> {
  const [tokensArg = "512,2048", replaysArg = "5", runsArg = process.env["MOE_BENCH_RUNS"] ?? ""] = process.argv.slice(2);
  const runFilter = runsArg.split(",").filter((w) => w !== "");
  // the token loop (the reference) and the default grouped and stream kernels (the baselines) always run
  const wanted = (label: string) => label === "token-loop" || label === "grouped" || label === "stream" || runFilter.length === 0 || runFilter.some((w) => label.includes(w));
  const tokenCounts = tokensArg.split(",").map(Number);
  const replays = Number(replaysArg);
  const maxT = Math.max(...tokenCounts);
  const device = Device.open(0);
  const node = moeNode();
  // the default kernels are a plan's for this card (warpgroup MMAs on sm_90a)
  const wgmma = lowerTarget(device.info.arch).wgmma;
  const bounds = { tokens: maxT };
  const bucketOf = (t: number) => 2 ** Math.ceil(Math.log2(t));
  // tiling variants of the stream kernels, timed beside the bucket's default (a record for tuning)
  const VARIANTS: readonly { readonly name: string; readonly tiling: (bucket: number) => Partial<StreamTiling>; readonly routing?: "logits" }[] = [
    // the previous stream kernels (weights as the mma's B, router logits and a selecting bucket): the baseline
    { name: "b", tiling: (bucket) => previousStreamTiling(bucket), routing: "logits" },
    // the default kernels with the previous routing
    { name: "logits", tiling: () => ({}), routing: "logits" },
    // constant scale-1 tables and a bf16x2 multiply by the block scale
    { name: "unit", tiling: () => ({ dequant: "unit" }) },
    // other row tiles (a64 needs an A ring: all of K would not fit)
    { name: "a8", tiling: () => ({ bm: 8 }) },
    { name: "a8unit", tiling: () => ({ bm: 8, dequant: "unit" }) },
    // immediate tables of the raw bf16's bytes and mx_dequant2's factors
    { name: "raw", tiling: () => ({ dequant: "raw" }) },
    { name: "a8raw", tiling: () => ({ bm: 8, dequant: "raw" }) },
    { name: "a32s8", tiling: () => ({ bm: 32, aStages: 8 }) },
    { name: "a64s3", tiling: () => ({ bm: 64, aStages: 3, minBlocks: 1 }) },
    // 32-row tiles with all of K staged (one block an SM), one or two 16-row weight tiles a warp
    { name: "a32w", tiling: () => ({ bm: 32, aStages: 64, minBlocks: 1 }) },
    { name: "a32wn2", tiling: () => ({ bm: 32, aStages: 64, minBlocks: 1, nj: 2 }) },
    // four 16-row weight tiles a warp (shared memory read per mma a quarter of one tile's), 2 chunks ahead
    { name: "a32n4w", tiling: () => ({ bm: 32, aStages: 64, minBlocks: 1, nj: 4, pf: 2 }) },
    { name: "a64n2s3", tiling: () => ({ bm: 64, aStages: 3, minBlocks: 1, nj: 2, pf: 2 }) },
  ];
  // the previous tensor-core grouped GEMMs (64×128×32, per-byte dequantization) at B prefetch depth GROUPED_B_PREFETCH: the baseline
  const GROUPED_VARIANTS = [GROUPED_B_PREFETCH];
  // other tilings of the tiled grouped GEMMs (the default is GROUPED_TILING), timed beside it
  const TILED: readonly Partial<GroupedTiling>[] = [
    { minBlocks: 0 }, { dequant: "byte" }, { bm: 32 }, { bm: 32, dequant: "byte" }, { bk: 32 }, { bm: 32, bk: 32 }, { aStages: 2 }, { aStages: 4 },
    { skipEmpty: true }, { bm: 128, minBlocks: 2 }, { bm: 128, minBlocks: 2, skipEmpty: true }, { bm: 128, minBlocks: 1, skipEmpty: true },
    // 256 weight rows a block: warp tiles of 32 × 64 and (128-row tiles) 64 × 64
    { bn: 256, minBlocks: 2 }, { bn: 256, minBlocks: 2, skipEmpty: true }, { bm: 128, bn: 256, minBlocks: 1 },
    // warpgroup MMAs (sm_90a only)
    ...(wgmma
      ? [
        { bm: 128, minBlocks: 2, wgmma: true }, { bm: 128, bn: 256, minBlocks: 1, wgmma: true },
        { bm: 64, minBlocks: 3, wgmma: true }, { bm: 64, minBlocks: 2, wgmma: true }, { bm: 64, bn: 256, minBlocks: 1, wgmma: true },
      ] as const
      : []),
  ];
  // (each a full tiling over GROUPED_TILING, whatever the bucket's default)
  const tiledFull = (v: Partial<GroupedTiling>): GroupedTiling => ({ ...GROUPED_TILING, ...v });
  const tiledKey = (v: Partial<GroupedTiling>) => `grouped/${groupedTilingTag(tiledFull(v)).slice(1)}`;
  // one kernel set per path, and per bucket for the grouped and stream variants (their tiles follow the bucket)
  const sets = new Map<string, NodeKernels>();
  const setKey = (p: MoePath, tokens: number) => (p === "token-loop" ? p : `${p}@${bucketOf(tokens)}`);
  // the stream variant runs to 16 rows an expert (STREAM_MAX_ROWS); timed to 512 tokens to see the crossover
  const streamLimit = 512;
  for (const t of tokenCounts) {
    for (const p of ["token-loop", "grouped", "stream"] as const) {
      if (p === "stream" && t > streamLimit) continue;
      const key = setKey(p, t);
      if (!sets.has(key) && wanted(p)) sets.set(key, emitMoeExperts(node, p === "token-loop" ? bounds : { tokens: bucketOf(t) }, { path: p, wgmma }));
    }
    for (const p of GROUPED_VARIANTS) {
      const key = `grouped/p${p}`;
      if (!sets.has(key) && wanted(key)) sets.set(key, emitMoeExperts(node, bounds, { path: "grouped", groupedPrefetch: p }));
    }
    for (const v of TILED) {
      const key = tiledKey(v);
      if (!sets.has(key) && wanted(key)) sets.set(key, emitMoeExperts(node, bounds, { path: "grouped", groupedTiling: tiledFull(v) }));
    }
    // the bucket's default kernels with the route blocks taking 1, 2, 4 or 8 tokens (MoeOptions.routeTokens)
    for (const r of [1, 2, 4, 8] as const) {
      const key = `${setKey("grouped", t)}/route${r}`;
      if (!sets.has(key) && wanted(`grouped/route${r}`)) sets.set(key, emitMoeExperts(node, { tokens: bucketOf(t) }, { path: "grouped", wgmma, routeTokens: r }));
    }
    // named variants run at any count (the default to streamLimit)
    if (t <= streamLimit || runFilter.length > 0) {
      for (const v of VARIANTS) {
        const key = `${setKey("stream", t)}/${v.name}`;
        if (!sets.has(key) && wanted(`stream/${v.name}`)) sets.set(key, emitMoeExperts(node, { tokens: bucketOf(t) }, { path: "stream", streamTiling: v.tiling(bucketOf(t)), ...(v.routing ? { streamRouting: v.routing } : {}) }));
      }
    }
  }
  // one arena: operands at maxT, the output, then each path's scratch
  const maxSym = { tokens: maxT };
  const inputBytes = node.inputs.map((n) => numElements(evalShape(n.shape, maxSym)) * (n.dtype === "bf16" ? 2 : 1));
  const outBytes = maxT * D * 2;
  let total = 0;
  const place = (n: number) => {
    const off = total;
    total += align(Math.max(n, 1));
    return off;
  };
  const inputOff = inputBytes.map(place);
  const outOff = place(outBytes);
  const scratchOff = new Map([...sets].map(([key, ks]) => [key, ks.scratchBytes.map((s) => place(evalSize(s, maxSym)))]));
  const arena = Arena.allocate(device, total);
  const base = arena.pointer;
  const fill = await deviceFill(device);
  const [fillBf16, fillU8] = [fill.bf16, fill.u8];
  const fillAt = (f: DeviceFill["bf16"], offset: number, n: number, seed: number, lo: number, hi: number) => f(base + BigInt(offset), n, seed, lo, hi);
  // x ±1, router ±1/√D, biases ±0.1, MXFP4 codes uniform with scales 2^-7 .. 2^-4 (activations reach the clamp)
  node.inputs.forEach((n, i) => {
    const count = inputBytes[i]! / (n.dtype === "bf16" ? 2 : 1);
    if (n.dtype === "fp4e2m1x2") fillAt(fillU8, inputOff[i]!, count, i + 1, 0, 256);
    else if (n.dtype === "e8m0") fillAt(fillU8, inputOff[i]!, count, i + 1, 120, 124);
    else if (i === 0) fillAt(fillBf16, inputOff[i]!, count, i + 1, -1, 1);
    else if (i === 1) fillAt(fillBf16, inputOff[i]!, count, i + 1, -1 / Math.sqrt(D), 1 / Math.sqrt(D));
    else fillAt(fillBf16, inputOff[i]!, count, i + 1, -0.1, 0.1);
  });
  device.synchronize();

  const loaded = new Map<string, Kernel[]>();
  for (const [key, ks] of sets) {
    const kernels = (await loadKernels(device, ks.launches.map((l) => ({ name: l.kernel.name, source: l.kernel.source, entry: l.kernel.entry })), { cache: false })).kernels as Kernel[];
    ks.launches.forEach((l, i) => { if (l.sharedBytes > 48 * 1024) kernels[i]!.setMaxDynamicSharedBytes(l.sharedBytes); });
    loaded.set(key, kernels);
  }
  const launchers = (key: string, tokens: number): ((stream?: Stream) => void)[] => {
    const ks = sets.get(key)!;
    const sym = { tokens };
    return ks.launches.map((l, li) => {
      const args: KernelArg[] = l.args.map((a) => {
        switch (a.kind) {
          case "input": return { ptr: base + BigInt(inputOff[a.index]!) };
          case "output": return { ptr: base + BigInt(outOff) };
          case "scratch": return { ptr: base + BigInt(scratchOff.get(key)![a.index]!) };
          case "i32": return { i32: evalSize(a.value, sym) };
          case "f32": return { f32: a.value };
          case "sibling": throw new Error("no siblings here");
        }
      });
      const grid = l.grid.map((g) => evalSize(g, sym)) as [number, number, number];
      const kernel = loaded.get(key)![li]!;
      return (stream?: Stream) => kernel.launch({ grid, block: l.block, sharedBytes: l.sharedBytes, args, ...(stream ? { stream } : {}) });
    });
  };

  const stream = device.createStream();
  const [start, stop] = [device.createEvent(), device.createEvent()];
  const graphMs = (body: (s: Stream) => void, n: number): number => {
    const graph = stream.capture(() => body(stream));
    try {
      graph.launch(stream);
      stream.synchronize();
      start.record(stream);
      for (let i = 0; i < n; i++) graph.launch(stream);
      stop.record(stream);
      stop.synchronize();
      return stop.elapsedMsSince(start) / n;
    } finally {
      graph.dispose();
    }
  };
  const readOut = (tokens: number) => {
    const bytes = new Uint8Array(tokens * D * 2);
    arena.view(outOff, bytes.byteLength).copyToHost(bytes);
    return tensorFromBytes("bf16", [tokens, D], bytes).data;
  };

  console.log(`${device.info.name}; moeExperts of gpt-oss (D ${D}, I ${I}, ${E} experts, top-${K}, MXFP4, bf16), CUDA-graph replay`);
  // weight bytes of one expert (MXFP4 blocks + scales of gate_up and down) and the experts T tokens touch (expected)
  const expertBytes = (2 * I + D) * (D / 32) * 17;
  const touched = (t: number) => E * (1 - (1 - K / E) ** t);
  for (const tokens of tokenCounts) {
    const flop = 2 * tokens * K * (2 * I * D + D * I);
    const outs = new Map<string, Float64Array>();
    const runs: { readonly label: string; readonly path: MoePath; readonly key: string }[] = (["token-loop", "grouped", "stream"] as const)
      .filter((p) => p !== "stream" || tokens <= streamLimit || runFilter.length > 0)
      .flatMap((p) => [
        { label: p, path: p, key: setKey(p, tokens) },
        ...(p === "stream" ? VARIANTS.map((v) => ({ label: `stream/${v.name}`, path: p, key: `${setKey(p, tokens)}/${v.name}` })) : []),
        ...(p === "grouped" ? GROUPED_VARIANTS.map((v) => ({ label: `grouped/p${v}`, path: p, key: `grouped/p${v}` })) : []),
        ...(p === "grouped" ? TILED.map((v) => ({ label: tiledKey(v), path: p, key: tiledKey(v) })) : []),
        ...(p === "grouped" ? ([1, 2, 4, 8] as const).map((r) => ({ label: `grouped/route${r}`, path: p, key: `${setKey(p, tokens)}/route${r}` })) : []),
      ])
      .filter((r) => sets.has(r.key) && wanted(r.label));
    for (const { label, path: p, key } of runs) {
      const ls = launchers(key, tokens);
      arena.view(outOff, outBytes).fill(0xff);
      ls.forEach((l) => l());
      device.synchronize();
      outs.set(label, readOut(tokens));
      // the token loop is slow at large sizes: fewer replays
      const n = p === "token-loop" && tokens > 64 ? 1 : replays;
      const ms = graphMs((s) => ls.forEach((l) => l(s)), n);
      const per = ls.map((l) => graphMs((s) => l(s), n));
      const names = sets.get(key)!.launches.map((l) => l.kernel.entry.split("_")[1]!);
      console.log(
        `tokens ${String(tokens).padStart(5)}  ${label.padEnd(18)}  ${ms.toFixed(3).padStart(9)} ms  ${(flop / ms / 1e9).toFixed(1).padStart(6)} TFLOP/s  ` +
          `${((touched(tokens) * expertBytes) / ms / 1e6).toFixed(0).padStart(5)} GB/s  (${per.map((v, i) => `${names[i]} ${v.toFixed(3)}`).join(", ")})`,
      );
    }
    for (const [other, b] of outs) {
      if (other === "token-loop") continue;
      const a = outs.get("token-loop")!;
      let maxErr = 0;
      let maxRef = 0;
      let nan = 0;
      a.forEach((v, i) => {
        if (Number.isNaN(b[i]!) || Number.isNaN(v)) nan++;
        else {
          maxRef = Math.max(maxRef, Math.abs(v));
          maxErr = Math.max(maxErr, Math.abs(v - b[i]!));
        }
      });
      console.log(`tokens ${String(tokens).padStart(5)}  ${other} vs token loop: max rel err ${(maxErr / maxRef).toExponential(2)}, NaN ${nan}`);
    }
  }
  start.dispose();
  stop.dispose();
  stream.dispose();
  arena.free();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
