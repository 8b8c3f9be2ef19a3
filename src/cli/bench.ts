// `tsgc bench`: two benchmarks on the serving engine.
//   decode (the default: `tsgc bench [model] …` is `tsgc bench decode [model] …`) — a built-in gpt-oss model at full
//          size on GPU 0 with random weights made on the device (src/bench/gpt-oss-bench.ts): memory, load time,
//          decode tokens/s at each batch size against the floor
//   serve  a serving workload through the engine's API or its OpenAI HTTP server (src/bench/serve-bench.ts):
//          throughput, latency percentiles, KV pool peaks; on GPU 0 or the CPU reference interpreter

import { Agent } from "node:http";
import { type Command, Option } from "commander";
import { loadGptOssConfig } from "../../models/gpt-oss/config.js";
import { findBuiltinModel } from "../../models/index.js";
import { formatGptOssBench, runGptOssBench } from "../bench/gpt-oss-bench.js";
import {
  type BenchRequest, directSubmitter, formatServeBench, httpSubmitter, progressReporter, runServeWorkload, SERVE_DATASETS, type ServeDataset,
  type ServeRunReport, serveBenchResult, serveWorkload, WARMUP_PROMPT_TOKENS, warmupWorkload, WORKLOAD_STREAMS, type WorkloadSpec, workloadHash,
} from "../bench/serve-bench.js";
import type { Engine } from "../engine/api.js";
import { gpuPresent, openEngine } from "../engine/open.js";
import { checkInputDirectory } from "../fs-safe.js";
import { createOpenAiServer } from "../server/index.js";
import { type EngineFlags, engineFlags, engineOptions } from "./engine-options.js";
import { choiceFlag, integerFlag, numberFlag } from "./flags.js";
import { progressPrinter, resolveDevice } from "./generate.js";

// ---- decode --------------------------------------------------------------------------------------

interface DecodeBenchFlags {
  past: number;
  batches: number[];
  maxBatch?: number;
  maxContext: number;
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

function registerDecodeBench(bench: Command): void {
  bench
    .command("decode", { isDefault: true })
    .description("(the default) a built-in gpt-oss model on GPU 0 with random device-side weights: the card's ceilings, GPU memory, load time, decode tokens/s per batch size and prefill against floors from those ceilings")
    .argument("[model]", "built-in model name", "gpt-oss-20b")
    .option("--past <n>", "position of every decoding sequence (cached tokens)", integer("--past", 0), 1024)
    .option("--batches <list>", "decode batch sizes, all in one plan", parseBatches, [1, 2, 4, 8, 16, 32, 64, 128, 256])
    .option("--max-batch <n>", "most sequences one step runs: the plan's batch bound (default: the largest of --batches)", integer("--max-batch", 1))
    .option("--max-context <n>", "most tokens (prompt and output) one sequence holds: the plan's maxContext", integer("--max-context", 1), 4096)
    .option("--replays <n>", "timed replays of each decode step", integer("--replays", 1), 100)
    .option("--prefill <n>", "also time a prefill of this many tokens", integer("--prefill", 0), 0)
    .option("--profile [batches]", "time every launch of these decode steps alone (default: batch 1) and sum by kernel kind", parseBatches)
    .option("--json", "print one JSON object")
    .action(async (model: string, flags: DecodeBenchFlags) => {
      findBuiltinModel(model); // an unknown name fails here, before any GPU work
      const result = await runGptOssBench({
        model,
        past: flags.past,
        batches: flags.batches,
        ...(flags.maxBatch !== undefined ? { maxBatch: flags.maxBatch } : {}),
        context: flags.maxContext,
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

// ---- serve ---------------------------------------------------------------------------------------

interface ServeBenchFlags extends EngineFlags {
  numRequests: number;
  inputLen: number;
  outputLen: number;
  dataset: ServeDataset;
  requestRate: number;
  seed: number;
  concurrency?: number;
  http?: boolean;
  compareHttp?: boolean;
  warmup?: boolean;
  json?: boolean;
}

const requestRateFlag = (v: string): number => (v.trim() === "inf" ? Infinity : numberFlag("--request-rate", (n) => Number.isFinite(n) && n > 0, 'a positive number of requests per second, or "inf"')(v));

const seedFlag = (v: string): number => {
  const n = integerFlag("--seed", 0)(v);
  if (n >= 2 ** 32) throw new Error(`--seed must be below 2^32 (4294967296), got "${v}"`);
  return n;
};

/**
 * The context bound: --max-context, else 4096 (or what a fixed-length request needs, when more), within the model's
 * max_position_embeddings; a fixed-length request that does not fit is an error naming the flags.
 */
export function serveContext(o: { readonly dataset: ServeDataset; readonly inputLen: number; readonly outputLen: number; readonly maxContext: number | undefined; readonly maxPositionEmbeddings: number; readonly model: string }): number {
  const needed = o.dataset === "fixed" ? o.inputLen + o.outputLen : 2;
  const context = o.maxContext ?? Math.min(o.maxPositionEmbeddings, Math.max(4096, needed));
  if (context > o.maxPositionEmbeddings) throw new Error(`--max-context ${context} exceeds ${o.model}'s max_position_embeddings (${o.maxPositionEmbeddings})`);
  if (needed > context) {
    const by = o.maxContext !== undefined ? `--max-context ${context}` : `${o.model}'s max_position_embeddings (${o.maxPositionEmbeddings})`;
    throw new Error(`--input-len ${o.inputLen} and --output-len ${o.outputLen} need ${needed} positions, more than ${by}`);
  }
  if (o.dataset === "sharegpt-like" && o.inputLen >= context) throw new Error(`--input-len ${o.inputLen} (the mean prompt) must be below the context of ${context} tokens`);
  return context;
}

/** Runs the workload through the OpenAI server on 127.0.0.1 (an ephemeral port), then closes the server. */
async function runOverHttp(engine: Engine, model: string, requests: readonly BenchRequest[], concurrency: number | undefined, progress: (done: number, tokens: number, ms: number) => void): Promise<ServeRunReport> {
  const server = createOpenAiServer(engine, { modelNames: [model] });
  const { host, port } = await server.listen(0, "127.0.0.1");
  const agent = new Agent({ keepAlive: true });
  try {
    return await runServeWorkload(engine, requests, httpSubmitter({ host, port, model, agent }), { mode: "http", ...(concurrency !== undefined ? { concurrency } : {}), onProgress: progress });
  } finally {
    agent.destroy();
    await server.close();
  }
}

function registerServeBench(bench: Command): void {
  const cmd = bench
    .command("serve")
    .description(
      "a serving benchmark: N requests of seeded random token ids (fixed lengths or a sharegpt-like spread), all at once or as Poisson arrivals, through the engine's API or its OpenAI HTTP server; " +
        "reports throughput, TTFT/TPOT/ITL percentiles, peak KV blocks, preemptions and prefix-cache hits (progress on stderr)",
    )
    .argument("[model]", "built-in model name, with seeded random weights (ignored with --checkpoint)", "gpt-oss-20b")
    .option("--num-requests <n>", "requests in the workload", integerFlag("--num-requests", 1), 256)
    .option("--input-len <n>", "prompt tokens of each request (sharegpt-like: their mean)", integerFlag("--input-len", 1), 1024)
    .option("--output-len <n>", "output tokens of each request, generated to the end: no EOS (sharegpt-like: their mean)", integerFlag("--output-len", 1), 1024)
    .option("--dataset <kind>", `fixed (every request --input-len + --output-len) or sharegpt-like (log-normal lengths with those means, clipped to the context)`, choiceFlag("--dataset", SERVE_DATASETS), "fixed")
    .addOption(new Option("--request-rate <r>", 'requests per second, Poisson arrivals (seeded); "inf": all at once').argParser(requestRateFlag).default(Infinity, "inf"))
    .option("--concurrency <c>", "most requests in flight at once (default: all)", integerFlag("--concurrency", 1))
    .option("--seed <n>", "seed of the workload (prompts, lengths, arrivals) and of a built-in model's random weights", seedFlag, 0)
    .option("--http", "send the workload through the OpenAI HTTP server (127.0.0.1, an ephemeral port) as streaming /v1/completions clients")
    .option("--compare-http", "run the workload through the engine's API, then through HTTP (other prompts of the same lengths, so no prefix-cache hits on the first run's), on the one loaded engine, and report both and their ratio")
    .option("--warmup", `first run a short untimed warm-up (up to --max-batch ${WARMUP_PROMPT_TOKENS}-token prompts, one finishing each step), so the measured runs find every decode step size's CUDA graph already captured`)
    .option("--json", "print one JSON object on stdout");
  engineFlags(cmd).action(async (model: string, flags: ServeBenchFlags) => {
    if (flags.http && flags.compareHttp) throw new Error("give --http or --compare-http, not both");
    if (flags.checkpoint !== undefined) checkInputDirectory(flags.checkpoint, "--checkpoint");
    const name = flags.checkpoint ?? model;
    const config = flags.checkpoint ? await loadGptOssConfig(flags.checkpoint) : findBuiltinModel(model).config;
    const { device, dtype } = resolveDevice(flags, gpuPresent() ? 1 : 0);
    const maxContext = serveContext({ dataset: flags.dataset, inputLen: flags.inputLen, outputLen: flags.outputLen, maxContext: flags.maxContext, maxPositionEmbeddings: config.maxPositionEmbeddings, model: name });
    const spec: WorkloadSpec = { numRequests: flags.numRequests, dataset: flags.dataset, inputLen: flags.inputLen, outputLen: flags.outputLen, vocabSize: config.vocabSize, maxContext, requestRate: flags.requestRate, seed: flags.seed };
    const requests = serveWorkload(spec);
    const write = (text: string) => void process.stderr.write(text);
    const tty = process.stderr.isTTY === true;
    const started = performance.now();
    const opened = await openEngine({ ...engineOptions(flags, model), device, dtype, maxContext, maxWaiting: Math.max(4096, flags.numRequests), onProgress: progressPrinter(false) });
    const { engine, layout, poolBlocks } = opened;
    try {
      const loadMs = performance.now() - started;
      if (flags.warmup) {
        const warm = warmupWorkload(spec, layout.maxSeqsPerStep);
        await runServeWorkload(engine, warm, directSubmitter(engine, "warmup"), { mode: "direct", ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}), onProgress: progressReporter("warm-up", warm.length, write, tty) });
      }
      const runs: ServeRunReport[] = [];
      if (!flags.http) {
        runs.push(await runServeWorkload(engine, requests, directSubmitter(engine, "bench"), { mode: "direct", ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}), onProgress: progressReporter("engine API", requests.length, write, tty) }));
      }
      if (flags.http || flags.compareHttp) {
        // after a first run the prefix cache holds its prompts: the second run gets prompts of its own, same lengths
        const httpRequests = flags.compareHttp ? serveWorkload(spec, WORKLOAD_STREAMS.secondRun) : requests;
        runs.push(await runOverHttp(engine, name, httpRequests, flags.concurrency, progressReporter("HTTP", httpRequests.length, write, tty)));
      }
      const result = serveBenchResult(
        {
          model: name,
          device,
          dtype,
          maxContext,
          maxBatch: layout.maxSeqsPerStep,
          maxStepTokens: layout.maxTokensPerStep,
          blockSize: layout.blockSize,
          prefixCaching: flags.prefixCaching !== false,
          kvPool: poolBlocks,
          loadMs,
          workload: {
            dataset: spec.dataset,
            numRequests: spec.numRequests,
            inputLen: spec.inputLen,
            outputLen: spec.outputLen,
            requestRate: spec.requestRate === Infinity ? "inf" : spec.requestRate,
            seed: spec.seed,
            inputTokens: requests.reduce((s, r) => s + r.promptIds.length, 0),
            outputTokens: requests.reduce((s, r) => s + r.outputLen, 0),
            hash: workloadHash(requests),
          },
          warmup: flags.warmup === true,
        },
        runs,
      );
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : formatServeBench(result));
      const failed = runs.find((r) => r.failed > 0);
      if (failed) throw new Error(`${failed.failed} of ${failed.requests} requests (${failed.mode}) did not generate their output length: ${failed.firstError}`);
    } finally {
      await engine.close();
    }
  });
}

export function registerBenchCommand(program: Command): void {
  const bench = program
    .command("bench")
    .description("benchmarks on the serving engine: decode (the default) and serve")
    .addHelpText("after", "\n`tsgc bench [model] [options]` runs `tsgc bench decode`; `tsgc bench serve --help` lists the serving benchmark's options.");
  registerDecodeBench(bench);
  registerServeBench(bench);
}
