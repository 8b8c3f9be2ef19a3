// A checkpoint's tensors as the parameters of a graph, on the host: names are the checkpoint's (the
// gpt-oss model uses Hugging Face names), float tensors are converted to each parameter's dtype
// (rounded as a store into that dtype would), and MXFP4 blocks and scales (U8) pass through unchanged
// as fp4e2m1x2 / e8m0. Used by the CPU reference path and for checkpoints small enough to stage on the
// host; every mismatch is reported with the tensor and file before anything is converted.

import type { Graph } from "../ir/graph.js";
import { type HostTensor, hostTensor } from "../ir/host-tensor.js";
import type { DType } from "../ir/dtype.js";
import type { QuantDesc } from "../ir/graph.js";
import { evalShape, formatShape, type Shape, type SymbolBounds } from "../ir/shape.js";
import { type Checkpoint, openCheckpoint } from "./checkpoint.js";

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
}

/** Every problem between a checkpoint and parameters (shapes evaluated at `symbols`); empty when they fit. */
export function paramProblems(params: readonly ExpectedParam[], symbols: SymbolBounds, checkpoint: Checkpoint): string[] {
  const problems: string[] = [];
  for (const p of params) {
    const info = checkpoint.tensors.get(p.name);
    const expected = evalShape(p.shape, symbols);
    if (!info) {
      problems.push(`tensor ${p.name} (${p.dtype}${formatShape(expected)}) is missing`);
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

/** Reads every parameter of `graph` from an open checkpoint. */
export async function readParams(graph: Graph, checkpoint: Checkpoint): Promise<Record<string, HostTensor>> {
  const problems = paramProblems(graph.params, graph.symbols, checkpoint);
  if (problems.length) throw new ParamLoadError(`${checkpoint.location} does not fit model ${graph.name}:\n  ${problems.join("\n  ")}`);
  const params: Record<string, HostTensor> = {};
  for (const p of graph.params) {
    const shape = evalShape(p.shape, graph.symbols);
    if (p.dtype === "fp4e2m1x2" || p.dtype === "e8m0") {
      params[p.name] = { dtype: p.dtype, shape, data: Float64Array.from(await checkpoint.read(p.name)) };
    } else {
      params[p.name] = hostTensor(p.dtype, shape, await checkpoint.readFloat32(p.name));
    }
  }
  return params;
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
