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
import { gptOssModel } from "../../models/gpt-oss.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss-config.js";
import { generateBatch, interpreterRunner, KvCacheBook } from "../../src/generate/generate.js";
import { randomParams } from "../../src/loader/random-params.js";
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
    expect(stats.fusedOps["sinkAttention"]).toBe(4);
    expect(stats.fusedOps["moeExperts"]).toBe(4);
    expect(stats.fusedOps["fusedRmsNorm"]).toBeGreaterThanOrEqual(8);
    expect(stats.opsAfterByKind["dequantMxfp4"]).toBeUndefined();
    expect(stats.kernelsCompiled).toBe(false);
    // a residual norm's two results come from one launch; bias broadcasts dissolve into their adds
    const decode = plan.entries.find((e) => e.name === "decode")!;
    expect(decode.launches.filter((l) => l.op === "fusedRmsNorm")).toHaveLength(5); // layer 0's input norm alone, then 4 pairs
    expect(decode.launches.filter((l) => l.op === "broadcast")).toHaveLength(0);
    // the plan survives JSON and its offsets stay in the arena
    const back = parsePlan(JSON.parse(JSON.stringify(plan)));
    expect(back).toEqual(plan);
    for (const e of plan.entries) {
      expect(e.launches.length).toBeGreaterThan(10);
      expect(e.activationBytes).toBeGreaterThanOrEqual(e.peakLiveBytes);
      expect(e.activationBytes).toBeLessThanOrEqual(e.naiveBytes);
      for (const slot of [...e.inputs, ...e.outputs]) expect(slot.offset + slot.bytes).toBeLessThanOrEqual(plan.arena.bytes);
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
    expect(readFileSync(join(dumpDir, files.at(-1)!), "utf8")).toContain("sinkAttention");
    expect(readFileSync(join(dumpDir, "00-input.ir"), "utf8")).not.toContain("sinkAttention");
  });

  it("rejects a damaged plan with the path of the problem", () => {
    expect(() => parsePlan({ format: "tsgc-plan", version: PLAN_VERSION })).toThrow(/not a valid tsgc plan: \$\.model/);
    // a plan of an older format (before model state) is refused by its version, not misread
    expect(() => parsePlan({ format: "tsgc-plan", version: 1 })).toThrow(/\$\.version/);
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

describeGpu("the tiny model's compiled plan on the GPU", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    it(`matches the interpreter (${dtype}) in prefill and decode, with the KV cache in the arena`, async () => {
      const device = Device.open(0);
      const graph = dtype === "f32" ? findBuiltinModel("gpt-oss-tiny").build({ dtype }) : gptOssModel(TINY_ALL_EXPERTS, { dtype, maxPrefillTokens: 64, maxContext: 64 });
      const cacheDir = tempDir();
      clearKernelMemo(); // so every kernel of this plan lands in this test's cache directory
      const { plan } = await compile(graph, { arch: device.info.arch, cacheDir });
      // a saved plan runs without the compiler and without NVRTC compiles: its kernels come from the cache
      const planFile = join(cacheDir, "plan.json");
      writeFileSync(planFile, JSON.stringify(plan));
      clearKernelMemo();
      const exec = await PlanExecutor.load(parsePlan(JSON.parse(readFileSync(planFile, "utf8"))), device, { cacheDir });
      expect(exec.kernelStats).toEqual({ hits: plan.kernels.length, misses: 0 });
      try {
        const params = randomParams(graph, 11);
        exec.setParams(params);
        exec.replayAsGraph("decode");
        for (const tokens of [1, 3, 50]) {
          // a fresh cache on both sides: the interpreter's starts zeroed, the arena's is zeroed again
          exec.resetState();
          const reference = interpreterRunner(graph, params);
          const book = new KvCacheBook(graph);
          const ids = Array.from({ length: tokens }, (_, i) => (i * 37 + 5) % 128);
          // the prompt in two chunks: the second reads the rows the first wrote (the sliding ring wraps at 4)
          for (const [start, end] of [[0, Math.ceil(tokens / 2)], [Math.ceil(tokens / 2), tokens]] as const) {
            if (end === start) continue;
            const inputs = {
              ids: hostTensor("i32", [end - start], ids.slice(start, end)),
              positions: hostTensor("i32", [end - start], ids.slice(start, end).map((_, i) => start + i)),
              logit_rows: hostTensor("i32", [1], [end - start - 1]),
              ...book.prefillInputs(0, end - start),
            };
            expectNear(exec.run("prefill", inputs), reference("prefill", inputs), dtype, `prefill of [${start}, ${end}) of ${tokens}`);
            book.advance(0, end - start);
          }
          // decode steps written to and read from the arena's cache, replayed as a CUDA graph
          for (let step = 0; step < 6; step++) {
            const decode = { ids: hostTensor("i32", [1], [7 + step]), positions: hostTensor("i32", [1], [book.length(0)]), ...book.decodeInputs([true]) };
            expectNear(exec.run("decode", decode), reference("decode", decode), dtype, `decode step ${step} after ${tokens}`);
            book.advance(0, 1);
          }
        }
      } finally {
        exec.dispose();
      }
    }, 300_000);
  }

  it("decodes a batch of sequences as the interpreter does (bf16), each as alone", async () => {
    const device = Device.open(0);
    const graph = gptOssModel(TINY_ALL_EXPERTS, { dtype: "bf16", maxPrefillTokens: 16, maxContext: 32, maxBatch: 4 });
    const { plan } = await compile(graph, { arch: device.info.arch, cacheDir: false });
    const exec = await PlanExecutor.load(plan, device, { cacheDir: false });
    try {
      const params = randomParams(graph, 5);
      exec.setParams(params);
      exec.replayAsGraph("decode");
      const prompts = [[1, 2, 3], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], [42], [100, 7, 3, 5, 9]];
      const opts = { maxNewTokens: 8, keepLogits: true };
      const gpu = generateBatch(graph, (e, i) => exec.run(e, i), prompts, opts);
      const cpu = generateBatch(graph, interpreterRunner(graph, params), prompts, opts);
      prompts.forEach((_, b) => {
        gpu[b]!.logits.forEach((l, step) => expectNear({ logits: hostTensor("f32", [l.length], Array.from(l)) }, { logits: hostTensor("f32", [l.length], Array.from(cpu[b]!.logits[step]!)) }, "bf16", `sequence ${b} step ${step}`));
      });
    } finally {
      exec.dispose();
    }
  }, 300_000);
});
