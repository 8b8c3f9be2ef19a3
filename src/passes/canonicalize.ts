// Canonicalization: the simplifications every later pattern can rely on.
//
// - CSE is structural: nodes are interned, so equal subgraphs are one node already.
// - DCE: a graph is what its outputs reach; `prune-params` drops declarations nothing reads.
// - Constant folding: a small static computation over constants becomes a literal (or a splat constant).
// - Shape and type simplification: reshape∘reshape, identity reshape/transpose/broadcast/slice,
//   transpose∘transpose, broadcast of a splat constant, cast to the same type, and a cast through a
//   wider type that holds every value exactly (bf16 → f32 → bf16 is the identity).

import type { DType } from "../ir/dtype.js";
import type { Graph } from "../ir/graph.js";
import { graphNodes } from "../ir/graph.js";
import { evaluateNodes } from "../ir/interpret.js";
import type { Node, NodeOf } from "../ir/node.js";
import { isCollective } from "../ir/ops.js";
import { isStaticShape, numElements, shapesEqual } from "../ir/shape.js";
import { capture, captured, op } from "./pattern.js";
import { type Rule, graphPass, rulePass } from "./rewrite.js";

/** Folding stops at this many elements: bigger constants belong in parameters, not in kernel source. */
export const FOLD_LIMIT = 4096;

const LEAF_OPS = new Set(["input", "param", "constant", "literal", "iota"]);
const isConstantLeaf = (n: Node) => n.op === "constant" || n.op === "literal";

/** dtype → the dtypes that hold every one of its values exactly. */
const EXACT_WIDENINGS: Partial<Record<DType, readonly DType[]>> = {
  bf16: ["f32"],
  f16: ["f32"],
  i32: ["i64"],
  u8: ["i32", "i64", "f16", "bf16", "f32"],
  bool: ["u8", "i32", "i64", "f16", "bf16", "f32"],
};

const rules: Rule[] = [
  {
    name: "reshape-of-reshape",
    pattern: op("reshape", {}, [op("reshape", {}, [capture("x")])]),
    rewrite: (m, ctx) => ctx.table.make("reshape", { shape: m.root.shape }, [captured(m, "x")], () => m.root.site),
  },
  {
    name: "identity-view",
    pattern: capture("v", (n) => (n.op === "reshape" || n.op === "broadcast") && shapesEqual(n.shape, n.inputs[0]!.shape)),
    rewrite: (m) => m.root.inputs[0],
  },
  {
    name: "identity-transpose",
    pattern: op("transpose", {}, [capture("x")], { where: (n) => (n as NodeOf<"transpose">).attrs.perm.every((p, i) => p === i) }),
    rewrite: (m) => captured(m, "x"),
  },
  {
    name: "transpose-of-transpose",
    pattern: op("transpose", {}, [op("transpose", {}, [capture("x")], { name: "inner" })]),
    rewrite(m, ctx) {
      const outer = (m.root as NodeOf<"transpose">).attrs.perm;
      const inner = captured(m, "inner", "transpose").attrs.perm;
      return ctx.table.make("transpose", { perm: outer.map((p) => inner[p]!) }, [captured(m, "x")], () => m.root.site);
    },
  },
  {
    name: "identity-slice",
    pattern: op("slice", {}, [capture("x")], { where: (n) => shapesEqual(n.shape, n.inputs[0]!.shape) && (n as NodeOf<"slice">).attrs.step === 1 }),
    rewrite: (m) => captured(m, "x"),
  },
  {
    name: "broadcast-constant",
    pattern: op("broadcast", {}, [capture("c", (n) => n.op === "constant")]),
    rewrite(m, ctx) {
      const c = captured(m, "c", "constant");
      return ctx.table.make("constant", { value: c.attrs.value, dtype: c.dtype, shape: m.root.shape }, [], () => m.root.site);
    },
  },
  {
    name: "identity-cast",
    pattern: op("cast", {}, [capture("x")], { where: (n) => n.dtype === n.inputs[0]!.dtype }),
    rewrite: (m) => captured(m, "x"),
  },
  {
    name: "cast-through-wider",
    pattern: op("cast", {}, [op("cast", {}, [capture("x")], { name: "inner" })]),
    rewrite(m, ctx) {
      const x = captured(m, "x");
      const via = captured(m, "inner").dtype;
      if (!(EXACT_WIDENINGS[x.dtype] ?? []).includes(via)) return undefined;
      return m.root.dtype === x.dtype ? x : ctx.table.make("cast", { to: m.root.dtype }, [x], () => m.root.site);
    },
  },
  {
    name: "fold-constants",
    // a collective's value depends on the other ranks: never folded
    pattern: capture("n", (n) => !LEAF_OPS.has(n.op) && !isCollective(n.op) && n.inputs.length > 0 && n.inputs.every((i) => isConstantLeaf(i) && isStaticShape(i.shape)) && isStaticShape(n.shape) && numElements(n.shape as number[]) <= FOLD_LIMIT),
    sharedInterior: true,
    rewrite(m, ctx) {
      const [value] = evaluateNodes([m.root], { symbols: {}, inputs: {}, params: {} });
      const data = Array.from(value!.data);
      const shape = m.root.shape as number[];
      if (data.every((v) => Object.is(v, data[0]))) return ctx.table.make("constant", { value: data[0] ?? 0, dtype: m.root.dtype, shape }, [], () => m.root.site);
      return ctx.table.make("literal", { data, dtype: m.root.dtype, shape }, [], () => m.root.site);
    },
  },
];

export const canonicalize = rulePass("canonicalize", rules);

/** DCE of declarations: parameters and state no entry point reads any more (fusions may orphan some). */
export const pruneParams = graphPass("prune-params", (g: Graph) => {
  const used = new Set<string>();
  for (const n of graphNodes(g)) if (n.op === "param" || n.op === "state") used.add((n as NodeOf<"param" | "state">).attrs.name);
  const params = g.params.filter((p) => used.has(p.name));
  const states = g.states.filter((st) => used.has(st.name));
  return params.length === g.params.length && states.length === g.states.length ? g : { ...g, params, states };
});
