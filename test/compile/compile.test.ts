// The compiler end to end: passes → schedule → memory plan → codegen → NVRTC → plan, its caches,
// and (GPU tier) the tiny model's compiled plan against the reference interpreter.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findBuiltinModel } from "../../models/index.js";
import { compile } from "../../src/compile/compile.js";
import { PLAN_VERSION, parsePlan } from "../../src/lower/plan.js";
import { hostTensor } from "../../src/ir/host-tensor.js";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { randomParams } from "../../src/loader/random-params.js";
import { openEngine } from "../../src/engine/open.js";
import { interpreterBackend, planBackend } from "../../src/engine/backend.js";
import { blockTableInput, kvSlotsInput, poolSlotsSymbol, STEP_ENTRY, STEP_NAMES } from "../../src/engine/contract.js";
import { gptOssLayout } from "../../models/gpt-oss/model.js";
import { runPipeline } from "../../src/passes/pipeline.js";
import type { HostTensor } from "../../src/ir/host-tensor.js";
import { clearKernelMemo, Device } from "../../runtime/index.js";
import { PlanExecutor } from "../../runtime/executor.js";
import { describeGpu, describeNvrtc } from "../tiers.js";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "tsgc-compile-"));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("compile (no NVRTC)", () => {
  it("fuses, schedules and plans the tiny model into a valid plan", async () => {
    const graph = findBuiltinModel("gpt-oss-tiny").build({ dtype: "bf16" });
    const emitDir = tempDir();
    const { plan, stats } = await compile(graph, { arch: "sm_80", cacheDir: false, nvrtc: "skip", emitCudaDir: emitDir });
    expect(stats.fusedOps["pagedAttention"]).toBe(2);
    expect(stats.fusedOps["sinkAttention"]).toBeUndefined();
    expect(stats.fusedOps["moeExperts"]).toBe(2);
    expect(stats.fusedOps["fusedRmsNorm"]).toBeGreaterThanOrEqual(4);
    expect(stats.opsAfterByKind["dequantMxfp4"]).toBeUndefined();
    expect(stats.kernelsCompiled).toBe(false);
    // one step entry, a bucket per power of two of its token count up to the bound (256)
    const step = plan.entries.find((e) => e.name === "step")!;
    expect(step.buckets.map((b) => b.bounds["tokens"])).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256]);
    expect(step.buckets.map((b) => b.bounds["seqs"])).toEqual([1, 2, 4, 8, 16, 16, 16, 16, 16]);
    expect(stats.buckets["step"]!.map((b) => b.launches)).toEqual(step.buckets.map((b) => b.launches.length));
    // a residual norm's two results come from one launch; bias broadcasts dissolve into their adds
    const one = step.buckets[0]!;
    expect(one.launches.filter((l) => l.op === "fusedRmsNorm")).toHaveLength(5); // layer 0's input norm alone, then 4 pairs
    expect(one.launches.filter((l) => l.op === "broadcast")).toHaveLength(0);
    // the KV pools are sized when the plan loads: no room in the planned arena, arguments point into them by state
    expect(plan.states.every((s) => s.atLoad && s.bytes === 0)).toBe(true);
    expect(one.launches.some((l) => l.args.some((a) => a.kind === "buffer" && a.state !== undefined))).toBe(true);
    // the plan survives JSON and its offsets stay in the arena
    const back = parsePlan(JSON.parse(JSON.stringify(plan)));
    expect(back).toEqual(plan);
    for (const b of step.buckets) {
      expect(b.launches.length).toBeGreaterThan(10);
      expect(b.activationBytes).toBeGreaterThanOrEqual(b.peakLiveBytes);
      expect(b.activationBytes).toBeLessThanOrEqual(b.naiveBytes);
      expect(plan.arena.activationBytes).toBeGreaterThanOrEqual(b.activationBytes); // one region, as large as the largest bucket's
      for (const slot of [...b.inputs, ...b.outputs]) expect(slot.offset + slot.bytes).toBeLessThanOrEqual(plan.arena.bytes);
      // the step's inputs are packed back to back from the activation region's start: one copy stages them
      const inputs = [...b.inputs].sort((x, y) => x.offset - y.offset);
      expect(inputs[0]!.offset).toBe(plan.arena.weightBytes);
      inputs.forEach((slot, i) => i > 0 && expect(slot.offset).toBe(Math.ceil((inputs[i - 1]!.offset + inputs[i - 1]!.bytes) / 256) * 256));
    }
    for (const p of plan.params) expect(p.offset + p.bytes).toBeLessThanOrEqual(plan.arena.weightBytes);
    // --emit-cuda wrote every kernel
    for (const k of plan.kernels) expect(readFileSync(join(emitDir, `${k.name}.cu`), "utf8")).toBe(k.source);
  });

  it("dumps the IR after every pass", async () => {
    const dumpDir = tempDir();
    await compile(findBuiltinModel("gpt-oss-tiny").build({ dtype: "f32" }), { arch: "sm_80", cacheDir: false, nvrtc: "skip", dumpIrDir: dumpDir });
    const files = readdirSync(dumpDir).sort();
    expect(files[0]).toBe("00-input.ir");
    expect(files).toContain("03-fuse-sink-attention.ir");
    expect(files).toContain("04-fuse-paged-attention.ir");
    expect(readFileSync(join(dumpDir, files.at(-1)!), "utf8")).toContain("pagedAttention");
    expect(readFileSync(join(dumpDir, "00-input.ir"), "utf8")).not.toContain("pagedAttention");
  });

  it("rejects a damaged plan with the path of the problem", () => {
    expect(() => parsePlan({ format: "tsgc-plan", version: PLAN_VERSION })).toThrow(/not a valid tsgc plan: \$\.model/);
    // a plan of an older format (before shape buckets) is refused by its version, not misread
    expect(() => parsePlan({ format: "tsgc-plan", version: 2 })).toThrow(/\$\.version/);
  });
});

describeNvrtc("compile with NVRTC", () => {
  for (const name of ["gpt-oss-tiny", "gpt-oss-20b"]) {
    it(`compiles every kernel of ${name}, then serves the second compile from the caches`, async () => {
      const cacheDir = tempDir();
      const graph = findBuiltinModel(name).build({ dtype: "bf16" });
      clearKernelMemo(); // kernels an earlier test compiled in this process would be memo hits
      const cold = await compile(graph, { arch: "sm_80", cacheDir });
      expect(cold.stats.kernelsCompiled).toBe(true);
      expect(cold.stats.cacheMisses).toBe(cold.stats.kernels);
      expect(cold.plan.kernels.every((k) => /^[0-9a-f]{64}$/.test(k.cacheKey ?? ""))).toBe(true);
      const warm = await compile(findBuiltinModel(name).build({ dtype: "bf16" }), { arch: "sm_80", cacheDir });
      expect(warm.stats.planCacheHit).toBe(true);
      expect(warm.stats.cacheMisses).toBe(0);
      expect(warm.stats.cacheHits).toBe(cold.stats.kernels);
      expect(warm.plan).toEqual(cold.plan);
    }, 600_000);
  }
});

function expectNear(gpu: Record<string, { data: Float64Array }>, ref: Record<string, { data: Float64Array }>, dtype: "f32" | "bf16", what: string): void {
  for (const name of Object.keys(ref)) {
    const r = ref[name]!.data;
    const g = gpu[name]!.data;
    let err = 0;
    let mag = 0;
    r.forEach((v, i) => ((err = Math.max(err, Math.abs(v - g[i]!))), (mag = Math.max(mag, Math.abs(v)))));
    expect(err / mag, `${what}: ${name}`).toBeLessThan(dtype === "f32" ? 1e-4 : 3e-2);
  }
}

// In bf16 the plan and the interpreter round in different orders, so hidden states differ by an ulp here
// and there; where two router logits are within an ulp of each other, that flips an expert choice and the
// logits jump (measured: about 4% of gpt-oss routing decisions are that close). f32 checks routing exactly;
// bf16 checks everything else on a tiny model that routes every token to all its experts.
const TINY_ALL_EXPERTS = { ...GPT_OSS_TINY, expertsPerToken: GPT_OSS_TINY.numExperts };

/** A ragged step over empty pools: sequence s has fresh[s] new tokens from position 0, written to blocks of its own. */
function raggedStep(layout: ReturnType<typeof gptOssLayout>, fresh: readonly number[], vocab: number): Record<string, HostTensor> {
  const B = layout.blockSize;
  const T = fresh.reduce((a, b) => a + b, 0);
  const S = fresh.length;
  const ids: number[] = [], positions: number[] = [], tokenSeqs: number[] = [], slots: number[] = [];
  const table = new Array<number>(S * layout.maxBlocksPerSeq).fill(-1);
  let nextBlock = 0;
  fresh.forEach((n, s) => {
    for (let j = 0; j < Math.ceil(n / B); j++) table[s * layout.maxBlocksPerSeq + j] = nextBlock++;
    for (let p = 0; p < n; p++) {
      ids.push((s * 131 + p * 17 + 3) % vocab);
      positions.push(p);
      tokenSeqs.push(s);
      slots.push(table[s * layout.maxBlocksPerSeq + Math.floor(p / B)]! * B + (p % B));
    }
  });
  const rows = fresh.map((_, s) => fresh.slice(0, s + 1).reduce((a, b) => a + b, 0) - 1);
  const inputs: Record<string, HostTensor> = {
    [STEP_NAMES.ids]: hostTensor("i32", [T], ids),
    [STEP_NAMES.positions]: hostTensor("i32", [T], positions),
    [STEP_NAMES.tokenSeqs]: hostTensor("i32", [T], tokenSeqs),
    [STEP_NAMES.contextLens]: hostTensor("i32", [S], new Array<number>(S).fill(0)),
    [STEP_NAMES.logitRows]: hostTensor("i32", [S], rows),
    [STEP_NAMES.temperature]: hostTensor("f32", [S], new Array<number>(S).fill(0)),
    [STEP_NAMES.topK]: hostTensor("i32", [S], new Array<number>(S).fill(0)),
    [STEP_NAMES.topP]: hostTensor("f32", [S], new Array<number>(S).fill(1)),
    [STEP_NAMES.uniform]: hostTensor("f32", [S], new Array<number>(S).fill(0.5)),
  };
  for (const g of layout.groups) {
    inputs[blockTableInput(g.name)] = hostTensor("i32", [S, layout.maxBlocksPerSeq], table);
    inputs[kvSlotsInput(g.name)] = hostTensor("i32", [T], slots);
  }
  return inputs;
}

describeGpu("the tiny model's compiled plan on the GPU", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    it(`every bucket's kernels match the interpreter (${dtype}) on ragged steps of 1, 3, 17, 100 and 255 tokens, from a saved plan with zero compiles`, async () => {
      const device = Device.open(0);
      const config = dtype === "f32" ? GPT_OSS_TINY : TINY_ALL_EXPERTS;
      const bounds = { dtype, maxContext: 256, maxTokensPerStep: 256, maxSeqsPerStep: 16 } as const;
      const graph = gptOssModel(config, bounds);
      const layout = gptOssLayout(config, bounds);
      const cacheDir = tempDir();
      clearKernelMemo(); // so every kernel of this plan lands in this test's cache directory
      const { plan } = await compile(graph, { arch: device.info.arch, cacheDir });
      // a saved plan runs without the compiler and without NVRTC compiles: its kernels come from the cache
      const planFile = join(cacheDir, "plan.json");
      writeFileSync(planFile, JSON.stringify(plan));
      clearKernelMemo();
      const blocks = 64;
      const loadSymbols = Object.fromEntries(layout.groups.map((g) => [poolSlotsSymbol(g.name), blocks * layout.blockSize]));
      const exec = await PlanExecutor.load(parsePlan(JSON.parse(readFileSync(planFile, "utf8"))), device, { cacheDir, loadSymbols });
      expect(exec.kernelStats).toEqual({ hits: plan.kernels.length, misses: 0 });
      const params = randomParams(graph, 11);
      exec.setParams(params);
      const gpu = planBackend(exec);
      const fused = runPipeline(graph).graph;
      try {
        for (const fresh of [[1], [1, 1, 1], [5, 1, 11], [40, 1, 1, 30, 28], [100, 100, 20, 20, 15]]) {
          exec.resetState();
          const cpu = interpreterBackend(fused, params, loadSymbols);
          const inputs = raggedStep(layout, fresh, config.vocabSize);
          const [a, b] = [await gpu.step(inputs), await cpu.step(inputs)];
          fresh.forEach((_, r) => expectNear({ logits: { data: a.logits(r) } }, { logits: { data: b.logits(r) } }, dtype, `${fresh.join("+")} tokens, row ${r}`));
          if (dtype === "f32") expect(Array.from(a.tokens)).toEqual(Array.from(b.tokens));
        }
      } finally {
        exec.dispose();
      }
    }, 300_000);
  }

  it("a step staged once and launched again reads the same inputs: identical logits every time (tsgc bench's replays)", async () => {
    const device = Device.open(0);
    const bounds = { dtype: "bf16", maxContext: 256, maxTokensPerStep: 256, maxSeqsPerStep: 16 } as const;
    const graph = gptOssModel(TINY_ALL_EXPERTS, bounds);
    const layout = gptOssLayout(TINY_ALL_EXPERTS, bounds);
    const { plan } = await compile(graph, { arch: device.info.arch, cacheDir: false });
    const loadSymbols = Object.fromEntries(layout.groups.map((g) => [poolSlotsSymbol(g.name), 64 * layout.blockSize]));
    const exec = await PlanExecutor.load(plan, device, { cacheDir: false, loadSymbols });
    try {
      exec.setParams(randomParams(graph, 13));
      // fresh sequences over empty pools (a launch again writes the same keys at the same slots): the token ids are
      // read by the first launch of the step, and again by the next launch of the same step
      for (const fresh of [[1, 1, 1, 1], [30, 1, 12]]) {
        exec.resetState();
        const { symbols } = exec.stage(STEP_ENTRY, raggedStep(layout, fresh, TINY_ALL_EXPERTS.vocabSize));
        const logits: Float64Array[] = [];
        for (let i = 0; i < 3; i++) {
          exec.launch(STEP_ENTRY, symbols);
          device.synchronize();
          logits.push(Float64Array.from(exec.readOutput(STEP_NAMES.logits).data));
        }
        expect(logits[1], `${fresh.join("+")} tokens, second launch`).toEqual(logits[0]);
        expect(logits[2], `${fresh.join("+")} tokens, third launch`).toEqual(logits[0]);
      }
    } finally {
      exec.dispose();
    }
  }, 300_000);

  it("the engine on the GPU gives each request the tokens it gets alone, and the interpreter's (f32), through every bucket", async () => {
    const options = { model: "gpt-oss-tiny", dtype: "f32", maxContext: 128, maxSeqs: 8, maxStepTokens: 64, seed: 5, kvBlocks: 48 } as const;
    const gpu = await openEngine({ ...options, device: "cuda", cacheDir: false });
    const cpu = await openEngine({ ...options, device: "cpu" });
    const prompts = Array.from({ length: 12 }, (_, i) => Array.from({ length: 1 + ((i * 13) % 40) }, (_, j) => (i * 31 + j * 7) % 128));
    const run = async (engine: typeof gpu.engine, ps: number[][]) => Promise.all(ps.map(async (promptIds) => {
      const s = engine.generate({ promptIds, maxTokens: 12 });
      const tokens: number[] = [];
      for await (const o of s) tokens.push(o.token);
      return tokens;
    }));
    try {
      const together = await run(gpu.engine, prompts);
      const alone: number[][] = [];
      for (const p of prompts) alone.push((await run(gpu.engine, [p]))[0]!);
      expect(together).toEqual(alone);
      expect(together).toEqual(await run(cpu.engine, prompts));
      for (const c of Object.values(gpu.engine.stats().blocks)) expect(c.used).toBe(0);
    } finally {
      await gpu.engine.close();
      await cpu.engine.close();
    }
  }, 300_000);
});
