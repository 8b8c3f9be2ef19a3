// The kernel cache under hostile or careless conditions: an unusable cache directory (a path through a
// file, /proc), symlinks out of the cache, non-regular export targets and import archives, and packs that
// try to replace a cached kernel's machine code. Parallel compiles must never abort the process.
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  cacheKey, CacheArchiveError, clearKernelMemo, compileKernels, encodeEntry, encodePack, KernelCache, type CacheEntry, type KernelSource,
} from "../../runtime/kernel-cache.js";
import { builtModuleUrl, describeNvrtc, REPO_ROOT } from "../tiers.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tsgc-cache-hard-"));
  clearKernelMemo();
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

function syntheticEntry(source: string, imageByte = 7): CacheEntry {
  const inputs = { source, options: [], arch: "sm_90", output: "cubin" as const, nvrtcVersion: "12.8", codegenVersion: "1" };
  return {
    header: { ...inputs, key: cacheKey(inputs), name: `k_${source}`, entry: "k", createdAt: "2026-01-01T00:00:00Z", sourceBytes: 0, imageBytes: 0, logBytes: 0 },
    source, image: new Uint8Array(64).fill(imageByte), log: "",
  };
}

function mkfifo(path: string): void {
  const r = spawnSync("mkfifo", [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr.toString()}`);
}

/** Runs a module script (the built dist/ code) in a child with a deadline, so a hang fails the test instead of the run. */
function runChildScript(script: string, timeoutMs = 15_000): { code: number | null; stdout: string; stderr: string; timedOut: boolean } {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: REPO_ROOT, encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, timedOut: r.error !== undefined || r.signal === "SIGKILL" };
}

const ENTRY_NAME = `${"ab".repeat(32)}.tsgck`;

describe("cache clear and verify never follow a symlink out of the cache", () => {
  it("clear removes a symlinked version directory's link, not the files it points at", () => {
    const outside = join(dir, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, ENTRY_NAME), "precious");
    const cache = new KernelCache(join(dir, "cache"));
    cache.write(syntheticEntry("one"));
    symlinkSync(outside, join(cache.kernelsDir, "nvrtc-11.8"));
    cache.clear();
    expect(readFileSync(join(outside, ENTRY_NAME), "utf8")).toBe("precious");
    expect(existsSync(join(cache.kernelsDir, "nvrtc-11.8"))).toBe(false);
  });

  it("clear removes a symlinked entry's link, not its target", () => {
    const target = join(dir, "target.txt");
    writeFileSync(target, "precious");
    const cache = new KernelCache(join(dir, "cache"));
    cache.write(syntheticEntry("one"));
    symlinkSync(target, join(cache.kernelsDir, "nvrtc-12.8", ENTRY_NAME));
    expect(cache.clear()).toBe(2);
    expect(readFileSync(target, "utf8")).toBe("precious");
  });

  it("a write replaces a link planted at an entry's name instead of writing through it", () => {
    const target = join(dir, "victim.txt");
    writeFileSync(target, "precious");
    const cache = new KernelCache(join(dir, "cache"));
    const entry = syntheticEntry("planted");
    mkdirSync(join(cache.kernelsDir, "nvrtc-12.8"), { recursive: true });
    const path = cache.pathFor(entry.header.key, "12.8");
    symlinkSync(target, path);
    cache.write(entry);
    expect(readFileSync(target, "utf8")).toBe("precious");
    expect(lstatSync(path).isFile()).toBe(true);
    expect(cache.read(entry.header.key, "12.8")?.source).toBe("planted");
  });

  it("list reports a symlinked directory instead of reading through it", () => {
    const outside = join(dir, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, ENTRY_NAME), "precious");
    const cache = new KernelCache(join(dir, "cache"));
    mkdirSync(cache.kernelsDir, { recursive: true });
    symlinkSync(outside, join(cache.kernelsDir, "nvrtc-12.8"));
    const listing = cache.list();
    expect(listing).toHaveLength(1);
    expect(listing[0]).toMatchObject({ relativePath: "kernels/nvrtc-12.8", problem: expect.stringMatching(/symbolic link/) });
    cache.remove(listing[0]!.relativePath);
    expect(readFileSync(join(outside, ENTRY_NAME), "utf8")).toBe("precious");
    expect(cache.list()).toEqual([]);
  });
});

describe("cache export writes only regular files, through a temp file beside the target", () => {
  it("refuses a directory as the target, naming it, and leaves no temp file", () => {
    const cache = new KernelCache(join(dir, "cache"));
    cache.write(syntheticEntry("one"));
    const target = join(dir, "out");
    mkdirSync(target);
    expect(() => cache.exportTo(target)).toThrow(`tsgc: cannot write ${target}: it is a directory, not a regular file`);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("refuses a named pipe as the target and leaves it a pipe", () => {
    const cache = new KernelCache(join(dir, "cache"));
    cache.write(syntheticEntry("one"));
    const fifo = join(dir, "pipe");
    mkfifo(fifo);
    expect(() => cache.exportTo(fifo)).toThrow(/it is a named pipe, not a regular file/);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("replaces a regular file, and writes through a symlink to one", () => {
    const cache = new KernelCache(join(dir, "cache"));
    cache.write(syntheticEntry("one"));
    const real = join(dir, "real.tsgcpack");
    writeFileSync(real, "old");
    const link = join(dir, "link.tsgcpack");
    symlinkSync(real, link);
    expect(cache.exportTo(link).entries).toBe(1);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real).subarray(0, 8).toString("latin1")).toBe("TSGCPACK");
  });
});

describe("cache import", () => {
  it("refuses a named pipe as the archive at once instead of blocking", () => {
    const fifo = join(dir, "pipe.tsgcpack");
    mkfifo(fifo);
    const moduleUrl = builtModuleUrl("runtime/kernel-cache.ts");
    const r = runChildScript(`
      import { KernelCache } from ${JSON.stringify(moduleUrl)};
      try { new KernelCache(${JSON.stringify(join(dir, "cache"))}).importFrom(${JSON.stringify(fifo)}); console.log("imported"); }
      catch (err) { console.log(err.message); }
    `);
    expect(r.timedOut, "importFrom blocked on the pipe").toBe(false);
    expect(r.stdout.trim()).toBe(`tsgc: cannot read ${fifo}: it is a named pipe, not a regular file`);
  });

  it("refuses a pack that would replace a cached entry's machine code, names it, and writes nothing", () => {
    const cache = new KernelCache(join(dir, "cache"));
    const good = syntheticEntry("one", 7);
    const goodPath = cache.write(good);
    const before = readFileSync(goodPath);
    // a valid entry (checksum recomputed, key matches the source) with different machine code for the same key
    const forged = syntheticEntry("one", 9);
    const other = syntheticEntry("two");
    const relative = cache.relativePathFor(good.header.key, "12.8");
    const archive = join(dir, "forged.tsgcpack");
    writeFileSync(archive, encodePack([
      { path: relative, data: encodeEntry(forged) },
      { path: cache.relativePathFor(other.header.key, "12.8"), data: encodeEntry(other) },
    ]));
    expect(() => cache.importFrom(archive)).toThrow(CacheArchiveError);
    expect(() => cache.importFrom(archive)).toThrow(`${relative}: holds different machine code than the cached entry for its key (kept the cached one)`);
    expect(readFileSync(goodPath).equals(before)).toBe(true);
    expect(cache.list()).toHaveLength(1);
  });

  it("counts an entry with the same machine code but another header (another machine's createdAt) as present", () => {
    const cache = new KernelCache(join(dir, "cache"));
    const local = syntheticEntry("one");
    const path = cache.write(local);
    const before = readFileSync(path);
    const archive = join(dir, "same.tsgcpack");
    const remote = { ...local, header: { ...local.header, createdAt: "2027-02-02T00:00:00Z" } };
    writeFileSync(archive, encodePack([{ path: cache.relativePathFor(local.header.key, "12.8"), data: encodeEntry(remote) }]));
    expect(cache.importFrom(archive)).toEqual({ imported: 0, alreadyPresent: 1 });
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});

describe("an unusable cache directory", () => {
  it("is an error naming it when listed (a file is not a cache directory)", () => {
    const file = join(dir, "file");
    writeFileSync(file, "");
    expect(() => new KernelCache(file).list()).toThrow(`tsgc: cache directory ${file}: it is a regular file, not a directory`);
  });

  it("under /proc fails at once instead of spinning in a recursive mkdir", () => {
    const moduleUrl = builtModuleUrl("runtime/kernel-cache.ts");
    const r = runChildScript(`
      import { KernelCache, cacheKey } from ${JSON.stringify(moduleUrl)};
      const inputs = { source: "s", options: [], arch: "sm_90", output: "cubin", nvrtcVersion: "12.8", codegenVersion: "1" };
      const header = { ...inputs, key: cacheKey(inputs), name: "k", entry: "k", createdAt: "", sourceBytes: 0, imageBytes: 0, logBytes: 0 };
      try { new KernelCache("/proc/tsgc-no-such-dir/cache").write({ header, source: "s", image: new Uint8Array(4), log: "" }); console.log("written"); }
      catch (err) { console.log(err.message); }
    `);
    expect(r.timedOut, "mkdir spun").toBe(false);
    expect(r.stdout.trim()).toBe("tsgc: the cache directory /proc/tsgc-no-such-dir/cache cannot be used: /proc/tsgc-no-such-dir: /proc does not take new directories");
  });
});

function kernel(i: number): KernelSource {
  return { name: `hard_${i}`, entry: `hard_${i}`, source: `extern "C" __global__ void hard_${i}(float* y) { y[threadIdx.x] *= ${i + 2}.0f; }` };
}

describeNvrtc("parallel compiles with an unusable cache", () => {
  it("compile in memory with one warning when the cache path runs through a file", async () => {
    const file = join(dir, "file");
    writeFileSync(file, "");
    const warnings: string[] = [];
    vi.spyOn(process, "emitWarning").mockImplementation((w: string | Error) => void warnings.push(String(w)));
    const result = await compileKernels([kernel(1), kernel(2), kernel(3)], { arch: "sm_80", cache: join(file, "cache"), parallelism: 2 });
    expect(result).toMatchObject({ misses: 3, compiles: 3 });
    expect(result.kernels.every((k) => k.image.byteLength > 0)).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`the cache directory ${join(file, "cache")} cannot be used`);
    expect(warnings[0]).toContain("compiling in memory only");
  });

  it("compile in memory with one warning under /proc (tsgc compile, as a user runs it)", () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), "compile", "test/fixtures/user-model.ts", "--arch", "sm_80", "--json"], {
      cwd: REPO_ROOT, encoding: "utf8", env: { ...process.env, TSGC_CACHE_DIR: "/proc/tsgc-no-such-dir" }, timeout: 60_000, killSignal: "SIGKILL",
    });
    expect(r.signal, "tsgc compile hung").toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ kernelsCompiled: true, cacheMisses: 3 });
    expect(r.stderr.match(/tsgc: warning: /g)).toHaveLength(1);
    expect(r.stderr).toContain("cannot be used");
  });

  it("never aborts tsgc compile when TSGC_CACHE_DIR is a file", () => {
    const file = join(dir, "file");
    writeFileSync(file, "");
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), "compile", "test/fixtures/user-model.ts", "--arch", "sm_80"], {
      cwd: REPO_ROOT, encoding: "utf8", env: { ...process.env, TSGC_CACHE_DIR: file }, timeout: 60_000,
    });
    expect(r.stderr).not.toContain("terminate called");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.match(/tsgc: warning: /g)).toHaveLength(1);
  });

  it.skipIf(process.getuid?.() === 0)("compile in memory with one warning when the shared cache directory is read-only (not as root: root ignores permissions)", async () => {
    const shared = join(dir, "shared");
    mkdirSync(join(shared, "kernels"), { recursive: true });
    spawnSync("chmod", ["-R", "a-w", shared]);
    const warnings: string[] = [];
    vi.spyOn(process, "emitWarning").mockImplementation((w: string | Error) => void warnings.push(String(w)));
    try {
      const result = await compileKernels([kernel(4), kernel(5)], { arch: "sm_80", cache: shared, parallelism: 2 });
      expect(result.compiles).toBe(2);
      expect(warnings).toHaveLength(1);
    } finally {
      spawnSync("chmod", ["-R", "u+w", shared]);
    }
  });
});
