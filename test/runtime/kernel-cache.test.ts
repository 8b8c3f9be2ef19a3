// The compiled-kernel cache: keys, the self-checking entry format, damaged entries, concurrent
// writers, export/import between machines, and the parallel compile path.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  cacheKey, CacheArchiveError, CacheEntryError, clearKernelMemo, compileCount, compileKernels, decodeEntry, decodePack,
  defaultCacheDir, encodeEntry, encodePack, KernelCache, type CacheEntry, type CacheProblem, type KernelSource,
} from "../../runtime/kernel-cache.js";
import { NvrtcCompileError } from "../../runtime/nvrtc.js";
import { addonPath } from "../../runtime/native.js";
import { builtModuleUrl, describeNvrtc, REPO_ROOT } from "../tiers.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tsgc-cache-test-"));
  clearKernelMemo();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const KEY_INPUTS = { source: "k", options: ["-lineinfo"], arch: "sm_90", output: "cubin", nvrtcVersion: "12.8", codegenVersion: "1" } as const;

function syntheticEntry(source: string, nvrtcVersion = "12.8"): CacheEntry {
  const key = cacheKey({ ...KEY_INPUTS, source, nvrtcVersion });
  return {
    header: {
      key, name: "synthetic", entry: "k", arch: "sm_90", output: "cubin", nvrtcVersion, codegenVersion: "1",
      options: ["-lineinfo"], createdAt: "2026-01-01T00:00:00.000Z", sourceBytes: 0, imageBytes: 0, logBytes: 0,
    },
    source,
    image: Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3, 4]),
    log: "",
  };
}

describe("cache location", () => {
  it("is TSGC_CACHE_DIR, else $XDG_CACHE_HOME/tsgc, else ~/.cache/tsgc", () => {
    expect(defaultCacheDir({ TSGC_CACHE_DIR: "/x/y", XDG_CACHE_HOME: "/xdg" })).toBe("/x/y");
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/xdg" })).toBe("/xdg/tsgc");
    expect(defaultCacheDir({})).toMatch(/\.cache\/tsgc$/);
  });
});

describe("cache keys", () => {
  it("are stable and change with every input", () => {
    const base = cacheKey(KEY_INPUTS);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey({ ...KEY_INPUTS })).toBe(base);
    const variants = [
      { source: "k " }, { options: ["-lineinfo", "-O3"] }, { options: [] }, { arch: "sm_80" }, { output: "ptx" as const },
      { nvrtcVersion: "13.0" }, { codegenVersion: "2" },
    ];
    const keys = variants.map((v) => cacheKey({ ...KEY_INPUTS, ...v }));
    expect(new Set([base, ...keys]).size).toBe(variants.length + 1);
    // Field boundaries matter: moving text between options and source is a different key.
    expect(cacheKey({ ...KEY_INPUTS, options: ["a"], source: "bc" })).not.toBe(cacheKey({ ...KEY_INPUTS, options: ["ab"], source: "c" }));
  });
});

describe("cache entry format", () => {
  it("round-trips", () => {
    const entry = syntheticEntry("extern \"C\" __global__ void k() {}");
    const decoded = decodeEntry(encodeEntry(entry), entry.header.key);
    expect(decoded.source).toBe(entry.source);
    expect(Array.from(decoded.image)).toEqual(Array.from(entry.image));
    expect(decoded.header.imageBytes).toBe(8);
  });

  it("detects truncation at any length", () => {
    const bytes = encodeEntry(syntheticEntry("source"));
    for (const length of [0, 10, 43, 44, bytes.length - 1]) {
      expect(() => decodeEntry(bytes.subarray(0, length))).toThrow(CacheEntryError);
    }
  });

  it("detects a flipped bit anywhere", () => {
    const bytes = encodeEntry(syntheticEntry("source"));
    for (let at = 0; at < bytes.length; at += 7) {
      const damaged = Buffer.from(bytes);
      damaged[at] = (damaged[at] ?? 0) ^ 0x10;
      expect(() => decodeEntry(damaged), `bit flip at byte ${at}`).toThrow(CacheEntryError);
    }
  });

  it("rejects an intact entry whose content does not hash to its key, or that sits under another key", () => {
    const entry = syntheticEntry("original");
    const lying = encodeEntry({ ...entry, source: "tampered" }); // checksum is valid, key is not
    expect(() => decodeEntry(lying)).toThrow(/content hashes to/);
    const other = syntheticEntry("other").header.key;
    expect(() => decodeEntry(encodeEntry(entry), other)).toThrow(/stored under/);
  });
});

describe("cache archives", () => {
  it("export → clear → import restores every entry byte for byte", () => {
    const cache = new KernelCache(join(dir, "a"));
    const entries = [syntheticEntry("one"), syntheticEntry("two"), syntheticEntry("three", "11.8")];
    for (const e of entries) cache.write(e);
    const archive = join(dir, "kernels.tsgcpack");
    expect(cache.exportTo(archive)).toMatchObject({ entries: 3 });
    const before = cache.list().map((l) => [l.relativePath, readFileSync(l.path).toString("hex")]);
    expect(cache.clear()).toBe(3);
    expect(cache.list()).toEqual([]);
    expect(cache.importFrom(archive)).toEqual({ imported: 3, alreadyPresent: 0 });
    expect(cache.list().map((l) => [l.relativePath, readFileSync(l.path).toString("hex")])).toEqual(before);
    expect(cache.importFrom(archive)).toEqual({ imported: 0, alreadyPresent: 3 });
    expect(cache.nvrtcVersions()).toEqual(["12.8", "11.8"]);
  });

  it("exports only the asked architecture", () => {
    const cache = new KernelCache(join(dir, "a"));
    cache.write(syntheticEntry("one"));
    expect(cache.exportTo(join(dir, "p"), { arch: "sm_80" })).toMatchObject({ entries: 0 });
  });

  it("rejects paths that escape the cache directory and writes nothing", () => {
    const cache = new KernelCache(join(dir, "cache"));
    const good = syntheticEntry("good");
    const goodPath = cache.relativePathFor(good.header.key, "12.8");
    const data = encodeEntry(good);
    for (const evil of ["../evil.tsgck", "kernels/../../evil.tsgck", `/tmp/${good.header.key}.tsgck`, "kernels/nvrtc-12.8/..\\..\\x"]) {
      const archive = join(dir, "evil.tsgcpack");
      writeFileSync(archive, encodePack([{ path: goodPath, data }, { path: evil, data }]));
      expect(() => cache.importFrom(archive)).toThrow(CacheArchiveError);
      expect(() => cache.importFrom(archive)).toThrow(/escapes the cache directory/);
    }
    expect(cache.list()).toEqual([]);
    expect(readdirSync(dir)).toEqual(["evil.tsgcpack"]); // not even the cache directory was created
    expect(existsSync(join(tmpdir(), `${good.header.key}.tsgck`))).toBe(false);
  });

  it("rejects entries whose hash does not match their content", () => {
    const cache = new KernelCache(join(dir, "cache"));
    const entry = syntheticEntry("real");
    const tampered = encodeEntry({ ...entry, source: "swapped" });
    const archive = join(dir, "bad.tsgcpack");
    writeFileSync(archive, encodePack([{ path: cache.relativePathFor(entry.header.key, "12.8"), data: tampered }]));
    expect(() => cache.importFrom(archive)).toThrow(/content hashes to/);
    // A good entry filed under another name is rejected too.
    const other = syntheticEntry("other");
    writeFileSync(archive, encodePack([{ path: cache.relativePathFor(other.header.key, "12.8"), data: encodeEntry(entry) }]));
    expect(() => cache.importFrom(archive)).toThrow(/stored under/);
    expect(cache.list()).toEqual([]);
  });

  it("rejects a truncated or corrupted archive", () => {
    const pack = encodePack([{ path: "kernels/nvrtc-12.8/x.tsgck", data: new Uint8Array(100) }]);
    expect(() => decodePack(pack.subarray(0, pack.length - 5))).toThrow(/checksum mismatch/);
    expect(() => decodePack(Buffer.from("not an archive at all, no sir, not one bit"))).toThrow(/not a tsgc cache archive/);
  });
});

/** A distinct, real kernel per index. */
function saxpyVariant(i: number): KernelSource {
  return {
    name: `variant_${i}`,
    entry: `variant_${i}`,
    source: `extern "C" __global__ void variant_${i}(float* y, const float* x, int n) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) y[j] = ${i + 1}.0f * x[j] + y[j];
}`,
  };
}

const quiet = { onCacheProblem: (_: CacheProblem) => {} };

describeNvrtc("compileKernels", () => {
  it("misses, then hits on disk, then in memory", async () => {
    const specs = [saxpyVariant(1), saxpyVariant(2)];
    const first = await compileKernels(specs, { arch: "sm_80", cache: dir });
    expect(first).toMatchObject({ hits: 0, misses: 2, compiles: 2 });
    expect(first.kernels.map((k) => k.origin)).toEqual(["nvrtc", "nvrtc"]);
    clearKernelMemo();
    const second = await compileKernels(specs, { arch: "sm_80", cache: dir });
    expect(second).toMatchObject({ hits: 2, misses: 0, compiles: 0 });
    expect(second.kernels.map((k) => k.origin)).toEqual(["disk", "disk"]);
    expect(second.kernels.map((k) => Buffer.from(k.image).toString("hex"))).toEqual(first.kernels.map((k) => Buffer.from(k.image).toString("hex")));
    const third = await compileKernels(specs, { arch: "sm_80", cache: dir });
    expect(third.kernels.map((k) => k.origin)).toEqual(["memo", "memo"]);
    // A different architecture is a different entry.
    expect(await compileKernels(specs.slice(0, 1), { arch: "sm_90", cache: dir })).toMatchObject({ misses: 1 });
  });

  it("compiles many kernels in parallel on worker threads, in order, sharing identical ones", async () => {
    const specs = [0, 1, 2, 3, 4, 5].map(saxpyVariant);
    specs.push({ ...saxpyVariant(3), name: "duplicate_of_3" });
    const progress: string[] = [];
    const result = await compileKernels(specs, { arch: "sm_80", cache: dir, parallelism: 2, onProgress: (p) => progress.push(`${p.done}/${p.total}`) });
    expect(result).toMatchObject({ misses: 7, compiles: 6 });
    expect(result.kernels.map((k) => k.name)).toEqual(specs.map((s) => s.name));
    expect(result.kernels[6]?.key).toBe(result.kernels[3]?.key);
    expect(progress).toHaveLength(7);
    expect(progress.at(-1)).toBe("7/7");
    expect(new KernelCache(dir).list().filter((l) => l.problem === undefined)).toHaveLength(6);
  });

  it("compiles in child processes too, with the same results as in-process compiles", async () => {
    const specs = [40, 41, 42].map(saxpyVariant);
    const viaProcesses = await compileKernels(specs, { arch: "sm_80", cache: false, parallelism: 2, pool: "processes" });
    expect(viaProcesses).toMatchObject({ misses: 3, compiles: 3 });
    clearKernelMemo();
    const inline = await compileKernels(specs, { arch: "sm_80", cache: false, parallelism: 1 });
    expect(viaProcesses.kernels.map((k) => Buffer.from(k.image).toString("hex"))).toEqual(inline.kernels.map((k) => Buffer.from(k.image).toString("hex")));
  });

  it("detects a truncated and a bit-flipped entry, reports them, recompiles and repairs the file", async () => {
    const specs = [saxpyVariant(7), saxpyVariant(8)];
    const first = await compileKernels(specs, { arch: "sm_80", cache: dir });
    const cache = new KernelCache(dir);
    const [truncatedPath, flippedPath] = first.kernels.map((k) => cache.pathFor(k.key, k.nvrtcVersion));
    if (truncatedPath === undefined || flippedPath === undefined) throw new Error("expected two entries");
    const whole = readFileSync(truncatedPath);
    writeFileSync(truncatedPath, whole.subarray(0, Math.floor(whole.length / 2)));
    const flipped = readFileSync(flippedPath);
    flipped[flipped.length - 100] = (flipped[flipped.length - 100] ?? 0) ^ 0x01;
    writeFileSync(flippedPath, flipped);
    expect(cache.list().filter((l) => l.problem !== undefined)).toHaveLength(2);

    clearKernelMemo();
    const problems: CacheProblem[] = [];
    const second = await compileKernels(specs, { arch: "sm_80", cache: dir, onCacheProblem: (p) => problems.push(p) });
    expect(problems.map((p) => p.path).sort()).toEqual([truncatedPath, flippedPath].sort());
    expect(problems.every((p) => /checksum mismatch|truncated/.test(p.problem))).toBe(true);
    expect(second).toMatchObject({ hits: 0, misses: 2, compiles: 2 });
    expect(second.kernels.map((k) => Buffer.from(k.image).toString("hex"))).toEqual(first.kernels.map((k) => Buffer.from(k.image).toString("hex")));
    expect(cache.list().filter((l) => l.problem !== undefined)).toEqual([]);
  });

  it("compiles everything else, caches it, and then throws the broken kernel's error", async () => {
    const broken: KernelSource = { name: "broken", entry: "broken", source: `extern "C" __global__ void broken() { nope(); }` };
    await expect(compileKernels([saxpyVariant(20), broken, saxpyVariant(21)], { arch: "sm_80", cache: dir, parallelism: 2 }))
      .rejects.toBeInstanceOf(NvrtcCompileError);
    clearKernelMemo();
    expect(await compileKernels([saxpyVariant(20), saxpyVariant(21)], { arch: "sm_80", cache: dir })).toMatchObject({ hits: 2 });
  });

  it("export → clear → import → every kernel hits with zero compiles", async () => {
    const specs = [10, 11, 12].map(saxpyVariant);
    await compileKernels(specs, { arch: "sm_90", cache: dir, ...quiet });
    const cache = new KernelCache(dir);
    const archive = join(dir, "..", `${dir.split("/").at(-1) ?? "x"}.tsgcpack`);
    try {
      expect(cache.exportTo(archive).entries).toBe(3);
      cache.clear();
      clearKernelMemo();
      expect(cache.importFrom(archive).imported).toBe(3);
      const compilesBefore = compileCount();
      const result = await compileKernels(specs, { arch: "sm_90", cache: dir });
      expect(result).toMatchObject({ hits: 3, misses: 0, compiles: 0 });
      expect(compileCount()).toBe(compilesBefore);
    } finally {
      rmSync(archive, { force: true });
    }
  });

  // Child processes run the compiled module (dist/), which `npm test` builds first.
  function runChild(script: string, env: Record<string, string>, args: string[] = []): { ready: Promise<void>; go: () => void; done: Promise<string> } {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, ...args], {
      env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], cwd: REPO_ROOT,
    });
    let stdout = "";
    let stderr = "";
    let markReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes("ready\n")) markReady();
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const done = new Promise<string>((resolve, reject) => {
      child.on("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`child exited ${code}: ${stderr}`))));
    });
    return { ready, go: () => child.stdin.end("go\n"), done };
  }

  const CHILD_COMPILE = (moduleUrl: string) => `
    import { compileKernels } from ${JSON.stringify(moduleUrl)};
    const specs = JSON.parse(process.argv[1]);
    process.stdout.write("ready\\n");
    await new Promise((resolve) => process.stdin.once("data", resolve));
    const result = await compileKernels(specs, { arch: "sm_80", parallelism: 1, onCacheProblem: (p) => { throw new Error(p.problem); } });
    process.stdout.write(JSON.stringify({ hits: result.hits, misses: result.misses, origin: result.kernels[0].origin }) + "\\n");
  `;

  it("lets two processes compile the same kernel at once; both succeed and the entry is sound", async () => {
    const moduleUrl = builtModuleUrl("runtime/kernel-cache.ts");
    // A kernel that takes NVRTC a while, so the two compiles overlap.
    const heavy: KernelSource = {
      name: "heavy", entry: "heavy",
      source: `extern "C" __global__ void heavy(float* y, int n) {
        float v = y[threadIdx.x];
        #pragma unroll
        for (int i = 0; i < 512; ++i) v = __sinf(v) * 1.0001f + __cosf(v * 0.731f);
        y[threadIdx.x] = v;
      }`,
    };
    const children = [0, 1].map(() => runChild(CHILD_COMPILE(moduleUrl), { TSGC_CACHE_DIR: dir }, [JSON.stringify([heavy])]));
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.go();
    const outputs = await Promise.all(children.map((c) => c.done));
    const reports = outputs.map((o) => JSON.parse(o.trim().split("\n").at(-1) ?? "{}") as { misses: number; origin: string });
    // Both missed: each compiled while the other was compiling, and both renamed into place.
    expect(reports.map((r) => r.origin)).toEqual(["nvrtc", "nvrtc"]);
    const listing = new KernelCache(dir).list();
    expect(listing).toHaveLength(1);
    expect(listing[0]?.problem).toBeUndefined();
    clearKernelMemo();
    expect(await compileKernels([heavy], { arch: "sm_80", cache: dir })).toMatchObject({ hits: 1 });
  });

  it("serves a run-only machine without NVRTC from imported entries, and names the library on a miss", async () => {
    const moduleUrl = builtModuleUrl("runtime/kernel-cache.ts");
    const specs = [30, 31].map(saxpyVariant);
    await compileKernels(specs, { arch: "sm_90", cache: dir });
    const script = `
      import { compileKernels } from ${JSON.stringify(moduleUrl)};
      const specs = JSON.parse(process.argv[1]);
      process.stdout.write("ready\\n");
      const hit = await compileKernels(specs.slice(0, 2), { arch: "sm_90" });
      let missError = "";
      try { await compileKernels(specs, { arch: "sm_90" }); } catch (err) { missError = err.message; }
      process.stdout.write(JSON.stringify({ hits: hit.hits, compiles: hit.compiles, missError }) + "\\n");
    `;
    const child = runChild(script, { TSGC_CACHE_DIR: dir, TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so.12" }, [JSON.stringify([...specs, saxpyVariant(32)])]);
    child.go();
    const report = JSON.parse((await child.done).trim().split("\n").at(-1) ?? "{}") as { hits: number; compiles: number; missError: string };
    expect(report.hits).toBe(2);
    expect(report.compiles).toBe(0);
    expect(report.missError).toContain("1 of 3 kernels are not in the cache for sm_90");
    expect(report.missError).toContain("/nonexistent/libnvrtc.so.12");
    expect(report.missError).toContain("TSGC_NVRTC_LIBRARY");
  });
});

describe("the addon", () => {
  it("is built", () => {
    expect(statSync(addonPath()).size).toBeGreaterThan(0);
  });
});
