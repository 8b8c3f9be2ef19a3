// The verifier: re-derives every node's type from its operands and checks the graph's structure
// (declared symbols, parameters and inputs, unique names). Passes run it after they rewrite.

import type { EntryPoint, Graph } from "./graph.js";
import { entryNodes, loadTimeSymbols } from "./graph.js";
import { type Node, type NodeOf, formatSite } from "./node.js";
import { type Op, type OpAttrs, type TensorType, TYPE_RULES, TypeRuleError } from "./ops.js";
import { type Shape, dimSymbols, evalDim, formatShape, shapesEqual } from "./shape.js";

type StructureCheck<K extends Op> = (n: NodeOf<K>, g: Graph, entry: EntryPoint) => string | undefined;

const noStructure = () => undefined;

function declaredAs(what: string, decl: { dtype: string; shape: Shape } | undefined, n: Node): string | undefined {
  if (!decl) return `${what} is not declared`;
  if (decl.dtype !== n.dtype || !shapesEqual(decl.shape, n.shape)) {
    return `${what} is used as ${n.dtype}${formatShape(n.shape)} but declared ${decl.dtype}${formatShape(decl.shape)}`;
  }
  return undefined;
}

/** Per-op structural checks beyond the type rule (leaves must be declared where they are used). */
const STRUCTURE_CHECKS: { readonly [K in Op]: StructureCheck<K> } = {
  input: (n, _g, e) => declaredAs(`input ${n.attrs.name} of entry ${e.name}`, e.inputs.find((i) => i.name === n.attrs.name), n),
  param: (n, g) => declaredAs(`param ${n.attrs.name}`, g.params.find((p) => p.name === n.attrs.name), n),
  state: (n, g) => declaredAs(`state ${n.attrs.name}`, g.states.find((p) => p.name === n.attrs.name), n),
  constant: noStructure,
  literal: noStructure,
  iota: noStructure,
  unary: noStructure,
  binary: noStructure,
  ternary: noStructure,
  compare: noStructure,
  cast: noStructure,
  reduce: noStructure,
  matmul: noStructure,
  reshape: noStructure,
  transpose: noStructure,
  slice: (n, g) => {
    const size = n.inputs[0]!.shape[(n.attrs.axis + n.shape.length) % n.shape.length];
    if (typeof n.attrs.end !== "string" || typeof size !== "number") return undefined;
    const bound = evalDim(n.attrs.end, g.symbols);
    return bound > size ? `slice end ${n.attrs.end} can reach ${bound} (its bound), past the dim ${size}` : undefined;
  },
  concat: noStructure,
  gather: noStructure,
  scatter: noStructure,
  broadcast: noStructure,
  topk: noStructure,
  sample: noStructure,
  dequantMxfp4: noStructure,
  fusedRmsNorm: noStructure,
  sinkAttention: (n, g) => {
    const rows = n.inputs[1]!.shape.at(-3);
    const keys = n.inputs[4]!.shape.at(-1)!;
    if (typeof rows !== "number" || typeof keys !== "string") return undefined;
    const bound = evalDim(keys, g.symbols);
    return bound > rows ? `kpos's ${keys} keys can reach ${bound} (its bound), past the ${rows} rows of k and v` : undefined;
  },
  pagedAttention: noStructure,
  seqTokenRanges: noStructure,
  uniqueIndices: noStructure,
  moeExperts: noStructure,
  mxfp4Matmul: noStructure,
  fusedLinear: noStructure,
  groupedLinear: noStructure,
  fusedRope: noStructure,
  fusedElementwise: noStructure,
  allReduce: noStructure,
  allGather: noStructure,
  reduceScatter: noStructure,
};

/** All problems found in the graph (empty when it is well formed). */
export function verifyGraph(g: Graph): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const e of g.entries) {
    if (names.has(e.name)) problems.push(`entry point ${e.name} is declared twice`);
    names.add(e.name);
    const outs = new Set<string>();
    for (const o of e.outputs) {
      if (outs.has(o.name)) problems.push(`entry ${e.name}: output ${o.name} is declared twice`);
      outs.add(o.name);
    }
    if (e.outputs.length === 0) problems.push(`entry ${e.name} has no outputs`);
    const updated = new Set<string>();
    for (const u of e.updates) {
      if (updated.has(u.name)) problems.push(`entry ${e.name}: state ${u.name} is updated twice`);
      updated.add(u.name);
      const decl = g.states.find((st) => st.name === u.name);
      if (!decl) problems.push(`entry ${e.name}: update of ${u.name}, which is not declared state`);
      else if (decl.dtype !== u.node.dtype || !shapesEqual(decl.shape, u.node.shape)) {
        problems.push(`entry ${e.name}: update of state ${u.name} is ${u.node.dtype}${formatShape(u.node.shape)}, the state is ${decl.dtype}${formatShape(decl.shape)}`);
      }
    }
  }
  const paramNames = new Set<string>();
  for (const p of g.params) {
    if (paramNames.has(p.name)) problems.push(`param ${p.name} is declared twice`);
    paramNames.add(p.name);
    problems.push(...undeclaredSymbols(g, p.shape, `param ${p.name}`));
  }
  for (const st of g.states) {
    if (paramNames.has(st.name)) problems.push(`state ${st.name} is declared twice or has a param's name`);
    paramNames.add(st.name);
    problems.push(...undeclaredSymbols(g, st.shape, `state ${st.name}`));
  }
  const atLoad = new Set(loadTimeSymbols(g));
  for (const e of g.entries) {
    for (const i of e.inputs) {
      problems.push(...undeclaredSymbols(g, i.shape, `input ${i.name} of entry ${e.name}`));
      for (const s of i.shape.flatMap(dimSymbols)) {
        if (atLoad.has(s)) problems.push(`input ${i.name} of entry ${e.name} uses ${s}, a load-time symbol (it sizes state, so it is fixed when the plan loads, not by a call's inputs)`);
      }
    }
    for (const n of entryNodes(e)) {
      const at = (): string => `${n.op} at ${formatSite(n.site)}`; // formatting a site is costly: only on a problem
      let type: TensorType | undefined;
      try {
        type = (TYPE_RULES[n.op] as (a: OpAttrs[Op], i: readonly TensorType[]) => TensorType)(n.attrs, n.inputs);
      } catch (err) {
        if (!(err instanceof TypeRuleError)) throw err;
        problems.push(`${at()}: ${err.message}`);
      }
      if (type && (type.dtype !== n.dtype || !shapesEqual(type.shape, n.shape))) {
        problems.push(`${at()}: recorded type ${n.dtype}${formatShape(n.shape)} differs from the derived ${type.dtype}${formatShape(type.shape)}`);
      }
      if (n.shape.some((d) => typeof d === "string")) problems.push(...undeclaredSymbols(g, n.shape, n.op));
      const structural = (STRUCTURE_CHECKS[n.op] as StructureCheck<Op>)(n as NodeOf<Op>, g, e);
      if (structural) problems.push(`${at()}: ${structural}`);
    }
  }
  return [...new Set(problems)];
}

function undeclaredSymbols(g: Graph, shape: Shape, what: string): string[] {
  return shape.flatMap(dimSymbols).filter((s) => g.symbols[s] === undefined).map((s) => `${what} uses undeclared symbol ${s}`);
}

/** Throws one error listing every problem. */
export function assertValidGraph(g: Graph): void {
  const problems = verifyGraph(g);
  if (problems.length > 0) throw new Error(`graph ${g.name} is invalid:\n  ${problems.join("\n  ")}`);
}
