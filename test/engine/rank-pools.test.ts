// KV pools of a sharded model on GPUs: a rank's room for full-attention blocks from its plan (its KV heads only, after
// its arena and the windowed pools), and the one pool size every rank takes — the tightest rank's — or a clear error.
import { describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import { compile } from "../../src/compile/compile.js";
import { choosePoolBlocks, rankKvCapacity } from "../../src/engine/rank-pools.js";

const OPTIONS = { dtype: "bf16" as const, maxTokensPerStep: 16, maxSeqsPerStep: 4, maxContext: 64 };
const planOf = async (ranks: number, rank: number) => (await compile(gptOssModel(GPT_OSS_TINY, OPTIONS), { arch: "sm_90", cacheDir: false, nvrtc: "skip", shard: { strategy: { ranks }, rank } })).plan;

describe("KV pools across ranks", () => {
  it("a rank's room counts its own KV heads; a rank without heads holds any number", async () => {
    const memory = { freeBytes: 8e8, totalBytes: 1e9 }; // 2e8 in use by others
    const windowed = { slidingSlots: 10 };
    const two = await planOf(2, 0);
    // tiny: 1 full layer; on 2 ranks each holds 1 of 2 KV heads: k and v, 16 rows of 16 bf16 a block = 1024 bytes
    const expected = Math.floor((0.5e9 - 2e8 - two.arena.bytes - 10 * 1024) / 1024);
    expect(rankKvCapacity(two, memory, 0.5, windowed, 16)).toBe(expected);
    const whole = (await compile(gptOssModel(GPT_OSS_TINY, OPTIONS), { arch: "sm_90", cacheDir: false, nvrtc: "skip" })).plan;
    expect(rankKvCapacity(whole, memory, 0.5, windowed, 16)).toBe(Math.floor((0.5e9 - 2e8 - whole.arena.bytes - 10 * 2048) / 2048));
    const headless = await planOf(8, 2); // 4 query heads over 8 ranks: rank 2 holds none
    expect(rankKvCapacity(headless, memory, 0.5, windowed, 16)).toBe(Number.POSITIVE_INFINITY);
  });

  it("every rank takes the tightest rank's pool; too little room names the rank", () => {
    const layout = gptOssLayout(GPT_OSS_TINY, OPTIONS);
    const o = { maxFullBlocks: 1000, windowed: { sliding: 12, full: 0 }, maxSeqs: 4, utilization: 0.9 };
    const info = (rank: number, kvCapacity: number) => ({ rank, pid: 1, kvCapacity, arenaBytes: 3e8 });
    expect(choosePoolBlocks(layout, [info(0, 300), info(1, 120), info(2, Infinity)], o)).toEqual({ sliding: 12, full: 120 });
    expect(choosePoolBlocks(layout, [info(0, Infinity), info(1, Infinity)], o)).toEqual({ sliding: 12, full: 4 * layout.maxBlocksPerSeq });
    expect(choosePoolBlocks(layout, [info(0, 300)], { ...o, kvBlocks: 50 })).toEqual({ sliding: 12, full: 50 });
    expect(() => choosePoolBlocks(layout, [info(0, 300), info(1, 2)], o)).toThrow(/the KV cache does not fit: rank 1 holds 2 full-attention blocks after its 0.30 GB plan .* one 64-token sequence needs 4/);
  });
});
