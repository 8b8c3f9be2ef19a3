// `tsgc quantize <in-dir> <out-dir>`: a bf16/f32 gpt-oss checkpoint → the official MXFP4 layout (experts only).
import type { Command } from "commander";
import { quantizeCheckpoint } from "../loader/quantize-checkpoint.js";
import { formatBytes } from "../format.js";
import { type CliIo, processIo } from "./io.js";

/** Parses "5GB", "500MB", "2.5 GiB", "1048576" into bytes. */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$/.exec(text);
  if (!match) throw new Error(`invalid size ${JSON.stringify(text)} (examples: 5GB, 500MB, 1048576)`);
  const value = Number(match[1]);
  const unit = (match[2] ?? "B").toUpperCase().replace(/B$/, "");
  const factors: Record<string, number> = { "": 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, KI: 2 ** 10, MI: 2 ** 20, GI: 2 ** 30, TI: 2 ** 40 };
  const factor = factors[unit];
  if (factor === undefined) throw new Error(`invalid size unit in ${JSON.stringify(text)}`);
  const bytes = Math.floor(value * factor);
  if (bytes <= 0) throw new Error(`size must be positive, got ${JSON.stringify(text)}`);
  return bytes;
}

/** Adds `quantize` to the program. */
export function registerQuantizeCommand(program: Command, io: CliIo = processIo): Command {
  return program
    .command("quantize")
    .description("turn a bf16/f32 gpt-oss checkpoint into an MXFP4 one (experts as *_blocks/*_scales, the official layout)")
    .argument("<in-dir>", "checkpoint directory with config.json and safetensors")
    .argument("<out-dir>", "new, empty directory for the MXFP4 checkpoint")
    .option("--max-shard-size <size>", "largest safetensors file to write (e.g. 5GB, 500MB)", "5GB")
    .action(async (inDir: string, outDir: string, opts: { maxShardSize: string }) => {
      const maxShardBytes = parseByteSize(opts.maxShardSize);
      const started = Date.now();
      io.stderr(`quantize: ${inDir} → ${outDir}\n`);
      const result = await quantizeCheckpoint(inDir, outDir, {
        maxShardBytes,
        onProgress: (p) => {
          const pct = p.bytesTotal === 0 ? 100 : (100 * p.bytesWritten) / p.bytesTotal;
          io.stderr(`  [${p.index}/${p.count}] ${pct.toFixed(1).padStart(5)}%  ${p.tensor}  → ${p.shardFile}\n`);
        },
      });
      const seconds = (Date.now() - started) / 1000;
      io.stderr(
        `quantize: wrote ${result.tensors} tensors (${result.quantizedTensors} expert weights quantized) in ` +
          `${result.shardFiles.length} file${result.shardFiles.length === 1 ? "" : "s"}: ${formatBytes(result.bytesIn)} → ` +
          `${formatBytes(result.bytesOut)} in ${seconds.toFixed(1)} s` +
          (result.copiedFiles.length > 0 ? `; copied ${result.copiedFiles.join(", ")}` : "") +
          "\n",
      );
    });
}
