// Runs NVRTC compiles in parallel, on worker threads or in child processes. Each worker loads the
// addon itself and compiles one job at a time; the pool hands out jobs as workers free up.
//
// Threads are the default: NVRTC compiles concurrently across threads (bench/NOTES.md: 1.85x on 2
// cores with NVRTC 11.8, 4.8x on 32 with 13.0, where processes reached 2.9x). Processes are there for
// isolation: a crash inside NVRTC then ends one worker (and compileKernels rejects) instead of the
// whole compiler process.
//
// The worker's code is a small CommonJS string rather than a module file, because the runtime runs
// both from TypeScript sources (tests) and from dist/ (CLI), and neither a worker thread nor a
// plain `node` child can load a .ts file; the string needs nothing but the addon's absolute path.
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { addonPath, type NativeCompileResult } from "./native.js";
import type { OutputKind } from "./nvrtc.js";

export interface CompileJob {
  source: string;
  programName: string;
  options: readonly string[];
  output: OutputKind;
}

export type PoolKind = "threads" | "processes";

const WORKER_SOURCE = `
const threads = require("node:worker_threads");
const port = threads.parentPort ?? { on: (event, fn) => process.on(event, fn), postMessage: (m) => process.send(m) };
const addon = require(threads.workerData?.addonPath ?? process.argv[1]);
if (!threads.parentPort) process.on("disconnect", () => process.exit(0));
port.on("message", (job) => {
  try {
    const result = addon.nvrtcCompile(job.source, job.programName, job.options, job.output);
    port.postMessage({ id: job.id, result });
  } catch (err) {
    port.postMessage({ id: job.id, error: { message: String((err && err.message) || err), code: err && err.code } });
  }
});
`;

interface WorkerReply {
  id: number;
  result?: NativeCompileResult;
  error?: { message: string; code?: string };
}

/** What the pool needs from a worker thread or a child process. */
interface PoolWorker {
  post(message: object): void;
  onReply(handler: (reply: WorkerReply) => void): void;
  onFailure(handler: (err: Error) => void): void;
  stop(): Promise<void>;
}

function startThread(): PoolWorker {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { addonPath: addonPath() } });
  return {
    post: (m) => worker.postMessage(m),
    onReply: (h) => void worker.on("message", h),
    onFailure: (h) => {
      worker.on("error", h);
      worker.on("exit", (code) => h(new Error(`tsgc: a compile worker thread exited (code ${code})`)));
    },
    stop: async () => void (await worker.terminate()),
  };
}

function startProcess(): PoolWorker {
  const child: ChildProcess = spawn(process.execPath, ["-e", WORKER_SOURCE, addonPath()], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    serialization: "advanced", // images travel as Uint8Array, not JSON number lists
  });
  let stopping = false;
  return {
    post: (m) => void child.send(m),
    onReply: (h) => void child.on("message", (m) => h(m as WorkerReply)),
    onFailure: (h) => {
      child.on("error", h);
      child.on("exit", (code, signal) => {
        if (!stopping) h(new Error(`tsgc: a compile process exited (code ${code}, signal ${signal})`));
      });
    },
    stop: () => {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.disconnect();
      });
    },
  };
}

export function defaultParallelism(): number {
  return Math.max(1, availableParallelism());
}

/**
 * Compiles every job, at most `parallelism` at a time, calling `onDone` as each finishes.
 * Resolves with the raw results in job order; rejects on the first library-level failure or the first
 * error `onDone` throws (a compile error is a normal result, not a rejection).
 */
export async function compileInWorkers(
  jobs: readonly CompileJob[],
  parallelism: number,
  onDone: (index: number, result: NativeCompileResult) => void = () => {},
  kind: PoolKind = "threads",
): Promise<NativeCompileResult[]> {
  const results: (NativeCompileResult | undefined)[] = new Array<NativeCompileResult | undefined>(jobs.length);
  if (jobs.length === 0) return [];
  const workerCount = Math.max(1, Math.min(parallelism, jobs.length));
  const workers: PoolWorker[] = [];
  let next = 0;
  let finished = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: Error): void => {
        if (!failed && finished < jobs.length) {
          failed = true;
          reject(err);
        }
      };
      const feed = (worker: PoolWorker): void => {
        if (failed || next >= jobs.length) return;
        const id = next++;
        worker.post({ id, ...jobs[id] });
      };
      for (let i = 0; i < workerCount; i++) {
        const worker = kind === "threads" ? startThread() : startProcess();
        workers.push(worker);
        worker.onReply((reply) => {
          if (reply.error !== undefined) {
            const err = new Error(reply.error.message) as Error & { code?: string };
            if (reply.error.code !== undefined) err.code = reply.error.code;
            return fail(err);
          }
          if (reply.result === undefined) return fail(new Error("tsgc: compile worker sent an empty reply"));
          // Structured clone may hand back a Buffer's bytes as a plain Uint8Array; either is fine.
          results[reply.id] = reply.result;
          // An error thrown here would escape the worker's message event, uncaught, and abort the process
          // (a cache write failing, say): it rejects the pool instead.
          try {
            onDone(reply.id, reply.result);
          } catch (err) {
            return fail(err instanceof Error ? err : new Error(String(err)));
          }
          finished++;
          if (finished === jobs.length) resolve();
          else feed(worker);
        });
        worker.onFailure(fail);
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
  return results.map((r, i) => {
    if (r === undefined) throw new Error(`tsgc: compile job ${i} produced no result`);
    return r;
  });
}
