// Code generation for `sample` (templates/sample.cu.njk: shapes and thread mapping in its header).
//
//   logits [R, V] (f32, bf16 or f16), temperature f32 [R], topK i32 [R], topP f32 [R], uniform f32 [R] → i32 [R]
//
// One launch, a block of 1024 threads per row. Greedy rows read their logits once; rows with top-k and top-p
// bisect thresholds over the row, about 100 passes through L2.
// With candidate ids (the vocabulary-parallel form: logits [R, C'] of C' candidate tokens, ids i32 [R, C']), the row's
// candidates are sorted by token id in shared memory first (C' static, at most MAX_CANDIDATE_COLUMNS).

/** Most candidate columns a row of the candidate form holds (shared memory: 8 bytes each). */
export const MAX_CANDIDATE_COLUMNS = 4096;

import type { DType } from "../ir/dtype.js";
import type { NodeOf } from "../ir/node.js";
import { formatShape } from "../ir/shape.js";
import { loadExpr } from "./elementwise.js";
import { type ArgBinding, constSize, type NodeKernels, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

const FLOAT_DTYPES: readonly DType[] = ["f32", "bf16", "f16"];

export function emitSample(node: NodeOf<"sample">): NodeKernels {
  const logits = node.inputs[0]!;
  if (!FLOAT_DTYPES.includes(logits.dtype)) throw new Error(`tsgc codegen: sample (logits ${logits.dtype}${formatShape(logits.shape)}): logits must be f32, bf16 or f16`);
  const [rows, vocab] = logits.shape as [string | number, string | number];
  if (node.inputs.length === 6) return emitCandidateSample(node, rows);
  const entry = `sample_${logits.dtype}`;
  const source = renderTemplate("sample.cu.njk", {
    entry,
    dtype: logits.dtype,
    elemType: CUDA_STORAGE_TYPE[logits.dtype as "f32" | "bf16" | "f16"],
    loadElem: loadExpr(logits.dtype, "p[i]"),
    candidates: false,
  });
  return rowLaunch(entry, source, rows, 5, [{ kind: "i32", value: sizeExpr([vocab]) }]);
}

/** One block of 1024 threads per row; the first `inputs` operands, the output, then `extra`. */
function rowLaunch(entry: string, source: string, rows: string | number, inputs: number, extra: readonly ArgBinding[] = []): NodeKernels {
  return {
    launches: [{
      kernel: { name: entry, family: "sample", source, entry },
      grid: [sizeExpr([rows]), constSize(1), constSize(1)],
      block: [1024, 1, 1],
      sharedBytes: 0,
      args: [...Array.from({ length: inputs }, (_, index): ArgBinding => ({ kind: "input", index })), { kind: "output" }, ...extra],
    }],
    scratchBytes: [],
  };
}

/** sample over candidate columns with their token ids (the sharding pass's distributed sample). */
function emitCandidateSample(node: NodeOf<"sample">, rows: string | number): NodeKernels {
  const logits = node.inputs[0]!;
  const cols = logits.shape[1]!;
  if (typeof cols !== "number" || cols < 1 || cols > MAX_CANDIDATE_COLUMNS) throw new Error(`tsgc codegen: sample over candidates (logits ${logits.dtype}${formatShape(logits.shape)}): the candidate columns must be static, 1 to ${MAX_CANDIDATE_COLUMNS}`);
  let colsP2 = 1;
  while (colsP2 < cols) colsP2 *= 2;
  const entry = `sample_candidates_${logits.dtype}_c${cols}`;
  const source = renderTemplate("sample.cu.njk", {
    entry,
    dtype: logits.dtype,
    elemType: CUDA_STORAGE_TYPE[logits.dtype as "f32" | "bf16" | "f16"],
    loadElem: "p[i]",
    loadIn: loadExpr(logits.dtype, "p[i]"),
    candidates: true,
    cols,
    colsP2,
  });
  return rowLaunch(entry, source, rows, 6);
}
