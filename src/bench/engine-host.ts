// The serving engine's host cost, measured without a GPU: ServingEngine (and the OpenAI server over it) driven by a
// fake StepBackend whose "device" takes a modelled time per step and samples deterministic tokens.
//
//   node dist/src/bench/engine-host.js [--quick] [--json] [--no-plan-ahead]
//
//   host      engine µs per decode step with a device that takes no time: the scheduler, stepInputs (block tables of
//             256 × maxBlocksPerSeq per group), sampling settings, completion, detokenization and stream delivery,
//             at 1 and 256 sequences, 4k and 64k contexts (gpt-oss-20b's layout: blocks of 16, a full group and a
//             128-token sliding group)
//   gap       µs per decode step during which the modelled device sits idle (from the end of one step's device time
//             to the next step's launch): the host work on the critical path, what bounds batch-1 latency
//   http      output tok/s of 256 streaming /v1/completions clients (SSE on 127.0.0.1, token-id prompts,
//             return_token_ids) as a share of the same workload through the engine's API, in one process
//
// The device model (deviceMs): 2.3 ms a step plus 0.07 ms per decoding sequence plus 0.032 ms per prefill token,
// about what one H200 takes for gpt-oss-20b (bench/NOTES.md Run 6: 2.34 ms at batch 1, 20.3 ms at batch 256, 68.6 ms
// for a 2048-token prefill). The fake device waits by
// polling with setImmediate, as PlanExecutor.runAsync waits for its stream, so the event loop is free meanwhile.
// Tokens are ordinary text tokens of o200k_harmony (ids 1000 … 50999, a hash of the row's last id and position), so
// detokenization costs what it costs on real output.

import { type Agent as HttpAgent, Agent } from "node:http";
import { type StepBackend, type StepOutputs, withFedBackIds } from "../engine/backend.js";
import type { PagedDecoderLayout } from "../engine/contract.js";
import { ServingEngine } from "../engine/engine.js";
import { createOpenAiServer } from "../server/server.js";
import { type BenchRequest, directSubmitter, httpSubmitter, mulberry32, runServeWorkload } from "./serve-bench.js";

/** Tensors as the engine hands them to a backend: only the fields this fake reads. */
type StepInputsView = Parameters<StepBackend["step"]>[0];

const VOCAB = 201088;
const BLOCK = 16;
const WINDOW = 128;

export interface DeviceModel {
  /** Milliseconds the device takes for a step of `tokens` tokens over `seqs` sequences (`tokens − seqs` prefill). */
  (tokens: number, seqs: number): number;
}

export const H200_20B: DeviceModel = (tokens, seqs) => 2.3 + 0.07 * seqs + 0.032 * Math.max(0, tokens - seqs);
export const INSTANT: DeviceModel = () => 0;

export interface FakeDeviceStats {
  steps: number;
  decodeSteps: number;
  /**
   * Summed over full decode steps (one token of each of `fullSeqs` sequences) that followed one: ms the device was
   * idle before the step launched (with an instant device: the whole host time of a step).
   */
  decodeIdleMs: number;
  decodeIdleSteps: number;
}

/**
 * A backend that "computes" for `model(tokens, seqs)` ms, polling like runAsync, and samples a hash of each row. Like
 * the GPU it runs steps in order: a step launched while the one before computes (planned ahead, its ids fed back from
 * that step's samples) starts when it ends.
 */
export function fakeBackend(model: DeviceModel, fullSeqs: number): { backend: StepBackend; stats: FakeDeviceStats; reset(): void } {
  const stats: FakeDeviceStats = { steps: 0, decodeSteps: 0, decodeIdleMs: 0, decodeIdleSteps: 0 };
  let lastEnd: number | undefined;
  let lastWasDecode = false;
  let lastTokens = new Int32Array(0);
  const backend: StepBackend = {
    device: "cuda",
    feedsBackTokens: true,
    async step(inputs: StepInputsView, options = {}): Promise<StepOutputs> {
      const launched = Math.max(performance.now(), lastEnd ?? 0);
      const ids = withFedBackIds(inputs, options.feedback, lastTokens)["ids"]!.data;
      const positions = inputs["positions"]!.data;
      const rows = inputs["logit_rows"]!.data;
      const seqs = inputs["context_lens"]!.data.length;
      const decode = ids.length === seqs && seqs === fullSeqs;
      if (decode && lastWasDecode && lastEnd !== undefined) {
        stats.decodeIdleMs += launched - lastEnd;
        stats.decodeIdleSteps++;
      }
      stats.steps++;
      if (decode) stats.decodeSteps++;
      const tokens = new Int32Array(rows.length);
      for (let r = 0; r < rows.length; r++) {
        const t = rows[r]!;
        tokens[r] = 1000 + ((Math.imul(ids[t]! ^ 0x9e3779b9, positions[t]! + 1) >>> 0) % 50000);
      }
      const end = launched + model(ids.length, seqs);
      lastEnd = end;
      lastWasDecode = decode;
      lastTokens = tokens;
      while (performance.now() < end) await new Promise<void>((resolve) => setImmediate(resolve));
      return { tokens, logits: () => new Float64Array(VOCAB) };
    },
    dispose() {},
  };
  return {
    backend,
    stats,
    reset() {
      Object.assign(stats, { steps: 0, decodeSteps: 0, decodeIdleMs: 0, decodeIdleSteps: 0 });
      lastEnd = undefined;
      lastWasDecode = false;
    },
  };
}

/** gpt-oss-20b's paged layout at `maxContext`, 256 sequences and 2048 tokens a step. */
export function gptOss20bLayout(maxContext: number): PagedDecoderLayout {
  return {
    blockSize: BLOCK,
    maxBlocksPerSeq: Math.ceil(maxContext / BLOCK),
    maxContext,
    maxTokensPerStep: 2048,
    maxSeqsPerStep: 256,
    groups: [
      { name: "sliding", window: WINDOW, layers: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22], bytesPerBlock: 1 },
      { name: "full", layers: [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23], bytesPerBlock: 1 },
    ],
    vocabSize: VOCAB,
  };
}

function engineOver(backend: StepBackend, maxContext: number, seqs: number, tokensPerSeq: number, planAhead: boolean): ServingEngine {
  const layout = gptOss20bLayout(maxContext);
  const full = Math.max(seqs * Math.ceil(tokensPerSeq / BLOCK) + 64, layout.maxBlocksPerSeq);
  const sliding = 256 * (Math.ceil(WINDOW / BLOCK) + 1) + Math.ceil(2048 / BLOCK) + 256;
  const info = { name: "fake-gpt-oss-20b", vocabSize: VOCAB, maxContext, tokenizer: "o200k_harmony" as const, eosTokenIds: [], device: "cuda" as const };
  return new ServingEngine(backend, layout, info, { full, sliding }, { planAhead });
}

function prompts(n: number, len: number, seed: number): number[][] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => Array.from({ length: len }, () => 1000 + Math.floor(rand() * 50000)));
}

export interface DecodeMeasure {
  readonly seqs: number;
  readonly maxContext: number;
  /** Mean µs per full decode step with a device that takes no time: all of it is host work. */
  readonly hostUsPerStep: number;
  /** Mean µs per decode step the modelled device is idle. */
  readonly idleUsPerStep: number;
}

/**
 * `seqs` requests of `promptLen` + more than `outputLen` tokens: the mean host time of the steps that decode all of
 * them (with an instant device), and the modelled device's idle time per such step (over `idleOutputLen` of them).
 */
export async function measureDecode(seqs: number, maxContext: number, promptLen: number, outputLen: number, idleOutputLen: number, planAhead = true): Promise<DecodeMeasure> {
  const run = async (model: DeviceModel, out: number, seed: number) => {
    const fake = fakeBackend(model, seqs);
    const engine = engineOver(fake.backend, maxContext, seqs, promptLen + out, planAhead);
    const streams = prompts(seqs, promptLen, seed).map((p) => engine.generate({ promptIds: p, maxTokens: out }));
    const consume = streams.map(async (s) => {
      for await (const _ of s);
      return s.done;
    });
    const summaries = await Promise.all(consume);
    for (const s of summaries) if (s.finishReason !== "length" || s.completionTokens !== out) throw new Error(`request ${s.id} ended by ${s.finishReason} after ${s.completionTokens} of ${out} tokens`);
    await engine.close();
    if (fake.stats.decodeIdleSteps < 8) throw new Error(`only ${fake.stats.decodeIdleSteps} decode steps ran all ${seqs} sequences: make the output longer than the prefill`);
    return fake.stats.decodeIdleMs / fake.stats.decodeIdleSteps;
  };
  // the output outlasts the prefill (2048 tokens a step, less the decodes that share it), so that many steps
  // decode every sequence
  const prefillSteps = Math.ceil((seqs * promptLen) / (2048 - seqs)) + 1;
  const host = await run(INSTANT, prefillSteps + outputLen, 1);
  const idle = await run(H200_20B, prefillSteps + idleOutputLen, 2);
  return { seqs, maxContext, hostUsPerStep: host * 1000, idleUsPerStep: idle * 1000 };
}

export interface HttpMeasure {
  readonly requests: number;
  readonly apiTokPerS: number;
  readonly httpTokPerS: number;
  readonly httpOverApi: number;
  readonly apiDecodeIdleUs: number;
  readonly httpDecodeIdleUs: number;
}

/** 256 (or `n`) requests of inputLen + outputLen through the API, then as streaming HTTP clients, on one engine. */
export async function measureHttp(n: number, inputLen: number, outputLen: number, planAhead = true): Promise<HttpMeasure> {
  const fake = fakeBackend(H200_20B, n);
  const engine = engineOver(fake.backend, 4096, n, inputLen + outputLen, planAhead);
  const server = createOpenAiServer(engine, { modelNames: ["fake"], log: () => {} });
  const address = await server.listen(0, "127.0.0.1");
  const agent: HttpAgent = new Agent({ keepAlive: true, maxSockets: n + 8 });
  const requests = (seed: number): BenchRequest[] => prompts(n, inputLen, seed).map((promptIds, index) => ({ index, promptIds, outputLen, arrivalMs: 0 }));
  try {
    fake.reset();
    const api = await runServeWorkload(engine, requests(10), directSubmitter(engine, "api"), { mode: "direct" });
    const apiIdle = fake.stats.decodeIdleMs / Math.max(fake.stats.decodeIdleSteps, 1);
    fake.reset();
    const http = await runServeWorkload(engine, requests(11), httpSubmitter({ host: "127.0.0.1", port: address.port, model: "fake", agent }), { mode: "http" });
    const httpIdle = fake.stats.decodeIdleMs / Math.max(fake.stats.decodeIdleSteps, 1);
    for (const r of [api, http]) if (r.failed > 0) throw new Error(`${r.mode}: ${r.failed} requests failed: ${r.firstError ?? ""}`);
    return { requests: n, apiTokPerS: api.outputTokensPerSecond, httpTokPerS: http.outputTokensPerSecond, httpOverApi: http.outputTokensPerSecond / api.outputTokensPerSecond, apiDecodeIdleUs: apiIdle * 1000, httpDecodeIdleUs: httpIdle * 1000 };
  } finally {
    agent.destroy();
    await server.close();
    await engine.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const json = args.includes("--json");
  const planAhead = !args.includes("--no-plan-ahead");
  const decode: DecodeMeasure[] = [];
  decode.push(await measureDecode(1, 4096, 1024, quick ? 200 : 1000, quick ? 100 : 300, planAhead));
  decode.push(await measureDecode(256, 4096, 1024, quick ? 32 : 128, quick ? 16 : 32, planAhead));
  decode.push(await measureDecode(256, 65536, 1024, quick ? 16 : 64, quick ? 8 : 16, planAhead));
  const http = await measureHttp(256, 1024, quick ? 64 : 256, planAhead);
  if (json) {
    process.stdout.write(`${JSON.stringify({ decode, http })}\n`);
    return;
  }
  for (const d of decode) process.stdout.write(`decode  ${String(d.seqs).padStart(3)} seqs, ${String(d.maxContext).padStart(5)} max context: host ${d.hostUsPerStep.toFixed(0).padStart(6)} µs/step, device idle ${d.idleUsPerStep.toFixed(0).padStart(6)} µs/step\n`);
  process.stdout.write(`http    ${http.requests} streaming clients: API ${http.apiTokPerS.toFixed(0)} tok/s, HTTP ${http.httpTokPerS.toFixed(0)} tok/s, HTTP/API ${http.httpOverApi.toFixed(3)} (device idle per decode step: API ${http.apiDecodeIdleUs.toFixed(0)} µs, HTTP ${http.httpDecodeIdleUs.toFixed(0)} µs)\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
