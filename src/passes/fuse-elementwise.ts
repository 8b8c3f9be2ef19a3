// Chains of elementwise ops → one FusedElementwise kernel.
//
// Pattern: an elementwise root R : X[shape] (unary, binary, ternary, compare, cast, or an earlier
// FusedElementwise) and, transitively through its operands, every elementwise producer whose only
// user is inside the chain. Splat constants become body constants; a `broadcast` dissolves into
// a broadcast-indexed input (its operand); anything else (a matmul, a reduction, a param, a node
// with several users) is an input.
//   R = add(mul(a, broadcast(b)), constant 1)  →  fusedElementwise{ $0=in0; $1=in1; $2=mul($0,$1); $3=1; $4=add($2,$3) }(a, b)
// Legality: absorbed producers have no users outside the chain and are no entry outputs (they
// would otherwise be computed twice). Bit-exact: each body instruction rounds to its dtype like the
// node it replaces.
// Profitability: at least two elementwise ops merge, or one op swallows a broadcast or a splat constant
// that would otherwise be a kernel of its own (a bias add reading its [N] bias directly).

import type { Node, NodeOf } from "../ir/node.js";
import type { FusedInstr } from "../ir/ops.js";
import { capture } from "./pattern.js";
import { type RewriteContext, type Rule, rulePass } from "./rewrite.js";

const ELEMENTWISE = new Set(["unary", "binary", "ternary", "compare", "cast", "fusedElementwise"]);

function isElementwise(n: Node): boolean {
  return ELEMENTWISE.has(n.op);
}

interface Body {
  readonly instrs: FusedInstr[];
  readonly inputs: Node[];
  readonly absorbed: Set<Node>;
  opCount: number;
  /** Broadcasts and splat constants folded into the body instead of being materialized. */
  dissolved: number;
}

function addInput(body: Body, n: Node): number {
  let index = body.inputs.indexOf(n);
  if (index < 0) {
    index = body.inputs.length;
    body.inputs.push(n);
  }
  body.instrs.push({ op: "input", index });
  return body.instrs.length - 1;
}

/** Appends the computation of `n` to the body; returns the instruction holding its value. */
function emit(n: Node, root: Node, body: Body, ctx: RewriteContext, memo: Map<Node, number>): number {
  const done = memo.get(n);
  if (done !== undefined) return done;
  let at: number;
  const absorbable = n === root || (isElementwise(n) && !ctx.isOutput(n) && ctx.users(n).every((u) => u === root || body.absorbed.has(u)));
  if (n.op === "constant") {
    const c = n as NodeOf<"constant">;
    body.instrs.push({ op: "constant", value: c.attrs.value, dtype: c.dtype });
    body.dissolved += 1;
    at = body.instrs.length - 1;
  } else if (n.op === "broadcast") {
    const inner = n.inputs[0]!;
    body.dissolved += 1;
    at = inner.op === "constant" ? emit(inner, root, body, ctx, memo) : addInput(body, inner);
  } else if (!absorbable) {
    at = addInput(body, n);
  } else {
    body.absorbed.add(n);
    if (n.op === "fusedElementwise") {
      const f = n as NodeOf<"fusedElementwise">;
      const operands = f.inputs.map((i) => emit(i, root, body, ctx, memo));
      // inline the body: its input instructions refer to the operands' instructions
      const outer: number[] = [];
      for (const ins of f.attrs.body) {
        const ref = (r: number) => outer[r]!;
        switch (ins.op) {
          case "input": outer.push(operands[ins.index]!); continue;
          case "constant": body.instrs.push(ins); break;
          case "unary": body.instrs.push({ ...ins, a: ref(ins.a) }); break;
          case "binary": case "compare": body.instrs.push({ ...ins, a: ref(ins.a), b: ref(ins.b) }); break;
          case "ternary": body.instrs.push({ ...ins, a: ref(ins.a), b: ref(ins.b), c: ref(ins.c) }); break;
          case "cast": body.instrs.push({ ...ins, a: ref(ins.a) }); break;
        }
        outer.push(body.instrs.length - 1);
      }
      body.opCount += f.attrs.body.filter((i) => i.op !== "input" && i.op !== "constant").length;
      at = outer[outer.length - 1]!;
    } else {
      const operands = n.inputs.map((i) => emit(i, root, body, ctx, memo));
      switch (n.op) {
        case "unary": body.instrs.push({ op: "unary", fn: (n as NodeOf<"unary">).attrs.fn, a: operands[0]! }); break;
        case "binary": body.instrs.push({ op: "binary", fn: (n as NodeOf<"binary">).attrs.fn, a: operands[0]!, b: operands[1]! }); break;
        case "compare": body.instrs.push({ op: "compare", fn: (n as NodeOf<"compare">).attrs.fn, a: operands[0]!, b: operands[1]! }); break;
        case "ternary": body.instrs.push({ op: "ternary", fn: (n as NodeOf<"ternary">).attrs.fn, a: operands[0]!, b: operands[1]!, c: operands[2]! }); break;
        case "cast": body.instrs.push({ op: "cast", to: (n as NodeOf<"cast">).attrs.to, a: operands[0]! }); break;
        default: throw new Error(`fuse-elementwise: ${n.op} is not elementwise`);
      }
      body.opCount += 1;
      at = body.instrs.length - 1;
    }
  }
  memo.set(n, at);
  return at;
}

export const fuseElementwiseRule: Rule = {
  name: "elementwise",
  pattern: capture("root", isElementwise),
  sharedInterior: true,
  rewrite(m, ctx) {
    const root = m.root;
    const body: Body = { instrs: [], inputs: [], absorbed: new Set(), opCount: 0, dissolved: 0 };
    emit(root, root, body, ctx, new Map());
    const mergesExisting = [...body.absorbed].some((n) => n.op === "fusedElementwise" && n !== root);
    const profitable = body.opCount >= 2 || (body.opCount === 1 && body.dissolved > 0);
    if (!profitable || (root.op === "fusedElementwise" && !mergesExisting)) return undefined;
    const fused = ctx.table.make("fusedElementwise", { body: body.instrs, shape: root.shape }, body.inputs, () => root.site);
    return { replace: new Map([[root, fused]]), consumed: body.absorbed };
  },
};

export const fuseElementwise = rulePass("fuse-elementwise", [fuseElementwiseRule]);
