// cuBLAS, optional: one bf16 GEMM (f32 accumulation) that the benchmarks time as the card's dense
// bf16 tensor-core ceiling. Nothing in the compiled plan uses it. libcublas is opened on first use
// (TSGC_CUBLAS_LIBRARY overrides the search), so a machine without it only fails when it is called.
//
// cuBLAS is column-major: gemmBf16 computes C[m×n] = op(A)[m×k]·op(B)[k×n] where a matrix with
// leading dimension ld has element (i, j) at i + j·ld. A row-major [r, c] buffer is, read
// column-major, its transpose [c × r] with ld = c. So the benchmarks' row-major C = A·Bᵀ, with
// A [M, K], B [N, K] (torch's x @ w.T) and C [M, N], is the column-major Cᵀ = B·Aᵀ:
//
//   cublas.gemmBf16({ m: N, n: M, k: K, a: B, b: A, c: C, transA: true, lda: K, ldb: K, ldc: N })
//
// which is what matmulABt({ m: M, n: N, k: K, a: A, b: B, c: C }) does (rowMajorABt gives the arguments).
import { native, type Handle } from "./native.js";
import type { Device, DevicePointer, Stream } from "./cuda.js";

/** A device address: a bigint, or anything naming device memory (an arena view), whose size is then checked. */
export type GemmOperand = bigint | DevicePointer;

/** One column-major GEMM, C = op(A)·op(B) with alpha 1 and beta 0; every matrix bf16. */
export interface GemmBf16 {
  /** Rows of op(A) and of C. */
  m: number;
  /** Columns of op(B) and of C. */
  n: number;
  /** Columns of op(A), rows of op(B). */
  k: number;
  a: GemmOperand;
  b: GemmOperand;
  c: GemmOperand;
  /** A is stored k×m (and op(A) = Aᵀ) when true; m×k when false (the default). */
  transA?: boolean;
  /** B is stored n×k (and op(B) = Bᵀ) when true; k×n when false (the default). */
  transB?: boolean;
  /** Leading dimensions in elements; default the stored matrix's row count (packed columns). */
  lda?: number;
  ldb?: number;
  ldc?: number;
}

/** Row-major C[m, n] = A[m, k]·B[n, k]ᵀ, every matrix packed (no row padding). */
export interface RowMajorABt {
  m: number;
  n: number;
  k: number;
  /** [m, k] row-major. */
  a: GemmOperand;
  /** [n, k] row-major (a linear layer's weight). */
  b: GemmOperand;
  /** [m, n] row-major. */
  c: GemmOperand;
}

const BF16_BYTES = 2;

/** The column-major GEMM that computes a row-major C = A·Bᵀ (see the header: Cᵀ = B·Aᵀ). */
export function rowMajorABt(gemm: RowMajorABt): GemmBf16 {
  const { m, n, k, a, b, c } = gemm;
  return { m: n, n: m, k, a: b, b: a, c, transA: true, transB: false, lda: k, ldb: k, ldc: n };
}

/** Path of the libcublas that was (or now is) loaded. Throws naming the library, the paths tried and TSGC_CUBLAS_LIBRARY. */
export function cublasLibraryPath(): string {
  return native().cublasLibraryPath();
}

/** Whether cuBLAS can be loaded here. Never throws (not even without the addon). */
export function cublasAvailable(): boolean {
  try {
    native().cublasLibraryPath();
    return true;
  } catch {
    return false;
  }
}

function address(operand: GemmOperand): bigint {
  return typeof operand === "bigint" ? operand : operand.pointer;
}

function checkDimension(what: string, value: number, least: number): void {
  if (!Number.isInteger(value) || value < least || value > 0x7fffffff) {
    throw new RangeError(`tsgc: cublas gemmBf16: ${what} must be an integer in [${least}, 2^31), got ${value}`);
  }
}

/** Checks one stored matrix (rows×cols with leading dimension ld) against its operand. */
function checkMatrix(name: string, operand: GemmOperand, rows: number, cols: number, ld: number): void {
  checkDimension(`ld${name}`, ld, Math.max(1, rows));
  const pointer = address(operand);
  if (pointer === 0n) throw new RangeError(`tsgc: cublas gemmBf16: ${name.toUpperCase()} is a null pointer`);
  if (pointer % BigInt(BF16_BYTES) !== 0n) {
    throw new RangeError(`tsgc: cublas gemmBf16: ${name.toUpperCase()} at 0x${pointer.toString(16)} is not aligned to bf16 (2 bytes)`);
  }
  if (typeof operand !== "bigint") {
    const needed = (ld * (cols - 1) + rows) * BF16_BYTES;
    if (operand.bytes < needed) {
      throw new RangeError(`tsgc: cublas gemmBf16: ${name.toUpperCase()} is ${rows}×${cols} with ld ${ld} (${needed} bytes of bf16) but its buffer is ${operand.bytes} bytes`);
    }
  }
}

/** A cuBLAS handle on one device. Call dispose() when done; cuBLAS keeps its own workspace outside the arena. */
export class Cublas {
  private disposed = false;
  private current: Stream;

  private constructor(
    readonly device: Device,
    readonly handle: Handle,
  ) {
    this.current = device.stream;
  }

  /** A handle bound to `device`'s context, queueing on its legacy default stream until setStream. */
  static open(device: Device): Cublas {
    native().cublasLibraryPath(); // loads libcublas, or names it, before the device is touched
    device.makeCurrent();
    return new Cublas(device, native().cublasCreate());
  }

  /** The stream GEMMs are queued on. */
  get stream(): Stream {
    return this.current;
  }

  /** Queues later GEMMs on `stream` (a stream of the same device). */
  setStream(stream: Stream): void {
    this.checkLive();
    if (stream.device !== this.device) {
      throw new Error(`tsgc: cublas: the handle is on device ${this.device.ordinal} but the stream is on device ${stream.device.ordinal}`);
    }
    this.device.makeCurrent();
    native().cublasSetStream(this.handle, stream.handle);
    this.current = stream;
  }

  /** cuBLAS's version as it encodes it: major·10000 + minor·100 + patch (130000 is 13.0.0). */
  version(): number {
    this.checkLive();
    this.device.makeCurrent();
    return native().cublasVersion(this.handle);
  }

  /** Queues C = op(A)·op(B) (column-major, bf16, f32 accumulation) on the handle's stream. */
  gemmBf16(gemm: GemmBf16): void {
    this.checkLive();
    const { m, n, k } = gemm;
    const transA = gemm.transA ?? false;
    const transB = gemm.transB ?? false;
    checkDimension("m", m, 1);
    checkDimension("n", n, 1);
    checkDimension("k", k, 1);
    const [aRows, aCols] = transA ? [k, m] : [m, k];
    const [bRows, bCols] = transB ? [n, k] : [k, n];
    const lda = gemm.lda ?? aRows;
    const ldb = gemm.ldb ?? bRows;
    const ldc = gemm.ldc ?? m;
    checkMatrix("a", gemm.a, aRows, aCols, lda);
    checkMatrix("b", gemm.b, bRows, bCols, ldb);
    checkMatrix("c", gemm.c, m, n, ldc);
    this.device.makeCurrent();
    native().cublasGemmBf16(this.handle, m, n, k, address(gemm.a), address(gemm.b), address(gemm.c), lda, ldb, ldc, transA, transB);
  }

  /** Queues the row-major C[m, n] = A[m, k]·B[n, k]ᵀ, as one column-major GEMM (rowMajorABt). */
  matmulABt(gemm: RowMajorABt): void {
    this.gemmBf16(rowMajorABt(gemm));
  }

  dispose(): void {
    if (this.disposed) return;
    this.device.makeCurrent();
    native().cublasDestroy(this.handle);
    this.disposed = true;
  }

  private checkLive(): void {
    if (this.disposed) throw new Error("tsgc: the cuBLAS handle was disposed");
  }
}
