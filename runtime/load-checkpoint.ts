// Streams a checkpoint's tensors straight into a plan's parameter offsets in the arena, through two
// pinned buffers: while one chunk is copied to the device the next is read from disk. Tensors whose
// stored dtype is the parameter's (bf16 → bf16, MXFP4 bytes → fp4e2m1x2 / e8m0) are never touched on
// the host; others (f32 → bf16, bf16 → f32) are converted chunk by chunk. Everything is checked
// against the plan before the first byte moves. A dense expert weight the checkpoint holds as MXFP4
// blocks and scales (a plan built with dense experts, `--dequantize`) is dequantized one expert at a time.
// A rank of a sharded model holds slices (the plan's param `slice`): only the slice's bytes are read (slice-read.ts),
// then converted and copied like a whole tensor.

import type { Plan } from "../src/lower/plan.js";
import { type DType, dtypeBytes } from "../src/ir/dtype.js";
import { evalShape } from "../src/ir/shape.js";
import { openCheckpoint } from "../src/loader/checkpoint.js";
import { packedExperts, readDequantizedExpert } from "../src/loader/dequantize-experts.js";
import { paramProblems } from "../src/loader/load-params.js";
import { readSlice } from "../src/loader/slice-read.js";
import { SAFETENSORS_DTYPE_BYTES } from "../src/loader/safetensors.js";
import { sliceTensor } from "../src/ir/host-tensor.js";
import { decodeFloats, encodeFloats, type SafetensorsDType } from "../src/loader/safetensors.js";
import type { PinnedBuffer } from "./cuda.js";
import type { PlanExecutor } from "./executor.js";

/** The safetensors dtype that holds a parameter's bytes as they are. */
const STORED_AS: Partial<Record<DType, SafetensorsDType>> = { f32: "F32", bf16: "BF16", f16: "F16", fp4e2m1x2: "U8", e8m0: "U8" };

export interface LoadProgress {
  readonly tensor: string;
  readonly bytes: number;
  readonly totalBytes: number;
  readonly ms: number;
}

export interface StreamOptions {
  /** Size of each of the two pinned staging buffers; default 64 MiB. */
  readonly chunkBytes?: number;
  /** Called after each tensor. */
  readonly onProgress?: (p: LoadProgress) => void;
}

/** Streams every parameter of the executor's plan from the checkpoint directory `dir` into the arena. */
export async function streamCheckpoint(exec: PlanExecutor, dir: string, opts: StreamOptions = {}): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  const checkpoint = await openCheckpoint(dir);
  try {
    const problems = paramProblems(exec.plan.params, exec.plan.symbols, checkpoint);
    if (problems.length) throw new Error(`${checkpoint.location} does not fit the plan of ${exec.plan.model}:\n  ${problems.join("\n  ")}`);
    const chunkBytes = Math.max(1 << 16, Math.floor((opts.chunkBytes ?? 64 << 20) / 8) * 8);
    const device = exec.device;
    const stream = device.createStream();
    const staging: PinnedBuffer[] = [device.allocPinned(chunkBytes), device.allocPinned(chunkBytes)];
    const copied = [device.createEvent({ timing: false }), device.createEvent({ timing: false })];
    const totalBytes = exec.plan.params.reduce((a, p) => a + p.bytes, 0);
    let done = 0;
    let turn = 0;
    /** Next staging buffer, once the copy that last used it has finished. */
    const nextBuffer = (): number => {
      const i = turn++ % 2;
      copied[i]!.synchronize();
      return i;
    };
    const upload = (i: number, offset: number, n: number) => {
      exec.arena.view(offset, n).copyFromHostAsync(staging[i]!.slice(0, n), stream);
      copied[i]!.record(stream);
    };
    try {
      /** Copies host bytes to the arena at `offset`, a staging buffer at a time. */
      const uploadBytes = (bytes: Uint8Array, offset: number) => {
        for (let at = 0; at < bytes.byteLength; at += chunkBytes) {
          const n = Math.min(chunkBytes, bytes.byteLength - at);
          const i = nextBuffer();
          staging[i]!.bytes().set(bytes.subarray(at, at + n));
          upload(i, offset + at, n);
        }
      };
      for (const p of exec.plan.params) {
        if (p.slice) {
          // a rank's slice: its bytes only (a dense expert weight held packed: the rank's experts dequantized, then sliced)
          const slice = p.slice;
          if (!checkpoint.has(p.name)) {
            const packed = packedExperts(checkpoint, p.name, slice.full)!;
            const experts = slice.axes.find((a) => a.axis === 0)?.ranges ?? [[0, packed.experts]];
            const inner = slice.axes.filter((a) => a.axis > 0).map((a) => ({ axis: a.axis - 1, ranges: a.ranges }));
            let at = p.offset;
            for (const [e0, e1] of experts) {
              for (let e = e0; e < e1; e++) {
                const dense = await readDequantizedExpert(checkpoint, packed, e);
                const part = sliceTensor({ dtype: "f32", shape: [packed.rows, packed.cols], data: Float64Array.from(dense) }, inner);
                const bytes = encodeFloats(STORED_AS[p.dtype]!, part.data);
                uploadBytes(bytes, at);
                at += bytes.byteLength;
              }
            }
          } else {
            const info = checkpoint.tensor(p.name);
            const raw = await readSlice(checkpoint, p.name, slice, SAFETENSORS_DTYPE_BYTES[info.dtype]);
            uploadBytes(STORED_AS[p.dtype] === info.dtype ? raw : encodeFloats(STORED_AS[p.dtype]!, decodeFloats(info.dtype, raw)), p.offset);
          }
          done += p.bytes;
          opts.onProgress?.({ tensor: p.name, bytes: done, totalBytes, ms: performance.now() - started });
          continue;
        }
        if (!checkpoint.has(p.name)) {
          const packed = packedExperts(checkpoint, p.name, evalShape(p.shape, exec.plan.symbols))!;
          const expertBytes = packed.rows * packed.cols * dtypeBytes(p.dtype);
          for (let e = 0; e < packed.experts; e++) {
            uploadBytes(encodeFloats(STORED_AS[p.dtype]!, await readDequantizedExpert(checkpoint, packed, e)), p.offset + e * expertBytes);
          }
          done += p.bytes;
          opts.onProgress?.({ tensor: p.name, bytes: done, totalBytes, ms: performance.now() - started });
          continue;
        }
        const info = checkpoint.tensor(p.name);
        if (STORED_AS[p.dtype] === info.dtype) {
          let at = 0;
          while (at < info.byteLength) {
            const i = nextBuffer();
            const n = Math.min(chunkBytes, info.byteLength - at);
            await checkpoint.readInto(p.name, staging[i]!.bytes().subarray(0, n), at);
            upload(i, p.offset + at, n);
            at += n;
          }
        } else {
          // convert: source elements per chunk sized so the converted chunk fits a staging buffer
          const srcSize = info.byteLength / Math.max(1, info.shape.reduce((a, b) => a * b, 1));
          const dstSize = dtypeBytes(p.dtype);
          const perChunk = Math.floor(chunkBytes / Math.max(srcSize, dstSize));
          const source = new Uint8Array(perChunk * srcSize);
          for (let at = 0, out = 0; at < info.byteLength; ) {
            const n = Math.min(perChunk * srcSize, info.byteLength - at);
            await checkpoint.readInto(p.name, source.subarray(0, n), at);
            const converted = encodeFloats(STORED_AS[p.dtype]!, decodeFloats(info.dtype, source.subarray(0, n)));
            const i = nextBuffer();
            staging[i]!.bytes().set(converted);
            upload(i, p.offset + out, converted.byteLength);
            at += n;
            out += converted.byteLength;
          }
        }
        done += p.bytes;
        opts.onProgress?.({ tensor: p.name, bytes: done, totalBytes, ms: performance.now() - started });
      }
      stream.synchronize();
    } finally {
      copied.forEach((e) => e.dispose());
      stream.dispose();
    }
    return { bytes: done, ms: performance.now() - started };
  } finally {
    await checkpoint.close();
  }
}
