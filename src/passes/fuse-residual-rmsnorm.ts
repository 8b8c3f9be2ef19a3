// Residual add + RMSNorm → a pair of FusedRmsNorm siblings (one kernel writes both).
//
// Pattern (x, r: X[..., D]; w [D]):
//   s = x + r            (s also feeds the rest of the residual stream)
//   n = fusedRmsNorm{eps}(s, w)
// → s ↦ fusedRmsNorm{eps, residual, result "sum"}(x, r, w), n ↦ fusedRmsNorm{eps, residual, result "normed"}(x, r, w)
// Legality: the add's operands share x's dtype and shape (always true of a binary op). The sum keeps
// its other users: they now read the "sum" sibling. Bit-exact: the fused op rounds s to X like the add.
// Profitability: always (the sum is written by the norm kernel instead of a separate pass).

import type { Node } from "../ir/node.js";
import { capture, captured, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

export const fuseResidualRmsNormRule: Rule = {
  name: "residual-rmsnorm",
  pattern: op("fusedRmsNorm", { hasResidual: false }, [op("binary", { fn: "add" }, [capture("x"), capture("r")], { name: "sum" }), capture("w")], { name: "norm" }),
  sharedInterior: true,
  rewrite(m, ctx) {
    const norm = captured(m, "norm", "fusedRmsNorm");
    const sum = captured(m, "sum", "binary");
    const [x, r, w] = [captured(m, "x"), captured(m, "r"), captured(m, "w")];
    const eps = norm.attrs.eps;
    const fused = (result: "sum" | "normed") => ctx.table.make("fusedRmsNorm", { eps, hasResidual: true, result }, [x, r, w], () => norm.site);
    return new Map<Node, Node>([
      [norm, fused("normed")],
      [sum, fused("sum")],
    ]);
  },
};

export const fuseResidualRmsNorm = rulePass("fuse-residual-rmsnorm", [fuseResidualRmsNormRule]);
