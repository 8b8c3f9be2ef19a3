// MoE routing diagnostics for the MXFP4 bf16 parity miss (bench/NOTES.md, "Parity with the reference
// implementation"): the parity-shaped gpt-oss (4 layers, hidden 256, 8 heads / 2 KV heads, head_dim 32,
// 8 experts top-4, intermediate 256, sliding window 8, vocab 2048) with random std-0.02 weights drawn like
// test/parity/make_checkpoint.py (norm weights 1 + 0.1·N, sinks 0.5·N, biases 0.05·N, matrices std·N),
// written by tsgc (no torch) and quantized with `tsgc quantize`'s code.
//
//   node dist/test/parity/moe-routing.js prepare DIR [--std 0.02] [--seed 1234]
//       writes DIR/bf16 and DIR/mxfp4 (skips what exists)
//   node dist/test/parity/moe-routing.js cpu DIR [--tokens 300] [--experts mxfp4|dense] [--json FILE]
//       interpreter prefill (fused graph, bit-identical to the unfused one): per layer and token, the gap
//       between the 4th and 5th largest bf16 router logits (in bf16 ulps at the row's largest |logit|), ties, and how many top-4 sets
//       change under (a) the GPU route kernel's f32 accumulation order, (b) one-ulp noise on moe inputs
//   node dist/test/parity/moe-routing.js gpu DIR [--tokens 300] [--experts mxfp4|dense] [--json FILE]
//       the compiled plan's prefill logits against the interpreter's (max relative error, argmax), and per
//       layer, fed with the interpreter's own MoE input: the GPU route kernel's expert choice against the
//       interpreter's and the GPU moeExperts output against the interpreter's; for each layer whose final-row
//       4th/5th gap is ≤ 4 row ulps, the interpreter with that row's routing forced to flip, against the plan
//   --prompt-json FILE takes the prompt of a reference.py result (DIR may be a run-parity.sh work dir: it has
//   bf16/ and mxfp4/); --dtype f32 runs the f32 variant
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gptOssCheckpointTensors } from "../../models/gpt-oss/checkpoint.js";
import { GPT_OSS_TINY, type GptOssConfig, gptOssConfigToJson, loadGptOssConfig } from "../../models/gpt-oss/config.js";
import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import type { NodeKernels } from "../../src/lower/kernel.js";
import { evalSize } from "../../src/lower/kernel.js";
import { emitMoeExperts } from "../../src/codegen/moe.js";
import { bf16Bits, bf16FromBits, dtypeBytes, roundTo } from "../../src/ir/dtype.js";
import { findEntry, type Graph } from "../../src/ir/graph.js";
import { type HostTensor, hostTensor, seededRandom, tensorFromBytes, tensorToBytes } from "../../src/ir/host-tensor.js";
import { bindSymbols, evaluateNodes } from "../../src/ir/interpret.js";
import { type Node, type NodeOf, topoOrder } from "../../src/ir/node.js";
import { evalShape, numElements } from "../../src/ir/shape.js";
import { writeCheckpointTensors } from "../../src/loader/checkpoint.js";
import { loadParams } from "../../src/loader/load-params.js";
import { quantizeCheckpoint } from "../../src/loader/quantize-checkpoint.js";
import { gaussian } from "../../src/loader/random-checkpoint.js";
import { encodeFloats } from "../../src/loader/safetensors.js";
import { runPipeline } from "../../src/passes/pipeline.js";
import { freshStepInputs, oneBlockPools } from "../engine/reference.js";

// ---- the checkpoint ------------------------------------------------------------------------------

export const PARITY_CONFIG: GptOssConfig = {
  ...GPT_OSS_TINY,
  hiddenSize: 256,
  intermediateSize: 256,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 2,
  headDim: 32,
  vocabSize: 2048,
  layerTypes: ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
  slidingWindow: 8,
  numExperts: 8,
  expertsPerToken: 4,
  eosTokenIds: [2047],
  padTokenId: 0,
  quantization: null,
  dtype: "bfloat16",
};

async function prepare(dir: string, std: number, seed: number): Promise<void> {
  const bf16 = join(dir, "bf16");
  if (!existsSync(join(bf16, "config.json"))) {
    const normal = gaussian(seededRandom(seed));
    const expected = gptOssCheckpointTensors(PARITY_CONFIG, "bf16");
    await writeCheckpointTensors(bf16, expected.map((t) => ({ name: t.name, dtype: "BF16" as const, shape: t.shape })), async (spec, write) => {
      const n = spec.name;
      const scale = n.endsWith("layernorm.weight") || n === "model.norm.weight" ? 0.1 : n.endsWith(".sinks") ? 0.5 : spec.shape.length >= 2 ? std : 0.05;
      const offset = n.endsWith("layernorm.weight") || n === "model.norm.weight" ? 1 : 0;
      const values = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
      for (let i = 0; i < values.length; i++) values[i] = offset + scale * normal();
      await write(encodeFloats("BF16", values));
    });
    writeFileSync(join(bf16, "config.json"), JSON.stringify(gptOssConfigToJson(PARITY_CONFIG), null, 2) + "\n");
    console.log(`wrote ${bf16} (std ${std}, seed ${seed})`);
  }
  const mx = join(dir, "mxfp4");
  if (!existsSync(join(mx, "config.json"))) {
    await quantizeCheckpoint(bf16, mx);
    console.log(`wrote ${mx}`);
  }
}

// ---- the interpreter's prefill, keeping each layer's MoE input ----------------------------------

interface Model {
  graph: Graph;
  fused: Graph;
  params: Record<string, HostTensor>;
  moes: NodeOf<"moeExperts">[];
  inputs: Record<string, HostTensor>;
  loadSymbols: Record<string, number>;
  prompt: number[];
}

function bound(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 16)));
}

async function loadModel(dir: string, experts: "mxfp4" | "dense", tokens: number, dtype: "bf16" | "f32", promptJson?: string): Promise<Model> {
  const ckpt = join(dir, experts === "mxfp4" ? "mxfp4" : "bf16");
  const config = await loadGptOssConfig(ckpt);
  // the prompt: a reference.py result's (run-parity.sh's), or seeded ids in [1, vocab − 1) like reference.py's
  const rand = seededRandom(4321);
  const prompt = promptJson
    ? (JSON.parse(readFileSync(promptJson, "utf8")) as { prompt: number[] }).prompt.slice(0, tokens)
    : Array.from({ length: tokens }, () => 1 + Math.floor(rand() * (config.vocabSize - 2)));
  tokens = prompt.length;

  const bounds = { dtype, maxTokensPerStep: bound(tokens), maxSeqsPerStep: 1, maxContext: bound(tokens + 64) };
  const graph = gptOssModel(config, bounds);
  const layout = gptOssLayout(config, bounds);
  const params = await loadParams(ckpt, graph);
  const { graph: fused } = runPipeline(graph);
  const entry = findEntry(fused, "step");
  const moes = topoOrder(entry.outputs.map((o) => o.node)).filter((n): n is NodeOf<"moeExperts"> => n.op === "moeExperts");
  if (moes.length !== config.numLayers) throw new Error(`expected ${config.numLayers} moeExperts nodes after the pipeline, found ${moes.length}`);
  // one step prefilling the prompt into an empty pool, the last row's logits
  const inputs: Record<string, HostTensor> = { ...freshStepInputs(layout, prompt), logit_rows: hostTensor("i32", [1], [prompt.length - 1]) };
  for (const name of ["sample_temperature", "sample_top_p", "sample_uniform"]) inputs[name] = hostTensor("f32", [1], [name === "sample_top_p" ? 1 : 0]);
  inputs["sample_top_k"] = hostTensor("i32", [1], [0]);
  return { graph, fused, params, moes, inputs, prompt, loadSymbols: oneBlockPools(layout) };
}

interface Reference {
  logits: HostTensor;
  moeIn: HostTensor[];
  moeOut: HostTensor[];
}

function interpretPrefill(m: Model, params?: Record<string, HostTensor>): Reference {
  const entry = findEntry(m.fused, "step");
  const logitsNode = entry.outputs.find((o) => o.name === "logits")!.node;
  const symbols = bindSymbols(m.fused, "step", m.inputs);
  const roots: Node[] = [logitsNode, ...m.moes.map((n) => n.inputs[0]!), ...m.moes];
  const values = evaluateNodes(roots, { symbols, inputs: m.inputs, params: params ?? m.params });
  const l = m.moes.length;
  return { logits: values[0]!, moeIn: values.slice(1, 1 + l), moeOut: values.slice(1 + l) };
}

/** The node's leaf values (params by name) in operand order, x replaced by `x`. */
function moeOperands(m: Model, node: NodeOf<"moeExperts">, x: HostTensor): HostTensor[] {
  return node.inputs.map((n, i) => {
    if (i === 0) return x;
    if (n.op !== "param") throw new Error(`moeExperts operand ${i} is ${n.op}, expected a param`);
    return m.params[(n as NodeOf<"param">).attrs.name]!;
  });
}

// ---- routing as the interpreter and as the GPU route kernel compute it --------------------------

const ulpBf16 = (v: number) => {
  const a = Math.abs(v);
  if (a === 0) return 2 ** -133;
  return 2 ** (Math.floor(Math.log2(a)) - 7);
};

/** A gap's unit: one bf16 ulp at the row's largest |logit| (a gap far below it flips under tiny input noise). */
const rowUlp = (logits: readonly number[]) => ulpBf16(Math.max(...logits.map(Math.abs)));

/** Router logits of token t: the interpreter's (f64 sum) or the route kernel's f32 order (fma per lane over 16-byte vectors, butterfly warp_sum). */
function routerLogits(x: HostTensor, rw: HostTensor, rb: HostTensor, t: number, order: "f64" | "gpu"): number[] {
  const [, d] = x.shape as [number, number];
  const e = rw.shape[0]!;
  const out: number[] = [];
  const vec = d % 8 === 0 ? 8 : 1;
  for (let ex = 0; ex < e; ex++) {
    let acc: number;
    if (order === "f64") {
      acc = 0;
      for (let c = 0; c < d; c++) acc += x.data[t * d + c]! * rw.data[ex * d + c]!;
    } else {
      const lanes = new Array<number>(32).fill(0);
      for (let lane = 0; lane < 32; lane++) {
        let a = 0;
        for (let v = lane; v < d / vec; v += 32) for (let i = 0; i < vec; i++) a = Math.fround(x.data[t * d + v * vec + i]! * rw.data[ex * d + v * vec + i]! + a);
        lanes[lane] = a;
      }
      for (let o = 16; o > 0; o >>= 1) {
        const prev = lanes.slice();
        for (let lane = 0; lane < 32; lane++) lanes[lane] = Math.fround(prev[lane]! + prev[lane ^ o]!);
      }
      acc = lanes[0]!;
    }
    out.push(roundTo("bf16", roundTo("bf16", acc) + roundTo("bf16", rb.data[ex]!)));
  }
  return out;
}

/** Top-k, descending, ties to the lower index (interpret.ts topkIndices and the route kernel). */
function topk(v: readonly number[], k: number): number[] {
  return v.map((_, i) => i).sort((a, b) => (v[b]! !== v[a]! ? v[b]! - v[a]! : a - b)).slice(0, k);
}

const sameSet = (a: readonly number[], b: readonly number[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** x with each element moved to an adjacent bf16 value with probability p (sign random). */
function jitter(x: HostTensor, p: number, rand: () => number): HostTensor {
  const data = Float64Array.from(x.data, (v) => {
    if (rand() >= p) return v;
    const bits = bf16Bits(v);
    const step = rand() < 0.5 ? 1 : -1;
    // moving the bit pattern by ±1 is one ulp either way for finite non-zero values
    return v === 0 ? v : bf16FromBits(bits + step);
  });
  return { ...x, data };
}

interface GapStats {
  decisions: number;
  ties: number;
  oneUlp: number;
  twoUlp: number;
  /** gap histogram in ulps: ≤0, 1, 2, 3, 4-7, 8-15, ≥16 */
  histogram: number[];
  gpuOrderChanges: number;
  jitter: Record<string, number>;
}

function gapStats(m: Model, ref: Reference, k: number): GapStats[] {
  const stats: GapStats[] = [];
  const rand = seededRandom(99);
  m.moes.forEach((node, layer) => {
    const [rw, rb] = [moeOperands(m, node, ref.moeIn[layer]!)[1]!, moeOperands(m, node, ref.moeIn[layer]!)[2]!];
    const x = ref.moeIn[layer]!;
    const t = x.shape[0]!;
    const s: GapStats = { decisions: t, ties: 0, oneUlp: 0, twoUlp: 0, histogram: [0, 0, 0, 0, 0, 0, 0], gpuOrderChanges: 0, jitter: {} };
    const jittered = [1e-3, 1e-2, 1e-1].map((p) => ({ p, x: jitter(x, p, rand), changes: 0 }));
    for (let tk = 0; tk < t; tk++) {
      const logits = routerLogits(x, rw, rb, tk, "f64");
      const sorted = [...logits].sort((a, b) => b - a);
      const gap = sorted[k - 1]! - sorted[k]!;
      const ulps = Math.round(gap / rowUlp(sorted));
      if (gap === 0) s.ties++;
      else if (ulps <= 1) s.oneUlp++;
      else if (ulps === 2) s.twoUlp++;
      s.histogram[gap === 0 ? 0 : ulps <= 3 ? ulps : ulps <= 7 ? 4 : ulps <= 15 ? 5 : 6]!++;
      const picked = topk(logits, k);
      if (!sameSet(picked, topk(routerLogits(x, rw, rb, tk, "gpu"), k))) s.gpuOrderChanges++;
      for (const j of jittered) if (!sameSet(picked, topk(routerLogits(j.x, rw, rb, tk, "f64"), k))) j.changes++;
    }
    for (const j of jittered) s.jitter[`p=${j.p}`] = j.changes;
    stats.push(s);
  });
  return stats;
}

/** The last token's 4th-vs-5th router logit gap per layer, in bf16 ulps at the row's largest |logit|. */
function lastTokenGaps(m: Model, ref: Reference): number[] {
  return m.moes.map((node, layer) => {
    const ops = moeOperands(m, node, ref.moeIn[layer]!);
    const logits = routerLogits(ref.moeIn[layer]!, ops[1]!, ops[2]!, ref.moeIn[layer]!.shape[0]! - 1, "f64");
    const sorted = [...logits].sort((a, b) => b - a);
    const k = node.attrs.topK;
    return (sorted[k - 1]! - sorted[k]!) / rowUlp(sorted);
  });
}

/** Router bias of `layer` with the last token's 5th expert raised just above its 4th (a forced flip of the final row's routing there). */
function flipLastBias(m: Model, ref: Reference, layer: number): { name: string; bias: HostTensor } {
  const node = m.moes[layer]!;
  const name = (node.inputs[2] as NodeOf<"param">).attrs.name;
  const rb = m.params[name]!;
  const ops = moeOperands(m, node, ref.moeIn[layer]!);
  const logits = routerLogits(ref.moeIn[layer]!, ops[1]!, ops[2]!, ref.moeIn[layer]!.shape[0]! - 1, "f64");
  const order = logits.map((_, i) => i).sort((a, b) => (logits[b]! !== logits[a]! ? logits[b]! - logits[a]! : a - b));
  const [fourth, fifth] = [order[node.attrs.topK - 1]!, order[node.attrs.topK]!];
  const data = Float64Array.from(rb.data);
  data[fifth] = roundTo("bf16", data[fifth]! + (logits[fourth]! - logits[fifth]!) + 2 * ulpBf16(logits[fourth]!));
  return { name, bias: { ...rb, data } };
}

/**
 * How far one-ulp router noise moves the final logits: per layer, every router bias moved by ±1 bf16 ulp
 * (random signs), the interpreter rerun; the top-4 sets that change in each layer and the logits' max
 * relative change against the unperturbed run.
 */
function perturb(m: Model, ref: Reference, flipLast: boolean): unknown[] {
  const runs: unknown[] = [];
  const rand = seededRandom(7);
  for (let layer = 0; layer < m.moes.length; layer++) {
    const node = m.moes[layer]!;
    const name = (node.inputs[2] as NodeOf<"param">).attrs.name;
    const rb = m.params[name]!;
    let nudged: HostTensor = { ...rb, data: Float64Array.from(rb.data, (v) => bf16FromBits(bf16Bits(v) + (rand() < 0.5 ? 1 : -1))) };
    if (flipLast) nudged = flipLastBias(m, ref, layer).bias;
    const run = interpretPrefill(m, { ...m.params, [name]: nudged });
    const k = node.attrs.topK;
    const changed = m.moes.map((n, l) => {
      const ops = moeOperands(m, n, run.moeIn[l]!);
      const opsRef = moeOperands(m, n, ref.moeIn[l]!);
      const rbl = l === layer ? nudged : ops[2]!;
      const tokensChanged: number[] = [];
      for (let t = 0; t < run.moeIn[l]!.shape[0]!; t++) {
        if (!sameSet(topk(routerLogits(ref.moeIn[l]!, opsRef[1]!, opsRef[2]!, t, "f64"), k), topk(routerLogits(run.moeIn[l]!, ops[1]!, rbl, t, "f64"), k))) tokensChanged.push(t);
      }
      return tokensChanged;
    });
    runs.push({ nudgedLayer: layer, tokensWithChangedExperts: changed, logits: compare(run.logits, ref.logits) });
    console.error(`perturbed layer ${layer}: ${JSON.stringify(runs.at(-1))}`);
  }
  return runs;
}

// ---- the GPU ------------------------------------------------------------------------------------

async function gpuRun(dir: string, m: Model, ref: Reference, experts: "mxfp4" | "dense"): Promise<Record<string, unknown>> {
  const { Arena, Device, loadKernels, PlanExecutor } = await import("../../runtime/index.js");
  const { streamCheckpoint } = await import("../../runtime/load-checkpoint.js");
  const { compile } = await import("../../src/compile/compile.js");
  const gpu = Device.open(0);
  const result: Record<string, unknown> = { device: gpu.info.name ?? gpu.info.arch, experts, tokens: m.prompt.length };

  // 1. the whole plan's prefill logits, weights streamed (as `tsgc generate --device cuda`) and host-staged
  const { plan } = await compile(m.graph, { arch: gpu.info.arch });
  let planLogits: HostTensor | undefined;
  for (const loader of ["stream", "host"] as const) {
    // a fresh executor per run: no state (KV cache) carried over from the other
    const exec = await PlanExecutor.load(plan, gpu, { loadSymbols: m.loadSymbols });
    try {
      if (loader === "stream") await streamCheckpoint(exec, join(dir, experts === "mxfp4" ? "mxfp4" : "bf16"));
      else exec.setParams(m.params);
      const out = exec.run("step", m.inputs);
      planLogits ??= out["logits"]!;
      result[`plan_${loader}`] = compare(out["logits"]!, ref.logits);
    } finally {
      exec.dispose();
    }
  }
  // does a routing flip of the final row explain the plan's logits? For each layer whose last-token
  // 4th/5th gap is small, the interpreter with that row's routing flipped, against the plan
  const gaps = lastTokenGaps(m, ref);
  result["lastTokenGapUlps"] = gaps;
  result["planVsForcedFlip"] = gaps.flatMap((g, layer) => {
    if (g > 4) return [];
    const { name, bias } = flipLastBias(m, ref, layer);
    const flipped = interpretPrefill(m, { ...m.params, [name]: bias });
    return [{ layer, gapUlps: g, planVsFlipped: compare(planLogits!, flipped.logits), flippedVsInterpreter: compare(flipped.logits, ref.logits) }];
  });

  // 2. each layer's MoE alone, fed with the interpreter's own MoE input
  const runRaw = async (kernels: NodeKernels, inputs: readonly Uint8Array[], outBytes: number, symbols: Record<string, number>): Promise<Uint8Array> => {
    const loaded = await loadKernels(gpu, kernels.launches.map((l) => ({ name: l.kernel.name, source: l.kernel.source, entry: l.kernel.entry })), { cache: false });
    const scratch = kernels.scratchBytes.map((s) => evalSize(s, symbols));
    const sizes = [...inputs.map((b) => b.byteLength), outBytes, ...scratch];
    const offsets: number[] = [];
    let total = 0;
    for (const s of sizes) {
      offsets.push(total);
      total += Math.ceil(Math.max(s, 1) / 256) * 256;
    }
    const arena = Arena.allocate(gpu, total);
    try {
      inputs.forEach((b, i) => b.byteLength > 0 && arena.view(offsets[i]!, b.byteLength).copyFromHost(b));
      arena.view(offsets[inputs.length]!, outBytes).fill(0xff);
      scratch.forEach((s, i) => s > 0 && arena.view(offsets[inputs.length + 1 + i]!, s).fill(0xff));
      const ptr = (o: number) => ({ ptr: arena.pointer + BigInt(o) });
      kernels.launches.forEach((launch, li) => {
        const args = launch.args.map((a) => {
          switch (a.kind) {
            case "input": return ptr(offsets[a.index]!);
            case "output": return ptr(offsets[inputs.length]!);
            case "scratch": return ptr(offsets[inputs.length + 1 + a.index]!);
            case "i32": return { i32: evalSize(a.value, symbols) };
            case "f32": return { f32: a.value };
            default: throw new Error(`unexpected binding ${a.kind}`);
          }
        });
        const grid = launch.grid.map((g) => evalSize(g, symbols)) as [number, number, number];
        loaded.kernels[li]!.launch({ grid, block: launch.block, sharedBytes: launch.sharedBytes, args });
      });
      gpu.synchronize();
      const out = new Uint8Array(outBytes);
      arena.view(offsets[inputs.length]!, outBytes).copyToHost(out);
      return out;
    } finally {
      arena.free();
    }
  };
  const layers: unknown[] = [];
  for (let layer = 0; layer < m.moes.length; layer++) {
    const node = m.moes[layer]!;
    const x = ref.moeIn[layer]!;
    const t = x.shape[0]!;
    const k = node.attrs.topK;
    const symbols = { tokens: t };
    const operands = moeOperands(m, node, x);
    const kernels = emitMoeExperts(node);
    // the route kernel alone, its expert ids as the output
    const route = kernels.launches[0]!;
    const routeOnly: NodeKernels = {
      launches: [{ ...route, args: [{ kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "output" }, { kind: "scratch", index: 0 }] }],
      scratchBytes: [kernels.scratchBytes[1]!],
    };
    if (JSON.stringify(route.args) !== JSON.stringify([0, 1, 2].map((index) => ({ kind: "input", index })).concat([{ kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }] as never[]))) {
      throw new Error(`the route launch's arguments changed: ${JSON.stringify(route.args)}`);
    }
    const idsBytes = await runRaw(routeOnly, operands.slice(0, 3).map(tensorToBytes), t * k * 4, symbols);
    const ids = new Int32Array(idsBytes.buffer, idsBytes.byteOffset, t * k);
    const [rw, rb] = [operands[1]!, operands[2]!];
    let setDiffers = 0;
    let orderDiffers = 0;
    const flips: unknown[] = [];
    for (let tk = 0; tk < t; tk++) {
      const logits = routerLogits(x, rw, rb, tk, "f64");
      const want = topk(logits, k);
      const got = Array.from(ids.subarray(tk * k, tk * k + k));
      if (!sameSet(want, got)) {
        setDiffers++;
        const sorted = [...logits].sort((a, b) => b - a);
        if (flips.length < 20) flips.push({ token: tk, interpreter: want, gpu: got, gapRowUlps: (sorted[k - 1]! - sorted[k]!) / rowUlp(sorted) });
      } else if (want.join() !== got.join()) orderDiffers++;
    }
    // the whole moeExperts node
    const outBytes = await runRaw(kernels, operands.map(tensorToBytes), numElements(evalShape(node.shape, symbols)) * dtypeBytes(node.dtype), symbols);
    const gpuOut = tensorFromBytes(node.dtype, evalShape(node.shape, symbols), outBytes);
    const moe = compare(gpuOut, ref.moeOut[layer]!);
    // tokens whose output differs by more than 2 bf16 ulps somewhere
    const d = x.shape[1]!;
    let badTokens = 0;
    for (let tk = 0; tk < t; tk++) {
      for (let o = 0; o < d; o++) {
        const r = ref.moeOut[layer]!.data[tk * d + o]!;
        if (!(Math.abs(gpuOut.data[tk * d + o]! - r) <= 2 * ulpBf16(r))) {
          badTokens++;
          break;
        }
      }
    }
    layers.push({ layer, routeSetDiffers: setDiffers, routeOrderDiffers: orderDiffers, flips, moe, tokensOver2Ulps: badTokens });
  }
  result["layers"] = layers;
  return result;
}

function compare(got: HostTensor, want: HostTensor): { maxRel: number; argmaxSame: boolean; argmax: [number, number] } {
  let maxErr = 0;
  let maxRef = 0;
  let ag = 0;
  let aw = 0;
  for (let i = 0; i < want.data.length; i++) {
    const w = want.data[i]!;
    const g = got.data[i]!;
    maxRef = Math.max(maxRef, Math.abs(w));
    maxErr = Math.max(maxErr, Number.isNaN(g) ? Infinity : Math.abs(g - w));
    if (g > got.data[ag]!) ag = i;
    if (w > want.data[aw]!) aw = i;
  }
  return { maxRel: maxErr / Math.max(maxRef, 1e-30), argmaxSame: ag === aw, argmax: [aw, ag] };
}

// ---- driver -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const [mode, dir, ...rest] = process.argv.slice(2);
  if (!mode || !dir) throw new Error("usage: moe-routing.js prepare|cpu|gpu DIR [--tokens N] [--experts mxfp4|dense] [--std S] [--seed N] [--json FILE]");
  const flag = (name: string, dflt: string) => {
    const i = rest.indexOf(`--${name}`);
    return i >= 0 && rest[i + 1] !== undefined ? rest[i + 1]! : dflt;
  };
  if (mode === "prepare") return prepare(dir, Number(flag("std", "0.02")), Number(flag("seed", "1234")));
  const tokens = Number(flag("tokens", "300"));
  const experts = flag("experts", "mxfp4") as "mxfp4" | "dense";
  const started = performance.now();
  const dtype = flag("dtype", "bf16") as "bf16" | "f32";
  const promptJson = flag("prompt-json", "");
  const m = await loadModel(dir, experts, tokens, dtype, promptJson || undefined);
  const ref = interpretPrefill(m);
  console.error(`interpreter prefill of ${tokens} tokens (${experts}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  let result: Record<string, unknown>;
  if (mode === "cpu") {
    const k = m.moes[0]!.attrs.topK;
    const layers = gapStats(m, ref, k);
    const total = (f: (s: GapStats) => number) => layers.reduce((a, s) => a + f(s), 0);
    result = {
      experts,
      tokens,
      decisions: total((s) => s.decisions),
      ties: total((s) => s.ties),
      oneUlp: total((s) => s.oneUlp),
      twoUlp: total((s) => s.twoUlp),
      gpuOrderChanges: total((s) => s.gpuOrderChanges),
      lastTokenGapUlps: lastTokenGaps(m, ref),
      layers,
    };
  } else if (mode === "perturb") {
    result = { experts, tokens, runs: perturb(m, ref, rest.includes("--flip-last")) };
  } else if (mode === "gpu") {
    result = await gpuRun(dir, m, ref, experts);
  } else throw new Error(`unknown mode ${mode}`);
  const text = JSON.stringify(result);
  console.log(text);
  const out = flag("json", "");
  if (out) writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : String(err));
  process.exit(1);
});
