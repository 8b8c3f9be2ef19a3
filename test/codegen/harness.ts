// Runs the kernels code generation emits for one IR node on a GPU, against the reference interpreter.
// Inputs are uploaded into one arena, the output is poisoned (all bytes 0xFF: NaN for floats) before
// launch, and the result is read back as a HostTensor. Compile-only checks go through NVRTC for CI.

import { expect } from "vitest";
import type { NodeKernels } from "../../src/lower/kernel.js";
import { evalSize } from "../../src/lower/kernel.js";
import { dtypeBytes } from "../../src/ir/dtype.js";
import { type HostTensor, tensorFromBytes, tensorToBytes } from "../../src/ir/host-tensor.js";
import type { Node } from "../../src/ir/node.js";
import { evaluateNodes } from "../../src/ir/interpret.js";
import { type SymbolValues, evalShape, numElements } from "../../src/ir/shape.js";
import { Arena, compileKernels, CudaGraph, Device, type KernelArg, loadKernels, type Stream } from "../../runtime/index.js";

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Compiles every kernel of `kernels` with NVRTC (no device needed); throws NVRTC's log on failure. */
export async function compileNodeKernels(kernels: readonly NodeKernels[], arch = "sm_80"): Promise<number> {
  const sources = kernels.flatMap((k) => k.launches.map((l) => ({ name: l.kernel.name, source: l.kernel.source, entry: l.kernel.entry })));
  const result = await compileKernels(sources, { arch, cache: false });
  return result.kernels.length;
}

/** Offsets of buffers laid out back to back at 256-byte alignment, and the total size. */
export function layoutBuffers(sizes: readonly number[]): { offsets: number[]; total: number } {
  const offsets: number[] = [];
  let total = 0;
  for (const s of sizes) {
    offsets.push(total);
    total += align(Math.max(s, 1));
  }
  return { offsets, total };
}

export interface RawRunOptions {
  /** Also time each launch: this many launches captured into one CUDA graph and replayed (0: no timing). */
  readonly timeIterations?: number;
}

/**
 * Runs `kernels` once on GPU 0 with operand bytes `inputs` (the node's operand order) and an output of
 * `outBytes`, poisoned with 0xFF first, and returns the output bytes. When asked, also returns each
 * launch's GPU time in ms, from graph replays so Node's per-launch host cost does not hide short kernels.
 */
export async function runRawKernels(kernels: NodeKernels, inputs: readonly Uint8Array[], outBytes: number, symbols: SymbolValues, opts: RawRunOptions = {}): Promise<{ out: Uint8Array; msPerLaunch: number[] }> {
  const device = Device.open(0);
  const loaded = await loadKernels(device, kernels.launches.map((l) => ({ name: l.kernel.name, source: l.kernel.source, entry: l.kernel.entry })), { cache: false });
  const scratch = kernels.scratchBytes.map((s) => evalSize(s, symbols));
  const { offsets, total } = layoutBuffers([...inputs.map((b) => b.byteLength), outBytes, ...scratch]);
  const arena = Arena.allocate(device, total);
  try {
    inputs.forEach((b, i) => b.byteLength > 0 && arena.view(offsets[i]!, b.byteLength).copyFromHost(b));
    const outView = arena.view(offsets[inputs.length]!, Math.max(outBytes, 0));
    if (outBytes > 0) outView.fill(0xff);
    scratch.forEach((s, i) => s > 0 && arena.view(offsets[inputs.length + 1 + i]!, s).fill(0xff));
    const pointer = (offset: number): KernelArg => ({ ptr: arena.pointer + BigInt(offset) });
    const launches = kernels.launches.map((launch, li) => {
      const args: KernelArg[] = launch.args.map((a) => {
        switch (a.kind) {
          case "input": return pointer(offsets[a.index]!);
          case "output": return pointer(offsets[inputs.length]!);
          case "scratch": return pointer(offsets[inputs.length + 1 + a.index]!);
          case "i32": return { i32: evalSize(a.value, symbols) };
          case "f32": return { f32: a.value };
          case "sibling": throw new Error("a sibling pair runs through the scheduler; map its sibling binding to output or scratch to run it here");
        }
      });
      const grid = launch.grid.map((g) => evalSize(g, symbols)) as [number, number, number];
      const kernel = loaded.kernels[li]!;
      if (launch.sharedBytes > 48 * 1024) kernel.setMaxDynamicSharedBytes(launch.sharedBytes);
      const empty = grid.some((g) => g === 0); // nothing to do for an empty tensor
      return (stream?: Stream) => empty || kernel.launch({ grid, block: launch.block, sharedBytes: launch.sharedBytes, args, ...(stream ? { stream } : {}) });
    });
    launches.forEach((l) => l());
    device.synchronize();
    const out = new Uint8Array(outBytes);
    if (outBytes > 0) outView.copyToHost(out);
    const iterations = opts.timeIterations ?? 0;
    return { out, msPerLaunch: iterations > 0 ? timeOnGraphs(device, launches, iterations) : [] };
  } finally {
    arena.free();
  }
}

/** GPU ms per launch of each of `launches`: `iterations` of it captured into one CUDA graph, replayed after a warm-up replay. */
export function timeOnGraphs(device: Device, launches: readonly ((stream: Stream) => void)[], iterations: number): number[] {
  const stream = device.createStream();
  const [start, stop] = [device.createEvent(), device.createEvent()];
  try {
    return launches.map((l) => {
      const graph = CudaGraph.capture(stream, () => {
        for (let i = 0; i < iterations; i++) l(stream);
      });
      try {
        graph.launch();
        stream.synchronize();
        start.record(stream);
        graph.launch();
        stop.record(stream);
        stop.synchronize();
        return stop.elapsedMsSince(start) / iterations;
      } finally {
        graph.dispose();
      }
    });
  } finally {
    start.dispose();
    stop.dispose();
    stream.dispose();
  }
}

/** Launches `kernels` for `node` on GPU 0 with `inputs` (in the node's operand order) and returns its result. */
export async function runNodeKernels(node: Node, kernels: NodeKernels, inputs: readonly HostTensor[], symbols: SymbolValues): Promise<HostTensor> {
  const outShape = evalShape(node.shape, symbols);
  const { out } = await runRawKernels(kernels, inputs.map(tensorToBytes), numElements(outShape) * dtypeBytes(node.dtype), symbols);
  return tensorFromBytes(node.dtype, outShape, out);
}

/** The interpreter's value of `node` given values of its leaves (params and inputs by name). */
export function interpretNode(node: Node, leaves: { inputs?: Record<string, HostTensor>; params?: Record<string, HostTensor> }, symbols: SymbolValues): HostTensor {
  return evaluateNodes([node], { symbols, inputs: leaves.inputs ?? {}, params: leaves.params ?? {} })[0]!;
}

/**
 * ‖gpu − ref‖∞ / max(‖ref‖∞, tiny) ≤ tol, no NaN where the reference has none (poisoned output
 * that was never written shows up as NaN), and identical NaN positions.
 */
export function expectClose(gpu: HostTensor, ref: HostTensor, tol: number, what = "output"): void {
  expect(gpu.shape).toEqual(ref.shape);
  let maxErr = 0;
  let maxRef = 0;
  let badNan = -1;
  for (let i = 0; i < ref.data.length; i++) {
    const r = ref.data[i]!;
    const g = gpu.data[i]!;
    if (Number.isNaN(r) !== Number.isNaN(g)) {
      badNan = i;
      break;
    }
    if (Number.isNaN(r)) continue;
    if (Number.isFinite(r)) maxRef = Math.max(maxRef, Math.abs(r));
    if (r === g) continue; // also covers matching infinities
    maxErr = Math.max(maxErr, Math.abs(g - r));
  }
  expect(badNan, `${what}: element ${badNan} is ${gpu.data[badNan]} on the GPU but ${ref.data[badNan]} in the reference`).toBe(-1);
  const rel = maxErr / Math.max(maxRef, 1e-30);
  expect(rel, `${what}: max relative error ${rel}`).toBeLessThanOrEqual(tol);
}
