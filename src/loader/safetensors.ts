// Safetensors files: header parsing and validation, streamed tensor reads, and a sequential writer.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
// `{ "__metadata__"?: {str: str}, name: { dtype, shape, data_offsets: [begin, end] }, … }`, then the data section.
// Offsets are relative to the data section. Everything about a file is checked from its header and its size before
// a byte of tensor data is read: a bad file fails with a message naming the file and the tensor, never later on the
// GPU. Tensor data is read by byte range through a file handle, so a loader can stream it through a fixed (pinned)
// buffer; nothing here needs the whole file in memory.
import { lstat, open, realpath, rename, rm, type FileHandle } from "node:fs/promises";
import { FileAccessError, openRegularFile } from "../fs-safe.js";
import { bf16Bits, bf16FromBits, f16Bits, f16FromBits } from "../ir/dtype.js";

/** Element size in bytes of every dtype safetensors defines with a whole-byte element. */
export const SAFETENSORS_DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

export function isSafetensorsDType(s: string): s is SafetensorsDType {
  return Object.hasOwn(SAFETENSORS_DTYPE_BYTES, s);
}

/** The safetensors reference implementation refuses headers above 100 MB; so do we (it also bounds our allocation). */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  override readonly name = "SafetensorsError";
}

/** One tensor's place in one file. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** The file holding the data. */
  readonly file: string;
  /** Absolute byte position of the first byte in `file`. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly path: string;
  readonly fileSize: number;
  readonly headerLength: number;
  /** Absolute byte position of the data section. */
  readonly dataStart: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** In data-offset order. */
  readonly tensors: readonly TensorInfo[];
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// ---- header ----------------------------------------------------------------------------------

/** Reads and validates the header of `path` against the file's size. Reads no tensor data. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(path);
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new SafetensorsError(`${path}: file is ${size} bytes, too short for the 8-byte header length`);
    const lengthBytes = await readExactly(fh, path, 0, 8);
    const headerLength64 = Buffer.from(lengthBytes.buffer, lengthBytes.byteOffset, 8).readBigUInt64LE(0);
    if (headerLength64 > BigInt(size - 8) || headerLength64 > BigInt(MAX_HEADER_BYTES)) {
      // An impossible length and no '{' after it: some other file (a shard linked to the wrong file, say).
      // Its first bytes are not echoed as a "length": they may be anything, a password file's included.
      const first = size > 8 ? (await readExactly(fh, path, 8, 1))[0] : undefined;
      if (first !== 0x7b) throw new SafetensorsError(`${await describeLinked(path)}: not a safetensors file (no JSON header after the 8-byte length)`);
    }
    if (headerLength64 > BigInt(size - 8)) {
      throw new SafetensorsError(
        `${path}: header length ${headerLength64} runs past the end of the file (${size} bytes, so at most ${size - 8} bytes of header)`,
      );
    }
    const headerLength = Number(headerLength64);
    if (headerLength > MAX_HEADER_BYTES) {
      throw new SafetensorsError(`${path}: header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const headerBytes = await readExactly(fh, path, 8, headerLength);
    return parseSafetensorsHeader(path, headerBytes, size);
  } finally {
    await fh.close();
  }
}

/** Validates header bytes (without the length prefix) for a file of `fileSize` bytes. Pure; exported for tests. */
export function parseSafetensorsHeader(path: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.length;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(`${path}: header is not valid UTF-8`);
  }
  if (!text.startsWith("{")) throw new SafetensorsError(`${path}: header must be a JSON object starting with '{'`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(`${path}: header is malformed JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SafetensorsError(`${path}: header must be a JSON object`);
  }
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) throw new SafetensorsError(`${path}: tensor "${key}" appears twice in the header`);
    seen.add(key);
  }

  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new SafetensorsError(`${path}: __metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") throw new SafetensorsError(`${path}: __metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    entries.push({ name, ...parseEntry(path, name, value) });
  }

  // The data section must be covered exactly: sorted by offset, each tensor starts where the previous one ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: string | undefined;
  for (const e of entries) {
    if (e.begin < cursor) {
      throw new SafetensorsError(
        `${path}: tensor "${e.name}" (bytes ${e.begin}–${e.end}) overlaps tensor "${previous}" (which ends at ${cursor})`,
      );
    }
    if (e.begin > cursor) {
      const after = previous === undefined ? "the start of the data section" : `tensor "${previous}" (which ends at ${cursor})`;
      throw new SafetensorsError(`${path}: gap of ${e.begin - cursor} bytes between ${after} and tensor "${e.name}" (starts at ${e.begin})`);
    }
    if (e.end > dataSize) {
      throw new SafetensorsError(
        `${path}: file is truncated: tensor "${e.name}" needs data bytes ${e.begin}–${e.end} but the data section holds ` +
          `${Math.max(dataSize, 0)} bytes (file ${fileSize} bytes, expected at least ${dataStart + e.end})`,
      );
    }
    cursor = e.end;
    previous = e.name;
  }
  if (cursor < dataSize) {
    throw new SafetensorsError(
      `${path}: ${dataSize - cursor} bytes after the last tensor${previous === undefined ? "" : ` ("${previous}")`} belong to no tensor`,
    );
  }

  return {
    path,
    fileSize,
    headerLength,
    dataStart,
    metadata,
    tensors: entries.map((e) => ({
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      file: path,
      fileOffset: dataStart + e.begin,
      byteLength: e.end - e.begin,
    })),
  };
}

function parseEntry(
  path: string,
  name: string,
  value: unknown,
): { dtype: SafetensorsDType; shape: number[]; begin: number; end: number } {
  const where = `${path}: tensor "${name}"`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError(`${where}: entry must be an object with dtype, shape and data_offsets`);
  }
  const entry = value as Record<string, unknown>;
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string") throw new SafetensorsError(`${where}: dtype is missing or not a string`);
  if (!isSafetensorsDType(dtype)) {
    throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new SafetensorsError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
  ) {
    throw new SafetensorsError(`${where}: data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
  const dims = shape as number[];
  const count = elementCount(dims);
  const expected = count * SAFETENSORS_DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(expected)) throw new SafetensorsError(`${where}: shape [${dims.join(", ")}] is too large`);
  if (end - begin !== expected) {
    throw new SafetensorsError(
      `${where}: shape [${dims.join(", ")}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { dtype, shape: dims, begin, end };
}

/** The keys of the top-level object of syntactically valid JSON `text`, duplicates included (JSON.parse drops them). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === ",") {
      expectKey = depth === 1;
    }
  }
  return keys;
}

// ---- reading data --------------------------------------------------------------------------

/** Opens a regular file (or a link to one) for reading: a named pipe or a directory is refused at once. */
async function openForRead(path: string): Promise<FileHandle> {
  try {
    return await openRegularFile(path, "open");
  } catch (err) {
    if (!(err instanceof FileAccessError)) throw err;
    throw new SafetensorsError(err.code === "ENOENT" ? `${path}: file not found` : `${path}: cannot open (${err.reason})`);
  }
}

/** `path`, or `path (a link to TARGET)` when it is a symbolic link: says which file was really read. */
async function describeLinked(path: string): Promise<string> {
  try {
    if ((await lstat(path)).isSymbolicLink()) return `${path} (a link to ${await realpath(path)})`;
  } catch {
    // described as given
  }
  return path;
}

async function readExactly(fh: FileHandle, path: string, position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
  const dest = into ?? new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(dest, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(`${path}: unexpected end of file reading bytes ${position}–${position + length} (got ${done})`);
    }
    done += bytesRead;
  }
  return dest;
}

/**
 * Reads tensor bytes by range. Keeps one handle per file, opened on first use; `close()` releases them.
 * The same reader serves a single file or all shards of a checkpoint.
 */
export class TensorDataReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  private handle(file: string): Promise<FileHandle> {
    let h = this.handles.get(file);
    if (h === undefined) {
      h = openForRead(file);
      this.handles.set(file, h);
    }
    return h;
  }

  /** Fills `dest` with the tensor's bytes starting `offsetInTensor` bytes into it. */
  async readInto(info: TensorInfo, dest: Uint8Array, offsetInTensor = 0): Promise<Uint8Array> {
    if (offsetInTensor < 0 || offsetInTensor + dest.length > info.byteLength) {
      throw new SafetensorsError(
        `${info.file}: tensor "${info.name}": read of ${dest.length} bytes at ${offsetInTensor} is outside its ${info.byteLength} bytes`,
      );
    }
    return readExactly(await this.handle(info.file), info.file, info.fileOffset + offsetInTensor, dest.length, dest);
  }

  /** The whole tensor, in a fresh buffer. */
  async read(info: TensorInfo): Promise<Uint8Array> {
    return this.readInto(info, new Uint8Array(info.byteLength));
  }

  /**
   * The tensor's bytes in consecutive chunks of at most `chunkBytes`. With `buffer`, every chunk is a view of it
   * (valid until the next iteration), so a caller can stream through one preallocated (e.g. pinned) buffer.
   */
  async *chunks(info: TensorInfo, chunkBytes: number, buffer?: Uint8Array): AsyncGenerator<Uint8Array> {
    if (!(chunkBytes > 0)) throw new RangeError(`chunkBytes must be positive, got ${chunkBytes}`);
    const storage = buffer ?? new Uint8Array(Math.min(chunkBytes, info.byteLength));
    const step = Math.min(chunkBytes, storage.length);
    for (let at = 0; at < info.byteLength; at += step) {
      const n = Math.min(step, info.byteLength - at);
      yield await this.readInto(info, storage.subarray(0, n), at);
    }
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    for (const h of handles) {
      try {
        await (await h).close();
      } catch {
        // a handle that failed to open has nothing to close
      }
    }
  }
}

// ---- element conversion --------------------------------------------------------------------

/** Decodes little-endian F32/BF16/F16/F64 bytes to f32 values. */
export function decodeFloats(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) throw new SafetensorsError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  const n = bytes.byteLength / size;
  const out = new Float32Array(n);
  switch (dtype) {
    case "F32":
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case "BF16":
      for (let i = 0; i < n; i++) out[i] = bf16FromBits(view.getUint16(2 * i, true));
      return out;
    case "F16":
      for (let i = 0; i < n; i++) out[i] = f16FromBits(view.getUint16(2 * i, true));
      return out;
    case "F64":
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    default:
      throw new SafetensorsError(`cannot decode ${dtype} as floating point`);
  }
}

/** Encodes f32 values as little-endian F32/BF16/F16 bytes (round to nearest even). */
export function encodeFloats(dtype: SafetensorsDType, values: ArrayLike<number>): Uint8Array {
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  switch (dtype) {
    case "F32":
      for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true);
      return out;
    case "BF16":
      for (let i = 0; i < values.length; i++) view.setUint16(2 * i, bf16Bits(values[i]!), true);
      return out;
    case "F16":
      for (let i = 0; i < values.length; i++) view.setUint16(2 * i, f16Bits(values[i]!), true);
      return out;
    default:
      throw new SafetensorsError(`cannot encode floating point values as ${dtype}`);
  }
}

// ---- writing ---------------------------------------------------------------------------------

export interface TensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

export function tensorByteLength(spec: TensorSpec): number {
  return elementCount(spec.shape) * SAFETENSORS_DTYPE_BYTES[spec.dtype];
}

/** Header bytes (length prefix included) for tensors laid out back to back in the given order. */
export function encodeSafetensorsHeader(specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const names = new Set<string>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.name === "__metadata__") throw new SafetensorsError(`"__metadata__" cannot name a tensor`);
    if (names.has(spec.name)) throw new SafetensorsError(`tensor "${spec.name}" is listed twice`);
    names.add(spec.name);
    const bytes = tensorByteLength(spec);
    header[spec.name] = { dtype: spec.dtype, shape: [...spec.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const jsonBytes = Buffer.byteLength(json, "utf8");
  json += " ".repeat((8 - (jsonBytes % 8)) % 8);
  const body = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + body.length);
  Buffer.from(out.buffer).writeBigUInt64LE(BigInt(body.length), 0);
  out.set(body, 8);
  return out;
}

/**
 * Writes one safetensors file sequentially: the header up front (from the specs), then tensor data in spec order,
 * each tensor in one or more `write` calls. The file appears under its name only when `close()` finds every byte
 * written; until then it lives at `<path>.partial`.
 */
export class SafetensorsWriter {
  private index = 0;
  private writtenOfCurrent = 0;
  private position: number;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly specs: readonly TensorSpec[],
    headerBytes: number,
  ) {
    this.position = headerBytes;
  }

  static async create(path: string, specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): Promise<SafetensorsWriter> {
    const header = encodeSafetensorsHeader(specs, metadata);
    const fh = await open(`${path}.partial`, "w");
    try {
      await fh.write(header, 0, header.length, 0);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new SafetensorsWriter(path, fh, specs, header.length);
  }

  /** Appends bytes of tensor `name`, which must be the tensor being written (spec order). */
  async write(name: string, bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new SafetensorsError(`${this.path}: write after close`);
    this.skipEmptyTensors();
    const spec = this.specs[this.index];
    if (spec === undefined) throw new SafetensorsError(`${this.path}: tensor "${name}" written after all tensors were complete`);
    if (spec.name !== name) {
      throw new SafetensorsError(`${this.path}: expected data for tensor "${spec.name}" (spec order), got "${name}"`);
    }
    const total = tensorByteLength(spec);
    if (this.writtenOfCurrent + bytes.length > total) {
      throw new SafetensorsError(`${this.path}: tensor "${name}" takes ${total} bytes; ${this.writtenOfCurrent + bytes.length} were written`);
    }
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.fh.write(bytes, done, bytes.length - done, this.position);
      done += bytesWritten;
      this.position += bytesWritten;
    }
    this.writtenOfCurrent += bytes.length;
    if (this.writtenOfCurrent === total) {
      this.index++;
      this.writtenOfCurrent = 0;
    }
  }

  private skipEmptyTensors(): void {
    while (this.writtenOfCurrent === 0 && this.specs[this.index] !== undefined && tensorByteLength(this.specs[this.index]!) === 0) {
      this.index++;
    }
  }

  /** Finishes the file; fails (removing the partial file) if any tensor is incomplete. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.skipEmptyTensors();
    await this.fh.close();
    const missing = this.specs[this.index];
    if (missing !== undefined) {
      await rm(`${this.path}.partial`, { force: true });
      throw new SafetensorsError(
        `${this.path}: closed with tensor "${missing.name}" incomplete (${this.writtenOfCurrent} of ${tensorByteLength(missing)} bytes)`,
      );
    }
    await rename(`${this.path}.partial`, this.path);
  }

  /** Abandons the file (removes the partial output). */
  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close();
    }
    await rm(`${this.path}.partial`, { force: true });
  }
}

export interface TensorData extends TensorSpec {
  readonly data: Uint8Array;
}

/** Writes `tensors` to one safetensors file. */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorData[],
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const writer = await SafetensorsWriter.create(path, tensors, metadata);
  try {
    for (const t of tensors) {
      if (t.data.length !== tensorByteLength(t)) {
        throw new SafetensorsError(`${path}: tensor "${t.name}" has ${t.data.length} bytes of data but its shape needs ${tensorByteLength(t)}`);
      }
      if (t.data.length > 0) await writer.write(t.name, t.data);
    }
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}
