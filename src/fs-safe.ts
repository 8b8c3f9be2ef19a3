// File handling that every reader and writer of user-named paths shares: the kernel and plan caches, the
// checkpoint loader, the CLI's --out/--logits-out/--config/--prompt-file files and cache archives.
//
// - Reads open only regular files (a symlink to one is fine: Hugging Face snapshots are symlinks), with
//   O_NONBLOCK so that opening a named pipe returns at once and is refused instead of blocking forever.
// - Directories are created one level at a time: Node 20's recursive mkdir spins at 100 % CPU on a path
//   under /proc (mkdir there fails with ENOENT although the parent exists).
// - Writes go to an exclusively created temp file beside the target (O_EXCL: a planted symlink at the temp
//   name is never followed), renamed over it; a failed write leaves no temp file behind. A target that
//   exists and is not a regular file (a directory, a device such as /dev/full, a pipe) is refused.
// - Errors are one line naming the path and what is wrong, never a bare errno.
import { randomBytes } from "node:crypto";
import {
  closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync,
  type Stats, writeFileSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { threadId } from "node:worker_threads";

/**
 * A file-system problem with a path, as one line: `tsgc: <what> <path>: <reason>`. `code` is the errno
 * name (ENOENT, EACCES, …) or TSGC_NOT_REGULAR; `reason` is the part after the path.
 */
export class FileAccessError extends Error {
  override readonly name = "FileAccessError";
  constructor(
    what: string,
    readonly path: string,
    readonly reason: string,
    readonly code: string,
  ) {
    super(`tsgc: ${what} ${path}: ${reason}`);
  }
}

/** The errno name of a Node file-system error, if it has one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

const ERRNO_WORDS: Readonly<Record<string, string>> = {
  ENOENT: "does not exist",
  ENOTDIR: "a part of the path is a file, not a directory",
  EISDIR: "is a directory",
  EEXIST: "already exists",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "the name is too long",
  EMFILE: "too many open files",
  EBUSY: "the resource is busy",
};

/** "does not exist", "permission denied", …: what an errno means, in words. */
export function describeErrno(err: unknown): string {
  const code = errnoCode(err);
  if (code !== undefined) return ERRNO_WORDS[code] ?? code;
  return err instanceof Error ? err.message : String(err);
}

/** `tsgc: cannot <doing> <path>: <what is wrong>` as a FileAccessError (the cause's errno kept as its code). */
export function fileError(err: unknown, doing: string, path: string): FileAccessError {
  if (err instanceof FileAccessError) return err;
  return new FileAccessError(`cannot ${doing}`, path, describeErrno(err), errnoCode(err) ?? "EUNKNOWN");
}

/** "a directory", "a named pipe", …: what a non-regular file is. */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return "a regular file";
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a named pipe";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

function notRegular(path: string, stats: Stats, doing: string): FileAccessError {
  return new FileAccessError(`cannot ${doing}`, path, `it is ${fileKind(stats)}, not a regular file`, "TSGC_NOT_REGULAR");
}

// O_NONBLOCK makes open() of a FIFO return at once; reads of a regular file ignore it.
const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** Opens a regular file (or a symlink to one) for reading; anything else is refused without blocking. */
export async function openRegularFile(path: string, doing = "read"): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    throw fileError(err, doing, path);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw notRegular(path, stats, doing);
    return handle;
  } catch (err) {
    await handle.close();
    throw fileError(err, doing, path);
  }
}

/** The whole of a regular file. */
export async function readRegularFile(path: string, doing = "read"): Promise<Buffer> {
  const handle = await openRegularFile(path, doing);
  try {
    return await handle.readFile();
  } catch (err) {
    throw fileError(err, doing, path);
  } finally {
    await handle.close();
  }
}

/** The whole of a regular file, synchronously (the kernel cache's reads). */
export function readRegularFileSync(path: string, doing = "read"): Buffer {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    throw fileError(err, doing, path);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw notRegular(path, stats, doing);
    return readFileSync(fd);
  } catch (err) {
    throw fileError(err, doing, path);
  } finally {
    closeSync(fd);
  }
}

/** `path`'s stats (through links, or of a link itself with `stat` = lstatSync), or undefined when nothing is there. */
function statOrUndefined(path: string, stat: (p: string) => Stats = statSync): Stats | undefined {
  try {
    return stat(path);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Creates `path` and its missing parents, one level at a time (see the header: no recursive mkdir).
 * Throws a FileAccessError naming the first level that cannot be created.
 */
export function ensureDirectory(path: string): void {
  const missing: string[] = [];
  let dir = resolve(path);
  for (;;) {
    let stats: Stats | undefined;
    try {
      stats = statOrUndefined(dir);
    } catch (err) {
      throw fileError(err, "create directory", path);
    }
    if (stats !== undefined) {
      if (!stats.isDirectory()) {
        const reason = dir === resolve(path) ? `it is ${fileKind(stats)}, not a directory` : `${dir} is ${fileKind(stats)}, not a directory`;
        throw new FileAccessError("cannot create directory", path, reason, "ENOTDIR");
      }
      break;
    }
    missing.push(dir);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level);
    } catch (err) {
      // another process made it first: fine, as long as it is a directory
      if (errnoCode(err) === "EEXIST" && statOrUndefined(level)?.isDirectory()) continue;
      // ENOENT although the parent exists: a file system that takes no new directories (/proc, /sys)
      if (errnoCode(err) === "ENOENT") throw new FileAccessError("cannot create directory", level, `${dirname(level)} does not take new directories`, "ENOENT");
      throw fileError(err, "create directory", level);
    }
  }
}

/** Marks temp files of writeFileAtomically (the kernel cache recognises and cleans them up by it). */
export const TEMP_MARKER = ".tmp-";

export interface AtomicWriteOptions {
  /** Create missing parent directories. */
  readonly createParents?: boolean;
  /**
   * A symbolic link at `path`: write through it, replacing the file it points at (a path the user named,
   * default), or replace the link itself (a cache's own files: a planted link never redirects a write).
   */
  readonly links?: "follow" | "replace";
}

/**
 * Writes `data` to `path` atomically: an exclusively created temp file beside the target, renamed over it.
 * A target that is a directory, a device or a pipe is refused; a symbolic link is followed or replaced as
 * `options.links` says.
 */
export function writeFileAtomically(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): string {
  let target = resolve(path);
  let existing: Stats | undefined;
  try {
    existing = options.links === "replace" ? statOrUndefined(target, lstatSync) : statOrUndefined(target);
  } catch (err) {
    throw fileError(err, "write", path);
  }
  if (existing !== undefined) {
    if (!existing.isFile() && !existing.isSymbolicLink()) throw notRegular(path, existing, "write");
    // following a link: write beside the real file, so the link keeps pointing at it
    if (options.links !== "replace") target = realpathSync(target);
  } else if (options.createParents) {
    ensureDirectory(dirname(target));
  }
  const temp = `${target}${TEMP_MARKER}${process.pid}-${threadId}-${randomBytes(4).toString("hex")}`;
  try {
    writeFileSync(temp, data, { flag: "wx" });
    renameSync(temp, target);
  } catch (err) {
    rmSync(temp, { force: true });
    throw fileError(err, "write", path);
  }
  return target;
}

/** The same problem, named by the option that gave the path: `tsgc: --out DIR: <reason>`. */
function asFlagError(err: unknown, flag: string, path: string): FileAccessError {
  const reason = err instanceof FileAccessError ? err.reason : describeErrno(err);
  return new FileAccessError(flag, path, reason, errnoCode(err) ?? "EUNKNOWN");
}

/**
 * Checks, before any work, that a file can be written at `path` (flag names the option in messages):
 * its directory exists, and the path is not a directory or other non-regular file.
 */
export function checkOutputFile(path: string, flag: string): void {
  const target = resolve(path);
  try {
    const stats = statOrUndefined(target);
    if (stats !== undefined) {
      if (!stats.isFile()) throw new FileAccessError(flag, path, `it is ${fileKind(stats)}; give the path of a file to write`, "TSGC_NOT_REGULAR");
      return;
    }
    const parent = dirname(target);
    const parentStats = statOrUndefined(parent);
    if (parentStats === undefined) throw new FileAccessError(flag, path, `the directory ${parent} does not exist`, "ENOENT");
    if (!parentStats.isDirectory()) throw new FileAccessError(flag, path, `${parent} is ${fileKind(parentStats)}, not a directory`, "ENOTDIR");
  } catch (err) {
    throw asFlagError(err, flag, path);
  }
}

/** Checks that `path` is an existing directory (flag names the option in messages). */
export function checkInputDirectory(path: string, flag: string): void {
  try {
    const stats = statOrUndefined(path);
    if (stats === undefined) throw new FileAccessError(flag, path, "no such directory", "ENOENT");
    if (!stats.isDirectory()) throw new FileAccessError(flag, path, `it is ${fileKind(stats)}, not a directory`, "ENOTDIR");
  } catch (err) {
    throw asFlagError(err, flag, path);
  }
}

/**
 * The whole of a regular file an option names (flag names the option in messages: `tsgc: --prompt-file PATH:
 * it is a named pipe, not a regular file`); a directory, a pipe or a device is refused without blocking.
 */
export async function readInputFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readRegularFile(path);
  } catch (err) {
    throw asFlagError(err, flag, path);
  }
}

/** Creates (if needed) the directory an option names, before any work, with a message naming the option. */
export function prepareOutputDirectory(path: string, flag: string): void {
  try {
    ensureDirectory(path);
  } catch (err) {
    throw asFlagError(err, flag, path);
  }
}
