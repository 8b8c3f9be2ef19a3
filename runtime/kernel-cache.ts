// The compiled-kernel cache: content-addressed CUBIN/PTX on disk, so nothing is compiled twice.
//
// Key = sha256(source, NVRTC options, target arch, output kind, NVRTC version, CODEGEN_VERSION).
// Layout: <cache dir>/kernels/nvrtc-<major.minor>/<key>.tsgck, one self-checking file per kernel.
// Writes go to a temp file that is renamed into place, so readers (other processes too) see a
// whole entry or none; a damaged entry fails its checksum, is reported, recompiled and replaced.
// On top sits an in-process memo; misses compile in parallel on worker threads.
//
// A cache directory that cannot be used (read-only, a path through a file, under /proc) never stops a
// compile: one warning, then kernels are kept in memory only. A full disk is an error (the user must act).
// The cache never follows a symbolic link out of its directory when it lists, verifies or clears.
//
// Entry file format (all integers little-endian):
//   0   "TSGCKRN1"                       magic, 8 bytes
//   8   sha256 of every byte from 40 on  32 bytes
//   40  u32 header length H
//   44  header JSON (EntryHeader), H bytes
//   ..  source, image, log               sizes given in the header
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, rmdirSync, rmSync, type Stats, statSync, unlinkSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import {
  ensureDirectory, errnoCode, FileAccessError, fileKind, readRegularFileSync, TEMP_MARKER, writeFileAtomically,
} from "../src/fs-safe.js";
import { compileInWorkers, defaultParallelism, type CompileJob, type PoolKind } from "./compile-pool.js";
import type { CudaModule, Device, Kernel } from "./cuda.js";
import { native, type NativeCompileResult } from "./native.js";
import { imageOrThrow, nvrtcOptions, nvrtcVersion, parseArch, type OutputKind } from "./nvrtc.js";

/** Bump when code generation changes in a way the source text alone would not show. */
export const CODEGEN_VERSION = "1";

const ENTRY_MAGIC = Buffer.from("TSGCKRN1", "latin1");
const ENTRY_PREFIX_BYTES = 44;
const MAX_HEADER_BYTES = 1 << 20;
const KERNELS_DIR = "kernels";
const VERSION_DIR_PATTERN = /^nvrtc-(\d+)\.(\d+)$/;
const ENTRY_NAME_PATTERN = /^[0-9a-f]{64}\.tsgck$/;

/** Where the cache lives: TSGC_CACHE_DIR, else $XDG_CACHE_HOME/tsgc, else ~/.cache/tsgc. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const override = env["TSGC_CACHE_DIR"];
  if (override !== undefined && override !== "") return resolve(override);
  const xdg = env["XDG_CACHE_HOME"];
  if (xdg !== undefined && xdg !== "") return join(resolve(xdg), "tsgc");
  return join(homedir(), ".cache", "tsgc");
}

/** Everything that determines a compiled image. */
export interface CacheKeyInputs {
  source: string;
  /** The caller's NVRTC options (the architecture option is implied by `arch`). */
  options: readonly string[];
  arch: string;
  output: OutputKind;
  nvrtcVersion: string;
  codegenVersion: string;
}

export function cacheKey(inputs: CacheKeyInputs): string {
  const hash = createHash("sha256");
  // Length-prefixed fields: no two different inputs can serialise to the same bytes.
  const fields = [
    "tsgc-kernel-v1", inputs.codegenVersion, inputs.nvrtcVersion, inputs.arch, inputs.output,
    String(inputs.options.length), ...inputs.options, inputs.source,
  ];
  for (const field of fields) {
    const bytes = Buffer.from(field, "utf8");
    hash.update(`${bytes.length}:`);
    hash.update(bytes);
  }
  return hash.digest("hex");
}

export interface EntryHeader {
  key: string;
  name: string;
  entry: string;
  arch: string;
  output: OutputKind;
  nvrtcVersion: string;
  codegenVersion: string;
  options: string[];
  createdAt: string;
  sourceBytes: number;
  imageBytes: number;
  logBytes: number;
}

export interface CacheEntry {
  header: EntryHeader;
  source: string;
  image: Uint8Array;
  log: string;
}

/** A cache file that is damaged, truncated, or not what its name says. */
export class CacheEntryError extends Error {
  override readonly name = "CacheEntryError";
}

/** The cache directory cannot be read or written (permissions, a path through a file, /proc): compile in memory. */
export class CacheUnusableError extends Error {
  override readonly name = "CacheUnusableError";
  constructor(
    readonly dir: string,
    readonly reason: string,
  ) {
    super(`tsgc: the cache directory ${dir} cannot be used: ${reason}`);
  }
}

/** The device holding the cache is full: an error the user has to act on, not something to hide. */
export class CacheFullError extends Error {
  override readonly name = "CacheFullError";
  constructor(dir: string, path: string, what: string) {
    super(`tsgc: no space left on the device of the ${what} ${dir} (writing ${path}); free some space or point TSGC_CACHE_DIR elsewhere`);
  }
}

const FULL_DISK_CODES = new Set(["ENOSPC", "EDQUOT"]);

/** Turns a failed cache write into a CacheFullError (full disk) or a CacheUnusableError (anything else). */
export function cacheWriteError(err: unknown, dir: string, path: string, what: string): Error {
  if (FULL_DISK_CODES.has(errnoCode(err) ?? "")) return new CacheFullError(dir, path, what);
  const reason = err instanceof FileAccessError ? `${err.path}: ${err.reason}` : err instanceof Error ? err.message : String(err);
  return new CacheUnusableError(dir, reason);
}

const warnedUnusable = new Set<string>();

/**
 * Warns, once per directory and process, that a cache directory cannot be used and work continues in
 * memory. The kernel cache and the plan cache share it: one warning however many files fail.
 */
export function warnCacheUnusable(dir: string, reason: string): void {
  if (warnedUnusable.has(dir)) return;
  warnedUnusable.add(dir);
  process.emitWarning(`the cache directory ${dir} cannot be used (${reason}); compiling in memory only`, { code: "TSGC_CACHE_UNUSABLE" });
}

export function encodeEntry(entry: CacheEntry): Buffer {
  const source = Buffer.from(entry.source, "utf8");
  const log = Buffer.from(entry.log, "utf8");
  const header: EntryHeader = { ...entry.header, sourceBytes: source.length, imageBytes: entry.image.byteLength, logBytes: log.length };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(headerBytes.length);
  const body = Buffer.concat([length, headerBytes, source, entry.image, log]);
  const checksum = createHash("sha256").update(body).digest();
  return Buffer.concat([ENTRY_MAGIC, checksum, body]);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

function parseHeader(json: string): EntryHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new CacheEntryError("header is not valid JSON");
  }
  if (typeof raw !== "object" || raw === null) throw new CacheEntryError("header is not an object");
  const h = raw as Record<string, unknown>;
  const strings = ["key", "name", "entry", "arch", "nvrtcVersion", "codegenVersion", "createdAt"] as const;
  for (const field of strings) if (typeof h[field] !== "string") throw new CacheEntryError(`header field '${field}' is missing`);
  const counts = ["sourceBytes", "imageBytes", "logBytes"] as const;
  for (const field of counts) {
    const value = h[field];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new CacheEntryError(`header field '${field}' is not a size`);
  }
  if (h["output"] !== "cubin" && h["output"] !== "ptx") throw new CacheEntryError("header field 'output' is not cubin or ptx");
  if (!isStringArray(h["options"])) throw new CacheEntryError("header field 'options' is not a list of strings");
  return h as unknown as EntryHeader;
}

/**
 * Parses and checks an entry file: magic, checksum, sizes, and that its key is the hash of the
 * inputs it records (and equals `expectedKey`, the name it was found under). Throws CacheEntryError.
 */
export function decodeEntry(bytes: Uint8Array, expectedKey?: string): CacheEntry {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.length < ENTRY_PREFIX_BYTES) throw new CacheEntryError(`truncated: ${data.length} bytes is shorter than an entry header`);
  if (!data.subarray(0, 8).equals(ENTRY_MAGIC)) throw new CacheEntryError("not a tsgc kernel entry (bad magic)");
  const body = data.subarray(40);
  const checksum = createHash("sha256").update(body).digest();
  if (!checksum.equals(data.subarray(8, 40))) throw new CacheEntryError("checksum mismatch (truncated or corrupted)");
  const headerLength = data.readUInt32LE(40);
  if (headerLength > MAX_HEADER_BYTES || ENTRY_PREFIX_BYTES + headerLength > data.length) throw new CacheEntryError("header length out of range");
  const header = parseHeader(data.toString("utf8", ENTRY_PREFIX_BYTES, ENTRY_PREFIX_BYTES + headerLength));
  const sourceStart = ENTRY_PREFIX_BYTES + headerLength;
  const imageStart = sourceStart + header.sourceBytes;
  const logStart = imageStart + header.imageBytes;
  const end = logStart + header.logBytes;
  if (end !== data.length) throw new CacheEntryError(`size mismatch: header describes ${end} bytes, file has ${data.length}`);
  const source = data.toString("utf8", sourceStart, imageStart);
  const recomputed = cacheKey({
    source, options: header.options, arch: header.arch, output: header.output,
    nvrtcVersion: header.nvrtcVersion, codegenVersion: header.codegenVersion,
  });
  if (recomputed !== header.key) throw new CacheEntryError(`content hashes to ${recomputed.slice(0, 12)}… but the entry claims key ${header.key.slice(0, 12)}…`);
  if (expectedKey !== undefined && expectedKey !== header.key) {
    throw new CacheEntryError(`stored under ${expectedKey.slice(0, 12)}… but holds ${header.key.slice(0, 12)}…`);
  }
  // Copy the image out so the memo does not pin the whole file buffer.
  const image = new Uint8Array(data.subarray(imageStart, logStart));
  return { header, source, image, log: data.toString("utf8", logStart, end) };
}

export interface CacheListing {
  /** Path relative to the cache directory, e.g. "kernels/nvrtc-11.8/<key>.tsgck". */
  relativePath: string;
  path: string;
  bytes: number;
  header?: EntryHeader;
  /** Why the file is not a usable entry (absent for good entries). */
  problem?: string;
}

export interface CacheProblem {
  path: string;
  problem: string;
}

function isInside(dir: string, candidate: string): boolean {
  const rel = relative(dir, candidate);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/** One cache directory. All methods are synchronous and safe against concurrent writers. */
export class KernelCache {
  readonly dir: string;

  constructor(dir: string = defaultCacheDir()) {
    this.dir = resolve(dir);
  }

  get kernelsDir(): string {
    return join(this.dir, KERNELS_DIR);
  }

  relativePathFor(key: string, nvrtcVersion: string): string {
    return `${KERNELS_DIR}/nvrtc-${nvrtcVersion}/${key}.tsgck`;
  }

  pathFor(key: string, nvrtcVersion: string): string {
    return join(this.dir, ...this.relativePathFor(key, nvrtcVersion).split("/"));
  }

  /** Whether the cache directory exists; throws when the path is something else (a file would list as an empty cache). */
  private checkIsDirectory(): boolean {
    let stats: Stats;
    try {
      stats = statSync(this.dir);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return false;
      throw new FileAccessError("cache directory", this.dir, describeFsProblem(err), errnoCode(err) ?? "EUNKNOWN");
    }
    if (!stats.isDirectory()) throw new FileAccessError("cache directory", this.dir, `it is ${fileKind(stats)}, not a directory`, "ENOTDIR");
    return true;
  }

  /** NVRTC versions that have entries here, newest first. Throws CacheUnusableError when kernels/ cannot be read. */
  nvrtcVersions(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.kernelsDir);
    } catch (err) {
      if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return [];
      throw new CacheUnusableError(this.dir, `${this.kernelsDir}: ${describeFsProblem(err)}`);
    }
    const versions: [number, number, string][] = [];
    for (const name of names) {
      const match = VERSION_DIR_PATTERN.exec(name);
      if (match !== null) versions.push([Number(match[1]), Number(match[2]), `${match[1]}.${match[2]}`]);
    }
    versions.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
    return versions.map((v) => v[2]);
  }

  /**
   * The entry for `key`, undefined when absent; throws CacheEntryError when the file is damaged (or not a
   * regular file) and CacheUnusableError when the cache cannot be read at all.
   */
  read(key: string, nvrtcVersion: string): CacheEntry | undefined {
    let bytes: Buffer;
    try {
      bytes = readRegularFileSync(this.pathFor(key, nvrtcVersion));
    } catch (err) {
      const code = errnoCode(err);
      // ENOTDIR: a part of the path is a file, so no entry can be there
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      if (code === "TSGC_NOT_REGULAR" && err instanceof FileAccessError) throw new CacheEntryError(err.reason);
      throw new CacheUnusableError(this.dir, describeFsProblem(err));
    }
    return decodeEntry(bytes, key);
  }

  /**
   * Writes an entry atomically: a temp file in the same directory, renamed over the final name. Throws
   * CacheFullError on a full disk and CacheUnusableError when the directory cannot be written.
   */
  write(entry: CacheEntry): string {
    return this.writeRaw(this.relativePathFor(entry.header.key, entry.header.nvrtcVersion), encodeEntry(entry));
  }

  private writeRaw(relativePath: string, bytes: Uint8Array): string {
    const path = join(this.dir, ...relativePath.split("/"));
    const attempt = (): string => {
      ensureDirectory(join(path, ".."));
      return writeFileAtomically(path, bytes, { links: "replace" });
    };
    try {
      try {
        return attempt();
      } catch (err) {
        // a `cache clear` racing this write removed the directory (or our temp file): once more
        if (errnoCode(err) !== "ENOENT") throw err;
        return attempt();
      }
    } catch (err) {
      throw cacheWriteError(err, this.dir, path, "kernel cache");
    }
  }

  /** Removes one file (or symbolic link: never its target) of the cache. */
  remove(relativePath: string): void {
    rmSync(join(this.dir, ...relativePath.split("/")), { force: true });
  }

  /**
   * Every file under kernels/, each checked; `problem` says what is wrong with a bad one. A symbolic link
   * is reported, never followed. Throws when the cache path is not a directory.
   */
  list(): CacheListing[] {
    const out: CacheListing[] = [];
    if (!this.checkIsDirectory() || !isRealDirectory(this.kernelsDir)) {
      if (existsLink(this.kernelsDir)) out.push(linkListing(this.kernelsDir, KERNELS_DIR));
      return out;
    }
    for (const dirName of readdirSync(this.kernelsDir).sort()) {
      const dirPath = join(this.kernelsDir, dirName);
      const dirRelative = `${KERNELS_DIR}/${dirName}`;
      const versionMatch = VERSION_DIR_PATTERN.exec(dirName);
      const dirStats = lstatSync(dirPath);
      if (dirStats.isSymbolicLink()) {
        out.push(linkListing(dirPath, dirRelative));
        continue;
      }
      if (!dirStats.isDirectory()) {
        out.push({ relativePath: dirRelative, path: dirPath, bytes: dirStats.size, problem: "unexpected file" });
        continue;
      }
      for (const fileName of readdirSync(dirPath).sort()) {
        const path = join(dirPath, fileName);
        const relativePath = `${dirRelative}/${fileName}`;
        const stats = lstatSync(path);
        const bytes = stats.size;
        if (stats.isSymbolicLink()) {
          out.push(linkListing(path, relativePath));
          continue;
        }
        if (fileName.includes(TEMP_MARKER)) {
          out.push({ relativePath, path, bytes, problem: "unfinished temp file (a writer died or is still writing)" });
          continue;
        }
        if (versionMatch === null || !ENTRY_NAME_PATTERN.test(fileName)) {
          out.push({ relativePath, path, bytes, problem: "not a cache entry name" });
          continue;
        }
        if (!stats.isFile()) {
          out.push({ relativePath, path, bytes, problem: `${fileKind(stats)}, not a regular file` });
          continue;
        }
        try {
          const entry = decodeEntry(readRegularFileSync(path), fileName.slice(0, 64));
          if (`${versionMatch[1]}.${versionMatch[2]}` !== entry.header.nvrtcVersion) {
            out.push({ relativePath, path, bytes, header: entry.header, problem: `compiled by NVRTC ${entry.header.nvrtcVersion} but filed under ${dirName}` });
          } else {
            out.push({ relativePath, path, bytes, header: entry.header });
          }
        } catch (err) {
          out.push({ relativePath, path, bytes, problem: err instanceof Error ? err.message : String(err) });
        }
      }
    }
    return out;
  }

  /**
   * Removes every entry and temp file (only files this cache writes; nothing else in the directory).
   * A symbolic link where an entry or a version directory belongs is removed itself; its target is left alone.
   */
  clear(): number {
    let removed = 0;
    if (!this.checkIsDirectory()) return 0;
    if (!isRealDirectory(this.kernelsDir)) return 0;
    for (const dirName of readdirSync(this.kernelsDir)) {
      if (!VERSION_DIR_PATTERN.test(dirName)) continue;
      const dirPath = join(this.kernelsDir, dirName);
      if (lstatSync(dirPath).isSymbolicLink()) {
        unlinkSync(dirPath);
        removed++;
        continue;
      }
      if (!isRealDirectory(dirPath)) continue;
      for (const fileName of readdirSync(dirPath)) {
        if (ENTRY_NAME_PATTERN.test(fileName) || (fileName.includes(TEMP_MARKER) && fileName.includes(".tsgck"))) {
          unlinkSync(join(dirPath, fileName)); // a link is unlinked, never followed
          removed++;
        }
      }
      try {
        rmdirSync(dirPath);
      } catch {
        // not empty: someone else's file, or a writer racing us; leave it
      }
    }
    return removed;
  }

  /**
   * Packs the good entries (optionally of one arch) into an archive file, written atomically beside `file`;
   * a target that is a directory, a device or a pipe is refused.
   */
  exportTo(file: string, filter: { arch?: string } = {}): { entries: number; bytes: number } {
    const files: PackFile[] = [];
    for (const listing of this.list()) {
      if (listing.problem !== undefined || listing.header === undefined) continue;
      if (filter.arch !== undefined && listing.header.arch !== filter.arch) continue;
      files.push({ path: listing.relativePath, data: readRegularFileSync(listing.path) });
    }
    const pack = encodePack(files);
    writeFileAtomically(file, pack, { createParents: true });
    return { entries: files.length, bytes: pack.length };
  }

  /**
   * Unpacks an archive (a regular file). Every entry is checked before anything is written: a path that
   * would land outside the cache directory, a name that is not an entry, an entry whose content does not
   * hash to its key, or an entry whose machine code differs from the one already cached under its key
   * rejects the whole archive (CacheArchiveError listing each refused entry). An import never replaces a
   * cached kernel with other bytes: the key covers the source, not the image, so a second image for the
   * same key can only be a forgery or a corruption.
   */
  importFrom(file: string): { imported: number; alreadyPresent: number } {
    const files = decodePack(readRegularFileSync(file));
    const problems: string[] = [];
    const present = new Set<string>();
    for (const { path, data } of files) {
      const target = resolve(this.dir, path);
      if (path.includes("\\") || path.includes("\0") || isAbsolute(path) || !isInside(this.dir, target) || path.split("/").includes("..")) {
        problems.push(`${JSON.stringify(path)}: escapes the cache directory`);
        continue;
      }
      const parts = path.split("/");
      const versionMatch = VERSION_DIR_PATTERN.exec(parts[1] ?? "");
      if (parts.length !== 3 || parts[0] !== KERNELS_DIR || versionMatch === null || !ENTRY_NAME_PATTERN.test(parts[2] ?? "")) {
        problems.push(`${JSON.stringify(path)}: not a kernel cache entry path (kernels/nvrtc-X.Y/<sha256>.tsgck)`);
        continue;
      }
      let entry: CacheEntry;
      try {
        entry = decodeEntry(data, (parts[2] ?? "").slice(0, 64));
      } catch (err) {
        problems.push(`${path}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      if (entry.header.nvrtcVersion !== `${versionMatch[1]}.${versionMatch[2]}`) {
        problems.push(`${path}: compiled by NVRTC ${entry.header.nvrtcVersion}, filed under ${parts[1] ?? ""}`);
        continue;
      }
      let cached: CacheEntry | undefined;
      try {
        cached = this.read(entry.header.key, entry.header.nvrtcVersion);
      } catch (err) {
        if (err instanceof CacheEntryError) continue; // a damaged local entry is replaced by the pack's good one
        throw err;
      }
      if (cached === undefined) continue;
      if (!Buffer.from(cached.image).equals(Buffer.from(entry.image))) {
        problems.push(`${path}: holds different machine code than the cached entry for its key (kept the cached one)`);
      } else {
        present.add(path);
      }
    }
    if (problems.length > 0) {
      throw new CacheArchiveError(`tsgc: rejected archive ${file} (nothing imported):\n  ${problems.join("\n  ")}`);
    }
    let imported = 0;
    for (const { path, data } of files) {
      if (present.has(path)) continue;
      this.writeRaw(path, data);
      imported++;
    }
    return { imported, alreadyPresent: present.size };
  }
}

function describeFsProblem(err: unknown): string {
  if (err instanceof FileAccessError) return err.reason;
  const code = errnoCode(err);
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** A directory, not a symbolic link to one. */
function isRealDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function existsLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function linkListing(path: string, relativePath: string): CacheListing {
  return { relativePath, path, bytes: lstatSync(path).size, problem: "a symbolic link (not followed; the cache writes none)" };
}

// ---- Archive ("pack") format -------------------------------------------------------------------
//   "TSGCPACK" | u32 version (1) | u32 file count
//   per file: u32 path length | path (UTF-8, '/'-separated, relative to the cache dir) | u32 data length | data
//   sha256 of everything above, 32 bytes

const PACK_MAGIC = Buffer.from("TSGCPACK", "latin1");

export interface PackFile {
  path: string;
  data: Uint8Array;
}

export class CacheArchiveError extends Error {
  override readonly name = "CacheArchiveError";
}

export function encodePack(files: readonly PackFile[]): Buffer {
  const parts: Buffer[] = [PACK_MAGIC];
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  parts.push(u32(1), u32(files.length));
  for (const file of files) {
    const path = Buffer.from(file.path, "utf8");
    parts.push(u32(path.length), path, u32(file.data.byteLength), Buffer.from(file.data));
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash("sha256").update(body).digest()]);
}

export function decodePack(bytes: Uint8Array): PackFile[] {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.length < 16 + 32 || !data.subarray(0, 8).equals(PACK_MAGIC)) throw new CacheArchiveError("tsgc: not a tsgc cache archive (bad magic or too short)");
  const body = data.subarray(0, data.length - 32);
  if (!createHash("sha256").update(body).digest().equals(data.subarray(data.length - 32))) {
    throw new CacheArchiveError("tsgc: cache archive checksum mismatch (truncated or corrupted)");
  }
  const version = body.readUInt32LE(8);
  if (version !== 1) throw new CacheArchiveError(`tsgc: cache archive version ${version} is not supported`);
  const count = body.readUInt32LE(12);
  const files: PackFile[] = [];
  let at = 16;
  const need = (n: number): void => {
    if (at + n > body.length) throw new CacheArchiveError("tsgc: cache archive is malformed (an entry runs past the end)");
  };
  for (let i = 0; i < count; i++) {
    need(4);
    const pathLength = body.readUInt32LE(at);
    at += 4;
    need(pathLength);
    const path = body.toString("utf8", at, at + pathLength);
    at += pathLength;
    need(4);
    const dataLength = body.readUInt32LE(at);
    at += 4;
    need(dataLength);
    files.push({ path, data: body.subarray(at, at + dataLength) });
    at += dataLength;
  }
  if (at !== body.length) throw new CacheArchiveError("tsgc: cache archive has trailing bytes after its last entry");
  return files;
}

// ---- compileKernels ----------------------------------------------------------------------------

/** What the compiler hands the cache: one generated kernel. */
export interface KernelSource {
  /** Human-readable name, for logs and progress. */
  name: string;
  /** Complete CUDA C++ source (self-contained: no headers beyond NVRTC's built-ins). */
  source: string;
  /** The extern "C" __global__ function to launch. */
  entry: string;
  /** Extra NVRTC options for this kernel. */
  options?: readonly string[];
}

export type KernelOrigin = "memo" | "disk" | "nvrtc";

export interface CompiledKernel {
  name: string;
  entry: string;
  key: string;
  arch: string;
  output: OutputKind;
  nvrtcVersion: string;
  image: Uint8Array;
  log: string;
  origin: KernelOrigin;
}

export interface CompileProgress {
  done: number;
  total: number;
  name: string;
  origin: KernelOrigin;
}

export interface CompileKernelsOptions {
  /** Target GPU, e.g. "sm_90". */
  arch: string;
  output?: OutputKind;
  /** A cache directory, a KernelCache, or false for no disk cache (memo only). Default: defaultCacheDir(). */
  cache?: string | KernelCache | false;
  /** Concurrent compiles for misses; default: the machine's available parallelism. */
  parallelism?: number;
  /** Where parallel compiles run: worker threads (default) or child processes (see compile-pool.ts). */
  pool?: PoolKind;
  codegenVersion?: string;
  /**
   * Use entries compiled by this NVRTC version ("12.8"). Default: the loaded NVRTC's version; where
   * NVRTC cannot be loaded (a run-only machine fed by `tsgc cache import`), any version in the cache.
   */
  nvrtcVersion?: string;
  onProgress?: (progress: CompileProgress) => void;
  /** Called for each damaged entry found (it is then recompiled). Default: process.emitWarning. */
  onCacheProblem?: (problem: CacheProblem) => void;
}

export interface CompileKernelsResult {
  /** One per spec, in the order given. */
  kernels: CompiledKernel[];
  /** Specs served from the memo or the disk cache. */
  hits: number;
  /** Specs that needed NVRTC. */
  misses: number;
  /** NVRTC compiles actually run (specs with identical inputs share one). */
  compiles: number;
  problems: CacheProblem[];
  wallMs: number;
}

const memo = new Map<string, CompiledKernel>();
let totalCompiles = 0;

/** Forgets the in-process memo (tests use it to exercise the disk cache). */
export function clearKernelMemo(): void {
  memo.clear();
}

/** NVRTC compiles this process has run through compileKernels. */
export function compileCount(): number {
  return totalCompiles;
}

interface VersionPlan {
  /** NVRTC versions whose entries may serve a hit, in order of preference. */
  lookup: string[];
  /** The loaded NVRTC's version, if it may compile misses. */
  compileWith: string | undefined;
  /** Why misses cannot be compiled, when compileWith is undefined. */
  cannotCompile: unknown;
}

function planVersions(options: CompileKernelsOptions, cache: KernelCache | undefined): VersionPlan {
  let loaded: string | undefined;
  let loadError: unknown;
  try {
    loaded = nvrtcVersion().text;
  } catch (err) {
    loadError = err;
  }
  if (options.nvrtcVersion !== undefined) {
    const pinned = options.nvrtcVersion;
    return {
      lookup: [pinned],
      compileWith: loaded === pinned ? loaded : undefined,
      cannotCompile: loadError ?? new Error(`tsgc: entries were pinned to NVRTC ${pinned} but the loaded NVRTC is ${String(loaded)}`),
    };
  }
  if (loaded !== undefined) return { lookup: [loaded], compileWith: loaded, cannotCompile: undefined };
  return { lookup: cache?.nvrtcVersions() ?? [], compileWith: undefined, cannotCompile: loadError };
}

function describeProblem(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Compiles every spec for `options.arch`, serving what it can from the memo and the disk cache and
 * compiling the rest with NVRTC in parallel. A compile error throws NvrtcCompileError (with the log
 * and the offending line) after all other kernels have finished and been cached.
 */
export async function compileKernels(specs: readonly KernelSource[], options: CompileKernelsOptions): Promise<CompileKernelsResult> {
  const started = performance.now();
  parseArch(options.arch);
  const output = options.output ?? "cubin";
  const codegenVersion = options.codegenVersion ?? CODEGEN_VERSION;
  // `cache` becomes undefined once the directory proves unusable: one warning, then memory only
  let cache = options.cache === false ? undefined : options.cache instanceof KernelCache ? options.cache : new KernelCache(options.cache);
  const dropUnusableCache = (err: unknown): void => {
    if (!(err instanceof CacheUnusableError) || cache === undefined) throw err;
    warnCacheUnusable(cache.dir, err.reason);
    cache = undefined;
  };
  let plan: VersionPlan;
  try {
    plan = planVersions(options, cache);
  } catch (err) {
    dropUnusableCache(err);
    plan = planVersions(options, undefined);
  }
  const reportProblem = options.onCacheProblem ?? ((p: CacheProblem) => process.emitWarning(`${p.problem} (${p.path}); recompiling`, { code: "TSGC_CACHE_CORRUPT" }));
  const problems: CacheProblem[] = [];

  const kernels: (CompiledKernel | undefined)[] = new Array<CompiledKernel | undefined>(specs.length);
  let done = 0;
  let hits = 0;
  const finish = (index: number, kernel: CompiledKernel): void => {
    const spec = specs[index];
    if (spec === undefined) return;
    kernels[index] = { ...kernel, name: spec.name, entry: spec.entry };
    done++;
    options.onProgress?.({ done, total: specs.length, name: spec.name, origin: kernel.origin });
  };

  // Look every spec up; group misses by key so identical kernels compile once.
  const misses = new Map<string, { indices: number[]; spec: KernelSource; nvrtcOptions: string[] }>();
  specs.forEach((spec, index) => {
    const specOptions = [...(spec.options ?? [])];
    for (const version of plan.lookup) {
      const key = cacheKey({ source: spec.source, options: specOptions, arch: options.arch, output, nvrtcVersion: version, codegenVersion });
      const remembered = memo.get(key);
      if (remembered !== undefined) {
        hits++;
        return finish(index, { ...remembered, origin: "memo" });
      }
      if (cache === undefined) continue;
      try {
        const entry = cache.read(key, version);
        if (entry !== undefined) {
          const kernel: CompiledKernel = {
            name: spec.name, entry: spec.entry, key, arch: options.arch, output, nvrtcVersion: version,
            image: entry.image, log: entry.log, origin: "disk",
          };
          memo.set(key, kernel);
          hits++;
          return finish(index, kernel);
        }
      } catch (err) {
        if (err instanceof CacheUnusableError) {
          dropUnusableCache(err);
          continue;
        }
        const problem = { path: cache.pathFor(key, version), problem: describeProblem(err) };
        problems.push(problem);
        reportProblem(problem);
      }
    }
    if (plan.compileWith === undefined) return;
    const key = cacheKey({ source: spec.source, options: specOptions, arch: options.arch, output, nvrtcVersion: plan.compileWith, codegenVersion });
    const group = misses.get(key);
    if (group !== undefined) group.indices.push(index);
    else misses.set(key, { indices: [index], spec, nvrtcOptions: nvrtcOptions(options.arch, output, specOptions) });
  });

  const missCount = specs.length - hits;
  if (missCount > 0 && plan.compileWith === undefined) {
    const reason = describeProblem(plan.cannotCompile);
    const err = new Error(`tsgc: ${missCount} of ${specs.length} kernels are not in the cache for ${options.arch} and cannot be compiled here:\n${reason}`);
    throw Object.assign(err, { code: (plan.cannotCompile as { code?: string } | undefined)?.code ?? "TSGC_NVRTC_UNAVAILABLE" });
  }

  const groups = [...misses.entries()];
  const jobs: CompileJob[] = groups.map(([, g]) => ({ source: g.spec.source, programName: `${g.spec.name}.cu`, options: g.nvrtcOptions, output }));
  const firstFailure: { error?: unknown } = {};
  const onCompiled = (groupIndex: number, raw: NativeCompileResult): void => {
    const group = groups[groupIndex];
    if (group === undefined || plan.compileWith === undefined) return;
    const [key, { indices, spec }] = group;
    totalCompiles++;
    let image;
    try {
      image = imageOrThrow(raw, spec.source, spec.name, options.arch, output);
    } catch (err) {
      firstFailure.error ??= err;
      return;
    }
    const kernel: CompiledKernel = {
      name: spec.name, entry: spec.entry, key, arch: options.arch, output, nvrtcVersion: plan.compileWith,
      image: image.image, log: image.log, origin: "nvrtc",
    };
    try {
      cache?.write({
        header: {
          key, name: spec.name, entry: spec.entry, arch: options.arch, output, nvrtcVersion: plan.compileWith,
          codegenVersion, options: [...(spec.options ?? [])], createdAt: new Date().toISOString(),
          sourceBytes: 0, imageBytes: 0, logBytes: 0,
        },
        source: spec.source, image: image.image, log: image.log,
      });
    } catch (err) {
      if (err instanceof CacheUnusableError) dropUnusableCache(err);
      else firstFailure.error ??= err; // a full disk: reported after the other kernels finished
    }
    memo.set(key, kernel);
    for (const index of indices) finish(index, kernel);
  };

  const parallelism = options.parallelism ?? defaultParallelism();
  if (jobs.length === 1 || parallelism <= 1) {
    // One compile (or no parallelism asked): a worker would only add its start-up time.
    const addon = native();
    jobs.forEach((job, i) => onCompiled(i, addon.nvrtcCompile(job.source, job.programName, job.options, job.output)));
  } else if (jobs.length > 1) {
    await compileInWorkers(jobs, parallelism, onCompiled, options.pool ?? "threads");
  }
  if (firstFailure.error !== undefined) throw firstFailure.error;

  return {
    kernels: kernels.map((k, i) => {
      if (k === undefined) throw new Error(`tsgc: kernel ${i} was neither found nor compiled`);
      return k;
    }),
    hits,
    misses: missCount,
    compiles: jobs.length,
    problems,
    wallMs: performance.now() - started,
  };
}

export interface LoadedKernels {
  /** One per spec, in the order given. */
  kernels: Kernel[];
  byName: Map<string, Kernel>;
  compileResult: CompileKernelsResult;
}

const modulesByDevice = new WeakMap<Device, Map<string, CudaModule>>();

/**
 * compileKernels for the device's own architecture, then loads each distinct image once per device
 * and looks up each spec's entry.
 */
export async function loadKernels(
  device: Device,
  specs: readonly KernelSource[],
  options: Omit<CompileKernelsOptions, "arch"> & { arch?: string } = {},
): Promise<LoadedKernels> {
  const compileResult = await compileKernels(specs, { ...options, arch: options.arch ?? device.info.arch });
  let modules = modulesByDevice.get(device);
  if (modules === undefined) {
    modules = new Map();
    modulesByDevice.set(device, modules);
  }
  const kernels = compileResult.kernels.map((compiled) => {
    let module = modules.get(compiled.key);
    if (module === undefined) {
      module = device.loadModule(compiled.image);
      modules.set(compiled.key, module);
    }
    return module.kernel(compiled.entry);
  });
  const byName = new Map<string, Kernel>();
  compileResult.kernels.forEach((compiled, i) => {
    const kernel = kernels[i];
    if (kernel !== undefined) byName.set(compiled.name, kernel);
  });
  return { kernels, byName, compileResult };
}
