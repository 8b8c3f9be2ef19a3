// `tsgc inspect <checkpoint-dir>`: the tensors of a checkpoint (dtype, shape, bytes, file), totals, and whether they
// are exactly what its config.json implies. A malformed checkpoint or config is a precise error and a non-zero exit;
// a well-formed checkpoint that does not fit its config is reported tensor by tensor, also with a non-zero exit.
import { formatBytes } from "../format.js";
import { type CliIo, processIo } from "./io.js";
import { basename } from "node:path";
import type { Command } from "commander";
import { gptOssCheckpointTensors, configExpertFormat } from "../../models/gpt-oss/checkpoint.js";
import { loadGptOssConfig, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { openCheckpoint } from "../loader/checkpoint.js";
import { compareTensors, type CheckpointIssue } from "../loader/validate.js";



export interface InspectReport {
  readonly dir: string;
  readonly files: readonly { readonly file: string; readonly bytes: number; readonly tensors: number }[];
  readonly tensors: readonly { readonly name: string; readonly dtype: string; readonly shape: readonly number[]; readonly bytes: number; readonly file: string }[];
  readonly totals: { readonly tensors: number; readonly bytes: number; readonly parameters: number; readonly bytesByDtype: Readonly<Record<string, number>> };
  /** Null when config.json is missing or invalid (see configError). */
  readonly config: {
    readonly layers: number;
    readonly hiddenSize: number;
    readonly experts: number;
    readonly expertsPerToken: number;
    readonly vocabSize: number;
    readonly expertFormat: string;
  } | null;
  readonly configError: string | null;
  readonly matchesConfig: boolean;
  readonly issues: readonly CheckpointIssue[];
}

/** Builds the report; throws only for a malformed checkpoint (bad safetensors header, index, missing files). */
export async function inspectCheckpoint(dir: string): Promise<InspectReport> {
  const checkpoint = await openCheckpoint(dir);
  try {
    let config: GptOssConfig | null = null;
    let configError: string | null = null;
    try {
      config = await loadGptOssConfig(dir);
    } catch (err) {
      configError = err instanceof Error ? err.message : String(err);
    }
    const tensors = [...checkpoint.tensors.values()].map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      bytes: t.byteLength,
      file: basename(t.file),
    }));
    const bytesByDtype: Record<string, number> = {};
    let parameters = 0;
    for (const t of tensors) {
      bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0) + t.bytes;
      // An MXFP4 blocks byte holds two parameters; scales hold none of their own.
      const elements = t.shape.reduce((a, b) => a * b, 1);
      parameters += t.name.endsWith("_blocks") ? 2 * elements : t.name.endsWith("_scales") ? 0 : elements;
    }
    const issues = config === null ? [] : compareTensors(checkpoint.tensors.values(), gptOssCheckpointTensors(config));
    return {
      dir,
      files: checkpoint.files.map((f) => ({ file: basename(f.path), bytes: f.fileSize, tensors: f.tensors.length })),
      tensors,
      totals: { tensors: tensors.length, bytes: checkpoint.totalBytes, parameters, bytesByDtype },
      config:
        config === null
          ? null
          : {
              layers: config.numLayers,
              hiddenSize: config.hiddenSize,
              experts: config.numExperts,
              expertsPerToken: config.expertsPerToken,
              vocabSize: config.vocabSize,
              expertFormat: configExpertFormat(config),
            },
      configError,
      matchesConfig: config !== null && issues.length === 0,
      issues,
    };
  } finally {
    await checkpoint.close();
  }
}


function formatReport(r: InspectReport): string {
  const lines: string[] = [];
  const fileWord = r.files.length === 1 ? "file" : "files";
  lines.push(`checkpoint ${r.dir}: ${r.files.length} ${fileWord} (${r.files.map((f) => f.file).join(", ")})`);
  const nameWidth = Math.max(6, ...r.tensors.map((t) => t.name.length));
  const shapeWidth = Math.max(5, ...r.tensors.map((t) => `[${t.shape.join(", ")}]`.length));
  const showFile = r.files.length > 1;
  lines.push(`  ${"tensor".padEnd(nameWidth)}  dtype  ${"shape".padEnd(shapeWidth)}  ${"bytes".padStart(12)}${showFile ? "  file" : ""}`);
  for (const t of r.tensors) {
    const shape = `[${t.shape.join(", ")}]`;
    lines.push(`  ${t.name.padEnd(nameWidth)}  ${t.dtype.padEnd(5)}  ${shape.padEnd(shapeWidth)}  ${String(t.bytes).padStart(12)}${showFile ? `  ${t.file}` : ""}`);
  }
  const byDtype = Object.entries(r.totals.bytesByDtype)
    .map(([d, b]) => `${d} ${formatBytes(b)}`)
    .join(", ");
  lines.push(
    `total: ${r.totals.tensors} tensors, ${r.totals.bytes} bytes (${formatBytes(r.totals.bytes)}), ` +
      `${r.totals.parameters.toLocaleString("en-US")} parameters; by dtype: ${byDtype || "none"}`,
  );
  if (r.config !== null) {
    const c = r.config;
    lines.push(
      `config.json: gpt-oss, ${c.layers} layers, hidden ${c.hiddenSize}, ${c.experts} experts (top ${c.expertsPerToken}), ` +
        `vocab ${c.vocabSize}, ${c.expertFormat === "mxfp4" ? "MXFP4" : "unquantized"} experts`,
    );
  } else {
    lines.push(`config.json: ${r.configError}`);
  }
  if (r.matchesConfig) lines.push("matches config.json: yes");
  else if (r.config !== null) {
    lines.push(`matches config.json: no (${r.issues.length} problem${r.issues.length === 1 ? "" : "s"})`);
    for (const issue of r.issues) lines.push(`  ${issue.message}`);
  } else lines.push("matches config.json: unknown (no valid config.json)");
  return lines.join("\n") + "\n";
}

/** Adds `inspect` to the program. */
export function registerInspectCommand(program: Command, io: CliIo = processIo): Command {
  return program
    .command("inspect")
    .description("list a checkpoint's tensors (dtype, shape, bytes) and check them against its config.json")
    .argument("<checkpoint-dir>", "directory with config.json and model.safetensors (or model.safetensors.index.json + shards)")
    .option("--json", "print the report as JSON")
    .action(async (dir: string, opts: { json?: boolean }) => {
      let report: InspectReport;
      try {
        report = await inspectCheckpoint(dir);
      } catch (err) {
        if (opts.json) io.stdout(JSON.stringify({ dir, error: err instanceof Error ? err.message : String(err) }, null, 2) + "\n");
        throw err;
      }
      io.stdout(opts.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report));
      if (report.config === null) throw new Error(report.configError ?? `${dir}: no valid config.json`);
      if (!report.matchesConfig) {
        const n = report.issues.length;
        throw new Error(`${dir}: checkpoint does not match its config.json (${n} problem${n === 1 ? "" : "s"}${opts.json ? "" : ", listed above"})`);
      }
    });
}
