// The compiler's pass pipeline, as one readable list grouped by phase.
// Each pass rewrites the graph to a fixpoint; the verifier checks the result (after every pass when
// asked, or when dumping), and the graph can be dumped after each pass (`tsgc compile --dump-ir DIR`).
// With a sharding strategy (tensor and expert parallelism), runShardedPipeline splits the fused graph into the graphs
// of its ranks where the list says so, and runs the phases after that point on every rank's graph.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Graph } from "../ir/graph.js";
import { graphNodes } from "../ir/graph.js";
import { printGraph } from "../ir/print.js";
import { verifyGraph } from "../ir/verify.js";
import { canonicalize, pruneParams } from "./canonicalize.js";
import { fuseElementwise } from "./fuse-elementwise.js";
import { fuseLinear } from "./fuse-linear.js";
import { fuseMoe } from "./fuse-moe.js";
import { fuseMxfp4Matmul } from "./fuse-mxfp4-matmul.js";
import { fuseResidualRmsNorm } from "./fuse-residual-rmsnorm.js";
import { fuseRmsNorm } from "./fuse-rmsnorm.js";
import { fuseRope } from "./fuse-rope.js";
import { fusePagedAttention } from "./fuse-paged-attention.js";
import { fuseSinkAttention } from "./fuse-sink-attention.js";
import { groupLinears } from "./group-linears.js";
import { uniqueScatterIndices } from "./unique-scatter-indices.js";
import { type Pass, applyRulePass } from "./rewrite.js";
import { type RankSet, type ShardStrategy, shardGraph } from "./shard.js";

export interface Phase {
  readonly phase: string;
  readonly passes: readonly Pass[];
  /** Runs only on the ranks of a sharded model (the graph of an unsharded one is already in this form). */
  readonly afterSharding?: boolean;
}


export const PIPELINE: readonly Phase[] = [
  // CSE is structural (interning); constant folding; view, transpose and cast simplification
  { phase: "canonicalize", passes: [canonicalize] },
  // whole patterns into fused ops, largest first
  { phase: "pattern fusion", passes: [fuseMoe, fuseSinkAttention, fusePagedAttention, fuseRmsNorm, fuseResidualRmsNorm, fuseMxfp4Matmul, fuseRope, fuseLinear] },
  // layers of one input into one launch (q, k, v)
  { phase: "grouping", passes: [groupLinears] },
  // scatters of many rows resolve duplicate indices once, so state updates write rows in place directly
  { phase: "scatter indices", passes: [uniqueScatterIndices] },
  // what is left of elementwise math into one kernel per chain
  { phase: "elementwise fusion", passes: [canonicalize, fuseElementwise] },
  // ── sharding (only with a strategy: runShardedPipeline): the fused graph → each rank's graph (src/passes/shard.ts),
  //    then the phases below on every rank
  // the elementwise math sharding adds (token-id offsets of sampling candidates) into the same kernels
  { phase: "rank fusion", passes: [canonicalize, fuseElementwise], afterSharding: true },
  // drop declarations the fusions orphaned
  { phase: "cleanup", passes: [pruneParams] },
];

const SHARDING_POINT = PIPELINE.findIndex((p) => p.afterSharding);

export interface PassReport {
  readonly phase: string;
  readonly pass: string;
  readonly ms: number;
  readonly nodesBefore: number;
  readonly nodesAfter: number;
  readonly rewrites: Readonly<Record<string, number>>;
}

export interface PipelineOptions {
  /** Write the graph's text form after every pass into this directory. */
  readonly dumpDir?: string;
  /** Called after each pass (progress display). */
  readonly onPass?: (report: PassReport) => void;
  /** Run only these phases (tests); default: all. */
  readonly phases?: readonly Phase[];
  /** Verify after every pass, not only the result (pinpoints a pass that breaks the graph; slower). */
  readonly verifyEachPass?: boolean;
}

function verifyAfter(g: Graph, what: string): void {
  const problems = verifyGraph(g);
  if (problems.length) throw new Error(`${what} produced an invalid graph:\n  ${problems.slice(0, 10).join("\n  ")}`);
}

export interface PipelineResult {
  readonly graph: Graph;
  readonly reports: readonly PassReport[];
}

export function runPipeline(input: Graph, opts: PipelineOptions = {}): PipelineResult {
  let graph = input;
  const reports: PassReport[] = [];
  let step = 0;
  if (opts.dumpDir) {
    mkdirSync(opts.dumpDir, { recursive: true });
    writeFileSync(join(opts.dumpDir, `00-input.ir`), printGraph(graph, { sites: true }));
  }
  for (const phase of opts.phases ?? PIPELINE) {
    if (phase.afterSharding && !opts.phases) continue; // a whole graph: nothing was sharded
    for (const pass of phase.passes) {
      const started = performance.now();
      const nodesBefore = graphNodes(graph).length;
      let rewrites: Readonly<Record<string, number>> = {};
      if (pass.kind === "rules") {
        const r = applyRulePass(graph, pass);
        graph = r.graph;
        rewrites = r.rewrites;
      } else {
        graph = pass.run(graph);
      }
      if (opts.verifyEachPass || opts.dumpDir) verifyAfter(graph, `pass ${pass.name}`);
      const report: PassReport = { phase: phase.phase, pass: pass.name, ms: performance.now() - started, nodesBefore, nodesAfter: graphNodes(graph).length, rewrites };
      reports.push(report);
      opts.onPass?.(report);
      step++;
      if (opts.dumpDir) writeFileSync(join(opts.dumpDir, `${String(step).padStart(2, "0")}-${pass.name}.ir`), printGraph(graph, { sites: true }));
    }
  }
  verifyAfter(graph, "the pass pipeline");
  return { graph, reports };
}

export interface ShardedPipelineResult {
  /** Every rank's graph after the whole pipeline. */
  readonly rankSet: RankSet;
  /** The passes before sharding, then each rank's (its reports carry the rank in `phase`). */
  readonly reports: readonly PassReport[];
}

/**
 * The pipeline for a rank set: the phases before the sharding point on the whole graph, the sharding pass, then the
 * phases after it on every rank's graph.
 */
export function runShardedPipeline(input: Graph, strategy: ShardStrategy, opts: Omit<PipelineOptions, "phases" | "dumpDir"> = {}): ShardedPipelineResult {
  const before = runPipeline(input, { ...opts, phases: PIPELINE.slice(0, SHARDING_POINT) });
  const started = performance.now();
  const set = shardGraph(before.graph, strategy);
  const reports: PassReport[] = [...before.reports];
  const shardReport: PassReport = { phase: "sharding", pass: "shard", ms: performance.now() - started, nodesBefore: graphNodes(before.graph).length, nodesAfter: graphNodes(set.ranks[0]!).length, rewrites: { ranks: set.ranks.length } };
  reports.push(shardReport);
  opts.onPass?.(shardReport);
  const ranks = set.ranks.map((g, r) => {
    const after = runPipeline(g, { ...opts, phases: PIPELINE.slice(SHARDING_POINT).map((p) => ({ ...p, phase: `${p.phase} (rank ${r})` })) });
    reports.push(...after.reports);
    return after.graph;
  });
  return { rankSet: { ...set, ranks }, reports };
}

/** Node counts by op, for reports and tests. */
export function opCounts(g: Graph): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of graphNodes(g)) counts[n.op] = (counts[n.op] ?? 0) + 1;
  return counts;
}
