// `tsgc bench`'s table as printed, from a result of known values (the measuring itself needs a GPU: its CLI test is
// in the GPU tier).
import { describe, expect, it } from "vitest";
import { formatGptOssBench, type GptOssBenchResult, type StepTiming } from "../../src/bench/gpt-oss-bench.js";

const step = (batch: number, ms: number, withoutPdlMs?: number): StepTiming => ({
  batch, ms, tokensPerSecond: (batch * 1e3) / ms, floorMs: 1, ofFloor: 1 / ms, bound: "bytes", launches: 328, bucket: batch, nonFiniteRows: 0,
  ...(withoutPdlMs !== undefined ? { withoutPdlMs } : {}),
});

const result = (o: Partial<GptOssBenchResult>): GptOssBenchResult => ({
  device: "NVIDIA H200 (sm_90)", model: "gpt-oss-20b",
  ceilings: { copyBytesPerS: 4.2e12, readBytesPerS: 4.3e12, bf16FlopPerS: 8.7e14, bf16Source: "cublas" },
  context: 4096, past: 1024, maxBatch: 256, kernels: 72, programmaticKernels: 72, buckets: [1, 2, 256],
  arena: { plannedBytes: 14e9, weightBytes: 13.8e9, activationBytes: 0.2e9, kvPoolBytes: 7.6e9 },
  gpuMemory: { inUseBytes: 22e9, beforeLoadBytes: 0.5e9, totalBytes: 150e9 },
  kvPerSequence: { at1k: 0.03e9, at8k: 0.2e9, sliding: 0.004e9 },
  compileMs: 4000, planCached: false, loadMs: 20, initMs: 60,
  generate: { promptTokens: 32, tokens: [1, 2], ms: 130, finishReason: "length" },
  decode: [step(1, 2.3, 2.495), step(256, 16.238)],
  prefill: { tokens: 2048, ms: 77.6, floorMs: 17.5, ofFloor: 0.225, tokensPerSecond: 26392, withoutPdlMs: 77.9 },
  ...o,
});

describe("tsgc bench's table", () => {
  it("shows the no-PDL baseline where a step was timed both ways, and says how many kernels launch with PDL", () => {
    const text = formatGptOssBench(result({}));
    expect(text).toMatch(/72 kernels \(72 with programmatic dependent launch in the buckets that use it\)/);
    const lines = text.split("\n");
    expect(lines.find((l) => l.startsWith("batch"))).toMatch(/no-PDL ms$/);
    expect(lines.find((l) => /^\s+1\s+1\s/.test(l))).toMatch(/2\.300 .* 2\.495$/);
    expect(lines.find((l) => /^\s+256\s+256\s/.test(l))).toMatch(/16\.238 .*bytes\s*$/); // a wide step: no baseline
    expect(text).toMatch(/prefill 2048 tokens: 77\.6 ms.*; 77\.9 ms without programmatic dependent launch/);
  });

  it("has no baseline column when nothing launched with PDL", () => {
    const text = formatGptOssBench(result({ programmaticKernels: 0, decode: [step(1, 2.5)], prefill: { tokens: 2048, ms: 78, floorMs: 17.5, ofFloor: 0.22, tokensPerSecond: 26000 } }));
    expect(text).toMatch(/programmatic dependent launch off/);
    expect(text).not.toMatch(/no-PDL/);
    expect(text).not.toMatch(/without programmatic dependent launch/);
  });
});
