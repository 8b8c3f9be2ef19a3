// Runs NVRTC compiles in parallel on worker threads. Each worker loads the addon itself and
// compiles one job at a time; the pool hands out jobs as workers free up.
//
// The worker's code is a small CommonJS string (eval: true) rather than a module file, because the
// runtime runs both from TypeScript sources (tests) and from dist/ (CLI), and a worker cannot load
// a .ts file; the string needs nothing but the addon's absolute path.
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { addonPath, type NativeCompileResult } from "./native.js";
import type { OutputKind } from "./nvrtc.js";

export interface CompileJob {
  source: string;
  programName: string;
  options: readonly string[];
  output: OutputKind;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const addon = require(workerData.addonPath);
parentPort.on("message", (job) => {
  try {
    const result = addon.nvrtcCompile(job.source, job.programName, job.options, job.output);
    parentPort.postMessage({ id: job.id, result });
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: { message: String(err && err.message || err), code: err && err.code } });
  }
});
`;

interface WorkerReply {
  id: number;
  result?: NativeCompileResult;
  error?: { message: string; code?: string };
}

export function defaultParallelism(): number {
  return Math.max(1, availableParallelism());
}

/**
 * Compiles every job, at most `parallelism` at a time, calling `onDone` as each finishes.
 * Resolves with the raw results in job order; rejects on the first library-level failure
 * (a compile error is a normal result, not a rejection).
 */
export async function compileInWorkers(
  jobs: readonly CompileJob[],
  parallelism: number,
  onDone: (index: number, result: NativeCompileResult) => void = () => {},
): Promise<NativeCompileResult[]> {
  const results: (NativeCompileResult | undefined)[] = new Array<NativeCompileResult | undefined>(jobs.length);
  if (jobs.length === 0) return [];
  const workerCount = Math.max(1, Math.min(parallelism, jobs.length));
  const workers: Worker[] = [];
  let next = 0;
  let finished = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: Error): void => {
        if (!failed) {
          failed = true;
          reject(err);
        }
      };
      const feed = (worker: Worker): void => {
        if (failed || next >= jobs.length) return;
        const id = next++;
        worker.postMessage({ id, ...jobs[id] });
      };
      for (let i = 0; i < workerCount; i++) {
        const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { addonPath: addonPath() } });
        workers.push(worker);
        worker.on("message", (reply: WorkerReply) => {
          if (reply.error !== undefined) {
            const err = new Error(reply.error.message) as Error & { code?: string };
            if (reply.error.code !== undefined) err.code = reply.error.code;
            fail(err);
            return;
          }
          if (reply.result === undefined) return fail(new Error("tsgc: compile worker sent an empty reply"));
          results[reply.id] = reply.result;
          onDone(reply.id, reply.result);
          finished++;
          if (finished === jobs.length) resolve();
          else feed(worker);
        });
        worker.on("error", fail);
        worker.on("exit", (code) => {
          if (finished < jobs.length) fail(new Error(`tsgc: a compile worker exited early (code ${code})`));
        });
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return results.map((r, i) => {
    if (r === undefined) throw new Error(`tsgc: compile job ${i} produced no result`);
    return r;
  });
}
