// The executor: runs a Plan on one device out of one arena.
//   load    — kernels from the cache (compiling misses), one cuMemAlloc of the plan's arena size,
//             model state (the KV cache) zeroed
//   setParams — weights copied straight into their offsets
//   run     — symbol values bound from the inputs' shapes, inputs copied in, launches replayed with
//             their sizes evaluated (or, for entries given to replayAsGraph, one CUDA graph per set of
//             symbol values, captured on first use), outputs copied back
// No allocation happens after load: every tensor lives at the offset the memory planner gave it.

import type { Plan } from "../src/codegen/plan.js";
import { evalSize } from "../src/codegen/kernel.js";
import { type HostTensor, tensorFromBytes, tensorToBytes } from "../src/ir/host-tensor.js";
import { dtypeBytes } from "../src/ir/dtype.js";
import { bindShape, evalShape, formatShape, numElements } from "../src/ir/shape.js";
import { Arena } from "./arena.js";
import type { CudaGraph, Device, Kernel, KernelArg, Stream } from "./cuda.js";
import { loadKernels } from "./kernel-cache.js";

export interface ExecutorOptions {
  /** Kernel cache directory, or false for none. Default: the standard cache. */
  readonly cacheDir?: string | false;
}

export class PlanExecutor {
  private readonly graphEntries = new Set<string>();
  private readonly graphs = new Map<string, CudaGraph>();
  private replayStream: Stream | undefined;

  private constructor(
    readonly plan: Plan,
    readonly device: Device,
    readonly arena: Arena,
    private readonly kernels: readonly Kernel[],
    /** How the kernels were obtained: cache hits and NVRTC compiles. */
    readonly kernelStats: { readonly hits: number; readonly misses: number },
  ) {}

  static async load(plan: Plan, device: Device, opts: ExecutorOptions = {}): Promise<PlanExecutor> {
    if (plan.arch !== device.info.arch) throw new Error(`the plan was compiled for ${plan.arch} but device ${device.ordinal} is ${device.info.arch}; recompile with --arch ${device.info.arch}`);
    const loaded = await loadKernels(
      device,
      plan.kernels.map((k) => ({ name: k.name, source: k.source, entry: k.entry })),
      opts.cacheDir === undefined ? {} : { cache: opts.cacheDir },
    );
    for (const e of plan.entries) {
      for (const l of e.launches) if (l.sharedBytes > 48 * 1024) loaded.kernels[l.kernel]!.setMaxDynamicSharedBytes(l.sharedBytes);
    }
    const arena = Arena.allocate(device, Math.max(plan.arena.bytes, 256));
    const exec = new PlanExecutor(plan, device, arena, loaded.kernels, { hits: loaded.compileResult.hits, misses: loaded.compileResult.misses });
    exec.resetState();
    return exec;
  }

  /** Zeroes every piece of model state (the KV cache), as after load. */
  resetState(): void {
    for (const st of this.plan.states) if (st.bytes > 0) this.arena.view(st.offset, st.bytes).fill(0);
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
   * From now on, `run` replays this entry point as one CUDA graph per set of symbol values (captured on first
   * use) instead of launching kernel by kernel: decode steps pay ~1 µs per kernel instead of ~6.
   */
  replayAsGraph(entryName: string): void {
    this.entry(entryName);
    this.graphEntries.add(entryName);
  }

  /** Runs one entry point; returns its outputs at their actual sizes. */
  run(entryName: string, inputs: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
    const entry = this.entry(entryName);
    const symbols: Record<string, number> = {};
    for (const slot of entry.inputs) {
      const t = inputs[slot.name];
      if (!t) throw new Error(`entry ${entryName}: input ${slot.name} (${slot.dtype}${formatShape(slot.shape)}) was not provided`);
      if (t.dtype !== slot.dtype) throw new Error(`entry ${entryName}: input ${slot.name} is ${t.dtype}, expected ${slot.dtype}`);
      const err = bindShape(slot.shape, t.shape, symbols);
      if (err) throw new Error(`entry ${entryName}: input ${slot.name} ${formatShape(t.shape)}: ${err}`);
    }
    for (const slot of entry.inputs) {
      const bytes = tensorToBytes(inputs[slot.name]!);
      if (bytes.byteLength > 0) this.arena.view(slot.offset, bytes.byteLength).copyFromHost(bytes);
    }
    if (this.graphEntries.has(entryName)) {
      const stream = (this.replayStream ??= this.device.createStream());
      const key = `${entryName}\0${JSON.stringify(Object.entries(symbols).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
      let graph = this.graphs.get(key);
      if (!graph) this.graphs.set(key, (graph = stream.capture(() => this.launch(entryName, symbols, stream))));
      graph.launch(stream);
      stream.synchronize();
    } else {
      this.launch(entryName, symbols);
    }
    const outputs: Record<string, HostTensor> = {};
    for (const slot of entry.outputs) {
      const shape = evalShape(slot.shape, symbols);
      const bytes = new Uint8Array(numElements(shape) * dtypeBytes(slot.dtype));
      if (bytes.byteLength > 0) this.arena.view(slot.offset, bytes.byteLength).copyToHost(bytes);
      outputs[slot.name] = tensorFromBytes(slot.dtype, shape, bytes);
    }
    return outputs;
  }

  /**
   * Launches an entry point's kernels for the given symbol values, on `stream` (default: the device's),
   * with its inputs already in place in the arena. This is what a CUDA graph captures for replay.
   */
  launch(entryName: string, symbols: Readonly<Record<string, number>>, stream?: Stream): void {
    const entry = this.entry(entryName);
    for (const [name, value] of Object.entries(symbols)) {
      const bound = this.plan.symbols[name];
      if (bound !== undefined && value > bound) throw new Error(`entry ${entryName}: ${name} = ${value} exceeds the bound ${bound} the plan was compiled for`);
    }
    for (let i = 0; i < entry.launches.length; i++) this.launchOne(entry, i, symbols, stream);
  }

  /** Launches one of an entry point's launches (profiling replays them one by one). */
  launchOne(entry: Plan["entries"][number], index: number, symbols: Readonly<Record<string, number>>, stream?: Stream): void {
    const l = entry.launches[index]!;
    const grid = l.grid.map((g) => evalSize(g, symbols)) as [number, number, number];
    if (grid.some((g) => g === 0)) return; // an empty tensor: nothing to compute
    const base = this.arena.pointer;
    const args: KernelArg[] = l.args.map((a) => {
      switch (a.kind) {
        case "buffer": return { ptr: base + BigInt(a.offset) };
        case "i32": return { i32: evalSize(a.value, symbols) };
        case "f32": return { f32: a.value };
      }
    });
    this.kernels[l.kernel]!.launch({ grid, block: l.block, sharedBytes: l.sharedBytes, args, ...(stream ? { stream } : {}) });
  }

  entry(name: string): Plan["entries"][number] {
    const entry = this.plan.entries.find((e) => e.name === name);
    if (!entry) throw new Error(`the plan has no entry point "${name}" (it has: ${this.plan.entries.map((e) => e.name).join(", ")})`);
    return entry;
  }

  dispose(): void {
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
    this.replayStream?.dispose();
    this.arena.free();
  }
}
