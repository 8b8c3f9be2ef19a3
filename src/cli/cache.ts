// `tsgc cache ls | verify | clear | export <file> | import <file>`: inspect and move the
// compiled-kernel cache (runtime/kernel-cache.ts). The directory is --dir, else TSGC_CACHE_DIR,
// else $XDG_CACHE_HOME/tsgc, else ~/.cache/tsgc.
import { formatBytes } from "../format.js";
import { type CliIo, processIo } from "./io.js";
import type { Command } from "commander";
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

export function registerCacheCommand(program: Command, io: CliIo = processIo): void {
  const cache = program
    .command("cache")
    .description("inspect, check, clear, export and import the compiled-kernel cache")
    .option("--dir <path>", "cache directory (default: TSGC_CACHE_DIR, $XDG_CACHE_HOME/tsgc or ~/.cache/tsgc)");

  cache
    .command("ls")
    .description("list cached kernels")
    .option("--json", "print one JSON object per entry")
    .action((opts: { json?: boolean }, command: Command) => {
      const kernelCache = openCache(command);
      const listings = kernelCache.list();
      if (opts.json) {
        for (const l of listings) io.stdout(`${JSON.stringify({ path: l.relativePath, bytes: l.bytes, ...l.header, problem: l.problem })}\n`);
        return;
      }
      const good = listings.filter((l) => l.problem === undefined);
      for (const l of good) io.stdout(`${describeEntry(l)}\n`);
      const bad = listings.length - good.length;
      const total = listings.reduce((sum, l) => sum + l.bytes, 0);
      io.stdout(`${good.length} kernels, ${formatBytes(total)} in ${kernelCache.dir}${bad > 0 ? `; ${bad} damaged (run \`tsgc cache verify\`)` : ""}\n`);
    });

  cache
    .command("verify")
    .description("check every entry's checksum and key; exits non-zero if any is damaged")
    .option("--delete", "delete damaged entries and leftover temp files")
    .action((opts: { delete?: boolean }, command: Command) => {
      const kernelCache = openCache(command);
      const listings = kernelCache.list();
      const bad = listings.filter((l) => l.problem !== undefined);
      for (const l of bad) {
        io.stdout(`BAD  ${l.relativePath}: ${l.problem ?? ""}${opts.delete ? " (deleted)" : ""}\n`);
        if (opts.delete) kernelCache.remove(l.relativePath);
      }
      io.stdout(`${listings.length - bad.length} good, ${bad.length} damaged in ${kernelCache.dir}\n`);
      if (bad.length > 0 && !opts.delete) {
        throw new Error(`${bad.length} damaged cache entries (they are recompiled when next needed; --delete removes them)`);
      }
    });

  cache
    .command("clear")
    .description("delete every cached kernel")
    .action((_opts: object, command: Command) => {
      const kernelCache = openCache(command);
      io.stdout(`removed ${kernelCache.clear()} files from ${kernelCache.dir}\n`);
    });

  cache
    .command("export")
    .description("pack cached kernels into one file, for another machine of the same GPU architecture")
    .argument("<file>", "archive to write")
    .option("--arch <sm_XX>", "only kernels for this architecture")
    .action((file: string, opts: { arch?: string }, command: Command) => {
      const kernelCache = openCache(command);
      const { entries, bytes } = kernelCache.exportTo(file, opts.arch !== undefined ? { arch: opts.arch } : {});
      io.stdout(`exported ${entries} kernels (${formatBytes(bytes)}) to ${file}\n`);
    });

  cache
    .command("import")
    .description("unpack an archive made by `tsgc cache export`; rejects it whole if any entry is unsafe or damaged")
    .argument("<file>", "archive to read")
    .action((file: string, _opts: object, command: Command) => {
      const kernelCache = openCache(command);
      const { imported, alreadyPresent } = kernelCache.importFrom(file);
      io.stdout(`imported ${imported} kernels into ${kernelCache.dir} (${alreadyPresent} already present)\n`);
    });
}
