// A checkpoint's tensors as the parameters of a graph, on the host: names are the checkpoint's (the
// gpt-oss model uses Hugging Face names), float tensors are converted to each parameter's dtype
// (rounded as a store into that dtype would), and MXFP4 blocks and scales (U8) pass through unchanged
// as fp4e2m1x2 / e8m0; a dense expert weight missing from an MXFP4 checkpoint is dequantized from its
// blocks and scales (dequantize-experts.ts). Used by the CPU reference path and for checkpoints small enough to stage on the
// host; every mismatch is reported with the tensor and file before anything is converted.

import type { Graph } from "../ir/graph.js";
import { type HostTensor, hostTensor } from "../ir/host-tensor.js";
import type { DType } from "../ir/dtype.js";
import type { ParamSlice, QuantDesc } from "../ir/graph.js";
import { evalShape, formatShape, type Shape, type SymbolBounds } from "../ir/shape.js";
import { type Checkpoint, openCheckpoint } from "./checkpoint.js";
import { packedExperts, readDequantizedExpert } from "./dequantize-experts.js";
import { SAFETENSORS_DTYPE_BYTES, decodeFloats } from "./safetensors.js";
import { readSlice } from "./slice-read.js";
import { sliceTensor } from "../ir/host-tensor.js";

const FLOAT_DTYPES = new Set(["F32", "BF16", "F16", "F64"]);

export class ParamLoadError extends Error {
  override readonly name = "ParamLoadError";
}

/** A parameter as a checkpoint must hold it: a graph's declaration or a plan's slot, shape at the bounds. */
export interface ExpectedParam {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly quant?: QuantDesc | undefined;
  /** A rank's slice of the tensor (a sharded model): the checkpoint holds the whole tensor, of `slice.full`. */
  readonly slice?: ParamSlice | undefined;
}

/** Every problem between a checkpoint and parameters (shapes evaluated at `symbols`); empty when they fit. */
export function paramProblems(params: readonly ExpectedParam[], symbols: SymbolBounds, checkpoint: Checkpoint): string[] {
  const problems: string[] = [];
  for (const p of params) {
    const info = checkpoint.tensors.get(p.name);
    const expected = p.slice ? [...p.slice.full] : evalShape(p.shape, symbols);
    if (!info) {
      // a dense expert weight may come from the checkpoint's MXFP4 blocks and scales (dequantized on load)
      const accounted = p.dtype !== "fp4e2m1x2" && p.dtype !== "e8m0" && packedOrProblem(checkpoint, p.name, expected, problems);
      if (!accounted) problems.push(`tensor ${p.name} (${p.dtype}${formatShape(expected)}) is missing`);
      continue;
    }
    const where = `${p.name} in ${info.file}`;
    if (formatShape(info.shape) !== formatShape(expected)) problems.push(`${where} is ${formatShape(info.shape)}, the model needs ${formatShape(expected)}`);
    const packed = p.dtype === "fp4e2m1x2" || p.dtype === "e8m0";
    if (packed && info.dtype !== "U8") problems.push(`${where} is ${info.dtype}; MXFP4 ${p.quant?.role ?? "data"} must be U8`);
    if (!packed && !FLOAT_DTYPES.has(info.dtype)) problems.push(`${where} is ${info.dtype}; a ${p.dtype} parameter needs a float tensor`);
  }
  return problems;
}

/** Whether the checkpoint holds a dense parameter in packed form (true too when that form is wrong: the mismatch is added to `problems`). */
function packedOrProblem(checkpoint: Checkpoint, name: string, expected: readonly number[], problems: string[]): boolean {
  try {
    return packedExperts(checkpoint, name, expected) !== undefined;
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return true;
  }
}

/** Reads every parameter of `graph` from an open checkpoint. */
export async function readParams(graph: Graph, checkpoint: Checkpoint): Promise<Record<string, HostTensor>> {
  const problems = paramProblems(graph.params, graph.symbols, checkpoint);
  if (problems.length) throw new ParamLoadError(`${checkpoint.location} does not fit model ${graph.name}:\n  ${problems.join("\n  ")}`);
  const params: Record<string, HostTensor> = {};
  for (const p of graph.params) {
    const shape = evalShape(p.shape, graph.symbols);
    if (p.slice) {
      params[p.name] = await readSliceParam(checkpoint, p, p.slice, shape);
      continue;
    }
    if (p.dtype === "fp4e2m1x2" || p.dtype === "e8m0") {
      params[p.name] = { dtype: p.dtype, shape, data: Float64Array.from(await checkpoint.read(p.name)) };
    } else if (!checkpoint.has(p.name)) {
      const packed = packedExperts(checkpoint, p.name, shape)!;
      const dense = new Float32Array(packed.experts * packed.rows * packed.cols);
      for (let e = 0; e < packed.experts; e++) dense.set(await readDequantizedExpert(checkpoint, packed, e), e * packed.rows * packed.cols);
      params[p.name] = hostTensor(p.dtype, shape, dense);
    } else {
      params[p.name] = hostTensor(p.dtype, shape, await checkpoint.readFloat32(p.name));
    }
  }
  return params;
}

/** A rank's slice of a checkpoint tensor: only its bytes are read (a dense expert weight held packed is dequantized whole, then sliced). */
async function readSliceParam(checkpoint: Checkpoint, p: ExpectedParam, slice: ParamSlice, shape: readonly number[]): Promise<HostTensor> {
  if (!checkpoint.has(p.name)) {
    const packed = packedExperts(checkpoint, p.name, slice.full)!;
    const dense = new Float32Array(packed.experts * packed.rows * packed.cols);
    for (let e = 0; e < packed.experts; e++) dense.set(await readDequantizedExpert(checkpoint, packed, e), e * packed.rows * packed.cols);
    return sliceTensor(hostTensor(p.dtype, slice.full, dense), slice.axes);
  }
  const info = checkpoint.tensor(p.name);
  const bytes = await readSlice(checkpoint, p.name, slice, SAFETENSORS_DTYPE_BYTES[info.dtype]);
  if (p.dtype === "fp4e2m1x2" || p.dtype === "e8m0") return { dtype: p.dtype, shape: [...shape], data: Float64Array.from(bytes) };
  return hostTensor(p.dtype, shape, decodeFloats(info.dtype, bytes));
}

/** Opens the checkpoint directory and reads every parameter of `graph` from it. */
export async function loadParams(dir: string, graph: Graph): Promise<Record<string, HostTensor>> {
  const checkpoint = await openCheckpoint(dir);
  try {
    return await readParams(graph, checkpoint);
  } finally {
    await checkpoint.close();
  }
}
