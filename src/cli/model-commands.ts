// `tsgc models` and `tsgc ir`: list and print the built-in models.

import type { Command } from "commander";
import { BUILTIN_MODELS, DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import { graphNodes } from "../ir/graph.js";
import { graphToJsonText } from "../ir/json.js";
import { printGraph } from "../ir/print.js";

function parseDtype(v: string): "bf16" | "f32" {
  if (v !== "bf16" && v !== "f32") throw new Error(`--dtype must be bf16 or f32, got "${v}"`);
  return v;
}



export function registerModelCommands(program: Command): void {
  program
    .command("models")
    .description("list the built-in models")
    .action(() => {
      for (const m of BUILTIN_MODELS) process.stdout.write(`${m.name.padEnd(14)} ${m.description}\n`);
    });

  program
    .command("ir")
    .description("print a model's IR graph (text, or JSON with --json)")
    .argument("[model]", "built-in model name", DEFAULT_MODEL)
    .option("--dtype <dtype>", "bf16 or f32", parseDtype, "bf16" as const)
    .option("--json", "print the JSON form instead of text")
    .option("--sites", "annotate each node with the model line that built it")
    .option("--summary", "print only node and parameter counts")
    .action((name: string, opts: { dtype: "bf16" | "f32"; json?: boolean; sites?: boolean; summary?: boolean }) => {
      const graph = findBuiltinModel(name).build({ dtype: opts.dtype });
      if (opts.summary) {
        const byOp = new Map<string, number>();
        for (const n of graphNodes(graph)) byOp.set(n.op, (byOp.get(n.op) ?? 0) + 1);
        process.stdout.write(`${graph.name}: ${graphNodes(graph).length} nodes, ${graph.params.length} params, entries ${graph.entries.map((e) => e.name).join(", ")}\n`);
        for (const [op, count] of [...byOp].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${op.padEnd(16)} ${count}\n`);
        return;
      }
      process.stdout.write(opts.json ? `${graphToJsonText(graph)}\n` : printGraph(graph, { sites: opts.sites ?? false }));
    });
}
