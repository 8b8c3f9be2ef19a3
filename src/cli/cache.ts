// `tsgc cache ls | verify | clear | export <file> | import <file>`: inspect and move the compiled-kernel
// cache (runtime/kernel-cache.ts) and the plans cached beside it (src/compile/plan-cache.ts). The directory
// is --dir, else TSGC_CACHE_DIR, else $XDG_CACHE_HOME/tsgc, else ~/.cache/tsgc. Export and import move
// kernels only: a plan is rebuilt from the model in a second, its kernels are what takes minutes.
import { formatBytes } from "../format.js";
import { type CliIo, processIo } from "./io.js";
import type { Command } from "commander";
import { clearCachedPlans, listCachedPlans, type PlanListing, removeCachedPlanFile } from "../compile/plan-cache.js";
import { defaultCacheDir, KernelCache, type CacheListing } from "../../runtime/kernel-cache.js";

function openCache(command: Command): KernelCache {
  const { dir } = command.optsWithGlobals<{ dir?: string }>();
  return new KernelCache(dir ?? defaultCacheDir());
}

function describeEntry(listing: CacheListing): string {
  const h = listing.header;
  if (h === undefined) return `${listing.relativePath}  ${formatBytes(listing.bytes)}`;
  return [
    h.key.slice(0, 16), `nvrtc ${h.nvrtcVersion}`.padEnd(12), h.arch.padEnd(7), h.output.padEnd(5),
    formatBytes(listing.bytes).padStart(10), ` ${h.name}`,
  ].join(" ");
}

function describePlan(listing: PlanListing): string {
  const key = listing.relativePath.replace(/^plans\//, "").slice(0, 16);
  return `plan ${key} ${(listing.arch ?? "").padEnd(7)} ${`${listing.kernels ?? 0} kernels`.padEnd(12)} ${formatBytes(listing.bytes).padStart(10)}  ${listing.model ?? ""}`;
}

/** Kernel entries and plans together, for verify: what is bad and how to remove it. */
function everyFile(kernelCache: KernelCache): { relativePath: string; problem?: string | undefined; remove: () => void }[] {
  return [
    ...kernelCache.list().map((l) => ({ relativePath: l.relativePath, problem: l.problem, remove: () => kernelCache.remove(l.relativePath) })),
    ...listCachedPlans(kernelCache.dir).map((l) => ({ relativePath: l.relativePath, problem: l.problem, remove: () => removeCachedPlanFile(kernelCache.dir, l.relativePath) })),
  ];
}

export function registerCacheCommand(program: Command, io: CliIo = processIo): void {
  const cache = program
    .command("cache")
    .description("inspect, check, clear, export and import the compiled-kernel cache (and the plans cached beside it)")
    .option("--dir <path>", "cache directory (default: TSGC_CACHE_DIR, $XDG_CACHE_HOME/tsgc or ~/.cache/tsgc)");

  cache
    .command("ls")
    .description("list cached kernels and plans")
    .option("--json", "print one JSON object per entry")
    .action((opts: { json?: boolean }, command: Command) => {
      const kernelCache = openCache(command);
      const listings = kernelCache.list();
      const plans = listCachedPlans(kernelCache.dir);
      if (opts.json) {
        for (const l of listings) io.stdout(`${JSON.stringify({ kind: "kernel", path: l.relativePath, bytes: l.bytes, ...l.header, problem: l.problem })}\n`);
        for (const p of plans) io.stdout(`${JSON.stringify({ kind: "plan", path: p.relativePath, bytes: p.bytes, model: p.model, arch: p.arch, kernels: p.kernels, problem: p.problem })}\n`);
        return;
      }
      const good = listings.filter((l) => l.problem === undefined);
      const goodPlans = plans.filter((p) => p.problem === undefined);
      for (const l of good) io.stdout(`${describeEntry(l)}\n`);
      for (const p of goodPlans) io.stdout(`${describePlan(p)}\n`);
      const bad = listings.length - good.length + plans.length - goodPlans.length;
      const total = [...listings, ...plans].reduce((sum, l) => sum + l.bytes, 0);
      io.stdout(`${good.length} kernels, ${goodPlans.length} plans, ${formatBytes(total)} in ${kernelCache.dir}${bad > 0 ? `; ${bad} damaged (run \`tsgc cache verify\`)` : ""}\n`);
    });

  cache
    .command("verify")
    .description("check every kernel entry's and plan's checksum and key; exits non-zero if any is damaged")
    .option("--delete", "delete damaged entries and plans and leftover temp files")
    .action((opts: { delete?: boolean }, command: Command) => {
      const kernelCache = openCache(command);
      const files = everyFile(kernelCache);
      const bad = files.filter((f) => f.problem !== undefined);
      for (const f of bad) {
        io.stdout(`BAD  ${f.relativePath}: ${f.problem ?? ""}${opts.delete ? " (deleted)" : ""}\n`);
        if (opts.delete) f.remove();
      }
      io.stdout(`${files.length - bad.length} good, ${bad.length} damaged in ${kernelCache.dir}\n`);
      if (bad.length > 0 && !opts.delete) {
        throw new Error(`${bad.length} damaged cache entries (they are recompiled when next needed; --delete removes them)`);
      }
    });

  cache
    .command("clear")
    .description("delete every cached kernel and plan (symbolic links are removed, never followed)")
    .action((_opts: object, command: Command) => {
      const kernelCache = openCache(command);
      const kernels = kernelCache.clear();
      const plans = clearCachedPlans(kernelCache.dir);
      io.stdout(`removed ${kernels + plans} files (${kernels} kernels, ${plans} plans) from ${kernelCache.dir}\n`);
    });

  cache
    .command("export")
    .description("pack cached kernels into one file, for another machine of the same GPU architecture")
    .argument("<file>", "archive to write (a new or regular file; written beside it, then renamed)")
    .option("--arch <sm_XX>", "only kernels for this architecture")
    .action((file: string, opts: { arch?: string }, command: Command) => {
      const kernelCache = openCache(command);
      const { entries, bytes } = kernelCache.exportTo(file, opts.arch !== undefined ? { arch: opts.arch } : {});
      io.stdout(`exported ${entries} kernels (${formatBytes(bytes)}) to ${file}\n`);
    });

  cache
    .command("import")
    .description("unpack an archive made by `tsgc cache export`; rejects it whole if any entry is unsafe, damaged or would replace a cached kernel's machine code")
    .argument("<file>", "archive to read")
    .action((file: string, _opts: object, command: Command) => {
      const kernelCache = openCache(command);
      const { imported, alreadyPresent } = kernelCache.importFrom(file);
      io.stdout(`imported ${imported} kernels into ${kernelCache.dir} (${alreadyPresent} already present)\n`);
    });
}
