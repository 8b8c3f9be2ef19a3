// gpt-oss at full size on one GPU with seeded random weights made on the device: GPU memory in use, load
// and init time, a short greedy generation through `generate`, decode steps at each batch size (one CUDA
// graph per step) against the bandwidth floor (the bytes a step must read: every weight it touches once,
// the KV cache it attends to), KV-cache bytes at 1k and 8k context, and optionally a per-launch profile
// and a prefill timing. Used by `tsgc bench` and bench/decode.ts.

import { gptOssModel } from "../../models/gpt-oss.js";
import { findBuiltinModel } from "../../models/index.js";
import { compile } from "../compile/compile.js";
import { generate, KvCacheBook } from "../generate/generate.js";
import type { Graph } from "../ir/graph.js";
import { dtypeBytes } from "../ir/dtype.js";
import { type HostTensor, hostTensor, tensorFromBytes, tensorToBytes } from "../ir/host-tensor.js";
import { evalShape, numElements } from "../ir/shape.js";
import { Device, PlanExecutor } from "../../runtime/index.js";
import { deviceFill, fillPlanRandom } from "./device-fill.js";

/** Measured HBM copy bandwidth of an H100 SXM (DESIGN.md, "Performance method"). */
const HBM_BYTES_PER_S = 3.0e12;
/** Dense bf16 tensor throughput of an H100 SXM. */
const TENSOR_FLOP_PER_S = 790e12;

export interface GptOssBenchOptions {
  readonly model: string;
  /** Position of every decoding sequence (tokens already cached). */
  readonly past: number;
  readonly batches: readonly number[];
  /** Tokens of KV cache per sequence (the plan's maxContext). */
  readonly context: number;
  readonly replays: number;
  /** Time a prefill of this many fresh tokens too (0: no). */
  readonly prefillTokens: number;
  /** Time every decode launch alone (slow: one graph per launch). */
  readonly profile: boolean;
  /** Progress lines (compiling, loading, timing). */
  readonly onProgress?: (line: string) => void;
}

export interface DecodeTiming {
  readonly batch: number;
  readonly ms: number;
  readonly tokensPerSecond: number;
  readonly floorMs: number;
}

export interface GptOssBenchResult {
  readonly device: string;
  readonly model: string;
  readonly context: number;
  readonly past: number;
  readonly maxBatch: number;
  readonly kernels: number;
  readonly launchesPerDecodeStep: number;
  readonly arena: { readonly bytes: number; readonly weightBytes: number; readonly kvBytes: number; readonly activationBytes: number };
  readonly gpuMemory: { readonly inUseBytes: number; readonly beforeLoadBytes: number; readonly totalBytes: number };
  /** KV bytes of the plan, and per sequence at 1k and 8k context, for full and sliding layers. */
  readonly kvCache: { readonly full: number; readonly sliding: number; readonly perSequence1k: KvSplit; readonly perSequence8k: KvSplit };
  readonly compileMs: number;
  readonly planCached: boolean;
  readonly loadMs: number;
  readonly initMs: number;
  readonly generate: { readonly promptTokens: number; readonly tokens: readonly number[]; readonly ms: number };
  readonly logitsFinite: boolean;
  readonly bytesPerStep: number;
  readonly directLaunchMs: number;
  readonly decode: readonly DecodeTiming[];
  readonly profile?: readonly { readonly kind: string; readonly launches: number; readonly ms: number }[];
  readonly prefill?: { readonly tokens: number; readonly ms: number; readonly floorMs: number; readonly top: readonly { readonly kind: string; readonly ms: number }[] };
}

interface KvSplit {
  readonly full: number;
  readonly sliding: number;
}

export async function runGptOssBench(o: GptOssBenchOptions): Promise<GptOssBenchResult> {
  const say = o.onProgress ?? (() => {});
  if (!(o.past >= 0 && o.past < o.context)) throw new Error(`past ${o.past} must be below the context ${o.context}`);
  if (o.batches.length === 0 || o.batches.some((b) => !(Number.isInteger(b) && b >= 1))) throw new Error(`batch sizes must be positive integers, got ${o.batches.join(",")}`);
  const model = findBuiltinModel(o.model);
  const c = model.config;
  const device = Device.open(0);
  const memoryBefore = device.memoryInfo();
  const maxBatch = Math.max(...o.batches);
  const graph = gptOssModel(c, { dtype: "bf16", maxContext: o.context, maxBatch, maxPrefillTokens: Math.max(o.prefillTokens, 512) }, o.model);
  say(`compiling ${o.model} for ${device.info.arch}`);
  const t0 = performance.now();
  const { plan, stats } = await compile(graph, { arch: device.info.arch });
  const compileMs = performance.now() - t0;
  const t1 = performance.now();
  const exec = await PlanExecutor.load(plan, device);
  const loadMs = performance.now() - t1;
  try {
    say(`filling ${(plan.arena.weightBytes / 1e9).toFixed(1)} GB of weights and KV cache on the device`);
    const fill = await deviceFill(device);
    const t2 = performance.now();
    fillPlanRandom(fill, plan, exec.arena.pointer);
    device.synchronize();
    const initMs = performance.now() - t2;
    const memoryAfter = device.memoryInfo();

    say("generating 32 tokens through generate()");
    exec.replayAsGraph("decode");
    const promptIds = Array.from({ length: 32 }, (_, i) => (i * 7919 + 11) % c.vocabSize);
    const genStarted = performance.now();
    const generated = generate(graph, (e, inputs) => exec.run(e, inputs), promptIds, { maxNewTokens: 32 });
    const genMs = performance.now() - genStarted;
    // the generation wrote its rows: put random state back so every decode below reads finite, varied keys
    fillPlanRandom(fill, { ...plan, params: [] }, exec.arena.pointer);

    const entry = exec.entry("decode");
    const put = (name: string, t: HostTensor) => {
      const slot = entry.inputs.find((s) => s.name === name)!;
      const bytes = tensorToBytes(t);
      if (bytes.byteLength > 0) exec.arena.view(slot.offset, bytes.byteLength).copyFromHost(bytes);
    };
    /** Every sequence of the batch at position `past`; returns the step's symbol values. */
    const placeDecodeInputs = (batch: number): Record<string, number> => {
      const book = new KvCacheBook(graph);
      for (let b = 0; b < batch; b++) book.advance(b, o.past);
      put("ids", hostTensor("i32", [batch], Array.from({ length: batch }, (_, b) => 1234 + b)));
      put("positions", hostTensor("i32", [batch], new Array<number>(batch).fill(o.past)));
      const cache = book.decodeInputs(new Array<boolean>(batch).fill(true));
      for (const [name, t] of Object.entries(cache)) put(name, t);
      return { batch, kvLen: cache["cache_positions.full"]!.shape[1]! };
    };
    const batch1 = o.batches[0]!;
    const symbols1 = placeDecodeInputs(batch1);
    exec.launch("decode", symbols1);
    device.synchronize();
    const logitsSlot = entry.outputs.find((s) => s.name === "logits")!;
    const logitsShape = evalShape(logitsSlot.shape, symbols1);
    const logitBytes = new Uint8Array(numElements(logitsShape) * dtypeBytes(logitsSlot.dtype));
    exec.arena.view(logitsSlot.offset, logitBytes.byteLength).copyToHost(logitBytes);
    const logitsFinite = tensorFromBytes(logitsSlot.dtype, logitsShape, logitBytes).data.every(Number.isFinite);

    const stream = device.createStream();
    const [start, stop] = [device.createEvent(), device.createEvent()];
    const timeMs = (body: () => void, n: number) => {
      body();
      stream.synchronize();
      start.record(stream);
      for (let i = 0; i < n; i++) body();
      stop.record(stream);
      stop.synchronize();
      return stop.elapsedMsSince(start) / n;
    };
    say("timing decode steps");
    const directLaunchMs = timeMs(() => exec.launch("decode", symbols1, stream), Math.min(o.replays, 20));

    // the floor: bytes one step must read (weights it touches once, KV it attends to)
    const bf16 = 2;
    const mxfp4PerWeight = 17 / 32;
    const windowPast = Math.min(c.slidingWindow - 1, o.past);
    const attn = (c.numHeads * c.headDim * c.hiddenSize * 2 + c.numKvHeads * c.headDim * c.hiddenSize * 2) * bf16;
    const expertBytes = (2 * c.intermediateSize * c.hiddenSize + c.hiddenSize * c.intermediateSize) * mxfp4PerWeight;
    const router = c.numExperts * c.hiddenSize * bf16;
    const kvPerSequence = c.layerTypes.reduce((sum, t) => sum + 2 * ((t === "sliding_attention" ? windowPast : o.past) + 1) * c.numKvHeads * c.headDim * bf16, 0);
    // a batch of B tokens touches E·(1 − (1 − k/E)^B) distinct experts per layer (expected)
    const stepBytes = (batch: number) =>
      c.numLayers * (attn + router + c.numExperts * (1 - (1 - c.expertsPerToken / c.numExperts) ** batch) * expertBytes) + batch * kvPerSequence + c.vocabSize * c.hiddenSize * bf16;
    const floorMs = (batch: number) => (stepBytes(batch) / HBM_BYTES_PER_S) * 1e3;
    const decode: DecodeTiming[] = [];
    for (const batch of o.batches) {
      const symbols = placeDecodeInputs(batch);
      const step = stream.capture(() => exec.launch("decode", symbols, stream));
      const ms = timeMs(() => step.launch(stream), o.replays);
      step.dispose();
      decode.push({ batch, ms, tokensPerSecond: (batch * 1e3) / ms, floorMs: floorMs(batch) });
    }

    let profile: GptOssBenchResult["profile"];
    if (o.profile) {
      say("profiling every decode launch");
      placeDecodeInputs(batch1);
      const byKind = new Map<string, { launches: number; ms: number }>();
      entry.launches.forEach((l, i) => {
        const g = stream.capture(() => {
          for (let r = 0; r < 20; r++) exec.launchOne(entry, i, symbols1, stream);
        });
        const ms = timeMs(() => g.launch(stream), 3) / 20;
        g.dispose();
        const kind = `${l.op} (${plan.kernels[l.kernel]!.family})`;
        const acc = byKind.get(kind) ?? { launches: 0, ms: 0 };
        byKind.set(kind, { launches: acc.launches + 1, ms: acc.ms + ms });
      });
      profile = [...byKind].map(([kind, v]) => ({ kind, ...v })).sort((a, b) => b.ms - a.ms);
    }

    let prefill: GptOssBenchResult["prefill"];
    if (o.prefillTokens > 0) {
      say(`timing a prefill of ${o.prefillTokens} tokens`);
      const pre = exec.entry("prefill");
      const putPre = (name: string, t: HostTensor) => {
        const slot = pre.inputs.find((s) => s.name === name)!;
        const bytes = tensorToBytes(t);
        if (bytes.byteLength > 0) exec.arena.view(slot.offset, bytes.byteLength).copyFromHost(bytes);
      };
      const n = o.prefillTokens;
      putPre("ids", hostTensor("i32", [n], Array.from({ length: n }, (_, i) => (i * 7919) % c.vocabSize)));
      putPre("positions", hostTensor("i32", [n], Array.from({ length: n }, (_, i) => i)));
      putPre("logit_rows", hostTensor("i32", [1], [n - 1]));
      for (const [name, t] of Object.entries(new KvCacheBook(graph).prefillInputs(0, n))) putPre(name, t);
      const symbols = { tokens: n, rows: 1, past: 0, windowPast: 0 };
      const ms = timeMs(() => exec.launch("prefill", symbols, stream), 3);
      const activeParams = c.numLayers * (attn / bf16 + c.expertsPerToken * 3 * c.intermediateSize * c.hiddenSize + c.numExperts * c.hiddenSize);
      const byKind = new Map<string, number>();
      pre.launches.forEach((l, i) => {
        const t = timeMs(() => exec.launchOne(pre, i, symbols, stream), 1);
        const kind = `${l.op} (${plan.kernels[l.kernel]!.family})`;
        byKind.set(kind, (byKind.get(kind) ?? 0) + t);
      });
      prefill = {
        tokens: n,
        ms,
        floorMs: ((2 * activeParams * n) / TENSOR_FLOP_PER_S) * 1e3,
        top: [...byKind].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([kind, t]) => ({ kind, ms: t })),
      };
    }
    stream.dispose();

    const kvBytes = (g: Graph, sliding: boolean) =>
      g.states
        .filter((st) => (c.layerTypes[Number(st.name.split(".")[1])] === "sliding_attention") === sliding)
        .reduce((sum, st) => sum + numElements(evalShape(st.shape, g.symbols)) * dtypeBytes(st.dtype), 0);
    const perSequence = (context: number): KvSplit => {
      const g = gptOssModel(c, { dtype: "bf16", maxContext: context, maxBatch: 1, maxPrefillTokens: 16 }, o.model);
      return { full: kvBytes(g, false), sliding: kvBytes(g, true) };
    };
    return {
      device: `${device.info.name} (${device.info.arch})`,
      model: o.model,
      context: o.context,
      past: o.past,
      maxBatch,
      kernels: stats.kernels,
      launchesPerDecodeStep: entry.launches.length,
      arena: { bytes: plan.arena.bytes, weightBytes: plan.arena.weightBytes - stats.stateBytes, kvBytes: stats.stateBytes, activationBytes: plan.arena.activationBytes },
      gpuMemory: { inUseBytes: memoryAfter.totalBytes - memoryAfter.freeBytes, beforeLoadBytes: memoryBefore.totalBytes - memoryBefore.freeBytes, totalBytes: memoryAfter.totalBytes },
      kvCache: { full: kvBytes(graph, false), sliding: kvBytes(graph, true), perSequence1k: perSequence(1024), perSequence8k: perSequence(8192) },
      compileMs,
      planCached: stats.planCacheHit,
      loadMs,
      initMs,
      generate: { promptTokens: promptIds.length, tokens: generated.tokens, ms: genMs },
      logitsFinite,
      bytesPerStep: stepBytes(1),
      directLaunchMs,
      decode,
      ...(profile ? { profile } : {}),
      ...(prefill ? { prefill } : {}),
    };
  } finally {
    exec.dispose();
  }
}

/** The result as aligned text lines. */
export function formatGptOssBench(r: GptOssBenchResult): string {
  const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
  const rows: [string, string][] = [
    ["device", r.device],
    ["model", `${r.model}, KV cache ${r.context} tokens × ${r.maxBatch} sequences, decode at position ${r.past}`],
    ["plan", `${r.kernels} kernels, ${r.launchesPerDecodeStep} launches per decode step; arena ${gb(r.arena.bytes)} = weights ${gb(r.arena.weightBytes)} + KV ${gb(r.arena.kvBytes)} + activations ${gb(r.arena.activationBytes)}`],
    ["GPU memory in use", `${gb(r.gpuMemory.inUseBytes)} (${gb(r.gpuMemory.beforeLoadBytes)} before loading, of ${gb(r.gpuMemory.totalBytes)})`],
    ["KV cache", `full layers ${gb(r.kvCache.full)}, sliding ${gb(r.kvCache.sliding)}; per sequence at 1k / 8k context: full ${gb(r.kvCache.perSequence1k.full)} / ${gb(r.kvCache.perSequence8k.full)}, sliding ${gb(r.kvCache.perSequence1k.sliding)} / ${gb(r.kvCache.perSequence8k.sliding)}`],
    ["compile / load / init", `${r.compileMs.toFixed(0)} ms (${r.planCached ? "plan cached" : "cold"}) / ${r.loadMs.toFixed(0)} ms / ${r.initMs.toFixed(0)} ms`],
    ["generate", `${r.generate.promptTokens}-token prompt + ${r.generate.tokens.length} greedy tokens in ${r.generate.ms.toFixed(0)} ms`],
    ["logits", r.logitsFinite ? "all finite" : "NOT all finite"],
    ["bytes per step (B=1)", `${gb(r.bytesPerStep)}: floor ${((r.bytesPerStep / HBM_BYTES_PER_S) * 1e3).toFixed(3)} ms at 3.0 TB/s`],
    ["direct launches", `batch ${r.decode[0]!.batch}: ${r.directLaunchMs.toFixed(3)} ms/step`],
    ...r.decode.map((d): [string, string] => [`decode batch ${d.batch}`, `${d.ms.toFixed(3)} ms/step, ${d.tokensPerSecond.toFixed(1)} tokens/s; floor ${d.floorMs.toFixed(3)} ms (${((d.floorMs / d.ms) * 100).toFixed(1)}%)`]),
  ];
  const lines = rows.map(([k, v]) => `${k.padEnd(22)} ${v}`);
  if (r.profile) {
    const total = r.profile.reduce((a, p) => a + p.ms, 0);
    lines.push(``, `per-launch profile (sum ${total.toFixed(3)} ms; each launch alone, so L2 is warm for small ones):`);
    for (const p of r.profile) lines.push(`  ${p.kind.padEnd(34)} ${String(p.launches).padStart(4)} launches ${p.ms.toFixed(3).padStart(8)} ms ${((p.ms / total) * 100).toFixed(1).padStart(5)}%`);
  }
  if (r.prefill) {
    const p = r.prefill;
    lines.push(``, `prefill ${p.tokens} tokens: ${p.ms.toFixed(1)} ms, ${((p.tokens / p.ms) * 1e3).toFixed(0)} tokens/s; floor ${p.floorMs.toFixed(1)} ms (${((p.floorMs / p.ms) * 100).toFixed(1)}%)`);
    for (const t of p.top) lines.push(`  ${t.kind.padEnd(34)} ${t.ms.toFixed(2).padStart(9)} ms`);
  }
  return `${lines.join("\n")}\n`;
}
