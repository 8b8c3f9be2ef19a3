// bf16/f32 gpt-oss checkpoint → MXFP4 checkpoint in the official layout (what `tsgc quantize` runs).
//
// The experts' weights are the only tensors that change. A bf16 checkpoint stores them input-major, used as x·W:
//   gate_up_proj [E, hidden, 2·inter],  down_proj [E, inter, hidden]
// The MXFP4 form is output-major with blocks of 32 along the input axis:
//   gate_up_proj_blocks [E, 2·inter, hidden/32, 16] + gate_up_proj_scales [E, 2·inter, hidden/32]
//   down_proj_blocks    [E, hidden, inter/32, 16]   + down_proj_scales    [E, hidden, inter/32]
// so each expert's matrix is transposed, then quantized along its last axis. Everything else (attention, router,
// embeddings, norms, expert biases) is copied byte for byte, config.json gains the `quantization_config` of the
// official checkpoints, and the tokenizer and other side files are copied. Experts are processed one at a time,
// so memory stays at about one expert's matrix whatever the model size.
import { copyFile, readdir, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { expertTensorNames, gptOssCheckpointTensors } from "../../models/gpt-oss/checkpoint.js";
import { MXFP4_MODULES_TO_NOT_CONVERT, parseGptOssConfig, readConfigJson } from "../../models/gpt-oss/config.js";
import { INDEX_FILE, writeCheckpointTensors, type WriteCheckpointOptions } from "./checkpoint.js";
import { dequantizeMxfp4, mxfp4Shapes, quantizeMxfp4 } from "./mxfp4.js";
import { SAFETENSORS_DTYPE_BYTES, decodeFloats, type TensorSpec } from "./safetensors.js";
import { openGptOssCheckpoint } from "./validate.js";

export class QuantizeError extends Error {
  override readonly name = "QuantizeError";
}

export interface QuantizeProgress {
  readonly tensor: string;
  /** 1-based position among the output tensors. */
  readonly index: number;
  readonly count: number;
  readonly bytesWritten: number;
  readonly bytesTotal: number;
  readonly shardFile: string;
}

export interface QuantizeOptions {
  /** Shard bound of the output (default: transformers' 5 GB). */
  readonly maxShardBytes?: number;
  readonly onProgress?: (progress: QuantizeProgress) => void;
}

export interface QuantizeResult {
  readonly outDir: string;
  readonly tensors: number;
  /** Expert weight tensors turned into blocks + scales. */
  readonly quantizedTensors: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly shardFiles: readonly string[];
  /** Side files copied unchanged (tokenizer, generation config, …). */
  readonly copiedFiles: readonly string[];
}

/** Input-major expert weights `[E, In, Out]` (f32) → MXFP4 of the output-major `[E, Out, In]` matrix. */
export function quantizeExpertWeight(values: Float32Array, experts: number, inFeatures: number, outFeatures: number): {
  blocks: Uint8Array;
  scales: Uint8Array;
} {
  const perExpert = inFeatures * outFeatures;
  if (values.length !== experts * perExpert) throw new RangeError(`expected ${experts}·${inFeatures}·${outFeatures} values, got ${values.length}`);
  const blockBytes = perExpert / 2;
  const scaleBytes = perExpert / 32;
  const blocks = new Uint8Array(experts * blockBytes);
  const scales = new Uint8Array(experts * scaleBytes);
  for (let e = 0; e < experts; e++) {
    const q = quantizeMxfp4(transpose(values.subarray(e * perExpert, (e + 1) * perExpert), inFeatures, outFeatures), [outFeatures, inFeatures]);
    blocks.set(q.blocks, e * blockBytes);
    scales.set(q.scales, e * scaleBytes);
  }
  return { blocks, scales };
}

/** MXFP4 blocks/scales of `[E, Out, In]` → input-major f32 expert weights `[E, In, Out]` (the bf16 checkpoint layout). */
export function dequantizeExpertWeight(
  blocks: Uint8Array,
  scales: Uint8Array,
  experts: number,
  inFeatures: number,
  outFeatures: number,
): Float32Array {
  const outputMajor = dequantizeMxfp4(blocks, scales, [experts, outFeatures, inFeatures]);
  const perExpert = inFeatures * outFeatures;
  const out = new Float32Array(experts * perExpert);
  for (let e = 0; e < experts; e++) {
    out.set(transpose(outputMajor.subarray(e * perExpert, (e + 1) * perExpert), outFeatures, inFeatures), e * perExpert);
  }
  return out;
}

/** Row-major `[rows, cols]` → `[cols, rows]`. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) t[c * rows + r] = m[row + c]!;
  }
  return t;
}

/** The output files of a quantized checkpoint the input directory must not share. */
const CHECKPOINT_FILE = /\.safetensors$/;

/** Quantizes the gpt-oss checkpoint in `inDir` into a new MXFP4 checkpoint in `outDir` (which must be empty or absent). */
export async function quantizeCheckpoint(inDir: string, outDir: string, options: QuantizeOptions = {}): Promise<QuantizeResult> {
  if (resolve(inDir) === resolve(outDir)) throw new QuantizeError(`output directory must differ from the input (${inDir})`);
  const configPath = join(inDir, "config.json");
  const rawConfig = await readConfigJson(configPath);
  const config = parseGptOssConfig(rawConfig, configPath);
  if (config.quantization !== null) throw new QuantizeError(`${configPath}: checkpoint is already MXFP4-quantized (it has quantization_config)`);
  if (config.hiddenSize % 32 !== 0 || config.intermediateSize % 32 !== 0) {
    throw new QuantizeError(
      `${configPath}: MXFP4 needs hidden_size (${config.hiddenSize}) and intermediate_size (${config.intermediateSize}) to be multiples of 32`,
    );
  }
  const existing = await readdir(outDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [] as string[];
    throw new QuantizeError(`${outDir}: cannot read (${err.code ?? err.message})`);
  });
  if (existing.length > 0) throw new QuantizeError(`${outDir}: output directory is not empty`);

  const { checkpoint } = await openGptOssCheckpoint(inDir, config);
  try {
    const H = config.hiddenSize;
    const I = config.intermediateSize;
    const E = config.numExperts;
    // For each quantized output tensor: the source tensor and its matrix orientation.
    const sources = new Map<string, { source: string; inFeatures: number; outFeatures: number }>();
    for (let layer = 0; layer < config.numLayers; layer++) {
      const x = expertTensorNames(layer);
      sources.set(x.gateUpBlocks, { source: x.gateUp, inFeatures: H, outFeatures: 2 * I });
      sources.set(x.gateUpScales, { source: x.gateUp, inFeatures: H, outFeatures: 2 * I });
      sources.set(x.downBlocks, { source: x.down, inFeatures: I, outFeatures: H });
      sources.set(x.downScales, { source: x.down, inFeatures: I, outFeatures: H });
    }
    const specs: TensorSpec[] = gptOssCheckpointTensors(config, "mxfp4").map((t) =>
      sources.has(t.name) ? { name: t.name, dtype: "U8", shape: t.shape } : { ...checkpoint.tensor(t.name), name: t.name },
    );
    // Scales are computed with their blocks (same pass over the expert) and written when their turn comes.
    const pendingScales = new Map<string, Uint8Array[]>();

    let bytesWritten = 0;
    const bytesTotal = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[s.dtype], 0);
    let index = 0;
    const writeOptions: WriteCheckpointOptions = {
      ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}),
      onTensorWritten: (spec, shardFile) => {
        index++;
        options.onProgress?.({ tensor: spec.name, index, count: specs.length, bytesWritten, bytesTotal, shardFile });
      },
    };
    const plan = await writeCheckpointTensors(
      outDir,
      specs,
      async (spec, write) => {
        const quantized = sources.get(spec.name);
        if (quantized === undefined) {
          for await (const chunk of checkpoint.chunks(spec.name, 64 << 20)) {
            await write(chunk);
            bytesWritten += chunk.length;
          }
          return;
        }
        if (spec.name.endsWith("_scales")) {
          const parts = pendingScales.get(spec.name);
          if (parts === undefined) throw new QuantizeError(`internal: scales of "${quantized.source}" requested before its blocks`);
          pendingScales.delete(spec.name);
          for (const part of parts) {
            await write(part);
            bytesWritten += part.length;
          }
          return;
        }
        const scalesName = spec.name.replace(/_blocks$/, "_scales");
        const parts: Uint8Array[] = [];
        pendingScales.set(scalesName, parts);
        const source = checkpoint.tensor(quantized.source);
        const perExpert = quantized.inFeatures * quantized.outFeatures;
        const elementBytes = SAFETENSORS_DTYPE_BYTES[source.dtype];
        const raw = new Uint8Array(perExpert * elementBytes);
        for (let e = 0; e < E; e++) {
          await checkpoint.readInto(quantized.source, raw, e * perExpert * elementBytes);
          const q = quantizeExpertWeight(decodeFloats(source.dtype, raw), 1, quantized.inFeatures, quantized.outFeatures);
          await write(q.blocks);
          bytesWritten += q.blocks.length;
          parts.push(q.scales);
        }
      },
      writeOptions,
    );

    const outConfig = {
      ...rawConfig,
      quantization_config: { quant_method: "mxfp4", modules_to_not_convert: [...MXFP4_MODULES_TO_NOT_CONVERT] },
    };
    await writeFile(join(outDir, "config.json.partial"), JSON.stringify(outConfig, null, 2) + "\n");
    await rename(join(outDir, "config.json.partial"), join(outDir, "config.json"));

    const copiedFiles: string[] = [];
    for (const entry of await readdir(inDir, { withFileTypes: true })) {
      if (!entry.isFile() || entry.name === "config.json" || entry.name === INDEX_FILE || CHECKPOINT_FILE.test(entry.name)) continue;
      await copyFile(join(inDir, entry.name), join(outDir, entry.name));
      copiedFiles.push(entry.name);
    }
    return {
      outDir,
      tensors: specs.length,
      quantizedTensors: 2 * config.numLayers,
      bytesIn: checkpoint.totalBytes,
      bytesOut: plan.totalBytes,
      shardFiles: plan.shards.map((s) => s.fileName),
      copiedFiles,
    };
  } finally {
    await checkpoint.close();
  }
}

/** Shapes of the quantized form of an input-major expert weight `[E, In, Out]`. */
export function quantizedExpertShapes(experts: number, inFeatures: number, outFeatures: number): { blocks: number[]; scales: number[] } {
  return mxfp4Shapes([experts, outFeatures, inFeatures]);
}
