// `tsgc cache ls | verify | clear | export | import` on a scratch cache of synthetic entries
// (valid entry files need no NVRTC: the format is checked, not the machine code).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { registerCacheCommand } from "../../src/cli/cache.js";
import { runVerbs } from "../cli/capture.js";
import { cacheKey, encodeEntry, encodePack, KernelCache, type CacheEntry } from "../../runtime/kernel-cache.js";

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "tsgc-cache-cli-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function entry(source: string, arch = "sm_90"): CacheEntry {
  const inputs = { source, options: [], arch, output: "cubin" as const, nvrtcVersion: "12.8", codegenVersion: "1" };
  return {
    header: { ...inputs, key: cacheKey(inputs), name: `k_${source}`, entry: "k", createdAt: "2026-01-01T00:00:00Z", sourceBytes: 0, imageBytes: 0, logBytes: 0 },
    source, image: new Uint8Array(2048).fill(7), log: "",
  };
}

const tsgc = (...args: string[]) => runVerbs([registerCacheCommand], ...args);

describe("tsgc cache", () => {
  it("ls lists entries with key, NVRTC version, arch and name", async () => {
    const dir = join(root, "c");
    const cache = new KernelCache(dir);
    const e = entry("alpha");
    cache.write(e);
    cache.write(entry("beta", "sm_80"));
    const { out } = await tsgc("cache", "--dir", dir, "ls");
    expect(out).toContain(e.header.key.slice(0, 16));
    expect(out).toMatch(/nvrtc 12\.8\s+sm_90\s+cubin\s+2\.\d+ KiB\s+k_alpha/);
    expect(out).toContain("k_beta");
    expect(out).toContain(`2 kernels`);
    const json = (await tsgc("cache", "--dir", dir, "ls", "--json")).out.trim().split("\n").map((l) => JSON.parse(l) as { name: string });
    expect(json.map((j) => j.name).sort()).toEqual(["k_alpha", "k_beta"]);
  });

  it("honours TSGC_CACHE_DIR when --dir is absent", async () => {
    const dir = join(root, "env");
    new KernelCache(dir).write(entry("gamma"));
    const saved = process.env["TSGC_CACHE_DIR"];
    process.env["TSGC_CACHE_DIR"] = dir;
    try {
      expect((await tsgc("cache", "ls")).out).toContain("k_gamma");
    } finally {
      if (saved === undefined) delete process.env["TSGC_CACHE_DIR"];
      else process.env["TSGC_CACHE_DIR"] = saved;
    }
  });

  it("verify reports damaged entries and fails; --delete removes them", async () => {
    const dir = join(root, "c");
    const cache = new KernelCache(dir);
    const path = cache.write(entry("alpha"));
    cache.write(entry("beta"));
    writeFileSync(path, readFileSync(path).subarray(0, 100));
    writeFileSync(`${path}.tmp-999-0-abcd`, "half-written");
    const first = await tsgc("cache", "--dir", dir, "verify");
    expect(first.error).toContain("2 damaged cache entries");
    expect(first.out).toMatch(/BAD .*\.tsgck: checksum mismatch/);
    expect(first.out).toMatch(/BAD .*tmp-999-0-abcd: unfinished temp file/);
    expect(first.out).toContain("1 good, 2 damaged");
    expect((await tsgc("cache", "--dir", dir, "verify", "--delete")).error).toBeUndefined();
    const again = await tsgc("cache", "--dir", dir, "verify");
    expect(again.error).toBeUndefined();
    expect(again.out).toContain("1 good, 0 damaged");
  });

  it("export → clear → import round-trips, and import rejects an escaping archive", async () => {
    const dir = join(root, "c");
    const cache = new KernelCache(dir);
    cache.write(entry("alpha"));
    cache.write(entry("beta", "sm_80"));
    const archive = join(root, "pack.tsgcpack");
    expect((await tsgc("cache", "--dir", dir, "export", archive, "--arch", "sm_90")).out).toContain("exported 1 kernels");
    expect((await tsgc("cache", "--dir", dir, "clear")).out).toContain("removed 2 files");
    expect((await tsgc("cache", "--dir", dir, "ls")).out).toContain("0 kernels");
    expect((await tsgc("cache", "--dir", dir, "import", archive)).out).toContain("imported 1 kernels");
    expect((await tsgc("cache", "--dir", dir, "ls")).out).toContain("k_alpha");

    const evil = join(root, "evil.tsgcpack");
    writeFileSync(evil, encodePack([{ path: "../../outside.tsgck", data: encodeEntry(entry("x")) }]));
    const rejected = await tsgc("cache", "--dir", dir, "import", evil);
    expect(rejected.error).toContain("escapes the cache directory");
    expect(rejected.error).toContain("nothing imported");
  });

  it("ls on a file is an error naming it, not \"0 kernels\"", async () => {
    const file = join(root, "not-a-dir");
    writeFileSync(file, "x");
    const r = await tsgc("cache", "--dir", file, "ls");
    expect(r.error).toBe(`tsgc: cache directory ${file}: it is a regular file, not a directory`);
    expect(r.out).not.toContain("0 kernels");
  });

  it("gives one clear error for a file that is not an archive", async () => {
    const notArchive = join(root, "x.bin");
    writeFileSync(notArchive, "hello");
    expect((await tsgc("cache", "--dir", join(root, "c"), "import", notArchive)).error).toContain("not a tsgc cache archive");
  });
});
