// GPU tier: launches and read-back against CPU references, the arena's checks, asynchronous copies
// ordered by events, CUDA graphs (replay and kernel-node updates equal direct launches), NCCL on one
// rank, and a run-only process that loads imported kernels with zero compiles.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Arena, DeviceView } from "../../runtime/arena.js";
import { cudaDriverVersion, CudaGraph, Device, type Kernel, type Stream } from "../../runtime/cuda.js";
import { KernelCache, clearKernelMemo, loadKernels } from "../../runtime/kernel-cache.js";
import { NcclComm, ncclGroup, ncclUniqueId, ncclVersion } from "../../runtime/nccl.js";
import { errorCode } from "../../runtime/native.js";
import { builtModuleUrl, describeGpu, REPO_ROOT } from "../tiers.js";
import {
  BF16_AXPY, bf16ToF32, f32ToBf16, MMA_BF16, randomFloats, REVERSE_IN_SHARED, SAXPY, SCALE_SHIFT, toBf16, WARP_ROW_SUM,
} from "./kernels.js";

describeGpu("CUDA runtime on a GPU", () => {
  let device: Device;
  let cacheDir: string;
  let k: Record<"saxpy" | "scale_shift" | "bf16_axpy" | "warp_row_sum" | "mma" | "reverse", Kernel>;
  let arena: Arena;
  let seed = 1;

  beforeAll(async () => {
    device = Device.open(0);
    cacheDir = mkdtempSync(join(tmpdir(), "tsgc-gpu-cache-"));
    const loaded = await loadKernels(device, [
      { name: "saxpy", source: SAXPY, entry: "saxpy" },
      { name: "scale_shift", source: SCALE_SHIFT, entry: "scale_shift" },
      { name: "bf16_axpy", source: BF16_AXPY, entry: "bf16_axpy" },
      { name: "warp_row_sum", source: WARP_ROW_SUM, entry: "warp_row_sum" },
      { name: "mma", source: MMA_BF16, entry: "mma_bf16_m16n8k16" },
      { name: "reverse", source: REVERSE_IN_SHARED, entry: "reverse_in_shared" },
    ], { cache: cacheDir });
    const get = (name: string): Kernel => {
      const kernel = loaded.byName.get(name);
      if (kernel === undefined) throw new Error(`kernel ${name} missing`);
      return kernel;
    };
    k = { saxpy: get("saxpy"), scale_shift: get("scale_shift"), bf16_axpy: get("bf16_axpy"), warp_row_sum: get("warp_row_sum"), mma: get("mma"), reverse: get("reverse") };
    arena = Arena.allocate(device, 64 << 20);
  });

  afterAll(() => {
    arena.free();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  /** Hands out arena space bump-style (tests only; the planner does this for real). */
  let nextOffset = 0;
  function scratch(elements: number, dtype: "f32" | "bf16" = "f32"): DeviceView {
    const view = arena.tensor(nextOffset, dtype, elements);
    nextOffset += Math.ceil(view.bytes / 256) * 256;
    if (nextOffset > arena.bytes - (16 << 20)) nextOffset = 0;
    view.fill(0xff); // poison: f32 NaN
    return view;
  }

  function upload(values: Float32Array): DeviceView {
    const view = scratch(values.length);
    view.copyFromHost(values);
    return view;
  }

  it("describes the device", () => {
    const info = device.info;
    console.info(`GPU 0: ${info.name}, ${info.arch}, ${info.smCount} SMs, ${(info.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, driver ${cudaDriverVersion()}`);
    expect(info.arch).toMatch(/^sm_\d+a?$/);
    // compute capability 9.0 compiles for its architecture-specific target (wgmma)
    expect(info.arch === "sm_90a").toBe(info.computeCapability.major === 9 && info.computeCapability.minor === 0);
    expect(info.smCount).toBeGreaterThan(0);
    expect(info.warpSize).toBe(32);
    expect(device.memoryInfo().freeBytes).toBeGreaterThan(0);
    expect(Device.open(0)).toBe(device);
    expect(k.saxpy.paramSizes === null || k.saxpy.paramSizes.join(",") === "8,8,4,4").toBe(true);
    expect(k.saxpy.attributes().registers).toBeGreaterThan(0);
  });

  it("launches saxpy and reads back the right values at awkward sizes", () => {
    for (const n of [1, 3, 50, 783, 4096]) {
      const x = randomFloats(n, seed++), y = randomFloats(n, seed++);
      const xd = upload(x), yd = upload(y);
      k.saxpy.launch({ grid: Math.ceil(n / 128), block: 128, args: [yd, xd, { f32: 0.75 }, { i32: n }] });
      const out = yd.copyToHost(new Float32Array(n));
      for (let i = 0; i < n; i++) expect(out[i]).toBeCloseTo(0.75 * (x[i] ?? 0) + (y[i] ?? 0), 5);
    }
  });

  it("does bf16 arithmetic, rounding like the hardware's cvt.rn.bf16.f32", () => {
    const n = 783;
    const x = toBf16(randomFloats(n, seed++, -8, 8)), y = toBf16(randomFloats(n, seed++, -8, 8));
    const [xd, yd, out, outHw] = [scratch(n, "bf16"), scratch(n, "bf16"), scratch(n, "bf16"), scratch(n, "bf16")] as const;
    xd.copyFromHost(x);
    yd.copyFromHost(y);
    k.bf16_axpy.launch({ grid: 7, block: 128, args: [out, outHw, xd, yd, { f32: 1.5 }, { i32: n }] });
    const soft = out.copyToHost(new Uint16Array(n));
    const hard = outHw.copyToHost(new Uint16Array(n));
    expect(Array.from(soft)).toEqual(Array.from(hard));
    for (let i = 0; i < n; i++) {
      const expected = f32ToBf16(Math.fround(1.5 * bf16ToF32(x[i] ?? 0) + bf16ToF32(y[i] ?? 0)));
      expect(Math.abs((soft[i] ?? 0) - expected)).toBeLessThanOrEqual(1); // fma vs double rounding: at most 1 ulp
    }
  });

  it("sums rows with warp shuffles", () => {
    const rows = 50, n = 783;
    const x = randomFloats(rows * n, seed++);
    const xd = upload(x), out = scratch(rows);
    k.warp_row_sum.launch({ grid: rows, block: 32, args: [out, xd, { i32: n }] });
    const sums = out.copyToHost(new Float32Array(rows));
    for (let r = 0; r < rows; r++) {
      let ref = 0;
      for (let i = 0; i < n; i++) ref += x[r * n + i] ?? 0;
      expect(Math.abs((sums[r] ?? NaN) - ref)).toBeLessThan(1e-3);
    }
  });

  it("multiplies bf16 tiles on the tensor cores with inline-PTX mma.sync", () => {
    const a = toBf16(randomFloats(16 * 16, seed++)), b = toBf16(randomFloats(16 * 8, seed++));
    const ad = scratch(256, "bf16"), bd = scratch(128, "bf16"), d = scratch(128);
    ad.copyFromHost(a);
    bd.copyFromHost(b);
    k.mma.launch({ grid: 1, block: 32, args: [d, ad, bd] });
    const got = d.copyToHost(new Float32Array(128));
    let errSq = 0, refSq = 0;
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 8; j++) {
        let ref = 0;
        for (let kk = 0; kk < 16; kk++) ref += bf16ToF32(a[i * 16 + kk] ?? 0) * bf16ToF32(b[kk * 8 + j] ?? 0);
        errSq += ((got[i * 8 + j] ?? NaN) - ref) ** 2;
        refSq += ref ** 2;
      }
    }
    expect(Math.sqrt(errSq / refSq)).toBeLessThan(1e-5);
  });

  it("uses dynamic shared memory, past 48 KiB once the kernel opts in", () => {
    for (const n of [3, 783]) {
      const x = randomFloats(n, seed++);
      const xd = upload(x), yd = scratch(n);
      k.reverse.launch({ grid: 1, block: 256, sharedBytes: n * 4, args: [yd, xd, { u32: n }] });
      expect(Array.from(yd.copyToHost(new Float32Array(n)))).toEqual(Array.from(x).reverse());
    }
    const n = 20_000; // 80,000 bytes of shared memory: more than the default 48 KiB limit
    const x = randomFloats(n, seed++);
    const xd = upload(x), yd = scratch(n);
    expect(() => k.reverse.launch({ grid: 1, block: 1024, sharedBytes: n * 4, args: [yd, xd, { u32: n }] })).toThrow(/CUDA_ERROR_INVALID_VALUE: cuLaunchKernel/);
    k.reverse.setMaxDynamicSharedBytes(n * 4);
    expect(k.reverse.attributes().maxDynamicSharedBytes).toBe(n * 4);
    k.reverse.launch({ grid: 1, block: 1024, sharedBytes: n * 4, args: [yd, xd, { u32: n }] });
    expect(Array.from(yd.copyToHost(new Float32Array(n)))).toEqual(Array.from(x).reverse());
  });

  it("checks arena views: bounds, alignment, sizes, and use after free", () => {
    expect(() => arena.view(arena.bytes - 4, 8, "f32")).toThrow(/outside the \d+-byte arena/);
    expect(() => arena.view(-4, 4)).toThrow(RangeError);
    expect(() => arena.view(2, 4, "f32")).toThrow(/not aligned to f32/);
    expect(() => arena.view(0, 6, "f32")).toThrow(/not a whole number of f32/);
    const v = arena.tensor(1024, "f32", 16);
    expect(v.elements).toBe(16);
    expect(v.pointer).toBe(arena.pointer + 1024n);
    expect(() => v.subview(60, 8)).toThrow(/outside the 64-byte view at arena offset 1024/);
    expect(v.subview(32, 32).pointer).toBe(arena.pointer + 1056n);
    expect(() => v.copyFromHost(new Float32Array(15))).toThrow(/view is 64 bytes but the other side is 60 bytes/);
    expect(() => v.copyToHost(new Float32Array(17))).toThrow(RangeError);
    const small = Arena.allocate(device, 1000);
    expect(small.bytes).toBe(1024);
    const view = small.all();
    small.free();
    expect(() => view.copyToHost(new Uint8Array(1024))).toThrow(/arena was freed/);
    expect(() => small.view(0, 4)).toThrow(/arena was freed/);
  });

  it("reports an allocation too large for the card by name, with what was asked and what is free", () => {
    let caught: unknown;
    try {
      Arena.allocate(device, device.info.totalMemoryBytes * 2);
    } catch (err) {
      caught = err;
    }
    expect(errorCode(caught)).toBe("CUDA_ERROR_OUT_OF_MEMORY");
    expect(String(caught)).toMatch(/CUDA_ERROR_OUT_OF_MEMORY: cuMemAlloc asked \d+\.\d GiB, \d+\.\d GiB free of \d+\.\d GiB/);
  });

  it("rejects arguments that do not match the kernel's parameters", () => {
    const y = scratch(4);
    if (k.saxpy.paramSizes === null) return; // driver before CUDA 12.4 cannot say
    expect(() => k.saxpy.launch({ grid: 1, block: 4, args: [y, y, { f32: 1 }] })).toThrow(/takes 4 parameters \(8, 8, 4, 4 bytes\) but was given 3/);
    expect(() => k.saxpy.launch({ grid: 1, block: 4, args: [y, y, { f32: 1 }, { i64: 4n }] })).toThrow(/parameter 3 is 4 bytes but argument 3 is a i64/);
    expect(() => k.saxpy.launch({ grid: 0, block: 4, args: [y, y, { f32: 1 }, { i32: 4 }] })).toThrow(/bad grid dimensions/);
    expect(() => k.saxpy.launch({ grid: 1, block: 4096, args: [y, y, { f32: 1 }, { i32: 4 }] })).toThrow(/CUDA_ERROR_INVALID_VALUE: cuLaunchKernel/);
  });

  it("orders asynchronous copies and launches across streams with events", () => {
    const n = 1 << 20;
    const upload = device.createStream(), compute = device.createStream();
    const pinnedX = device.allocPinned(n * 4), pinnedY = device.allocPinned(n * 4), pinnedOut = device.allocPinned(n * 4);
    const x = randomFloats(n, seed++), y = randomFloats(n, seed++);
    pinnedX.typed(Float32Array).set(x);
    pinnedY.typed(Float32Array).set(y);
    const xd = scratch(n), yd = scratch(n);
    const start = device.createEvent(), uploaded = device.createEvent(), done = device.createEvent();
    start.record(upload);
    xd.copyFromHostAsync(pinnedX, upload);
    yd.copyFromHostAsync(pinnedY, upload);
    uploaded.record(upload);
    compute.waitEvent(uploaded);
    k.saxpy.launch({ grid: n / 256, block: 256, stream: compute, args: [yd, xd, { f32: -2 }, { i32: n }] });
    yd.copyToHostAsync(pinnedOut, compute);
    done.record(compute);
    done.synchronize();
    expect(done.query()).toBe(true);
    expect(compute.query()).toBe(true);
    const out = pinnedOut.typed(Float32Array);
    for (let i = 0; i < n; i += 997) expect(out[i]).toBeCloseTo(-2 * (x[i] ?? 0) + (y[i] ?? 0), 5);
    const ms = done.elapsedMsSince(start);
    expect(ms).toBeGreaterThan(0);
    console.info(`async: 8 MiB up, saxpy over 1M floats, 4 MiB down: ${ms.toFixed(3)} ms`);
    // Device-to-device on a stream, and a slice of pinned memory.
    const copy = scratch(n);
    copy.copyFromAsync(yd, compute);
    copy.subview(0, 64).copyToHostAsync(pinnedOut.slice(0, 64), compute);
    compute.synchronize();
    expect(Array.from(pinnedOut.typed(Float32Array).subarray(0, 16))).toEqual(Array.from(out.subarray(0, 16)));
    for (const e of [start, uploaded, done]) e.dispose();
    upload.dispose();
    compute.dispose();
  });

  registerGraphTests();

  function registerGraphTests(): void {
    const n = 4096;
    function sequence(stream: Stream, y: DeviceView, x: DeviceView, a: number, s: number, shift: bigint): void {
      k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x, { f32: a }, { i32: n }] });
      k.scale_shift.launch({ grid: n / 256, block: 256, stream, args: [y, { f32: s }, { i64: shift }, { i32: n }] });
      k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x, { f32: -1 }, { i32: n }] });
    }

    it("replays a captured graph exactly like the direct launches, and updates kernel nodes in place", () => {
      const stream = device.createStream();
      const x = upload(randomFloats(n, seed++)), x2 = upload(randomFloats(n, seed++)), y0 = upload(randomFloats(n, seed++));
      const y = scratch(n);
      const run = (body: () => void): Float32Array => {
        y.copyFromAsync(y0, stream);
        body();
        stream.synchronize();
        return y.copyToHost(new Float32Array(n));
      };
      const direct = run(() => sequence(stream, y, x, 2, 0.5, 3n));
      const graph = CudaGraph.capture(stream, () => sequence(stream, y, x, 2, 0.5, 3n));
      const replayed = run(() => graph.launch());
      expect(Buffer.from(replayed.buffer).equals(Buffer.from(direct.buffer))).toBe(true);
      // Twice in a row = the sequence twice.
      const directTwice = run(() => { sequence(stream, y, x, 2, 0.5, 3n); sequence(stream, y, x, 2, 0.5, 3n); });
      expect(Buffer.from(run(() => { graph.launch(); graph.launch(); }).buffer).equals(Buffer.from(directTwice.buffer))).toBe(true);

      const nodes = graph.kernelNodes();
      expect(nodes.map((node) => node.kernel?.name)).toEqual(["saxpy", "scale_shift", "saxpy"]);
      expect(nodes[0]?.grid).toEqual([n / 256, 1, 1]);
      const [first, second] = nodes;
      if (first === undefined || second === undefined) throw new Error("expected kernel nodes");
      graph.updateKernelNode(first, { args: [y, x2, { f32: 3 }, { i32: n }] });
      graph.updateKernelNode(second, { args: [y, { f32: -0.25 }, { i64: 7n }, { i32: n }] });
      const updated = run(() => graph.launch());
      const directUpdated = run(() => {
        k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x2, { f32: 3 }, { i32: n }] });
        k.scale_shift.launch({ grid: n / 256, block: 256, stream, args: [y, { f32: -0.25 }, { i64: 7n }, { i32: n }] });
        k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x, { f32: -1 }, { i32: n }] });
      });
      expect(Buffer.from(updated.buffer).equals(Buffer.from(directUpdated.buffer))).toBe(true);
      expect(Buffer.from(updated.buffer).equals(Buffer.from(direct.buffer))).toBe(false);
      // Geometry can change too: half the grid touches half the elements.
      graph.updateKernelNode(second, { grid: n / 512, args: [y, { f32: 0 }, { i64: 0n }, { i32: n }] });
      const half = run(() => graph.launch());
      const expectedHalf = run(() => {
        k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x2, { f32: 3 }, { i32: n }] });
        k.scale_shift.launch({ grid: n / 512, block: 256, stream, args: [y, { f32: 0 }, { i64: 0n }, { i32: n }] });
        k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x, { f32: -1 }, { i32: n }] });
      });
      expect(Buffer.from(half.buffer).equals(Buffer.from(expectedHalf.buffer))).toBe(true);
      graph.dispose();
      stream.dispose();
    });

    it("ends a failed capture cleanly and refuses the legacy stream", () => {
      const stream = device.createStream();
      expect(() => CudaGraph.capture(stream, () => { throw new Error("planned failure"); })).toThrow("planned failure");
      // The stream is usable again afterwards.
      const y = scratch(n), x = upload(randomFloats(n, seed++));
      const graph = stream.capture(() => k.saxpy.launch({ grid: n / 256, block: 256, stream, args: [y, x, { f32: 1 }, { i32: n }] }));
      graph.dispose();
      expect(() => CudaGraph.capture(device.stream, () => {})).toThrow(/legacy default stream/);
      stream.dispose();
    });
  }

  it("runs NCCL collectives on a single rank", () => {
    console.info(`NCCL ${ncclVersion()}`);
    const id = ncclUniqueId();
    expect(id.byteLength).toBe(128);
    const comm = NcclComm.init(device, { nranks: 1, rank: 0, id });
    const values = randomFloats(1000, seed++);
    const send = upload(values), recv = scratch(1000);
    ncclGroup(() => comm.allReduce(send, recv, "sum"));
    comm.allGather(send, scratch(1000));
    comm.reduceScatter(send, scratch(1000), "max");
    comm.broadcast(send, recv, 0);
    comm.synchronize();
    expect(Array.from(recv.copyToHost(new Float32Array(1000)))).toEqual(Array.from(values));
    expect(() => comm.allGather(send, scratch(999))).toThrow(/must be 4000 bytes, got 3996/);
    comm.dispose();
  });

  it("runs a process without NVRTC on kernels imported from an exported cache, with zero compiles", async () => {
    const exported = join(cacheDir, "..", `${cacheDir.split("/").at(-1) ?? "x"}.tsgcpack`);
    new KernelCache(cacheDir).exportTo(exported, { arch: device.info.arch });
    const runOnly = mkdtempSync(join(tmpdir(), "tsgc-run-only-"));
    new KernelCache(runOnly).importFrom(exported);
    clearKernelMemo();
    const runtimeUrl = builtModuleUrl("runtime/index.ts");
    const script = `
      import { Arena, Device, loadKernels } from ${JSON.stringify(runtimeUrl)};
      const device = Device.open(0);
      const { byName, compileResult } = await loadKernels(device, [{ name: "saxpy", source: process.argv[1], entry: "saxpy" }]);
      const arena = Arena.allocate(device, 4096);
      const x = arena.tensor(0, "f32", 4), y = arena.tensor(256, "f32", 4);
      x.copyFromHost(new Float32Array([1, 2, 3, 4]));
      y.copyFromHost(new Float32Array([10, 20, 30, 40]));
      byName.get("saxpy").launch({ grid: 1, block: 4, args: [y, x, { f32: 2 }, { i32: 4 }] });
      const out = y.copyToHost(new Float32Array(4));
      process.stdout.write(JSON.stringify({ compiles: compileResult.compiles, hits: compileResult.hits, out: Array.from(out) }));
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, SAXPY], {
      env: { ...process.env, TSGC_CACHE_DIR: runOnly, TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" }, cwd: REPO_ROOT,
    });
    let stdout = "", stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    rmSync(runOnly, { recursive: true, force: true });
    rmSync(exported, { force: true });
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ compiles: 0, hits: 1, out: [12, 24, 36, 48] });
  });
});
