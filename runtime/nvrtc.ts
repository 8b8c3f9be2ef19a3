// NVRTC: compile CUDA C++ source to CUBIN (machine code for one GPU) or PTX (portable assembly).
// A failed compile throws NvrtcCompileError carrying the full log and the offending source line.
import { native, type NativeCompileResult } from "./native.js";

export type OutputKind = "cubin" | "ptx";

export interface CompileOptions {
  /** Target GPU, e.g. "sm_80", "sm_90", "sm_90a". */
  arch: string;
  /** Extra NVRTC options, e.g. ["-lineinfo", "--use_fast_math"]; the architecture is added for you. */
  options?: readonly string[];
  /** Program name shown in the log; defaults to "kernel". */
  name?: string;
  /** "cubin" (default): loads with no JIT on a GPU of exactly `arch`; "ptx": JIT-compiled by the driver. */
  output?: OutputKind;
}

export interface CompiledImage {
  kind: OutputKind;
  arch: string;
  image: Uint8Array;
  log: string;
}

export interface NvrtcVersion {
  major: number;
  minor: number;
  /** "major.minor", the form that goes into cache keys. */
  text: string;
  libraryPath: string;
}

export class NvrtcCompileError extends Error {
  override readonly name = "NvrtcCompileError";
  constructor(
    message: string,
    readonly status: string,
    readonly log: string,
    readonly programName: string,
    readonly line: number | undefined,
    readonly sourceLine: string | undefined,
  ) {
    super(message);
  }
}

const ARCH_PATTERN = /^sm_(\d+)(a?)$/;

/** Parses "sm_90a" into its compute capability number and whether it is the arch-specific variant. */
export function parseArch(arch: string): { capability: number; specific: boolean } {
  const match = ARCH_PATTERN.exec(arch);
  if (match === null || match[1] === undefined) {
    throw new Error(`tsgc: bad GPU architecture '${arch}': expected sm_XX or sm_XXa (e.g. sm_90)`);
  }
  return { capability: Number(match[1]), specific: match[2] === "a" };
}

/** The full NVRTC option list for a compile: the architecture first, then the caller's options. */
export function nvrtcOptions(arch: string, output: OutputKind, options: readonly string[] = []): string[] {
  parseArch(arch);
  const conflicting = options.find((o) => /^(-arch|--gpu-architecture)\b/.test(o));
  if (conflicting !== undefined) {
    throw new Error(`tsgc: NVRTC option '${conflicting}' conflicts with the target architecture; pass it as { arch } instead`);
  }
  const target = output === "cubin" ? arch : arch.replace(/^sm_/, "compute_");
  return [`--gpu-architecture=${target}`, ...options];
}

export function nvrtcVersion(): NvrtcVersion {
  const v = native().nvrtcVersion();
  return { ...v, text: `${v.major}.${v.minor}` };
}

/** Compute capabilities this NVRTC can target (e.g. [..., 80, 86, 89, 90]); null if it cannot say. */
export function nvrtcSupportedArchs(): number[] | null {
  return native().nvrtcSupportedArchs();
}

/** Turns a raw addon result into an image, or throws NvrtcCompileError naming the offending line. */
export function imageOrThrow(
  raw: NativeCompileResult,
  source: string,
  programName: string,
  arch: string,
  output: OutputKind,
): CompiledImage {
  if (raw.ok && raw.image !== undefined) return { kind: output, arch, image: raw.image, log: raw.log };
  const located = /^(.*)\((\d+)\): (?:catastrophic )?error/m.exec(raw.log);
  const line = located?.[2] !== undefined ? Number(located[2]) : undefined;
  const sourceLine = line !== undefined ? source.split("\n")[line - 1] : undefined;
  const firstError = located !== null ? raw.log.slice(located.index).split("\n")[0] : undefined;
  const parts = [`${raw.status}: '${programName}' failed to compile for ${arch}`];
  if (firstError !== undefined) parts.push(firstError);
  if (line !== undefined && sourceLine !== undefined) parts.push(`${String(line).padStart(5)} | ${sourceLine}`);
  parts.push("NVRTC log:", raw.log === "" ? "(empty)" : raw.log);
  throw new NvrtcCompileError(parts.join("\n"), raw.status, raw.log, programName, line, sourceLine);
}

/** Compiles one source on the calling thread. For many kernels use compileKernels (kernel-cache.ts). */
export function compile(source: string, opts: CompileOptions): CompiledImage {
  const output = opts.output ?? "cubin";
  const programName = opts.name ?? "kernel";
  const raw = native().nvrtcCompile(source, `${programName}.cu`, nvrtcOptions(opts.arch, output, opts.options), output);
  return imageOrThrow(raw, source, programName, opts.arch, output);
}
