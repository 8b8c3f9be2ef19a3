// A Hugging Face checkpoint directory: one `model.safetensors`, or shards listed by `model.safetensors.index.json`.
//
// Opening validates every file's header and the index against each other (missing shard, tensor the index places in a
// shard that lacks it, tensor in two shards, tensor no index entry names) before any tensor data is read. Writing
// lays tensors out in shards of bounded size the way transformers names them (`model-00001-of-00003.safetensors`),
// streaming each tensor's bytes from a producer, so a checkpoint larger than memory can be written.
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { FileAccessError, fileKind, readRegularFile } from "../fs-safe.js";
import {
  SafetensorsError,
  SafetensorsWriter,
  TensorDataReader,
  decodeFloats,
  readSafetensorsHeader,
  tensorByteLength,
  type SafetensorsHeader,
  type TensorData,
  type TensorInfo,
  type TensorSpec,
} from "./safetensors.js";

export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";

/** The tensors of one checkpoint (single file or shards) and a reader for their bytes. */
export class Checkpoint {
  private readonly reader = new TensorDataReader();

  constructor(
    /** Directory, or the file itself for a lone safetensors file. */
    readonly location: string,
    readonly files: readonly SafetensorsHeader[],
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    /** Path of the index file, when sharded. */
    readonly indexPath: string | null,
  ) {}

  get totalBytes(): number {
    let total = 0;
    for (const t of this.tensors.values()) total += t.byteLength;
    return total;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  tensor(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(`${this.location}: no tensor "${name}"`);
    return info;
  }

  read(name: string): Promise<Uint8Array> {
    return this.reader.read(this.tensor(name));
  }

  /** Fills `dest` with bytes of tensor `name` starting `offsetInTensor` bytes in (streamed loads, pinned buffers). */
  readInto(name: string, dest: Uint8Array, offsetInTensor = 0): Promise<Uint8Array> {
    return this.reader.readInto(this.tensor(name), dest, offsetInTensor);
  }

  chunks(name: string, chunkBytes: number, buffer?: Uint8Array): AsyncGenerator<Uint8Array> {
    return this.reader.chunks(this.tensor(name), chunkBytes, buffer);
  }

  /** A float tensor (F32, BF16, F16, F64) as f32 values. */
  async readFloat32(name: string): Promise<Float32Array> {
    const info = this.tensor(name);
    return decodeFloats(info.dtype, await this.reader.read(info));
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Opens a lone safetensors file. */
export async function openSafetensorsFile(path: string): Promise<Checkpoint> {
  const header = await readSafetensorsHeader(path);
  return new Checkpoint(path, [header], new Map(header.tensors.map((t) => [t.name, t])), null);
}

/** Opens a checkpoint directory, validating every header (and the shard index) first. */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const dirStats = await stat(dir).catch(() => undefined);
  if (dirStats === undefined) throw new SafetensorsError(`${dir}: no such directory`);
  if (!dirStats.isDirectory()) throw new SafetensorsError(`${dir}: it is ${fileKind(dirStats)}, not a checkpoint directory (config.json + model.safetensors)`);
  const indexPath = join(dir, INDEX_FILE);
  if (await exists(indexPath)) return openSharded(dir, indexPath);
  const single = join(dir, SINGLE_FILE);
  if (await exists(single)) {
    const header = await readSafetensorsHeader(single);
    return new Checkpoint(dir, [header], new Map(header.tensors.map((t) => [t.name, t])), null);
  }
  throw new SafetensorsError(`${dir}: holds neither ${SINGLE_FILE} nor ${INDEX_FILE}`);
}

async function openSharded(dir: string, indexPath: string): Promise<Checkpoint> {
  let text: string;
  try {
    text = (await readRegularFile(indexPath)).toString("utf8");
  } catch (err) {
    throw new SafetensorsError(`${indexPath}: cannot read (${err instanceof FileAccessError ? err.reason : String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(`${indexPath}: malformed JSON (${(err as Error).message})`);
  }
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new SafetensorsError(`${indexPath}: weight_map must be an object mapping tensor names to shard files`);
  }
  const placement = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof file !== "string" || file === "" || file !== basename(file) || file === "." || file === "..") {
      throw new SafetensorsError(`${indexPath}: weight_map["${name}"] must be a file name in the same directory, got ${JSON.stringify(file)}`);
    }
    placement.set(name, file);
  }
  const shardNames = [...new Set(placement.values())].sort();
  const files: SafetensorsHeader[] = [];
  for (const shard of shardNames) {
    const path = join(dir, shard);
    if (!(await exists(path))) throw new SafetensorsError(`${indexPath}: lists shard ${shard}, which is missing from ${dir}`);
    files.push(await readSafetensorsHeader(path));
  }
  const tensors = new Map<string, TensorInfo>();
  for (const header of files) {
    const shard = basename(header.path);
    for (const t of header.tensors) {
      const other = tensors.get(t.name);
      if (other !== undefined) {
        throw new SafetensorsError(`${dir}: tensor "${t.name}" is in both ${basename(other.file)} and ${shard}`);
      }
      const listed = placement.get(t.name);
      if (listed === undefined) throw new SafetensorsError(`${header.path}: tensor "${t.name}" is not listed in ${INDEX_FILE}`);
      if (listed !== shard) throw new SafetensorsError(`${indexPath}: places tensor "${t.name}" in ${listed}, but it is in ${shard}`);
      tensors.set(t.name, t);
    }
  }
  for (const [name, shard] of placement) {
    if (!tensors.has(name)) throw new SafetensorsError(`${indexPath}: places tensor "${name}" in ${shard}, which does not hold it`);
  }
  return new Checkpoint(dir, files, tensors, indexPath);
}

// ---- writing ---------------------------------------------------------------------------------

/** transformers' default shard bound (`max_shard_size="5GB"`). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export interface ShardPlan {
  readonly shards: readonly { readonly fileName: string; readonly tensors: readonly TensorSpec[]; readonly bytes: number }[];
  readonly totalBytes: number;
}

/**
 * Splits tensors, in order, into shards of at most `maxShardBytes` (a larger tensor gets a shard of its own).
 * One shard is written as `model.safetensors` with no index, as transformers does.
 */
export function planShards(specs: readonly TensorSpec[], maxShardBytes = DEFAULT_MAX_SHARD_BYTES): ShardPlan {
  if (!(maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be positive, got ${maxShardBytes}`);
  const groups: { tensors: TensorSpec[]; bytes: number }[] = [];
  let current: { tensors: TensorSpec[]; bytes: number } | undefined;
  let totalBytes = 0;
  const names = new Set<string>();
  for (const spec of specs) {
    if (names.has(spec.name)) throw new SafetensorsError(`tensor "${spec.name}" is listed twice`);
    names.add(spec.name);
    const bytes = tensorByteLength(spec);
    totalBytes += bytes;
    if (current === undefined || (current.tensors.length > 0 && current.bytes + bytes > maxShardBytes)) {
      current = { tensors: [], bytes: 0 };
      groups.push(current);
    }
    current.tensors.push(spec);
    current.bytes += bytes;
  }
  if (groups.length === 0) groups.push({ tensors: [], bytes: 0 });
  const n = groups.length;
  const pad = (i: number): string => String(i).padStart(5, "0");
  return {
    shards: groups.map((g, i) => ({ ...g, fileName: n === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(n)}.safetensors` })),
    totalBytes,
  };
}

/** `model.safetensors.index.json` content for a plan (transformers' layout). */
export function shardIndex(plan: ShardPlan): { metadata: { total_size: number }; weight_map: Record<string, string> } {
  const weightMap: Record<string, string> = {};
  for (const shard of plan.shards) for (const t of shard.tensors) weightMap[t.name] = shard.fileName;
  return { metadata: { total_size: plan.totalBytes }, weight_map: weightMap };
}

export interface WriteCheckpointOptions {
  readonly maxShardBytes?: number;
  /** Per-file safetensors metadata; transformers expects `format: "pt"`, which is the default. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Called after each tensor is written. */
  readonly onTensorWritten?: (spec: TensorSpec, shardFile: string) => void;
}

/** Produces the bytes of one tensor by calling `write` one or more times, in order. */
export type TensorProducer = (spec: TensorSpec, write: (bytes: Uint8Array) => Promise<void>) => Promise<void>;

/**
 * Writes the safetensors files (and index, when sharded) of a checkpoint into `dir`, streaming each tensor's bytes
 * from `produce`. Returns the plan it followed.
 */
export async function writeCheckpointTensors(
  dir: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  options: WriteCheckpointOptions = {},
): Promise<ShardPlan> {
  await mkdir(dir, { recursive: true });
  const plan = planShards(specs, options.maxShardBytes);
  const metadata = options.metadata ?? { format: "pt" };
  for (const shard of plan.shards) {
    const writer = await SafetensorsWriter.create(join(dir, shard.fileName), shard.tensors, metadata);
    try {
      for (const spec of shard.tensors) {
        await produce(spec, (bytes) => writer.write(spec.name, bytes));
        options.onTensorWritten?.(spec, shard.fileName);
      }
      await writer.close();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }
  const indexPath = join(dir, INDEX_FILE);
  if (plan.shards.length > 1) {
    await writeFile(`${indexPath}.partial`, JSON.stringify(shardIndex(plan), null, 2) + "\n");
    await rename(`${indexPath}.partial`, indexPath);
  } else {
    await rm(indexPath, { force: true });
  }
  return plan;
}

/** Writes in-memory tensors as a checkpoint in `dir` (tests, small models). */
export function writeCheckpoint(dir: string, tensors: readonly TensorData[], options: WriteCheckpointOptions = {}): Promise<ShardPlan> {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return writeCheckpointTensors(
    dir,
    tensors,
    async (spec, write) => {
      const data = byName.get(spec.name)!.data;
      if (data.length !== tensorByteLength(spec)) {
        throw new SafetensorsError(`tensor "${spec.name}" has ${data.length} bytes of data but its shape needs ${tensorByteLength(spec)}`);
      }
      if (data.length > 0) await write(data);
    },
    options,
  );
}
