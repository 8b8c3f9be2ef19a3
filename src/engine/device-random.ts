// Seeded random weights made on the device, for benchmarks of full-size models: no checkpoint and no
// host arrays (gpt-oss-120b's 61 GB would not fit a host staging path). Matrices uniform in ±1/√fan_in,
// embeddings in ±1, norm weights around 1, vectors (biases, sinks) in ±0.02, MXFP4 codes uniform with
// scales near 2^-5; model state in ±1.
// Why these ranges: each token's hidden state must stay its own through the layers, so routing spreads
// over the experts as a trained model's does. With embeddings at ±1/√D and biases at ±0.1, the biases
// (the same for every token) dominated the residual stream after a layer, every token routed to the
// same few experts, and a batch's MoE cost looked like one token's (an H200 run: batch 64 decoded in
// 8.1 ms while one layer's MoE alone, with spread routing, takes 0.62 ms, 15 ms over 24 layers).

import type { Plan } from "../lower/plan.js";
import { evalShape, numElements } from "../ir/shape.js";
import { type Device, type Kernel, loadKernels, type PlanExecutor } from "../../runtime/index.js";

const FILL_SOURCE = `
__device__ __forceinline__ unsigned int mix(unsigned long long i, unsigned int seed) {
  unsigned int x = (unsigned int)(i ^ (i >> 32)) * 0x9e3779b9u ^ seed;
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}
// uniform bf16 values in [lo, hi), rounded to nearest even
extern "C" __global__ void fill_bf16(unsigned short* p, unsigned long long n, unsigned int seed, float lo, float hi) {
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
    const float v = lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f);
    unsigned int u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1u);
    p[i] = (unsigned short)(u >> 16);
  }
}
// uniform bytes in [lo, hi)
extern "C" __global__ void fill_u8(unsigned char* p, unsigned long long n, unsigned int seed, float lo, float hi) {
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
    p[i] = (unsigned char)(lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f));
  }
}
`;

/** Fills device memory at absolute addresses with seeded uniform values. */
export interface DeviceFill {
  bf16(ptr: bigint, elements: number, seed: number, lo: number, hi: number): void;
  u8(ptr: bigint, bytes: number, seed: number, lo: number, hi: number): void;
}

export async function deviceFill(device: Device): Promise<DeviceFill> {
  const { kernels } = await loadKernels(device, [
    { name: "fill_bf16", source: FILL_SOURCE, entry: "fill_bf16" },
    { name: "fill_u8", source: FILL_SOURCE, entry: "fill_u8" },
  ]);
  const [fillBf16, fillU8] = kernels as [Kernel, Kernel];
  const fill = (kernel: Kernel) => (ptr: bigint, n: number, seed: number, lo: number, hi: number) => {
    if (n > 0) kernel.launch({ grid: 1024, block: 256, args: [{ ptr }, { i64: BigInt(n) }, { u32: seed >>> 0 }, { f32: lo }, { f32: hi }] });
  };
  return { bf16: fill(fillBf16), u8: fill(fillU8) };
}

/** Random bf16/MXFP4 weights for every parameter of a loaded plan (and, when asked, random model state). */
export function fillPlanRandom(fill: DeviceFill, exec: PlanExecutor, what: { readonly params: boolean; readonly states: boolean }): void {
  const plan: Plan = exec.plan;
  const base = exec.arena.pointer;
  if (what.params) fillParams(fill, plan, base);
  if (!what.states) return;
  plan.states.forEach((st, i) => {
    if (st.dtype !== "bf16") throw new Error(`device fill: state ${st.name} is ${st.dtype}; random device state is bf16`);
    const { offset, bytes } = exec.state(st.name);
    fill.bf16(base + BigInt(offset), bytes / 2, 10_000 + i, -1, 1);
  });
}

function fillParams(fill: DeviceFill, plan: Plan, base: bigint): void {
  plan.params.forEach((p, i) => {
    const shape = evalShape(p.shape, plan.symbols);
    const n = numElements(shape);
    const at = base + BigInt(p.offset);
    if (p.dtype === "fp4e2m1x2") fill.u8(at, n, i + 1, 0, 256);
    else if (p.dtype === "e8m0") fill.u8(at, n, i + 1, 120, 124);
    else if (p.dtype !== "bf16") throw new Error(`device fill: parameter ${p.name} is ${p.dtype}; random device weights are bf16 or MXFP4`);
    else if (/embed/.test(p.name)) fill.bf16(at, n, i + 1, -1, 1);
    else if (shape.length >= 2) fill.bf16(at, n, i + 1, -1 / Math.sqrt(shape.at(-1)!), 1 / Math.sqrt(shape.at(-1)!));
    else if (/norm/.test(p.name)) fill.bf16(at, n, i + 1, 0.9, 1.1);
    else fill.bf16(at, n, i + 1, -0.02, 0.02);
  });
}
