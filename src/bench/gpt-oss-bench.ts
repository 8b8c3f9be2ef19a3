// `tsgc bench`: gpt-oss at full size on one GPU, the engine's compiled plan with seeded random weights made on the
// device (no checkpoint). In one run: the card's ceilings (src/bench/ceilings.ts), GPU memory, compile/load/init
// time, a short generation through the engine, then `step` calls timed as CUDA-graph replays —
//   decode: B sequences, each one token at position `past` (its KV at [0, past] in the pools), for every B of the
//           ladder (each in its shape bucket of the one plan)
//   prefill: one fresh sequence of N tokens
// — each against its floor: max(bytes the step must read / the measured read bandwidth, FLOPs / the measured bf16
// rate). Bytes: every weight the step touches once (the experts its tokens route to, expected count), the KV it
// attends to. Optionally a per-launch profile of chosen decode steps.

import { findBuiltinModel } from "../../models/index.js";
import type { GptOssConfig } from "../../models/gpt-oss/config.js";
import { blockTableInput, kvSlotsInput, type PagedDecoderLayout, STEP_ENTRY, STEP_NAMES } from "../engine/contract.js";
import { deviceFill, fillPlanRandom } from "../engine/device-random.js";
import { openEngine } from "../engine/open.js";
import { type HostTensor, hostTensor } from "../ir/host-tensor.js";
import { CudaGraph, Device, type PlanExecutor } from "../../runtime/index.js";
import { type Ceilings, measureCeilings } from "./ceilings.js";

export interface GptOssBenchOptions {
  readonly model: string;
  /** Position of every decoding sequence (tokens already cached). */
  readonly past: number;
  /** Decode batch sizes. */
  readonly batches: readonly number[];
  /** The plan's batch bound (maxSeqs); by default the largest batch size. No batch may exceed it. */
  readonly maxBatch?: number;
  /** Tokens per sequence the plan holds (maxContext; `--max-context`). */
  readonly context: number;
  readonly replays: number;
  /** Time a prefill of this many fresh tokens too (0: no). */
  readonly prefillTokens: number;
  /** Decode batch sizes whose step is profiled: every launch timed alone (slow: one graph per launch). */
  readonly profile: readonly number[];
  readonly onProgress?: (line: string) => void;
}

export interface StepTiming {
  readonly batch: number;
  readonly ms: number;
  readonly tokensPerSecond: number;
  readonly floorMs: number;
  /** floorMs / ms */
  readonly ofFloor: number;
  /** What bounds the floor. */
  readonly bound: "bytes" | "flops";
  readonly launches: number;
  /** The bucket this step ran in (its token bound). */
  readonly bucket: number;
  /** The same step with programmatic dependent launch off, in the same run (only when the plan launches with it). */
  readonly withoutPdlMs?: number;
  /** Sampled rows whose logits held NaN or Inf (the sampler's −1): a timing of broken numbers, reported, not hidden. */
  readonly nonFiniteRows: number;
}

export interface ProfiledStep {
  readonly batch: number;
  readonly kinds: readonly { readonly kind: string; readonly launches: number; readonly ms: number }[];
}

export interface GptOssBenchResult {
  readonly device: string;
  readonly model: string;
  readonly ceilings: Ceilings;
  readonly context: number;
  readonly past: number;
  readonly maxBatch: number;
  readonly kernels: number;
  /** Kernels launched with programmatic dependent launch (0: off, or a device before compute capability 9.0). */
  readonly programmaticKernels: number;
  readonly buckets: readonly number[];
  readonly arena: { readonly plannedBytes: number; readonly weightBytes: number; readonly activationBytes: number; readonly kvPoolBytes: number };
  readonly gpuMemory: { readonly inUseBytes: number; readonly beforeLoadBytes: number; readonly totalBytes: number };
  readonly kvPerSequence: { readonly at1k: number; readonly at8k: number; readonly sliding: number };
  readonly compileMs: number;
  readonly planCached: boolean;
  readonly loadMs: number;
  readonly initMs: number;
  readonly generate: { readonly promptTokens: number; readonly tokens: readonly number[]; readonly ms: number; readonly finishReason: string };
  readonly decode: readonly StepTiming[];
  readonly profile?: readonly ProfiledStep[];
  readonly prefill?: { readonly tokens: number; readonly ms: number; readonly floorMs: number; readonly ofFloor: number; readonly tokensPerSecond: number; readonly withoutPdlMs?: number };
}

/** Bytes and FLOPs a step must move and do (see the header). */
export function stepCost(c: GptOssConfig, tokens: number, kvKeysPerToken: { readonly full: number; readonly sliding: number }): { bytes: number; flops: number } {
  const bf16 = 2;
  const mxfp4PerWeight = 17 / 32;
  const attnParams = c.numHeads * c.headDim * c.hiddenSize * 2 + c.numKvHeads * c.headDim * c.hiddenSize * 2;
  const expertParams = 3 * c.intermediateSize * c.hiddenSize;
  const routerParams = c.numExperts * c.hiddenSize;
  // T tokens touch E·(1 − (1 − k/E)^T) distinct experts per layer (expected)
  const experts = c.numExperts * (1 - (1 - c.expertsPerToken / c.numExperts) ** tokens);
  const fullLayers = c.layerTypes.filter((t) => t === "full_attention").length;
  const kvBytes = tokens * (fullLayers * kvKeysPerToken.full + (c.numLayers - fullLayers) * kvKeysPerToken.sliding) * 2 * c.numKvHeads * c.headDim * bf16;
  const bytes = c.numLayers * ((attnParams + routerParams) * bf16 + experts * expertParams * mxfp4PerWeight) + c.vocabSize * c.hiddenSize * bf16 + kvBytes;
  const attnFlops = tokens * (fullLayers * kvKeysPerToken.full + (c.numLayers - fullLayers) * kvKeysPerToken.sliding) * 4 * c.numHeads * c.headDim;
  const flops = 2 * tokens * (c.numLayers * (attnParams + routerParams + c.expertsPerToken * expertParams) + c.vocabSize * c.hiddenSize) + attnFlops;
  return { bytes, flops };
}

/** Step inputs of B sequences, each decoding one token at position `past` (its earlier positions already in its blocks). */
export function decodeInputs(layout: PagedDecoderLayout, batch: number, past: number, vocab: number): Record<string, HostTensor> {
  const B = layout.blockSize;
  const MB = layout.maxBlocksPerSeq;
  const blocksPerSeq = Math.floor(past / B) + 1;
  const inputs: Record<string, HostTensor> = {
    [STEP_NAMES.ids]: hostTensor("i32", [batch], Array.from({ length: batch }, (_, b) => (1234 + 97 * b) % vocab)),
    [STEP_NAMES.positions]: hostTensor("i32", [batch], new Array<number>(batch).fill(past)),
    [STEP_NAMES.tokenSeqs]: hostTensor("i32", [batch], Array.from({ length: batch }, (_, b) => b)),
    [STEP_NAMES.contextLens]: hostTensor("i32", [batch], new Array<number>(batch).fill(past)),
    [STEP_NAMES.logitRows]: hostTensor("i32", [batch], Array.from({ length: batch }, (_, b) => b)),
    [STEP_NAMES.temperature]: hostTensor("f32", [batch], new Array<number>(batch).fill(0)),
    [STEP_NAMES.topK]: hostTensor("i32", [batch], new Array<number>(batch).fill(0)),
    [STEP_NAMES.topP]: hostTensor("f32", [batch], new Array<number>(batch).fill(1)),
    [STEP_NAMES.uniform]: hostTensor("f32", [batch], new Array<number>(batch).fill(0)),
  };
  for (const g of layout.groups) {
    // full layers: every block of [0, past]; windowed ones: the blocks covering the window only
    const first = g.window === undefined ? 0 : Math.max(0, Math.floor((past - g.window + 1) / B));
    const held = blocksPerSeq - first;
    const table = new Array<number>(batch * MB).fill(-1);
    const slots: number[] = [];
    for (let b = 0; b < batch; b++) {
      for (let j = first; j < blocksPerSeq; j++) table[b * MB + j] = b * held + (j - first);
      slots.push(table[b * MB + Math.floor(past / B)]! * B + (past % B));
    }
    inputs[blockTableInput(g.name)] = hostTensor("i32", [batch, MB], table);
    inputs[kvSlotsInput(g.name)] = hostTensor("i32", [batch], slots);
  }
  return inputs;
}

/** Step inputs of one fresh sequence of `n` tokens (positions 0…n−1), the last row's logits. */
function prefillInputs(layout: PagedDecoderLayout, n: number, vocab: number): Record<string, HostTensor> {
  const B = layout.blockSize;
  const MB = layout.maxBlocksPerSeq;
  const inputs: Record<string, HostTensor> = {
    [STEP_NAMES.ids]: hostTensor("i32", [n], Array.from({ length: n }, (_, i) => (i * 7919) % vocab)),
    [STEP_NAMES.positions]: hostTensor("i32", [n], Array.from({ length: n }, (_, i) => i)),
    [STEP_NAMES.tokenSeqs]: hostTensor("i32", [n], new Array<number>(n).fill(0)),
    [STEP_NAMES.contextLens]: hostTensor("i32", [1], [0]),
    [STEP_NAMES.logitRows]: hostTensor("i32", [1], [n - 1]),
    [STEP_NAMES.temperature]: hostTensor("f32", [1], [0]),
    [STEP_NAMES.topK]: hostTensor("i32", [1], [0]),
    [STEP_NAMES.topP]: hostTensor("f32", [1], [1]),
    [STEP_NAMES.uniform]: hostTensor("f32", [1], [0]),
  };
  for (const g of layout.groups) {
    inputs[blockTableInput(g.name)] = hostTensor("i32", [1, MB], Array.from({ length: MB }, (_, j) => (j * B < n ? j : -1)));
    inputs[kvSlotsInput(g.name)] = hostTensor("i32", [n], Array.from({ length: n }, (_, i) => i));
  }
  return inputs;
}

export async function runGptOssBench(o: GptOssBenchOptions): Promise<GptOssBenchResult> {
  const say = o.onProgress ?? (() => {});
  if (!(o.past >= 0 && o.past < o.context)) throw new Error(`--past ${o.past} must be below --max-context ${o.context}`);
  if (o.batches.length === 0 || o.batches.some((b) => !(Number.isInteger(b) && b >= 1))) throw new Error(`batch sizes must be positive integers, got ${o.batches.join(",")}`);
  const maxBatch = o.maxBatch ?? Math.max(...o.batches);
  if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new Error(`--max-batch must be a positive integer, got ${maxBatch}`);
  const over = o.batches.filter((b) => b > maxBatch);
  if (over.length > 0) throw new Error(`--batches ${over.join(",")} exceed --max-batch ${maxBatch}`);
  const c = findBuiltinModel(o.model).config;
  const device = Device.open(0);
  const memoryBefore = device.memoryInfo();
  say("measuring the card's ceilings: copy and read bandwidth, bf16 matmul rate");
  const ceilings = await measureCeilings(device);
  const blockSize = 16;
  // pools: every decoding sequence's blocks of [0, past] (full layers; windowed ones take what the engine gives them)
  const fullBlocks = Math.max(maxBatch * (Math.floor(o.past / blockSize) + 1), Math.ceil(Math.max(o.prefillTokens, 64) / blockSize), Math.ceil(o.context / blockSize));
  say(`compiling ${o.model} (maxBatch ${maxBatch}, context ${o.context}) and loading it with random weights made on the device`);
  const opened = await openEngine({
    device: "cuda",
    model: o.model,
    dtype: "bf16",
    maxContext: o.context,
    maxSeqs: maxBatch,
    maxStepTokens: Math.max(maxBatch, o.prefillTokens, 64),
    blockSize,
    kvBlocks: fullBlocks,
  });
  const exec: PlanExecutor = opened.executor!;
  const { engine, layout } = opened;
  try {
    const memoryAfter = device.memoryInfo();
    say("generating 32 tokens after a 32-token prompt through the engine");
    const promptIds = Array.from({ length: 32 }, (_, i) => (i * 7919 + 11) % c.vocabSize);
    const genStarted = performance.now();
    const stream = engine.generate({ promptIds, maxTokens: 32 });
    const tokens: number[] = [];
    for await (const out of stream) tokens.push(out.token);
    const summary = await stream.done;
    const genMs = performance.now() - genStarted;
    // random KV everywhere, so every decode below attends to finite, varied keys
    fillPlanRandom(await deviceFill(device), exec, { params: false, states: true });
    device.synchronize();

    const timing = device.createStream();
    const [start, stop] = [device.createEvent(), device.createEvent()];
    const timeMs = (body: () => void, n: number) => {
      body();
      timing.synchronize();
      start.record(timing);
      for (let i = 0; i < n; i++) body();
      stop.record(timing);
      stop.synchronize();
      return stop.elapsedMsSince(start) / n;
    };
    const floorOf = (cost: { bytes: number; flops: number }) => {
      const bytesMs = (cost.bytes / ceilings.readBytesPerS) * 1e3;
      const flopsMs = (cost.flops / ceilings.bf16FlopPerS) * 1e3;
      return { floorMs: Math.max(bytesMs, flopsMs), bound: bytesMs >= flopsMs ? ("bytes" as const) : ("flops" as const) };
    };
    const kvKeys = { full: o.past + 1, sliding: Math.min(o.past + 1, c.slidingWindow) };
    /** Mean ms of `replays` replays of one CUDA graph of `launch`. */
    const timeGraph = (launch: () => void, replays: number) => {
      const graph = CudaGraph.capture(timing, launch);
      try {
        return timeMs(() => graph.launch(timing), replays);
      } finally {
        graph.dispose();
      }
    };
    // every step whose bucket launches with programmatic dependent launch is timed again without it, as its baseline
    const withoutPdl = (time: () => number) => {
      exec.setProgrammaticLaunch(false);
      try {
        return time();
      } finally {
        exec.setProgrammaticLaunch(true);
      }
    };
    say(`timing decode steps at batch ${o.batches.join(", ")} (position ${o.past}, ${o.replays} CUDA-graph replays each)`);
    const decode: StepTiming[] = [];
    for (const batch of o.batches) {
      const { bucket, symbols } = exec.stage(STEP_ENTRY, decodeInputs(layout, batch, o.past, c.vocabSize));
      const ms = timeGraph(() => exec.launch(STEP_ENTRY, symbols, timing), o.replays);
      const withoutPdlMs = exec.launchesProgrammatically(bucket) ? withoutPdl(() => timeGraph(() => exec.launch(STEP_ENTRY, symbols, timing), o.replays)) : undefined;
      const { floorMs, bound } = floorOf(stepCost(c, batch, kvKeys));
      timing.synchronize();
      const nonFiniteRows = exec.readOutput(STEP_NAMES.tokens).data.filter((t) => t < 0).length;
      if (nonFiniteRows > 0) say(`warning: at batch ${batch}, ${nonFiniteRows} of ${batch} rows sampled from logits holding NaN or Inf`);
      decode.push({
        batch, ms, tokensPerSecond: (batch * 1e3) / ms, floorMs, ofFloor: floorMs / ms, bound, launches: bucket.launches.length, bucket: bucket.bounds["tokens"]!,
        ...(withoutPdlMs !== undefined ? { withoutPdlMs } : {}), nonFiniteRows,
      });
    }

    let profile: ProfiledStep[] | undefined;
    for (const batch of o.profile) {
      say(`profiling every launch of the batch-${batch} step`);
      const { bucket, symbols } = exec.stage(STEP_ENTRY, decodeInputs(layout, batch, o.past, c.vocabSize));
      const all = { ...exec.loadSymbols, ...symbols };
      const byKind = new Map<string, { launches: number; ms: number }>();
      bucket.launches.forEach((l, i) => {
        const g = CudaGraph.capture(timing, () => {
          for (let r = 0; r < 20; r++) exec.launchOne(bucket, i, all, timing);
        });
        const ms = timeMs(() => g.launch(timing), 3) / 20;
        g.dispose();
        // by op and kernel kind (moe_route, moe_gateup, …: the entry's first two words), so a fused op's launches show apart
        const k = exec.plan.kernels[l.kernel]!;
        const kind = `${l.op} (${k.entry.split("_").slice(0, 2).join("_")})`;
        const acc = byKind.get(kind) ?? { launches: 0, ms: 0 };
        byKind.set(kind, { launches: acc.launches + 1, ms: acc.ms + ms });
      });
      (profile ??= []).push({ batch, kinds: [...byKind].map(([kind, v]) => ({ kind, ...v })).sort((a, b) => b.ms - a.ms) });
    }

    let prefill: GptOssBenchResult["prefill"];
    if (o.prefillTokens > 0) {
      const n = o.prefillTokens;
      say(`timing a prefill of ${n} tokens`);
      const { bucket, symbols } = exec.stage(STEP_ENTRY, prefillInputs(layout, n, c.vocabSize));
      const ms = timeGraph(() => exec.launch(STEP_ENTRY, symbols, timing), 5);
      const withoutPdlMs = exec.launchesProgrammatically(bucket) ? withoutPdl(() => timeGraph(() => exec.launch(STEP_ENTRY, symbols, timing), 5)) : undefined;
      // a prompt of n tokens: token i attends to i + 1 keys (the window caps sliding layers)
      const cost = stepCost(c, n, { full: (n + 1) / 2, sliding: Math.min((n + 1) / 2, c.slidingWindow) });
      const { floorMs } = floorOf(cost);
      prefill = { tokens: n, ms, floorMs, ofFloor: floorMs / ms, tokensPerSecond: (n * 1e3) / ms, ...(withoutPdlMs !== undefined ? { withoutPdlMs } : {}) };
    }
    start.dispose();
    stop.dispose();
    timing.dispose();

    const fullGroup = layout.groups.find((g) => g.window === undefined)!;
    const slidingGroup = layout.groups.find((g) => g.window !== undefined);
    const perToken = fullGroup.bytesPerBlock / layout.blockSize;
    const kvPoolBytes = layout.groups.reduce((sum, g) => sum + opened.poolBlocks[g.name]! * g.bytesPerBlock, 0);
    const plan = exec.plan;
    return {
      device: `${device.info.name} (${device.info.arch})`,
      model: o.model,
      ceilings,
      context: o.context,
      past: o.past,
      maxBatch,
      kernels: plan.kernels.length,
      programmaticKernels: exec.programmaticKernels,
      buckets: plan.entries[0]!.buckets.map((b) => b.bounds["tokens"]!),
      arena: { plannedBytes: plan.arena.bytes, weightBytes: plan.arena.weightBytes, activationBytes: plan.arena.activationBytes, kvPoolBytes },
      gpuMemory: { inUseBytes: memoryAfter.totalBytes - memoryAfter.freeBytes, beforeLoadBytes: memoryBefore.totalBytes - memoryBefore.freeBytes, totalBytes: memoryAfter.totalBytes },
      kvPerSequence: { at1k: 1024 * perToken, at8k: 8192 * perToken, sliding: slidingGroup ? (Math.ceil(c.slidingWindow / layout.blockSize) + 1) * slidingGroup.bytesPerBlock : 0 },
      compileMs: opened.timings.compileMs,
      planCached: opened.compileStats?.planCacheHit ?? false,
      loadMs: opened.timings.loadMs,
      initMs: opened.timings.weightsMs,
      generate: { promptTokens: promptIds.length, tokens, ms: genMs, finishReason: summary.finishReason },
      decode,
      ...(profile ? { profile } : {}),
      ...(prefill ? { prefill } : {}),
    };
  } finally {
    await engine.close();
  }
}

/** The result as a table and aligned lines. */
export function formatGptOssBench(r: GptOssBenchResult): string {
  const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
  const c = r.ceilings;
  const rows: [string, string][] = [
    ["device", r.device],
    ["ceilings (measured)", `copy ${(c.copyBytesPerS / 1e12).toFixed(2)} TB/s (read + write), read ${(c.readBytesPerS / 1e12).toFixed(2)} TB/s, bf16 ${(c.bf16FlopPerS / 1e12).toFixed(0)} TFLOP/s (${c.bf16Source === "cublas" ? "cuBLAS" : "tsgc's GEMM: cuBLAS not found"})`],
    ["model", `${r.model}, maxBatch ${r.maxBatch}, context ${r.context}, decode at position ${r.past}`],
    ["plan", `${r.kernels} kernels (${r.programmaticKernels > 0 ? `${r.programmaticKernels} with programmatic dependent launch in the buckets that use it` : "programmatic dependent launch off"}); step buckets ${r.buckets.join(", ")}; planned arena ${gb(r.arena.plannedBytes)} = weights ${gb(r.arena.weightBytes)} + activations ${gb(r.arena.activationBytes)}; KV pools ${gb(r.arena.kvPoolBytes)}`],
    ["GPU memory in use", `${gb(r.gpuMemory.inUseBytes)} (${gb(r.gpuMemory.beforeLoadBytes)} before loading, of ${gb(r.gpuMemory.totalBytes)})`],
    ["KV per sequence", `full layers ${gb(r.kvPerSequence.at1k)} at 1k tokens, ${gb(r.kvPerSequence.at8k)} at 8k; sliding layers ${gb(r.kvPerSequence.sliding)} at any length`],
    ["compile / load / init", `${r.compileMs.toFixed(0)} ms (${r.planCached ? "plan cached" : "cold"}) / ${r.loadMs.toFixed(0)} ms / ${r.initMs.toFixed(0)} ms`],
    ["generate", `${r.generate.promptTokens}-token prompt + ${r.generate.tokens.length} greedy tokens through the engine in ${r.generate.ms.toFixed(0)} ms (${r.generate.finishReason})`],
  ];
  const lines = rows.map(([k, v]) => `${k.padEnd(22)} ${v}`);
  const pdl = r.decode.some((d) => d.withoutPdlMs !== undefined);
  lines.push("", `batch   bucket  launches     ms/step      tokens/s   floor ms  of floor  bound${pdl ? "   no-PDL ms" : ""}`);
  for (const d of r.decode) {
    const baseline = d.withoutPdlMs !== undefined ? d.withoutPdlMs.toFixed(3).padStart(12) : "";
    lines.push(`${String(d.batch).padStart(5)}  ${String(d.bucket).padStart(7)}  ${String(d.launches).padStart(8)}  ${d.ms.toFixed(3).padStart(10)}  ${d.tokensPerSecond.toFixed(0).padStart(12)}  ${d.floorMs.toFixed(3).padStart(9)}  ${(d.ofFloor * 100).toFixed(1).padStart(7)}%  ${d.bound.padEnd(5)}${baseline}`);
  }
  if (r.prefill) {
    const p = r.prefill;
    const baseline = p.withoutPdlMs !== undefined ? `; ${p.withoutPdlMs.toFixed(1)} ms without programmatic dependent launch` : "";
    lines.push("", `prefill ${p.tokens} tokens: ${p.ms.toFixed(1)} ms, ${p.tokensPerSecond.toFixed(0)} tokens/s; floor ${p.floorMs.toFixed(1)} ms (${(p.ofFloor * 100).toFixed(1)}%)${baseline}`);
  }
  for (const step of r.profile ?? []) {
    const total = step.kinds.reduce((a, p) => a + p.ms, 0);
    lines.push("", `per-launch profile of the batch-${step.batch} step (sum ${total.toFixed(3)} ms; each launch alone, so small weights sit in L2):`);
    for (const p of step.kinds) lines.push(`  ${p.kind.padEnd(40)} ${String(p.launches).padStart(4)} launches ${p.ms.toFixed(3).padStart(8)} ms ${((p.ms / total) * 100).toFixed(1).padStart(5)}%`);
  }
  return `${lines.join("\n")}\n`;
}
