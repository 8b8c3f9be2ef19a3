// The stable text form of a graph: one line per node, numbered in a deterministic topological order.
// Two structurally equal graphs print identically; call sites are printed only when asked.
//
//   model tiny
//   sym tokens <= 64
//   param embed.weight : bf16[256, 32]
//   %0 = input {name="ids"} : i32[tokens]
//   %1 = gather(%2, %0) {axis=0} : bf16[tokens, 32]
//   entry decode(ids: i32[tokens]) -> logits=%9

import type { Graph } from "./graph.js";
import { graphNodes } from "./graph.js";
import { type Node, type NodeOf, formatSite } from "./node.js";
import type { FusedInstr, Op, OpAttrs } from "./ops.js";
import { formatShape } from "./shape.js";

function formatValue(v: unknown): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(formatValue).join(", ")}]`;
  if (v && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${k}=${formatValue(x)}`).join(", ")}}`;
  return String(v);
}

/** key=value pairs in declaration order. */
function keyValues(attrs: object): string {
  const parts = Object.entries(attrs).map(([k, v]) => `${k}=${formatValue(v)}`);
  return parts.length ? ` {${parts.join(", ")}}` : "";
}

function formatInstr(ins: FusedInstr, i: number): string {
  switch (ins.op) {
    case "input": return `$${i}=in${ins.index}`;
    case "constant": return `$${i}=${formatValue(ins.value)}:${ins.dtype}`;
    case "unary": return `$${i}=${ins.fn}($${ins.a})`;
    case "binary": case "compare": return `$${i}=${ins.fn}($${ins.a}, $${ins.b})`;
    case "ternary": return `$${i}=${ins.fn}($${ins.a}, $${ins.b}, $${ins.c})`;
    case "cast": return `$${i}=cast<${ins.to}>($${ins.a})`;
  }
}

type AttrFormatter<K extends Op> = (attrs: OpAttrs[K]) => string;
const leaf: AttrFormatter<"input" | "param" | "state"> = (a) => ` ${JSON.stringify(a.name)}`;

/** How each op's attributes print after its operands. */
const ATTR_FORMATTERS: { readonly [K in Op]: AttrFormatter<K> } = {
  input: leaf,
  param: leaf,
  state: leaf,
  constant: (a) => ` ${formatValue(a.value)}`,
  literal: (a) => ` ${formatValue(a.data)}`,
  iota: (a) => ` {axis=${a.axis}}`,
  unary: (a) => `.${a.fn}`,
  binary: (a) => `.${a.fn}`,
  ternary: (a) => `.${a.fn}`,
  compare: (a) => `.${a.fn}`,
  cast: () => "",
  reduce: (a) => `.${a.fn} {axis=${a.axis}, keepDims=${a.keepDims}}`,
  matmul: (a) => (a.transposeB ? " {transposeB}" : ""),
  reshape: () => "",
  transpose: (a) => ` {perm=${formatValue(a.perm)}}`,
  slice: keyValues,
  concat: keyValues,
  gather: keyValues,
  scatter: keyValues,
  broadcast: () => "",
  topk: keyValues,
  sample: () => "",
  dequantMxfp4: () => "",
  fusedRmsNorm: keyValues,
  sinkAttention: keyValues,
  pagedAttention: keyValues,
  seqTokenRanges: () => "",
  uniqueIndices: () => "",
  moeExperts: keyValues,
  mxfp4Matmul: () => "",
  fusedLinear: (a) => (a.transposeB ? " {transposeB}" : ""),
  groupedLinear: (a) => ` {result=${a.result}}`,
  fusedRope: () => "",
  fusedElementwise: (a) => ` {${a.body.map(formatInstr).join("; ")}}`,
  allReduce: keyValues,
  allGather: keyValues,
  reduceScatter: keyValues,
};

export interface PrintOptions {
  /** Append each node's call site as a comment. */
  readonly sites?: boolean;
}

/** Numbers the graph's nodes in print order. */
export function numberNodes(g: Graph): Map<Node, number> {
  const ids = new Map<Node, number>();
  graphNodes(g).forEach((n, i) => ids.set(n, i));
  return ids;
}

export function printNode(n: Node, ids: ReadonlyMap<Node, number>, opts: PrintOptions = {}): string {
  const operands = n.inputs.length ? `(${n.inputs.map((i) => `%${ids.get(i)}`).join(", ")})` : "";
  const attrs = (ATTR_FORMATTERS[n.op] as AttrFormatter<Op>)((n as NodeOf<Op>).attrs);
  const site = opts.sites && n.site ? `  # ${formatSite(n.site)}` : "";
  return `%${ids.get(n)} = ${n.op}${attrs}${operands} : ${n.dtype}${formatShape(n.shape)}${site}`;
}

export function printGraph(g: Graph, opts: PrintOptions = {}): string {
  const lines = [`model ${g.name}`];
  for (const [name, max] of Object.entries(g.symbols).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) lines.push(`sym ${name} <= ${max}`);
  for (const p of g.params) {
    const quant = p.quant ? ` ${p.quant.format}.${p.quant.role} of ${p.quant.weight}` : "";
    const slice = p.slice ? ` slice of ${formatShape(p.slice.full)}: ${p.slice.axes.map((a) => `axis ${a.axis} ${a.ranges.map(([s, e]) => `[${s}, ${e})`).join(" ")}`).join(", ")}` : "";
    lines.push(`param ${p.name} : ${p.dtype}${formatShape(p.shape)}${quant}${slice}`);
  }
  for (const st of g.states) lines.push(`state ${st.name} : ${st.dtype}${formatShape(st.shape)}`);
  const ids = numberNodes(g);
  for (const n of ids.keys()) lines.push(printNode(n, ids, opts));
  for (const e of g.entries) {
    const ins = e.inputs.map((i) => `${i.name}: ${i.dtype}${formatShape(i.shape)}`).join(", ");
    const outs = e.outputs.map((o) => `${o.name}=%${ids.get(o.node)}`).join(", ");
    const updates = e.updates.map((u) => `${u.name}=%${ids.get(u.node)}`).join(", ");
    lines.push(`entry ${e.name}(${ins}) -> ${outs}${updates ? `; updates ${updates}` : ""}`);
  }
  return lines.join("\n") + "\n";
}
