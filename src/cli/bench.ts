// `tsgc bench`: a built-in gpt-oss model at full size on GPU 0 with random weights made on the device
// (src/bench/gpt-oss-bench.ts): memory, load time, decode tokens/s at each batch size against the floor.

import type { Command } from "commander";
import { findBuiltinModel } from "../../models/index.js";
import { formatGptOssBench, runGptOssBench } from "../bench/gpt-oss-bench.js";

interface BenchFlags {
  past: number;
  batches: number[];
  context: number;
  replays: number;
  prefill: number;
  profile?: number[] | true;
  json?: boolean;
}

const integer = (flag: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= min)) throw new Error(`${flag} must be an integer >= ${min}, got "${v}"`);
  return n;
};

function parseBatches(v: string): number[] {
  const list = v.split(",").map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !(Number.isInteger(n) && n >= 1))) throw new Error(`--batches must be comma-separated positive integers, got "${v}"`);
  return list;
}

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("benchmark a built-in gpt-oss model on GPU 0 with random device-side weights: the card's ceilings, GPU memory, load time, decode tokens/s per batch size and prefill against floors from those ceilings")
    .argument("[model]", "built-in model name", "gpt-oss-20b")
    .option("--past <n>", "position of every decoding sequence (cached tokens)", integer("--past", 0), 1024)
    .option("--batches <list>", "decode batch sizes, all in one plan whose batch bound is the largest", parseBatches, [1, 2, 4, 8, 16, 32, 64, 128, 256])
    .option("--context <n>", "most tokens per sequence (the plan's maxContext)", integer("--context", 1), 4096)
    .option("--replays <n>", "timed replays of each decode step", integer("--replays", 1), 100)
    .option("--prefill <n>", "also time a prefill of this many tokens", integer("--prefill", 0), 0)
    .option("--profile [batches]", "time every launch of these decode steps alone (default: batch 1) and sum by kernel kind", parseBatches)
    .option("--json", "print one JSON object")
    .action(async (model: string, flags: BenchFlags) => {
      findBuiltinModel(model); // an unknown name fails here, before any GPU work
      const result = await runGptOssBench({
        model,
        past: flags.past,
        batches: flags.batches,
        context: flags.context,
        replays: flags.replays,
        prefillTokens: flags.prefill,
        profile: flags.profile === undefined ? [] : flags.profile === true ? [1] : flags.profile,
        onProgress: (line) => {
          if (!flags.json) process.stderr.write(`${line}\n`);
        },
      });
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatGptOssBench(result));
    });
}
