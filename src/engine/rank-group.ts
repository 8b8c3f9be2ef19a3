// The process group of a sharded model: one child process per rank (per GPU), started by the engine, driven over an
// IPC channel. `worker_threads` cannot own separate CUDA contexts cleanly, so ranks are processes (child_process.fork
// of rank-worker.js, structured-clone messages: typed arrays pass as they are).
//
//   parent                                  rank r (rank-worker.ts)
//   init {rank, ranks, spec}            →   builds the model, the sharded pipeline, its rank's graph
//                                       ←   prepared {info}        (GPU: its plan compiled, KV blocks it can hold)
//   (GPU) nccl-id                       →   rank 0 only: ncclGetUniqueId
//                                       ←   nccl-id {id}
//   start {ncclId?, poolBlocks}         →   joins the NCCL communicator (GPU), loads its plan or weights, its pools
//                                       ←   ready
//   step {id, inputs, logitRows}        →   runs its graph on the step inputs
//   (CPU ranks)                         ←   collective {step, seq, operand}   — every rank's operand, combined here
//   collective-result {seq, result}     →                                       (combineCollective) and sent back
//                                       ←   step-done {id, tokens, logits rows of its vocabulary slice}
//   close                               →   disposes and exits
//
// GPU ranks combine their collectives themselves (NCCL, inside the step's CUDA graph); CPU ranks are fake ranks that
// test this protocol without GPUs. A rank that dies, reports an error, misses a step's deadline or a collective's
// ends the whole group: every pending call rejects with a RankGroupError naming the rank and what it was doing, the
// other ranks are killed, and every later call fails with the same error.

import { type ChildProcess, fork } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GptOssConfig } from "../../models/gpt-oss/config.js";
import type { GptOssBuildOptions } from "../../models/gpt-oss/model.js";
import { combineCollective } from "../ir/collectives.js";
import type { HostTensor } from "../ir/host-tensor.js";
import type { CollectiveOp } from "../ir/ops.js";
import type { ShardStrategy, SplitOutput } from "../passes/shard.js";
import { joinSplitRow, type StepBackend } from "./backend.js";
import { stepInputsAsHost } from "./contract.js";

/** The model every rank builds (each builds the whole graph and the sharded pipeline, then keeps its rank). */
export interface RankModelBuild {
  readonly config: GptOssConfig;
  readonly options: GptOssBuildOptions;
  readonly name: string;
}

/** What a rank runs: the reference interpreter (fake CPU ranks), or a compiled plan on GPU `rank`. */
export type RankWorkerSpec =
  | {
    readonly kind: "interpreter";
    readonly build: RankModelBuild;
    readonly strategy: Required<ShardStrategy>;
    /** Pool sizes (load-time symbols). */
    readonly loadSymbols: Readonly<Record<string, number>>;
    readonly checkpoint?: string;
    readonly seed?: number;
  }
  | {
    readonly kind: "plan";
    readonly build: RankModelBuild;
    readonly strategy: Required<ShardStrategy>;
    readonly checkpoint?: string;
    readonly seed?: number;
    readonly cacheDir?: string | false;
    /** Share of each GPU's memory the rank may use. */
    readonly gpuMemoryUtilization: number;
    /** Blocks of each windowed KV pool, by its load-time symbol (they are sized by need; the full pool by memory). */
    readonly windowedBlocks: Readonly<Record<string, number>>;
    /** GPU of each rank (default: rank r on device r). */
    readonly devices?: readonly number[];
  };

/** What a rank reports once prepared. */
export interface RankInfo {
  readonly rank: number;
  readonly pid: number;
  /** The logits output's vocabulary split (the same on every rank), when the logits are split. */
  readonly splitLogits?: SplitOutput;
  /** GPU ranks: full-attention KV blocks its memory holds after its plan (Infinity: it holds no KV heads). */
  readonly kvCapacity?: number;
  /** GPU ranks: compile and plan statistics. */
  readonly arenaBytes?: number;
  readonly compileMs?: number;
}

export type ParentMessage =
  | { readonly type: "init"; readonly rank: number; readonly ranks: number; readonly spec: RankWorkerSpec }
  | { readonly type: "nccl-id" }
  | { readonly type: "start"; readonly ncclId?: Uint8Array; readonly loadSymbols?: Readonly<Record<string, number>> }
  | { readonly type: "step"; readonly id: number; readonly inputs: Readonly<Record<string, HostTensor>>; readonly logitRows: readonly number[] }
  | { readonly type: "collective-result"; readonly step: number; readonly seq: number; readonly result: HostTensor }
  | { readonly type: "close" };

export type WorkerMessage =
  | { readonly type: "prepared"; readonly info: RankInfo }
  | { readonly type: "nccl-id"; readonly id: Uint8Array }
  | { readonly type: "ready" }
  | { readonly type: "progress"; readonly message: string }
  | {
    readonly type: "collective";
    readonly step: number;
    readonly op: CollectiveOp;
    readonly seq: number;
    readonly ranks: number;
    readonly dtype: HostTensor["dtype"];
    readonly operand: HostTensor;
  }
  | { readonly type: "step-done"; readonly id: number; readonly tokens: Int32Array; readonly logits: readonly { readonly row: number; readonly data: Float64Array }[] }
  | { readonly type: "error"; readonly message: string };

/** The group ended: a rank died, failed, or missed a deadline. */
export class RankGroupError extends Error {
  override readonly name = "RankGroupError";
}

export interface RankGroupOptions {
  readonly ranks: number;
  readonly spec: RankWorkerSpec;
  /** Deadline of preparing a rank (building, compiling, loading weights). Default 30 min. */
  readonly startTimeoutMs?: number;
  /** Deadline of one step on every rank. Default 120 s. */
  readonly stepTimeoutMs?: number;
  /** Deadline for every rank to reach a collective once the first has (CPU ranks). Default 60 s. */
  readonly collectiveTimeoutMs?: number;
  /** KV pool sizes for GPU ranks, chosen from what every rank can hold (their `kvCapacity`). */
  readonly chooseLoadSymbols?: (infos: readonly RankInfo[]) => Readonly<Record<string, number>>;
  readonly onProgress?: (message: string) => void;
  /** The worker script (default: rank-worker.js of the built package). */
  readonly workerScript?: string;
}

/** The built worker script: beside this module in dist/, or dist/src/engine/ when running from the sources (tests). */
export function defaultWorkerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, "rank-worker.js");
  if (existsSync(beside)) return beside;
  const built = join(here, "..", "..", "dist", "src", "engine", "rank-worker.js");
  if (existsSync(built)) return built;
  throw new RankGroupError(`the rank worker is not built (looked for ${beside} and ${built}); run \`npm run build\``);
}

interface Pending<T> {
  readonly resolve: (v: T) => void;
  readonly reject: (e: Error) => void;
}

/** One rank's child process and what it was last asked to do (for error messages). */
interface Rank {
  readonly rank: number;
  readonly child: ChildProcess;
  doing: string;
  stderr: string;
}

export class RankGroup {
  private failure: RankGroupError | undefined;
  private readonly waiters = new Set<Pending<never>>();
  private readonly onMessage = new Map<string, (rank: number, m: WorkerMessage) => void>();
  private nextStep = 0;
  private closing = false;

  private constructor(
    private readonly ranks: readonly Rank[],
    private readonly options: RankGroupOptions,
    /** What each rank reported once prepared. */
    readonly infos: RankInfo[],
  ) {}

  get size(): number {
    return this.ranks.length;
  }

  /** Process ids of the ranks, in rank order. */
  get pids(): number[] {
    return this.ranks.map((r) => r.child.pid!);
  }

  /** Starts every rank and waits until each is ready (prepared, communicator joined, weights loaded). */
  static async start(options: RankGroupOptions): Promise<RankGroup> {
    const n = options.ranks;
    if (!(Number.isInteger(n) && n >= 1)) throw new RankGroupError(`a process group needs a positive number of ranks, got ${n}`);
    const script = options.workerScript ?? defaultWorkerScript();
    const ranks: Rank[] = Array.from({ length: n }, (_, rank) => {
      const child = fork(script, [String(rank)], { serialization: "advanced", stdio: ["ignore", "inherit", "pipe", "ipc"], env: { ...process.env, NCCL_NVLS_ENABLE: process.env["NCCL_NVLS_ENABLE"] ?? "0" } });
      const r: Rank = { rank, child, doing: "starting", stderr: "" };
      child.stderr?.on("data", (chunk: Buffer) => {
        r.stderr = (r.stderr + chunk.toString()).slice(-4000);
        process.stderr.write(chunk);
      });
      return r;
    });
    const group = new RankGroup(ranks, options, []);
    for (const r of ranks) {
      r.child.on("message", (m: WorkerMessage) => group.dispatch(r.rank, m));
      r.child.on("exit", (code, signal) => group.exited(r, code, signal));
      r.child.on("error", (err) => group.fail(new RankGroupError(`rank ${r.rank} (pid ${r.child.pid}) failed while ${r.doing}: ${err.message}`)));
    }
    try {
      const startTimeout = options.startTimeoutMs ?? 30 * 60_000;
      const prepared = await group.all("prepared", (r) => group.send(r, { type: "init", rank: r.rank, ranks: n, spec: options.spec }, "preparing"), startTimeout);
      group.infos.push(...prepared.map((m) => (m as Extract<WorkerMessage, { type: "prepared" }>).info));
      let ncclId: Uint8Array | undefined;
      if (options.spec.kind === "plan") {
        const [idMessage] = await group.some([0], "nccl-id", (r) => group.send(r, { type: "nccl-id" }, "making the NCCL unique id"), startTimeout);
        ncclId = (idMessage as Extract<WorkerMessage, { type: "nccl-id" }>).id;
      }
      const loadSymbols = options.chooseLoadSymbols?.(group.infos);
      await group.all("ready", (r) => group.send(r, { type: "start", ...(ncclId ? { ncclId } : {}), ...(loadSymbols ? { loadSymbols } : {}) }, "joining the group and loading its weights"), startTimeout);
      for (const r of ranks) r.doing = "idle";
      return group;
    } catch (err) {
      group.fail(err instanceof RankGroupError ? err : new RankGroupError(err instanceof Error ? err.message : String(err)));
      throw group.failure!;
    }
  }

  /**
   * One step on every rank: the same inputs to each; returns rank 0's tokens (every rank samples the same: a rank
   * that disagrees is an error) and the requested logit rows, joined from every rank's vocabulary slice.
   */
  async step(inputs: Readonly<Record<string, HostTensor>>, logitRows: readonly number[] = []): Promise<{ tokens: Int32Array; logits: Map<number, Float64Array> }> {
    if (this.failure) throw this.failure;
    const id = this.nextStep++;
    const collectives = new Map<number, { operands: (HostTensor | undefined)[]; arrived: number; timer: NodeJS.Timeout }>();
    const collectiveTimeout = this.options.collectiveTimeoutMs ?? 60_000;
    // CPU ranks: every rank's operand of a collective, combined here once all have arrived
    this.onMessage.set("collective", (rank, m) => {
      if (m.type !== "collective" || m.step !== id) return;
      let c = collectives.get(m.seq);
      if (!c) {
        const timer = setTimeout(() => {
          const missing = c!.operands.flatMap((o, r) => (o ? [] : [r]));
          this.fail(new RankGroupError(`collective ${m.op} #${m.seq} of step ${id} timed out after ${collectiveTimeout} ms: rank${missing.length > 1 ? "s" : ""} ${missing.join(", ")} did not reach it`));
        }, collectiveTimeout);
        collectives.set(m.seq, (c = { operands: this.ranks.map(() => undefined), arrived: 0, timer }));
      }
      if (c.operands[rank]) return this.fail(new RankGroupError(`rank ${rank} reached collective #${m.seq} of step ${id} twice`));
      c.operands[rank] = m.operand;
      this.ranks[rank]!.doing = `waiting in ${m.op} #${m.seq} of step ${id}`;
      if (++c.arrived < this.ranks.length) return;
      clearTimeout(c.timer);
      collectives.delete(m.seq);
      let results: HostTensor[];
      try {
        results = combineCollective({ op: m.op, attrs: { ranks: m.ranks, seq: m.seq }, dtype: m.dtype }, c.operands as HostTensor[]);
      } catch (err) {
        return this.fail(new RankGroupError(`step ${id}: ${err instanceof Error ? err.message : String(err)}`));
      }
      this.ranks.forEach((r, i) => this.send(r, { type: "collective-result", step: id, seq: m.seq, result: results[i]! }, `computing step ${id}`));
    });
    try {
      const done = (await this.all("step-done", (r) => this.send(r, { type: "step", id, inputs, logitRows }, `computing step ${id}`), this.options.stepTimeoutMs ?? 120_000, `step ${id}`)) as Extract<WorkerMessage, { type: "step-done" }>[];
      const tokens = done[0]!.tokens;
      done.forEach((d, r) => {
        if (d.tokens.length !== tokens.length || d.tokens.some((t, i) => t !== tokens[i])) this.fail(new RankGroupError(`step ${id}: rank ${r} sampled ${Array.from(d.tokens).join(",")} but rank 0 ${Array.from(tokens).join(",")}`));
      });
      if (this.failure) throw this.failure;
      const split = this.infos[0]?.splitLogits;
      const logits = new Map<number, Float64Array>();
      for (const row of logitRows) {
        const slices = done.map((d) => d.logits.find((l) => l.row === row)?.data ?? new Float64Array(0));
        logits.set(row, split ? joinSplitRow(split, slices) : slices[0]!);
      }
      for (const r of this.ranks) r.doing = "idle";
      return { tokens, logits };
    } finally {
      for (const c of collectives.values()) clearTimeout(c.timer);
      this.onMessage.delete("collective");
    }
  }

  /** Asks every rank to exit, and kills those that do not within `graceMs`. */
  async close(graceMs = 10_000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const exits = this.ranks.map((r) => (r.child.exitCode !== null || r.child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => r.child.once("exit", () => resolve()))));
    for (const r of this.ranks) {
      if (r.child.connected) r.child.send({ type: "close" } satisfies ParentMessage, () => {});
    }
    const timer = setTimeout(() => this.killAll(), graceMs);
    await Promise.all(exits);
    clearTimeout(timer);
    this.failure ??= new RankGroupError("the process group is closed");
  }

  private killAll(): void {
    for (const r of this.ranks) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
  }

  /** Ends the group with `err`: every pending call rejects, every rank is killed. The first failure is the one reported. */
  private fail(err: RankGroupError): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
    this.killAll();
  }

  private exited(r: Rank, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.closing) return;
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const doing = r.doing;
    const tail = () => r.stderr.trim().split("\n").slice(-3).join(" | ");
    // an error the rank sent before exiting may still be on its way: it says more than the exit, so let it arrive first
    setTimeout(() => this.fail(new RankGroupError(`rank ${r.rank} (pid ${r.child.pid}) ${how} while ${doing}; the process group is closed${tail() ? ` (its last output: ${tail()})` : ""}`)), code === 0 || signal ? 0 : 100);
  }

  private send(r: Rank, m: ParentMessage, doing: string): void {
    r.doing = doing;
    if (!r.child.connected) return; // its exit reports it
    r.child.send(m, (err) => {
      if (err) this.fail(new RankGroupError(`rank ${r.rank} (pid ${r.child.pid}) could not be sent ${m.type} while ${r.doing}: ${err.message}`));
    });
  }

  private dispatch(rank: number, m: WorkerMessage): void {
    if (m.type === "error") return this.fail(new RankGroupError(`rank ${rank} (pid ${this.ranks[rank]!.child.pid}) failed while ${this.ranks[rank]!.doing}: ${m.message}`));
    if (m.type === "progress") {
      if (rank === 0) this.options.onProgress?.(m.message);
      return;
    }
    this.onMessage.get(m.type)?.(rank, m);
  }

  /** Sends with `send` to every rank and waits for a `type` message from each. */
  private all(type: WorkerMessage["type"], send: (r: Rank) => void, timeoutMs: number, what?: string): Promise<WorkerMessage[]> {
    return this.some(this.ranks.map((r) => r.rank), type, send, timeoutMs, what);
  }

  private some(which: readonly number[], type: WorkerMessage["type"], send: (r: Rank) => void, timeoutMs: number, what?: string): Promise<WorkerMessage[]> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<WorkerMessage[]>((resolve, reject) => {
      const got = new Map<number, WorkerMessage>();
      const waiter: Pending<never> = { resolve: () => {}, reject: (e) => finish(e) };
      const timer = setTimeout(() => {
        const late = which.filter((r) => !got.has(r));
        this.fail(new RankGroupError(`rank${late.length > 1 ? "s" : ""} ${late.join(", ")} did not finish ${what ?? this.ranks[late[0]!]!.doing} within ${timeoutMs} ms (${late.map((r) => `rank ${r}: ${this.ranks[r]!.doing}`).join("; ")}); the process group is closed`));
      }, timeoutMs);
      const finish = (err?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        this.onMessage.delete(type);
        if (err) reject(err);
        else resolve(which.map((r) => got.get(r)!));
      };
      this.waiters.add(waiter);
      this.onMessage.set(type, (rank, m) => {
        if (!which.includes(rank) || got.has(rank)) return;
        got.set(rank, m);
        if (got.size === which.length) finish();
      });
      for (const r of which) send(this.ranks[r]!);
    });
  }
}

/** The engine's backend over a process group: each step runs on every rank; logits rows come with the step. */
export function rankGroupBackend(group: RankGroup, device: "cuda" | "cpu"): StepBackend {
  return {
    device,
    ranks: group.size,
    async step(inputs, options) {
      // the ranks get host tensors (the wire format the workers read); the copy also outlives the engine's arrays
      const { tokens, logits } = await group.step(stepInputsAsHost(inputs), options?.logitRows ?? []);
      return {
        tokens,
        logits: (row) => {
          const l = logits.get(row);
          if (!l) throw new Error(`the logits of row ${row} were not fetched with the step (StepOptions.logitRows)`);
          return l;
        },
      };
    },
    dispose: () => group.close(),
  };
}
