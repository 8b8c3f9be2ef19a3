// Launch overhead on the GPU host: the same kernels launched one by one from JS versus replayed from
// a captured CUDA graph. Host time is what the JS thread spends enqueueing; device time is event to
// event over the whole batch, so it includes the gaps between kernels that graphs remove.
//   npm run build && node dist/bench/runtime-launch.js
import { Arena } from "../runtime/arena.js";
import { cudaDriverVersion, Device, type Kernel, type LaunchConfig } from "../runtime/cuda.js";
import { loadKernels } from "../runtime/kernel-cache.js";
import { native } from "../runtime/native.js";
import { nvrtcVersion } from "../runtime/nvrtc.js";

const EMPTY = `extern "C" __global__ void empty_kernel(int n) {}`;
const SAXPY = `extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}`;

const KERNELS_PER_GRAPH = 100;
const REPLAYS = 200;
const TOTAL = KERNELS_PER_GRAPH * REPLAYS;

const device = Device.open(0);
const { byName } = await loadKernels(device, [
  { name: "empty", source: EMPTY, entry: "empty_kernel" },
  { name: "saxpy", source: SAXPY, entry: "saxpy" },
]);
const arena = Arena.allocate(device, 1 << 20);
const n = 4096;
const x = arena.tensor(0, "f32", n), y = arena.tensor(n * 4, "f32", n);
x.copyFromHost(new Float32Array(n).fill(1));
y.copyFromHost(new Float32Array(n).fill(2));
const stream = device.createStream();
const start = device.createEvent(), end = device.createEvent();

function kernel(name: string): Kernel {
  const k = byName.get(name);
  if (k === undefined) throw new Error(`missing ${name}`);
  return k;
}

interface Measured {
  hostUsPerKernel: number;
  deviceUsPerKernel: number;
}

function measure(enqueue: () => void, kernelsPerCall: number, calls: number): Measured {
  for (let i = 0; i < Math.max(1, calls / 10); i++) enqueue(); // warm-up
  stream.synchronize();
  start.record(stream);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) enqueue();
  const hostMs = performance.now() - t0;
  end.record(stream);
  end.synchronize();
  const kernels = kernelsPerCall * calls;
  return { hostUsPerKernel: (hostMs * 1000) / kernels, deviceUsPerKernel: (end.elapsedMsSince(start) * 1000) / kernels };
}

const rows: [string, Measured][] = [];
for (const [name, config] of [
  ["empty", { grid: 1, block: 32, stream, args: [{ i32: 0 }] }],
  ["saxpy n=4096", { grid: n / 256, block: 256, stream, args: [y, x, { f32: 0.5 }, { i32: n }] }],
] as [string, LaunchConfig][]) {
  const k = kernel(name.split(" ")[0] ?? "");
  rows.push([`${name}: Kernel.launch`, measure(() => k.launch(config), 1, TOTAL)]);
  // The same launch with arguments packed once: the addon call alone, without the wrapper's checks.
  const params = k.packArgs(config.args);
  const [gx, bx] = [typeof config.grid === "number" ? config.grid : 1, typeof config.block === "number" ? config.block : 1];
  const addon = native();
  rows.push([`${name}: addon launch`, measure(() => addon.launch(k.handle, gx, 1, 1, bx, 1, 1, 0, stream.handle, params), 1, TOTAL)]);
  const graph = stream.capture(() => {
    for (let i = 0; i < KERNELS_PER_GRAPH; i++) k.launch(config);
  });
  rows.push([`${name}: graph replay (${KERNELS_PER_GRAPH}/graph)`, measure(() => graph.launch(), KERNELS_PER_GRAPH, REPLAYS)]);
  graph.dispose();
}

console.log(`runtime-launch: ${device.info.name} (${device.info.arch}, ${device.info.smCount} SMs), driver ${cudaDriverVersion()}, NVRTC ${nvrtcVersion().text}, ${TOTAL} kernels per row`);
console.log(`  ${"".padEnd(44)} host µs/kernel  device µs/kernel`);
for (const [label, m] of rows) {
  console.log(`  ${label.padEnd(44)} ${m.hostUsPerKernel.toFixed(2).padStart(14)}  ${m.deviceUsPerKernel.toFixed(2).padStart(16)}`);
}
console.log(`JSON ${JSON.stringify(Object.fromEntries(rows))}`);
arena.free();
stream.dispose();
