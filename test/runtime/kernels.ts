// Small, self-contained CUDA kernels (no headers) that exercise what generated kernels rely on:
// bf16 storage and arithmetic, warp shuffles, inline-PTX tensor-core mma, plain f32 launches.
// CPU references beside them; the GPU tests compare against these.

/** bf16 helpers written out, since NVRTC kernels carry no cuda_bf16.h. Round-to-nearest-even. */
export const BF16_PRELUDE = String.raw`
typedef unsigned short bf16_t;
__device__ __forceinline__ float bf16_to_f32(bf16_t v) { return __uint_as_float(((unsigned)v) << 16); }
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)0x7fc0;  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16_t)(u >> 16);
}
`;

/** out[i] = bf16(a * x[i] + y[i]) over bf16 vectors; also converts through the sm_80 cvt instruction. */
export const BF16_AXPY = String.raw`${BF16_PRELUDE}
__device__ __forceinline__ bf16_t f32_to_bf16_hw(float f) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}
extern "C" __global__ void bf16_axpy(bf16_t* out, bf16_t* out_hw, const bf16_t* x, const bf16_t* y, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = a * bf16_to_f32(x[i]) + bf16_to_f32(y[i]);
  out[i] = f32_to_bf16(v);
  out_hw[i] = f32_to_bf16_hw(v);
}
`;

/** One warp per row: out[row] = sum(x[row, 0:n]) with a __shfl_xor_sync butterfly. Launch block = 32. */
export const WARP_ROW_SUM = String.raw`
extern "C" __global__ void warp_row_sum(float* out, const float* x, int n) {
  const float* row = x + (long long)blockIdx.x * n;
  float v = 0.f;
  for (int i = threadIdx.x; i < n; i += 32) v += row[i];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x == 0) out[blockIdx.x] = v;
}
`;

/**
 * One warp computes D[16x8] (f32) = A[16x16] * B[16x8] with one tensor-core instruction,
 * mma.sync.m16n8k16 bf16 -> f32. A is row-major [16][16], B row-major [16][8] (k by n), D [16][8].
 * Fragment layout from the PTX ISA: lane = 4*g + t; A regs hold rows g / g+8, columns 2t(+1) / 2t+8(+1).
 */
export const MMA_BF16 = String.raw`
__device__ __forceinline__ unsigned pack2(unsigned short lo, unsigned short hi) { return (unsigned)lo | ((unsigned)hi << 16); }
extern "C" __global__ void mma_bf16_m16n8k16(float* d, const unsigned short* a, const unsigned short* b) {
  const unsigned lane = threadIdx.x & 31u, g = lane >> 2, t = lane & 3u;
  const unsigned a0 = pack2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
  const unsigned a1 = pack2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
  const unsigned a2 = pack2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
  const unsigned a3 = pack2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
  const unsigned b0 = pack2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
  const unsigned b1 = pack2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
  float c0 = 0.f, c1 = 0.f, c2 = 0.f, c3 = 0.f;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  d[g * 8 + 2 * t] = c0;
  d[g * 8 + 2 * t + 1] = c1;
  d[(g + 8) * 8 + 2 * t] = c2;
  d[(g + 8) * 8 + 2 * t + 1] = c3;
}
`;

/** y[i] = a * x[i] + y[i] (f32). */
export const SAXPY = String.raw`
extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
`;

/** y[i] = y[i] * s + (float)k: a second kernel so graphs hold more than one function. */
export const SCALE_SHIFT = String.raw`
extern "C" __global__ void scale_shift(float* y, float s, long long k, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = y[i] * s + (float)k;
}
`;

/** y = reverse(x) through dynamic shared memory (n floats of it); one block. */
export const REVERSE_IN_SHARED = String.raw`
extern "C" __global__ void reverse_in_shared(float* y, const float* x, unsigned n) {
  extern __shared__ float tile[];
  for (unsigned j = threadIdx.x; j < n; j += blockDim.x) tile[j] = x[j];
  __syncthreads();
  for (unsigned j = threadIdx.x; j < n; j += blockDim.x) y[j] = tile[n - 1 - j];
}
`;

/** Does nothing: for launch-overhead measurements. */
export const EMPTY_KERNEL = String.raw`extern "C" __global__ void empty_kernel(int n) {}`;

// ---- CPU references ----------------------------------------------------------------------------

export function f32ToBf16(value: number): number {
  const f = new Float32Array([value]);
  const u = new Uint32Array(f.buffer)[0] ?? 0;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(bits: number): number {
  return new Float32Array(new Uint32Array([(bits & 0xffff) << 16]).buffer)[0] ?? NaN;
}

/** Deterministic pseudo-random numbers (mulberry32), uniform in [lo, hi). Never all zeros. */
export function randomFloats(count: number, seed: number, lo = -2, hi = 2): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * unit;
  }
  return out;
}

export function toBf16(values: Float32Array): Uint16Array {
  return Uint16Array.from(values, (v) => f32ToBf16(v));
}
