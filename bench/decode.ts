// gpt-oss at full size on one GPU with seeded random weights made on the device (no checkpoint, no 14 GB
// of host arrays): GPU memory in use, load and init time, a short greedy generation through `generate`,
// and decode steps at each batch size (CUDA graph replay) as ms per step and tokens/s against the
// bandwidth floor (the bytes a step must read: every weight it touches once, the KV cache it attends to).
//
//   npm run build && node dist/bench/decode.js [model=gpt-oss-20b] [past=1024] [replays=100] [prefillTokens=0] [batches=1,8] [context=4096]
// The plan holds a KV cache of `context` tokens for max(batches) sequences and prefills in chunks of up to
// 512 tokens (or prefillTokens). With prefillTokens > 0 it also times a prefill of that many fresh tokens,
// with a per-op breakdown.

import { gptOssModel } from "../models/gpt-oss.js";
import { findBuiltinModel } from "../models/index.js";
import { generate, KvCacheBook } from "../src/generate/generate.js";
import { compile } from "../src/compile.js";
import { dtypeBytes } from "../src/ir/dtype.js";
import { tensorFromBytes, tensorToBytes, hostTensor } from "../src/ir/host-tensor.js";
import { evalShape, numElements } from "../src/ir/shape.js";
import { Device, loadKernels, PlanExecutor } from "../runtime/index.js";
import type { Kernel } from "../runtime/index.js";

const FILL_SOURCE = `
__device__ __forceinline__ unsigned int mix(unsigned long long i, unsigned int seed) {
  unsigned int x = (unsigned int)(i ^ (i >> 32)) * 0x9e3779b9u ^ seed;
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}
// uniform bf16 values in [lo, hi), rounded to nearest even
extern "C" __global__ void fill_bf16(unsigned short* p, unsigned long long n, unsigned int seed, float lo, float hi) {
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
    const float v = lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f);
    unsigned int u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1u);
    p[i] = (unsigned short)(u >> 16);
  }
}
// uniform bytes in [lo, hi)
extern "C" __global__ void fill_u8(unsigned char* p, unsigned long long n, unsigned int seed, float lo, float hi) {
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
    p[i] = (unsigned char)(lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f));
  }
}
`;

async function main(): Promise<void> {
  const [modelName = "gpt-oss-20b", pastArg = "1024", replaysArg = "100", prefillArg = "0", batchesArg = "1,8", contextArg = "4096"] = process.argv.slice(2);
  const prefillTokens = Number(prefillArg);
  const past = Number(pastArg);
  const replays = Number(replaysArg);
  const batches = batchesArg.split(",").map(Number);
  const context = Number(contextArg);
  if (!(past < context)) throw new Error(`past ${past} must be below the context ${context}`);
  const device = Device.open(0);
  const memoryBefore = device.memoryInfo();
  const model = findBuiltinModel(modelName);
  const graph = gptOssModel(model.config, { dtype: "bf16", maxContext: context, maxBatch: Math.max(...batches), maxPrefillTokens: Math.max(prefillTokens, 512) }, modelName);
  const t0 = performance.now();
  const { plan, stats } = await compile(graph, { arch: device.info.arch });
  const compileMs = performance.now() - t0;
  const t1 = performance.now();
  const exec = await PlanExecutor.load(plan, device);
  const loadMs = performance.now() - t1;
  const fill = await loadKernels(device, [
    { name: "fill_bf16", source: FILL_SOURCE, entry: "fill_bf16" },
    { name: "fill_u8", source: FILL_SOURCE, entry: "fill_u8" },
  ]);
  const [fillBf16, fillU8] = fill.kernels as [Kernel, Kernel];
  const base = exec.arena.pointer;
  const fillAt = (kernel: Kernel, offset: number, n: number, seed: number, lo: number, hi: number) =>
    n > 0 && kernel.launch({ grid: 1024, block: 256, args: [{ ptr: base + BigInt(offset) }, { i64: BigInt(n) }, { u32: seed }, { f32: lo }, { f32: hi }] });

  // weights: matrices ±1/√fan_in, norms ≈ 1, vectors small, MXFP4 codes random with scales ≈ 2^-5
  const t2 = performance.now();
  plan.params.forEach((p, i) => {
    const shape = evalShape(p.shape, plan.symbols);
    const n = numElements(shape);
    if (p.dtype === "fp4e2m1x2") fillAt(fillU8, p.offset, n, i + 1, 0, 256);
    else if (p.dtype === "e8m0") fillAt(fillU8, p.offset, n, i + 1, 120, 124);
    else if (p.dtype !== "bf16") throw new Error(`bench: unexpected param dtype ${p.dtype}`);
    else if (shape.length >= 2) fillAt(fillBf16, p.offset, n, i + 1, -1 / Math.sqrt(shape.at(-1)!), 1 / Math.sqrt(shape.at(-1)!));
    else if (/norm/.test(p.name)) fillAt(fillBf16, p.offset, n, i + 1, 0.9, 1.1);
    else fillAt(fillBf16, p.offset, n, i + 1, -0.1, 0.1);
  });
  device.synchronize();
  const initMs = performance.now() - t2;
  const memoryAfter = device.memoryInfo();
  const inUse = memoryAfter.totalBytes - memoryAfter.freeBytes;

  // a short greedy generation through generate() (prefill, then decode steps replayed as CUDA graphs)
  exec.replayAsGraph("decode");
  const genPrompt = Array.from({ length: 32 }, (_, i) => (i * 7919 + 11) % model.config.vocabSize);
  const genStarted = performance.now();
  const generated = generate(graph, (e, inputs) => exec.run(e, inputs), genPrompt, { maxNewTokens: 32 });
  const genMs = performance.now() - genStarted;

  // KV-cache bytes: full layers grow with the context bound, sliding layers are a ring of `window` rows
  const kvBytes = (g: typeof graph, sliding: boolean) =>
    g.states.filter((st) => (model.config.layerTypes[Number(st.name.split(".")[1])] === "sliding_attention") === sliding)
      .reduce((sum, st) => sum + numElements(evalShape(st.shape, g.symbols)) * dtypeBytes(st.dtype), 0);
  const at = (ctx: number) => gptOssModel(model.config, { dtype: "bf16", maxContext: ctx, maxBatch: 1, maxPrefillTokens: 16 }, modelName);
  const [at1k, at8k] = [at(1024), at(8192)];

  // decode inputs: every sequence at position `past` (the cache filled with random values below)
  const symbolsFor = (batch: number) => ({ batch });
  const entry = plan.entries.find((e) => e.name === "decode")!;
  const put = (name: string, t: ReturnType<typeof hostTensor>) => {
    const slot = entry.inputs.find((s) => s.name === name)!;
    const bytes = tensorToBytes(t);
    exec.arena.view(slot.offset, bytes.byteLength).copyFromHost(bytes);
  };
  const placeDecodeInputs = (batch: number) => {
    const book = new KvCacheBook(graph);
    for (let b = 0; b < batch; b++) book.advance(b, past);
    put("ids", hostTensor("i32", [batch], Array.from({ length: batch }, (_, b) => 1234 + b)));
    put("positions", hostTensor("i32", [batch], new Array(batch).fill(past)));
    for (const [name, t] of Object.entries(book.decodeInputs(new Array(batch).fill(true)))) put(name, t);
  };
  plan.states.forEach((st, i) => fillAt(fillBf16, st.offset, st.bytes / 2, 10_000 + i, -1, 1));
  device.synchronize();
  const batch1 = batches[0]!;
  const symbols = symbolsFor(batch1);
  placeDecodeInputs(batch1);

  // correctness smoke: finite logits
  exec.launch("decode", symbols);
  device.synchronize();
  const logitsSlot = entry.outputs.find((s) => s.name === "logits")!;
  const logitBytes = new Uint8Array(numElements(evalShape(logitsSlot.shape, symbols)) * dtypeBytes(logitsSlot.dtype));
  exec.arena.view(logitsSlot.offset, logitBytes.byteLength).copyToHost(logitBytes);
  const logits = tensorFromBytes(logitsSlot.dtype, evalShape(logitsSlot.shape, symbols), logitBytes);
  const nonFinite = logits.data.filter((v) => !Number.isFinite(v)).length;

  // direct launches from the host vs one CUDA graph of the whole step
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
  const directMs = timeMs(() => exec.launch("decode", symbols, stream), Math.min(replays, 20));
  const graphStep = stream.capture(() => exec.launch("decode", symbols, stream));
  const graphMs = timeMs(() => graphStep.launch(stream), replays);

  // the floor: bytes one step must read (weights it touches once, KV it attends to)
  const c = model.config;
  const bf16 = 2;
  const mxfp4PerWeight = 17 / 32;
  const windowPast = Math.min(c.slidingWindow - 1, past);
  const attn = (c.numHeads * c.headDim * c.hiddenSize * 2 + c.numKvHeads * c.headDim * c.hiddenSize * 2) * bf16;
  const expertBytes = (2 * c.intermediateSize * c.hiddenSize + c.hiddenSize * c.intermediateSize) * mxfp4PerWeight;
  const router = c.numExperts * c.hiddenSize * bf16;
  const kvPerSequence = c.layerTypes.reduce((sum, t) => sum + 2 * ((t === "sliding_attention" ? windowPast : past) + 1) * c.numKvHeads * c.headDim * bf16, 0);
  // a batch of B tokens touches min(E, B·k) distinct experts per layer at most (expected: E·(1 − (1 − k/E)^B))
  const stepBytes = (batch: number) =>
    c.numLayers * (attn + router + c.numExperts * (1 - (1 - c.expertsPerToken / c.numExperts) ** batch) * expertBytes) + batch * kvPerSequence + c.vocabSize * c.hiddenSize * bf16;
  const floorMs = (batch: number) => (stepBytes(batch) / 3.0e12) * 1e3;
  const batchRows: string[][] = [];
  for (const batch of batches) {
    placeDecodeInputs(batch);
    const step = stream.capture(() => exec.launch("decode", symbolsFor(batch), stream));
    const ms = timeMs(() => step.launch(stream), replays);
    step.dispose();
    batchRows.push([`decode batch ${batch}`, `${ms.toFixed(3)} ms/step, ${((batch * 1e3) / ms).toFixed(1)} tokens/s; floor ${floorMs(batch).toFixed(3)} ms (${((floorMs(batch) / ms) * 100).toFixed(1)}%)`]);
  }
  placeDecodeInputs(batch1);
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB (${(n / 1e9).toFixed(2)} GB)`;

  const rows = [
    ["device", `${device.info.name} (${device.info.arch})`],
    ["model", `${modelName}, KV cache ${context} tokens × ${Math.max(...batches)} sequences, decode at past ${past} (sliding layers see ${windowPast})`],
    ["plan", `${stats.kernels} kernels, ${entry.launches.length} launches per decode step, arena ${gib(plan.arena.bytes)}: weights and KV ${gib(plan.arena.weightBytes)}, activations ${gib(plan.arena.activationBytes)}`],
    ["GPU memory in use", `${gib(inUse)} (before load ${gib(memoryBefore.totalBytes - memoryBefore.freeBytes)}, of ${gib(memoryAfter.totalBytes)})`],
    ["KV cache", `full layers ${gib(kvBytes(graph, false))}, sliding layers ${gib(kvBytes(graph, true))}; per sequence at 1k / 8k context: full ${gib(kvBytes(at1k, false))} / ${gib(kvBytes(at8k, false))}, sliding ${gib(kvBytes(at1k, true))} / ${gib(kvBytes(at8k, true))}`],
    ["compile / load / init", `${compileMs.toFixed(0)} ms (${stats.planCacheHit ? "plan cached" : "cold"}) / ${loadMs.toFixed(0)} ms / ${initMs.toFixed(0)} ms`],
    ["generate", `32-token prompt + ${generated.tokens.length} greedy tokens in ${genMs.toFixed(0)} ms (${((generated.tokens.length * 1e3) / genMs).toFixed(1)} tokens/s incl. prefill); tokens ${generated.tokens.slice(0, 8).join(",")}…`],
    ["logits", nonFinite === 0 ? "all finite" : `${nonFinite} non-finite values`],
    ["bytes per step (B=1)", `${(stepBytes(1) / 1e9).toFixed(2)} GB → floor ${floorMs(1).toFixed(3)} ms at 3.0 TB/s (${(1e3 / floorMs(1)).toFixed(0)} tokens/s)`],
    ["direct launches", `batch ${batch1}: ${directMs.toFixed(3)} ms/step`],
    ["CUDA graph replay", `batch ${batch1}: ${graphMs.toFixed(3)} ms/step, ${((batch1 * 1e3) / graphMs).toFixed(1)} tokens/s`],
    ...batchRows,
  ];
  for (const [k, v] of rows) process.stdout.write(`${k!.padEnd(22)} ${v}\n`);

  // where the time goes: each launch replayed alone (20 times in one graph), summed by op and kernel family
  const byKind = new Map<string, { count: number; ms: number }>();
  entry.launches.forEach((l, i) => {
    const g = stream.capture(() => {
      for (let r = 0; r < 20; r++) exec.launchOne(entry, i, symbols, stream);
    });
    const ms = timeMs(() => g.launch(stream), 3) / 20;
    g.dispose();
    const key = `${l.op} (${plan.kernels[l.kernel]!.family})`;
    const acc = byKind.get(key) ?? { count: 0, ms: 0 };
    byKind.set(key, { count: acc.count + 1, ms: acc.ms + ms });
  });
  const total = [...byKind.values()].reduce((a, b) => a + b.ms, 0);
  process.stdout.write(`\nper-launch profile (sum ${total.toFixed(3)} ms; each launch alone, so L2 is warm for small ones):\n`);
  for (const [k, v] of [...byKind].sort((a, b) => b[1].ms - a[1].ms)) {
    process.stdout.write(`  ${k.padEnd(34)} ${String(v.count).padStart(4)} launches ${v.ms.toFixed(3).padStart(8)} ms ${((v.ms / total) * 100).toFixed(1).padStart(5)}%\n`);
  }
  graphStep.dispose();

  // prefill of `prefillTokens` fresh tokens (empty cache), timed over a few runs; floor: 2 FLOPs per active
  // parameter per token at 790 TFLOP/s (attention's own FLOPs left out: a lower bound)
  if (prefillTokens > 0) {
    const pre = exec.entry("prefill");
    const preSymbols = { tokens: prefillTokens, rows: 1, past: 0, windowPast: 0 };
    const preBook = new KvCacheBook(graph);
    const putPre = (name: string, values: number[]) => {
      const slot = pre.inputs.find((s) => s.name === name)!;
      const bytes = tensorToBytes(hostTensor(slot.dtype, [values.length], values));
      if (bytes.byteLength > 0) exec.arena.view(slot.offset, bytes.byteLength).copyFromHost(bytes);
    };
    putPre("ids", Array.from({ length: prefillTokens }, (_, i) => (i * 7919) % c.vocabSize));
    putPre("positions", Array.from({ length: prefillTokens }, (_, i) => i));
    putPre("logit_rows", [prefillTokens - 1]);
    for (const [name, t] of Object.entries(preBook.prefillInputs(0, prefillTokens))) putPre(name, Array.from(t.data));
    const preMs = timeMs(() => exec.launch("prefill", preSymbols, stream), 3);
    const activeParams = c.numLayers * (attn / bf16 + c.expertsPerToken * 3 * c.intermediateSize * c.hiddenSize + c.numExperts * c.hiddenSize);
    const preFloorMs = ((2 * activeParams * prefillTokens) / 790e12) * 1e3;
    process.stdout.write(
      `\nprefill ${prefillTokens} tokens     ${preMs.toFixed(1)} ms, ${((prefillTokens / preMs) * 1e3).toFixed(0)} tokens/s; floor ${preFloorMs.toFixed(1)} ms (${((preFloorMs / preMs) * 100).toFixed(1)}%)\n`,
    );
    const byKind = new Map<string, number>();
    pre.launches.forEach((l, i) => {
      const ms = timeMs(() => exec.launchOne(pre, i, preSymbols, stream), 1);
      const key = `${l.op} (${plan.kernels[l.kernel]!.family})`;
      byKind.set(key, (byKind.get(key) ?? 0) + ms);
    });
    for (const [k, v] of [...byKind].sort((a, b) => b[1] - a[1]).slice(0, 6)) process.stdout.write(`  ${k.padEnd(34)} ${v.toFixed(2).padStart(9)} ms\n`);
  }
  exec.dispose();
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/decode: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
