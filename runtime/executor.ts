// The executor: runs a Plan on one device out of one arena.
//   load    — kernels from the cache (compiling misses), one cuMemAlloc: the plan's arena plus the state sized at
//             load (a KV pool: `loadSymbols` gives its load-time symbols), model state zeroed
//   setParams — weights copied straight into their offsets
//   run     — symbol values bound from the inputs' shapes (and the load-time ones), the smallest shape bucket
//             that holds them chosen, inputs copied into its slots, launches replayed with their sizes evaluated
//             (or, for entries given to replayAsGraph, one CUDA graph per bucket and set of symbol values,
//             captured on first use and kept in a bounded cache), outputs copied back
// A rank of a sharded model also runs the plan's collectives between its launches, with the NCCL communicator it
// was loaded with, on the launches' stream (so a CUDA graph captures them with the kernels).
// No allocation happens after load: every tensor lives at the offset the memory planner (or load) gave it.

import type { Plan, PlanBucket, PlanCollective, PlanEntry } from "../src/lower/plan.js";
import { evalSize, waitsForGridDependencies } from "../src/lower/kernel.js";
import { type HostTensor, tensorFromBytes, tensorToBytes } from "../src/ir/host-tensor.js";
import { type DType, dtypeBytes } from "../src/ir/dtype.js";
import { bindShape, evalShape, formatShape, numElements } from "../src/ir/shape.js";
import { ARENA_ALIGNMENT, Arena } from "./arena.js";
import type { CudaEvent, CudaGraph, Device, Kernel, KernelArg, PinnedBuffer, Stream } from "./cuda.js";
import { loadKernels } from "./kernel-cache.js";
import { parseArch } from "./nvrtc.js";
import type { NcclComm } from "./nccl.js";
import { type InputTensor, InputStaging, OutputFetch } from "./staging.js";

export interface ExecutorOptions {
  /** Kernel cache directory, or false for none. Default: the standard cache. */
  readonly cacheDir?: string | false;
  /** Values of the plan's load-time symbols (those in the shapes of state sized at load, e.g. a KV pool's rows). */
  readonly loadSymbols?: Readonly<Record<string, number>>;
  /** The communicator of this rank, for a plan with collectives (a rank of a sharded model). */
  readonly comm?: NcclComm;
  /**
   * Launch kernels with programmatic dependent launch where the device (compute capability 9.0+) and the kernel (it
   * waits for its predecessors first: waitsForGridDependencies) allow, so each kernel's launch overlaps the previous
   * one's tail. Default true, unless the environment sets TSGC_PDL=0 (to measure without it).
   */
  readonly programmaticLaunch?: boolean;
  /**
   * Buckets with a bound above these (e.g. { tokens: 64 }) launch without programmatic dependent launch. Measured on
   * an H200 it speeds steps of few tokens (launch gaps dominate) and slows wide ones (not profiled; a likely cause: a
   * kernel whose blocks become resident while the previous one drains fills the first SMs that free up, not every SM
   * evenly).
   */
  readonly programmaticUpTo?: Readonly<Record<string, number>>;
}

/** One input of a runAsync call taken from an output the call before fetched (RunOptions.feedback). */
export interface FeedBack {
  /** The input: row i of it is row rows[i] of the output. */
  readonly input: string;
  /** The output of the call before (named in its `fetch`). */
  readonly from: string;
  readonly rows: readonly number[];
}

export interface RunOptions {
  readonly feedback?: FeedBack;
}

/** What a runAsync call left: its device time and its outputs. */
export interface AsyncRun {
  /** Device time, ms: from the call's first copy in (or the end of the call it was queued behind) to its last copy out. */
  readonly deviceMs: number;
  /**
   * Rows [first, first + count) of output `name`: from pinned memory when the call fetched it (until the call after
   * next reuses its buffers), else from the device while no later call has been made.
   */
  read(name: string, first?: number, count?: number): HostTensor;
}

/** A set of runAsync's pinned buffers and the call using it. */
interface CallBuffers {
  readonly staging: InputStaging;
  readonly fetch: OutputFetch;
  /** The runAsync call that used these buffers last. */
  call: number;
  /** The end event of that call while its promise has not settled (its copies may still be running). */
  busyUntil: CudaEvent | undefined;
}

/** The collectives of a plan's buckets (a rank of a sharded model has some). */
export function planCollectives(plan: Plan): PlanCollective[] {
  return plan.entries.flatMap((e) => e.buckets.flatMap((b) => b.collectives ?? []));
}

/** CUDA graphs kept per executor (one per bucket and set of symbol values); the least recently used go first. */
export const MAX_CACHED_GRAPHS = 512;

const align = (n: number) => Math.ceil(n / ARENA_ALIGNMENT) * ARENA_ALIGNMENT;

/** The load-time symbols of a plan: those in the shapes of its state sized at load. */
export function planLoadSymbols(plan: Plan): string[] {
  return [...new Set(plan.states.filter((s) => s.atLoad).flatMap((s) => s.shape.filter((d): d is string => typeof d === "string")))];
}

/** Bytes of the state sized at load, for these load-time symbol values (each state rounded up to the arena alignment). */
export function loadSizedStateBytes(plan: Plan, loadSymbols: Readonly<Record<string, number>>): number {
  return plan.states.filter((s) => s.atLoad).reduce((sum, s) => sum + align(numElements(evalShape(s.shape, loadSymbols)) * dtypeBytes(s.dtype)), 0);
}

/** A tensor as rows along its first dim (a scalar: one row) and the bytes of each. */
function rowsOf(shape: readonly number[], dtype: DType): { readonly rows: number; readonly rowBytes: number } {
  const rows = shape[0] ?? 1;
  return { rows, rowBytes: (numElements(shape) / Math.max(rows, 1)) * dtypeBytes(dtype) };
}

/** Whether every bound of `bucket` named in `upTo` is at most its value there (replayAsGraph, programmaticUpTo). */
function bucketWithin(bucket: PlanBucket, upTo: Readonly<Record<string, number>>): boolean {
  return Object.entries(upTo).every(([name, most]) => (bucket.bounds[name] ?? 0) <= most);
}

/** Per kernel of `plan`: whether to launch it with programmatic dependent launch on `device` (ExecutorOptions.programmaticLaunch). */
function programmaticKernels(plan: Plan, device: Device, on: boolean): boolean[] {
  const supported = on && device.info.computeCapability.major >= 9;
  return plan.kernels.map((k) => supported && waitsForGridDependencies(k.source));
}

export class PlanExecutor {
  /** Entries replayed as CUDA graphs, each with the bounds past which a bucket launches kernel by kernel instead. */
  private readonly graphEntries = new Map<string, Readonly<Record<string, number>>>();
  private last: { readonly bucket: PlanBucket; readonly symbols: Readonly<Record<string, number>> } | undefined;
  private readonly graphs = new Map<string, CudaGraph>();
  private replayStream: Stream | undefined;
  /** The pinned buffer `stage` copies inputs from (runtime/staging.ts), made on first use. */
  private inputStaging: InputStaging | undefined;
  /** runAsync's pinned buffers, two sets used in turn so that a call can be queued while the one before runs. */
  private readonly callBuffers: CallBuffers[] = [];
  /** Pairs of CUDA events (start, end) for runAsync calls, reused. */
  private readonly freeEvents: [CudaEvent, CudaEvent][] = [];
  private readonly allEvents: CudaEvent[] = [];
  /** runAsync calls so far. */
  private calls = 0;
  /** The outputs the last call fetched (readOutput serves them from pinned memory); undefined after `stage`. */
  private lastFetch: OutputFetch | undefined;
  /** `stage` ran last: its caller may have launched on any stream, so runAsync waits for the whole device first. */
  private stagedForOtherStreams = false;

  private constructor(
    readonly plan: Plan,
    readonly device: Device,
    readonly arena: Arena,
    private readonly kernels: readonly Kernel[],
    /** How the kernels were obtained: cache hits and NVRTC compiles. */
    readonly kernelStats: { readonly hits: number; readonly misses: number },
    /** The load-time symbols' values. */
    readonly loadSymbols: Readonly<Record<string, number>>,
    /** Arena offset of each state (state sized at load sits after the planned region). */
    private readonly stateOffsets: readonly number[],
    private readonly comm: NcclComm | undefined,
    /** Per kernel: launched with programmatic dependent launch. */
    private programmatic: readonly boolean[],
    private readonly programmaticUpTo: Readonly<Record<string, number>>,
  ) {}

  /** Whether `bucket`'s launches use programmatic dependent launch (on, and its bounds within programmaticUpTo). */
  launchesProgrammatically(bucket: PlanBucket): boolean {
    return this.programmatic.some(Boolean) && bucketWithin(bucket, this.programmaticUpTo);
  }

  /** Kernels launched with programmatic dependent launch (0 when it is off or the device predates it). */
  get programmaticKernels(): number {
    return this.programmatic.filter(Boolean).length;
  }

  /**
   * Turns programmatic dependent launch on or off for later launches and graph captures (graphs captured before keep
   * theirs, so the graph cache is cleared); on only where the device and each kernel allow it.
   */
  setProgrammaticLaunch(on: boolean): void {
    this.programmatic = programmaticKernels(this.plan, this.device, on);
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
  }

  static async load(plan: Plan, device: Device, opts: ExecutorOptions = {}): Promise<PlanExecutor> {
    // a plan for the device's compute capability runs, with or without its architecture-specific features (sm_90, sm_90a)
    if (parseArch(plan.arch).capability !== parseArch(device.info.arch).capability) {
      throw new Error(`the plan was compiled for ${plan.arch} but device ${device.ordinal} is ${device.info.arch}; recompile with --arch ${device.info.arch}`);
    }
    const loadSymbols = { ...(opts.loadSymbols ?? {}) };
    for (const name of planLoadSymbols(plan)) {
      const value = loadSymbols[name];
      const bound = plan.symbols[name]!;
      if (value === undefined) throw new Error(`the plan sizes state by ${name} when it is loaded; give its value (loadSymbols.${name}, at most ${bound})`);
      if (!Number.isInteger(value) || value < 1 || value > bound) throw new Error(`load-time symbol ${name} = ${value} must be an integer in [1, ${bound}]`);
    }
    const collectives = planCollectives(plan);
    if (collectives.length > 0) {
      if (!opts.comm) throw new Error(`the plan is one rank of a sharded model (it runs ${collectives.length} collectives); load it with its NCCL communicator (ExecutorOptions.comm)`);
      const ranks = collectives[0]!.ranks;
      if (opts.comm.nranks !== ranks) throw new Error(`the plan is a rank of ${ranks} but the communicator has ${opts.comm.nranks} ranks`);
      if (opts.comm.device.ordinal !== device.ordinal) throw new Error(`the communicator is on device ${opts.comm.device.ordinal}, the plan is loaded on ${device.ordinal}`);
    }
    // state sized at load goes after the planned region, in declaration order
    let next = align(plan.arena.bytes);
    const stateOffsets = plan.states.map((s) => {
      if (!s.atLoad) return s.offset;
      const at = next;
      next += align(numElements(evalShape(s.shape, loadSymbols)) * dtypeBytes(s.dtype));
      return at;
    });
    const loaded = await loadKernels(
      device,
      plan.kernels.map((k) => ({ name: k.name, source: k.source, entry: k.entry })),
      { arch: plan.arch, ...(opts.cacheDir === undefined ? {} : { cache: opts.cacheDir }) },
    );
    for (const e of plan.entries) {
      for (const b of e.buckets) for (const l of b.launches) if (l.sharedBytes > 48 * 1024) loaded.kernels[l.kernel]!.setMaxDynamicSharedBytes(l.sharedBytes);
    }
    const arena = Arena.allocate(device, Math.max(next, 256));
    const programmatic = programmaticKernels(plan, device, opts.programmaticLaunch ?? process.env.TSGC_PDL !== "0");
    const exec = new PlanExecutor(plan, device, arena, loaded.kernels, { hits: loaded.compileResult.hits, misses: loaded.compileResult.misses }, loadSymbols, stateOffsets, opts.comm, programmatic, opts.programmaticUpTo ?? {});
    exec.resetState();
    return exec;
  }

  /** Arena offset and bytes of state `name`. */
  state(name: string): { readonly offset: number; readonly bytes: number } {
    const i = this.plan.states.findIndex((s) => s.name === name);
    if (i < 0) throw new Error(`the plan has no state "${name}"`);
    const s = this.plan.states[i]!;
    return { offset: this.stateOffsets[i]!, bytes: s.atLoad ? numElements(evalShape(s.shape, this.loadSymbols)) * dtypeBytes(s.dtype) : s.bytes };
  }

  /** Zeroes every piece of model state (the KV cache), as after load. */
  resetState(): void {
    for (const s of this.plan.states) {
      const { offset, bytes } = this.state(s.name);
      if (bytes > 0) this.arena.view(offset, bytes).fill(0);
    }
    this.device.stream.synchronize();
  }

  /** Copies every parameter into its place in the arena; each must match the plan's dtype and shape. */
  setParams(params: Readonly<Record<string, HostTensor>>): void {
    for (const p of this.plan.params) {
      const t = params[p.name];
      if (!t) throw new Error(`parameter ${p.name} (${p.dtype}${formatShape(p.shape)}) was not provided`);
      const expected = evalShape(p.shape, this.plan.symbols);
      if (t.dtype !== p.dtype || formatShape(t.shape) !== formatShape(expected)) {
        throw new Error(`parameter ${p.name} is ${t.dtype}${formatShape(t.shape)}, the plan needs ${p.dtype}${formatShape(expected)}`);
      }
      const bytes = tensorToBytes(t);
      if (bytes.byteLength > 0) this.arena.view(p.offset, bytes.byteLength).copyFromHost(bytes);
    }
  }

  /**
   * From now on, `run` replays this entry point as one CUDA graph per bucket and set of symbol values (captured on
   * first use) instead of launching kernel by kernel: steps pay ~1 µs per kernel instead of ~6. Buckets with a bound
   * above `upTo` (e.g. { tokens: 512 }) keep launching kernel by kernel: their steps run long enough for the launches
   * to overlap the GPU's work, and their many shapes would each cost a capture and a place in the graph cache.
   */
  replayAsGraph(entryName: string, upTo: Readonly<Record<string, number>> = {}): void {
    this.entry(entryName);
    this.graphEntries.set(entryName, upTo);
  }

  /** Whether a call of `entryName` in `bucket` replays a CUDA graph (replayAsGraph). */
  private replaysGraph(entryName: string, bucket: PlanBucket): boolean {
    const upTo = this.graphEntries.get(entryName);
    return upTo !== undefined && bucketWithin(bucket, upTo);
  }

  /** Symbol values of a call: bound from the inputs' shapes, plus the load-time symbols. */
  bindInputs(entry: PlanEntry, inputs: Readonly<Record<string, InputTensor>>): Record<string, number> {
    const symbols: Record<string, number> = { ...this.loadSymbols };
    // every bucket has the same inputs (their bounds differ): bind against the largest
    for (const slot of entry.buckets[entry.buckets.length - 1]!.inputs) {
      const t = inputs[slot.name];
      if (!t) throw new Error(`entry ${entry.name}: input ${slot.name} (${slot.dtype}${formatShape(slot.shape)}) was not provided`);
      if (t.dtype !== slot.dtype) throw new Error(`entry ${entry.name}: input ${slot.name} is ${t.dtype}, expected ${slot.dtype}`);
      const err = bindShape(slot.shape, t.shape, symbols);
      if (err) throw new Error(`entry ${entry.name}: input ${slot.name} ${formatShape(t.shape)}: ${err}`);
    }
    return symbols;
  }

  /** The smallest bucket of `entry` whose bounds hold every symbol value; an error names the value past its bound. */
  bucketFor(entry: PlanEntry, symbols: Readonly<Record<string, number>>): PlanBucket {
    for (const b of entry.buckets) if (Object.entries(symbols).every(([name, v]) => b.bounds[name] === undefined || v <= b.bounds[name]!)) return b;
    const top = entry.buckets[entry.buckets.length - 1]!.bounds;
    const over = Object.entries(symbols).find(([name, v]) => top[name] !== undefined && v > top[name]!)!;
    throw new Error(`entry ${entry.name}: ${over[0]} = ${over[1]} exceeds the bound ${top[over[0]]} the plan was compiled for`);
  }

  /**
   * Runs one entry point; returns its outputs at their actual sizes (only those named in `outputs`, when given:
   * the others stay on the device, where `readOutput` can fetch rows of them until the next run).
   */
  run(entryName: string, inputs: Readonly<Record<string, HostTensor>>, outputs?: readonly string[]): Record<string, HostTensor> {
    const entry = this.entry(entryName);
    const { bucket, symbols } = this.stage(entryName, inputs);
    if (this.replaysGraph(entryName, bucket)) this.replay(entry, bucket, symbols);
    else this.launchBucket(bucket, symbols);
    const result: Record<string, HostTensor> = {};
    for (const slot of bucket.outputs) if (!outputs || outputs.includes(slot.name)) result[slot.name] = this.readOutput(slot.name);
    return result;
  }

  /** Rows [first, first + count) (along the first dim; default all) of output `name` of the last run. */
  readOutput(name: string, first = 0, count?: number): HostTensor {
    if (!this.last) throw new Error(`no entry point has run yet, so there is no output ${name} to read`);
    return this.readRows(this.last, this.lastFetch, true, name, first, count);
  }

  /**
   * Rows of output `name` of the call that ran `last`: from `fetch` (its outputs fetched into pinned memory) when it
   * holds them, else from the device when `onDevice` (no later call has overwritten them).
   */
  private readRows(last: { readonly bucket: PlanBucket; readonly symbols: Readonly<Record<string, number>> }, fetch: OutputFetch | undefined, onDevice: boolean, name: string, first = 0, count?: number): HostTensor {
    const { bucket, symbols } = last;
    const slot = bucket.outputs.find((o) => o.name === name);
    if (!slot) throw new Error(`the last run has no output "${name}" (it has: ${bucket.outputs.map((o) => o.name).join(", ")})`);
    const shape = evalShape(slot.shape, symbols);
    const { rows, rowBytes } = rowsOf(shape, slot.dtype);
    const n = count ?? rows - first;
    if (!(Number.isInteger(first) && Number.isInteger(n) && first >= 0 && n >= 0 && first + n <= rows)) throw new RangeError(`rows [${first}, ${first + n}) of output ${name} are outside its ${rows} rows`);
    // fetched with the run (runAsync's `fetch`): already in pinned memory, no copy nor wait for the device
    const fetched = fetch?.read(name, first, n, rowBytes);
    if (fetched !== undefined) return fetched;
    if (!onDevice) throw new Error(`output ${name} was not fetched with its run, and a later run has overwritten it on the device`);
    const bytes = new Uint8Array(n * rowBytes);
    if (bytes.byteLength > 0) this.arena.view(slot.offset + first * rowBytes, bytes.byteLength).copyToHost(bytes);
    return tensorFromBytes(slot.dtype, shape.length === 0 ? [] : [n, ...shape.slice(1)], bytes);
  }

  /**
   * Binds a call's symbols, picks its bucket and copies its inputs into place, launching nothing (benchmarks then
   * capture `launch` themselves); `readOutput` reads this call's outputs afterwards.
   */
  stage(entryName: string, inputs: Readonly<Record<string, InputTensor>>): { readonly bucket: PlanBucket; readonly symbols: Readonly<Record<string, number>> } {
    const entry = this.entry(entryName);
    const symbols = this.bindInputs(entry, inputs);
    const bucket = this.bucketFor(entry, symbols);
    this.lastFetch = undefined;
    this.last = { bucket, symbols };
    // synchronous, as callers launch on streams of their own: all earlier work (on any stream) is done before the
    // inputs are overwritten, and the copies have landed when this returns
    this.device.synchronize();
    const stream = (this.replayStream ??= this.device.createStream());
    const staging = (this.inputStaging ??= new InputStaging(this.device));
    staging.pending = false;
    staging.stage(bucket.inputs, inputs, this.arena, stream);
    stream.synchronize();
    staging.pending = false;
    this.stagedForOtherStreams = true;
    return this.last;
  }

  /**
   * `run` without blocking the event loop: the inputs' copies (from pinned memory), the launches and the copies of
   * the outputs named in `fetch` (into pinned memory) are queued on one stream, in that order, and completion is
   * polled between other callbacks (setImmediate), so a server keeps answering while the GPU computes. The promise
   * settles once the call's work has finished; its result serves the fetched outputs from host memory.
   *
   * A call may be made while the one before it is still running (at most two in flight; each set of pinned buffers
   * is used by every other call): it is queued behind it, so the device goes from one to the next without waiting
   * for the host. `feedback` then takes one of its inputs from an output the call before fetched, on the device's
   * timeline (element i of the input is row rows[i] of that output; a decode step's token ids from the tokens the
   * step before sampled), so the host need not know them.
   */
  async runAsync(entryName: string, inputs: Readonly<Record<string, InputTensor>>, fetch: readonly string[] = [], options: RunOptions = {}): Promise<AsyncRun> {
    const entry = this.entry(entryName);
    const symbols = this.bindInputs(entry, inputs);
    const bucket = this.bucketFor(entry, symbols);
    const fetched = fetch.map((name) => {
      const slot = bucket.outputs.find((o) => o.name === name);
      if (!slot) throw new Error(`entry ${entryName} has no output "${name}" to fetch (it has: ${bucket.outputs.map((o) => o.name).join(", ")})`);
      return { name, dtype: slot.dtype, shape: evalShape(slot.shape, symbols), offset: slot.offset };
    });
    const call = this.calls;
    const buffers = this.buffersOf(call);
    const before = call > 0 ? this.buffersOf(call - 1) : undefined;
    const feed = options.feedback ? this.feedbackCopies(entryName, bucket, inputs, options.feedback, before, call) : [];
    const stream = (this.replayStream ??= this.device.createStream());
    if (this.stagedForOtherStreams) {
      // after `stage`, kernels reading the input slots may still run on another stream: the copies below would race them
      this.device.synchronize();
      this.stagedForOtherStreams = false;
    } else if (buffers.busyUntil !== undefined) {
      // the call two back, not awaited yet: its copies may still read the pinned buffers this call is about to refill
      buffers.busyUntil.synchronize();
    }
    buffers.staging.pending = false;
    const [started, ended] = this.freeEvents.pop() ?? this.newEvents();
    this.calls++;
    buffers.call = call;
    buffers.busyUntil = ended;
    buffers.fetch.clear();
    this.last = { bucket, symbols };
    this.lastFetch = buffers.fetch;
    try {
      // stream order makes this safe: the copies land before the launches that read them, after the last call's work
      started.record(stream);
      buffers.staging.stage(bucket.inputs, inputs, this.arena, stream);
      for (const c of feed) this.arena.view(c.arenaOffset, c.bytes).copyFromHostAsync(c.source, stream);
      if (this.replaysGraph(entryName, bucket)) this.graphFor(entry, bucket, symbols, stream).launch(stream);
      else this.launchBucket(bucket, symbols, stream);
      if (fetched.length > 0) buffers.fetch.queue(fetched, this.arena, stream);
      ended.record(stream);
      while (!ended.query()) await new Promise<void>((resolve) => setImmediate(resolve));
      ended.synchronize(); // surfaces an error of the finished work
      const ran = { bucket, symbols };
      return {
        // queued behind a running call, `started` completed when that call had: this is the call's own device time
        deviceMs: ended.elapsedMsSince(started),
        read: (name, first, count) => {
          if (buffers.call !== call) throw new Error(`the outputs of run ${call} are gone: run ${buffers.call} reused its buffers`);
          return this.readRows(ran, buffers.fetch, this.calls === call + 1, name, first, count);
        },
      };
    } finally {
      if (buffers.call === call) {
        buffers.busyUntil = undefined;
        buffers.staging.pending = false;
      }
      this.freeEvents.push([started, ended]);
      // the fed-back copies read pinned memory of the call before: held until this call's work is done, so a
      // later call that grows that pinned area cannot let it be collected while a queued copy may still read it
      feed.length = 0;
    }
  }

  /** The pinned buffers of runAsync call `call` (two sets, used in turn). */
  private buffersOf(call: number): CallBuffers {
    const i = call % 2;
    return (this.callBuffers[i] ??= { staging: new InputStaging(this.device), fetch: new OutputFetch(this.device), call: -1, busyUntil: undefined });
  }

  private newEvents(): [CudaEvent, CudaEvent] {
    const pair: [CudaEvent, CudaEvent] = [this.device.createEvent(), this.device.createEvent()];
    this.allEvents.push(...pair);
    return pair;
  }

  /** The copies that feed `fb.input` from what the call before (`before`, call − 1) fetched: one per run of consecutive rows. */
  private feedbackCopies(entryName: string, bucket: PlanBucket, inputs: Readonly<Record<string, InputTensor>>, fb: FeedBack, before: CallBuffers | undefined, call: number): { arenaOffset: number; bytes: number; source: PinnedBuffer }[] {
    const what = `entry ${entryName}: input ${fb.input} fed back from output ${fb.from}`;
    if (before === undefined || before.call !== call - 1) throw new Error(`${what}: no run came before this one`);
    const src = before.fetch.entry(fb.from);
    if (src === undefined) throw new Error(`${what}: the run before did not fetch ${fb.from}`);
    const slot = bucket.inputs.find((i) => i.name === fb.input);
    const t = inputs[fb.input];
    if (slot === undefined || t === undefined) throw new Error(`${what}: the entry has no input ${fb.input}`);
    if (t.dtype !== src.dtype) throw new Error(`${what}: the input is ${t.dtype}, the output ${src.dtype}`);
    const into = rowsOf(t.shape, t.dtype), from = rowsOf(src.shape, src.dtype);
    if (into.rowBytes !== from.rowBytes) throw new Error(`${what}: rows of ${formatShape(t.shape)} and ${formatShape(src.shape)} differ`);
    const rows = fb.rows;
    if (rows.length !== into.rows) throw new Error(`${what}: ${rows.length} rows given for an input of ${into.rows}`);
    const bad = rows.findIndex((r) => !(Number.isInteger(r) && r >= 0 && r < from.rows));
    if (bad >= 0) throw new Error(`${what}: row ${rows[bad]} (for row ${bad}) is outside the ${from.rows} rows the run before made`);
    const size = into.rowBytes;
    const copies: { arenaOffset: number; bytes: number; source: PinnedBuffer }[] = [];
    for (let i = 0; i < rows.length; ) {
      let n = 1;
      while (i + n < rows.length && rows[i + n] === rows[i]! + n) n++;
      copies.push({ arenaOffset: slot.offset + i * size, bytes: n * size, source: src.bytes.slice(rows[i]! * size, n * size) });
      i += n;
    }
    return copies;
  }

  private replay(entry: PlanEntry, bucket: PlanBucket, symbols: Readonly<Record<string, number>>): void {
    const stream = (this.replayStream ??= this.device.createStream());
    this.graphFor(entry, bucket, symbols, stream).launch(stream);
    stream.synchronize();
  }

  /** The CUDA graph of a bucket at these symbol values: from the cache (least recently used evicted), or captured now. */
  private graphFor(entry: PlanEntry, bucket: PlanBucket, symbols: Readonly<Record<string, number>>, stream: Stream): CudaGraph {
    const key = `${entry.name}\0${entry.buckets.indexOf(bucket)}\0${JSON.stringify(Object.entries(symbols).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    let graph = this.graphs.get(key);
    if (graph) {
      this.graphs.delete(key); // most recently used last
    } else {
      graph = stream.capture(() => this.launchBucket(bucket, symbols, stream));
      if (this.graphs.size >= MAX_CACHED_GRAPHS) {
        const [oldest, old] = this.graphs.entries().next().value as [string, CudaGraph];
        old.dispose();
        this.graphs.delete(oldest);
      }
    }
    this.graphs.set(key, graph);
    return graph;
  }

  /** Captured CUDA graphs now held (for stats and tests). */
  get cachedGraphs(): number {
    return this.graphs.size;
  }

  /**
   * Launches an entry point's kernels for the given symbol values (the load-time ones added), in the bucket that
   * holds them, on `stream` (default: the device's), with its inputs already in place. This is what a CUDA graph
   * captures for replay.
   */
  launch(entryName: string, symbols: Readonly<Record<string, number>>, stream?: Stream): void {
    const entry = this.entry(entryName);
    const all = { ...this.loadSymbols, ...symbols };
    this.launchBucket(this.bucketFor(entry, all), all, stream);
  }

  private launchBucket(bucket: PlanBucket, symbols: Readonly<Record<string, number>>, stream?: Stream): void {
    const collectives = bucket.collectives ?? [];
    const programmatic = this.launchesProgrammatically(bucket); // once per bucket, not per launch
    let next = 0;
    for (let i = 0; i <= bucket.launches.length; i++) {
      while (next < collectives.length && collectives[next]!.at === i) this.runCollective(collectives[next++]!, symbols, stream);
      if (i < bucket.launches.length) this.launchOne(bucket, i, symbols, stream, programmatic);
    }
  }

  /** One collective of the plan, on `stream` (default: the device's), with this rank's communicator. */
  private runCollective(c: PlanCollective, symbols: Readonly<Record<string, number>>, stream?: Stream): void {
    const comm = this.comm!;
    const count = evalSize(c.count, symbols);
    if (count === 0) return;
    const on = stream ?? this.device.stream;
    const view = (offset: number, elements: number) => this.arena.tensor(offset, c.dtype, elements);
    switch (c.op) {
      case "allReduce": return comm.allReduce(view(c.send.offset, count), view(c.recv.offset, count), "sum", on);
      case "allGather": return comm.allGather(view(c.send.offset, count), view(c.recv.offset, count * c.ranks), on);
      case "reduceScatter": return comm.reduceScatter(view(c.send.offset, count * c.ranks), view(c.recv.offset, count), "sum", on);
    }
  }

  /**
   * Launches one of a bucket's kernel launches (profiling replays them one by one; collectives are not launches); `symbols`
   * include the load-time ones; `bucketProgrammatic` is launchesProgrammatically(bucket), which launchBucket works out once.
   */
  launchOne(bucket: PlanBucket, index: number, symbols: Readonly<Record<string, number>>, stream?: Stream, bucketProgrammatic = this.launchesProgrammatically(bucket)): void {
    const l = bucket.launches[index]!;
    const grid = l.grid.map((g) => evalSize(g, symbols)) as [number, number, number];
    if (grid.some((g) => g === 0)) return; // an empty tensor: nothing to compute
    const base = this.arena.pointer;
    const args: KernelArg[] = l.args.map((a) => {
      switch (a.kind) {
        case "buffer": return { ptr: base + BigInt((a.state !== undefined ? this.stateOffsets[a.state]! : 0) + a.offset) };
        case "i32": return { i32: evalSize(a.value, symbols) };
        case "f32": return { f32: a.value };
      }
    });
    const programmatic = bucketProgrammatic && this.programmatic[l.kernel]!;
    this.kernels[l.kernel]!.launch({ grid, block: l.block, sharedBytes: l.sharedBytes, args, programmatic, ...(stream ? { stream } : {}) });
  }

  entry(name: string): PlanEntry {
    const entry = this.plan.entries.find((e) => e.name === name);
    if (!entry) throw new Error(`the plan has no entry point "${name}" (it has: ${this.plan.entries.map((e) => e.name).join(", ")})`);
    return entry;
  }

  dispose(): void {
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
    this.replayStream?.dispose();
    this.allEvents.forEach((e) => e.dispose());
    this.arena.free();
  }
}
