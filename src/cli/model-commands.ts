// `tsgc models`, `tsgc ir` and `tsgc run`: list, print and run the built-in models.

import type { Command } from "commander";
import { BUILTIN_MODELS, DEFAULT_MODEL, findBuiltinModel } from "../../models/index.js";
import { graphNodes } from "../ir/graph.js";
import { graphToJsonText } from "../ir/json.js";
import { printGraph } from "../ir/print.js";
import { referenceGenerate } from "../generate/reference.js";
import { randomParams } from "../loader/random-params.js";

function parseDtype(v: string): "bf16" | "f32" {
  if (v !== "bf16" && v !== "f32") throw new Error(`--dtype must be bf16 or f32, got "${v}"`);
  return v;
}

function parseIds(v: string): number[] {
  const ids = v.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`--prompt-ids must be comma-separated non-negative integers, got "${v}"`);
  return ids;
}

function parseCount(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer, got "${v}"`);
    return n;
  };
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

  program
    .command("run")
    .description("generate greedily from a built-in model with seeded random weights (--device cpu: the reference interpreter)")
    .argument("[model]", "built-in model name", DEFAULT_MODEL)
    .option("--prompt-ids <ids>", "comma-separated prompt token ids", parseIds, [1, 2, 3])
    .option("--max-new-tokens <n>", "tokens to generate", parseCount("--max-new-tokens"), 8)
    .option("--seed <n>", "seed of the random weights", parseCount("--seed"), 0)
    .option("--dtype <dtype>", "bf16 or f32", parseDtype, "f32" as const)
    .option("--device <device>", "where to run: cpu (the reference interpreter)", "cpu")
    .option("--json", "print one JSON object instead of streaming tokens")
    .action((name: string, opts: { promptIds: number[]; maxNewTokens: number; seed: number; dtype: "bf16" | "f32"; device: string; json?: boolean }) => {
      if (opts.device !== "cpu") throw new Error(`--device ${opts.device} is not available: tsgc run executes on the cpu reference interpreter`);
      const model = findBuiltinModel(name);
      const bad = opts.promptIds.find((id) => id >= model.config.vocabSize);
      if (bad !== undefined) throw new Error(`prompt id ${bad} is outside ${name}'s vocabulary of ${model.config.vocabSize}`);
      const graph = model.build({ dtype: opts.dtype });
      const started = performance.now();
      const params = randomParams(graph, opts.seed);
      const result = referenceGenerate(graph, params, opts.promptIds, {
        maxNewTokens: opts.maxNewTokens,
        stopTokens: model.config.eosTokenIds,
        ...(opts.json ? {} : { onToken: (t: number) => process.stdout.write(`${t}\n`) }),
      });
      const ms = performance.now() - started;
      if (opts.json) process.stdout.write(`${JSON.stringify({ model: name, device: "cpu", seed: opts.seed, prompt: opts.promptIds, tokens: result.tokens, ms: Math.round(ms) })}\n`);
      else process.stderr.write(`${result.tokens.length} tokens in ${ms.toFixed(0)} ms on the cpu reference interpreter\n`);
    });
}
