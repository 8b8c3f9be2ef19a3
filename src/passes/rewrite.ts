// Passes and the fixpoint rewriter.
//
// A rule pass is a named list of rules (pattern, rewrite). One sweep visits the graph from its
// outputs towards its inputs, so a rule matches the largest computation rooted at a node before a
// smaller pattern can claim part of it; non-overlapping matches of one sweep are applied together,
// then the graph is rebuilt through the interning table. Sweeps repeat until nothing matches or
// the step bound is hit. Unless a rule says otherwise, a match is legal only when every node it
// replaces, other than its root, is used by nothing outside the match.

import type { EntryPoint, Graph } from "../ir/graph.js";
import { entryResults, graphNodes, withEntryResults } from "../ir/graph.js";
import { type Node, type NodeTable, usersOf } from "../ir/node.js";
import { type Match, type Pattern, matches, rootOps } from "./pattern.js";

export interface RewriteContext {
  readonly table: NodeTable;
  readonly graph: Graph;
  /** Nodes that read `n` in the current graph. */
  users(n: Node): readonly Node[];
  /** Whether `n` is an output of some entry point. */
  isOutput(n: Node): boolean;
}

/**
 * A replacement for the match's root; replacements for several matched nodes; or, for rules that
 * collect their computation themselves, replacements plus the nodes they consumed (claimed so that
 * no other match of the same sweep takes them).
 */
export type RewriteResult =
  | Node
  | ReadonlyMap<Node, Node>
  | { readonly replace: ReadonlyMap<Node, Node>; readonly consumed: Iterable<Node> }
  | undefined;

export interface Rule {
  readonly name: string;
  readonly pattern: Pattern;
  /** Returns the replacement, or undefined to decline (a legality or profitability check failed). */
  rewrite(m: Match, ctx: RewriteContext): RewriteResult;
  /** Allow interior nodes with users outside the match (the rule replaces them itself, or recomputing them is fine). */
  readonly sharedInterior?: boolean;
}

export interface RulePass {
  readonly kind: "rules";
  readonly name: string;
  readonly rules: readonly Rule[];
}

/** A pass that transforms the whole graph at once (DCE, sharding, …). */
export interface GraphPass {
  readonly kind: "graph";
  readonly name: string;
  run(g: Graph): Graph;
}

export type Pass = RulePass | GraphPass;

export function rulePass(name: string, rules: readonly Rule[]): RulePass {
  return { kind: "rules", name, rules };
}

export function graphPass(name: string, run: (g: Graph) => Graph): GraphPass {
  return { kind: "graph", name, run };
}

export interface PassResult {
  readonly graph: Graph;
  /** Applications per rule name. */
  readonly rewrites: Readonly<Record<string, number>>;
  readonly sweeps: number;
}

export class RewriteError extends Error {}


function outputsOf(g: Graph): Set<Node> {
  return new Set(g.entries.flatMap((e: EntryPoint) => entryResults(e)));
}

/** Rebuilds the graph with `replacements` applied, through the interning table. */
export function substitute(g: Graph, replacements: ReadonlyMap<Node, Node>): Graph {
  const memo = new Map<Node, Node>();
  const inProgress = new Set<Node>();
  const subst = (n: Node): Node => {
    const done = memo.get(n);
    if (done) return done;
    if (inProgress.has(n)) throw new RewriteError(`a rewrite made ${n.op} depend on itself`);
    inProgress.add(n);
    const replacement = replacements.get(n);
    const result = replacement ? subst(replacement) : g.table.withInputs(n, n.inputs.map(subst));
    inProgress.delete(n);
    memo.set(n, result);
    return result;
  };
  return withEntryResults(g, subst);
}

/** Applies a rule pass to a fixpoint (at most `maxSweeps` sweeps). */
export function applyRulePass(g: Graph, pass: RulePass, maxSweeps = 32): PassResult {
  const rewrites: Record<string, number> = {};
  let graph = g;
  for (let sweep = 1; sweep <= maxSweeps; sweep++) {
    const nodes = graphNodes(graph);
    const users = usersOf(nodes);
    const outputs = outputsOf(graph);
    const ctx: RewriteContext = { table: graph.table, graph, users: (n) => users.get(n) ?? [], isOutput: (n) => outputs.has(n) };
    const claimed = new Set<Node>();
    const replacements = new Map<Node, Node>();
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!;
      if (claimed.has(node)) continue;
      for (const rule of pass.rules) {
        const ops = rootOpsOf(rule);
        if (ops !== "any" && !ops.has(node.op)) continue;
        const applied = tryRule(rule, node, ctx, claimed);
        if (!applied) continue;
        for (const [from, to] of applied.replacements) replacements.set(from, to);
        // shared views and conversions stay available to other matches of this sweep
        for (const n of applied.interior) if (!FREE_TO_DUPLICATE.has(n.op) || n === node) claimed.add(n);
        rewrites[rule.name] = (rewrites[rule.name] ?? 0) + 1;
        break;
      }
    }
    if (replacements.size === 0) return { graph, rewrites, sweeps: sweep };
    graph = substitute(graph, replacements);
  }
  throw new RewriteError(`pass ${pass.name} did not reach a fixpoint in ${maxSweeps} sweeps (rules keep rewriting each other's results)`);
}

const rootOpsCache = new WeakMap<Rule, ReadonlySet<string> | "any">();
function rootOpsOf(rule: Rule): ReadonlySet<string> | "any" {
  let ops = rootOpsCache.get(rule);
  if (ops === undefined) rootOpsCache.set(rule, (ops = rootOps(rule.pattern)));
  return ops;
}

function tryRule(rule: Rule, node: Node, ctx: RewriteContext, claimed: ReadonlySet<Node>): { replacements: Map<Node, Node>; interior: ReadonlySet<Node> } | undefined {
  for (const m of matches(rule.pattern, node)) {
    if ([...m.interior].some((n) => claimed.has(n) && !FREE_TO_DUPLICATE.has(n.op))) continue;
    if (!rule.sharedInterior && !interiorIsPrivate(m, ctx)) continue;
    const result = rule.rewrite(m, ctx);
    if (result === undefined) continue;
    let interior: ReadonlySet<Node> = m.interior;
    let replacements: Map<Node, Node>;
    if (result instanceof Map) replacements = new Map(result);
    else if ("replace" in result) {
      replacements = new Map(result.replace);
      interior = new Set([...m.interior, ...result.consumed]);
      if ([...interior].some((n) => n !== node && claimed.has(n))) continue;
    } else replacements = new Map([[node, result as Node]]);
    for (const [from, to] of replacements) {
      if (from.dtype !== to.dtype || JSON.stringify(from.shape) !== JSON.stringify(to.shape)) {
        throw new RewriteError(`rule ${rule.name} replaced ${from.op} ${from.dtype}[${from.shape.join(", ")}] by ${to.op} ${to.dtype}[${to.shape.join(", ")}]`);
      }
      if (from === to) replacements.delete(from);
    }
    if (replacements.size === 0) continue;
    return { replacements, interior };
  }
  return undefined;
}

/**
 * What a fused kernel applies while loading its operands costs nothing to duplicate, so it may be
 * shared with other users: views and conversions (a parameter reshaped once for every layer) and
 * MXFP4 dequantization (a packed weight read by both entry points' kernels).
 */
const FREE_TO_DUPLICATE = new Set(["reshape", "broadcast", "cast", "constant", "dequantMxfp4"]);

/** Every replaced node other than the root feeds only nodes inside the match, and is no entry output. */
function interiorIsPrivate(m: Match, ctx: RewriteContext): boolean {
  for (const n of m.interior) {
    if (n === m.root || FREE_TO_DUPLICATE.has(n.op)) continue;
    if (ctx.isOutput(n)) return false;
    if (ctx.users(n).some((u) => !m.interior.has(u))) return false;
  }
  return true;
}
