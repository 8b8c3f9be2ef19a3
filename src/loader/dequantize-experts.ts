// Loading MXFP4 expert weights as dense float parameters (`--dequantize`): when a checkpoint has no tensor
// `W` but has `W_blocks` [E, N, K/32, 16] and `W_scales` [E, N, K/32] (rows are output features, the
// checkpoint's layout), the dense parameter W [E, K, N] (input-major, as transformers stores dequantized
// gpt-oss experts) is W[e] = dequantizeMxfp4(blocks[e], scales[e])ᵀ. One expert at a time, so a 20b
// checkpoint never needs more than one expert's floats on the host.

import { formatShape } from "../ir/shape.js";
import type { Checkpoint } from "./checkpoint.js";
import { dequantizeMxfp4, MXFP4_BLOCK_BYTES } from "./mxfp4.js";

/** How a dense [E, K, N] parameter is read from MXFP4 blocks and scales. */
export interface PackedExperts {
  readonly blocks: string;
  readonly scales: string;
  readonly experts: number;
  /** Output features (rows of the packed form). */
  readonly rows: number;
  /** Input features (the packed axis). */
  readonly cols: number;
}

/**
 * The packed form of dense parameter `name` of shape `expected` in the checkpoint, when it holds blocks and
 * scales instead; undefined when it holds neither. Throws naming the tensor when they do not fit `expected`.
 */
export function packedExperts(checkpoint: Checkpoint, name: string, expected: readonly number[]): PackedExperts | undefined {
  const [blocks, scales] = [`${name}_blocks`, `${name}_scales`];
  if (!checkpoint.has(blocks) || !checkpoint.has(scales)) return undefined;
  const b = checkpoint.tensor(blocks);
  const s = checkpoint.tensor(scales);
  const where = `${name} (from ${blocks} and ${scales} in ${b.file})`;
  if (expected.length !== 3) throw new Error(`${where}: only expert weights [experts, in, out] can be dequantized, the model needs ${formatShape(expected)}`);
  const [experts, cols, rows] = expected as [number, number, number];
  const wantBlocks = [experts, rows, cols / 32, MXFP4_BLOCK_BYTES];
  if (cols % 32 !== 0 || formatShape(b.shape) !== formatShape(wantBlocks) || formatShape(s.shape) !== formatShape(wantBlocks.slice(0, 3))) {
    throw new Error(`${where}: blocks ${formatShape(b.shape)} and scales ${formatShape(s.shape)} do not encode ${formatShape(expected)} (need ${formatShape(wantBlocks)} and ${formatShape(wantBlocks.slice(0, 3))})`);
  }
  if (b.dtype !== "U8" || s.dtype !== "U8") throw new Error(`${where}: MXFP4 blocks and scales must be U8, got ${b.dtype} and ${s.dtype}`);
  return { blocks, scales, experts, rows, cols };
}

/** Expert `e` of a packed weight as dense floats [cols, rows] (input-major). */
export async function readDequantizedExpert(checkpoint: Checkpoint, packed: PackedExperts, e: number): Promise<Float32Array> {
  const { rows, cols } = packed;
  const blockBytes = (rows * cols) / 2;
  const scaleBytes = (rows * cols) / 32;
  const blocks = await checkpoint.readInto(packed.blocks, new Uint8Array(blockBytes), e * blockBytes);
  const scales = await checkpoint.readInto(packed.scales, new Uint8Array(scaleBytes), e * scaleBytes);
  const outMajor = dequantizeMxfp4(blocks, scales, [rows, cols]);
  const inMajor = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) inMajor[c * rows + r] = outMajor[r * cols + c]!;
  return inMajor;
}
