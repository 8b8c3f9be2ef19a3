// RMSNorm → FusedRmsNorm.
//
// Pattern (x [..., D] of dtype X; w [D]; all math in f32):
//   xf  = cast(x, f32)                         (absent when X is f32)
//   ms  = mean(xf · xf, axis −1, keepDims)      also written sum(xf·xf)·(1/D) or sum(xf·xf)/D
//   out = cast(w' · (xf · rsqrt(ms + eps)), X)  w' = w, cast(w, f32), broadcast either way; operands in either order
// → fusedRmsNorm{eps}(x, w) : X[..., D]
// Legality: the reduction is over the last axis, eps is a positive constant, the 1/D or D constant
// is the normalized length, w is a vector of length D, the result is cast back to X, and the
// intermediates have no other users. Near misses (eps outside the rsqrt, a reduction over another
// axis, a normalization constant other than D) do not match. The builder's form fuses bit-exactly;
// the sum·(1/D) form rounds its mean differently (within one f32 ulp).
// Profitability: always (one pass over x instead of six kernels and four intermediates).

import type { Node, NodeOf } from "../ir/node.js";
import { capture, captured, constant, maybe, op, oneOf } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

const square = op("binary", { fn: "mul" }, [capture("xf"), capture("xf")]);
const sumOfSquares = op("reduce", { fn: "sum", keepDims: true }, [square], { name: "reduce" });
const meanOfSquares = oneOf(
  op("reduce", { fn: "mean", keepDims: true }, [square], { name: "reduce" }),
  op("binary", { fn: "mul" }, [sumOfSquares, constant("invLength")], { commutative: true }),
  op("binary", { fn: "div" }, [sumOfSquares, constant("length")]),
);
const inverseRms = maybe("broadcast", op("unary", { fn: "rsqrt" }, [op("binary", { fn: "add" }, [meanOfSquares, constant("eps")], { commutative: true })]));
const normalized = op("binary", { fn: "mul" }, [capture("xf"), inverseRms], { commutative: true });
const scaled = op("binary", { fn: "mul" }, [maybe("broadcast", maybe("cast", capture("w"))), normalized], { commutative: true, name: "scaled" });

const constValue = (n: Node | undefined): number | undefined => (n && n.op === "constant" ? (n as NodeOf<"constant">).attrs.value : undefined);

export const fuseRmsNormRule: Rule = {
  name: "rmsnorm",
  pattern: maybe("cast", scaled),
  rewrite(m, ctx) {
    const xf = captured(m, "xf");
    const reduce = captured(m, "reduce", "reduce");
    const w = captured(m, "w");
    const eps = constValue(m.captures.get("eps"));
    if (xf.dtype !== "f32" || eps === undefined || !(eps > 0)) return undefined;
    const x = xf.op === "cast" ? xf.inputs[0]! : xf;
    if (x.dtype === "fp4e2m1x2" || x.dtype === "e8m0" || !["f32", "bf16", "f16"].includes(x.dtype)) return undefined;
    const rank = xf.shape.length;
    const d = xf.shape[rank - 1];
    if (reduce.attrs.axis !== rank - 1 || typeof d !== "number") return undefined;
    const invLength = constValue(m.captures.get("invLength"));
    const length = constValue(m.captures.get("length"));
    if (invLength !== undefined && invLength !== Math.fround(1 / d)) return undefined;
    if (length !== undefined && length !== d) return undefined;
    if (w.shape.length !== 1 || w.shape[0] !== d || !["f32", "bf16", "f16"].includes(w.dtype)) return undefined;
    if (m.root.dtype !== x.dtype) return undefined; // the norm must come back in x's dtype
    return ctx.table.make("fusedRmsNorm", { eps: Math.fround(eps), hasResidual: false, result: "normed" }, [x, w], () => m.root.site);
  },
};

export const fuseRmsNorm = rulePass("fuse-rmsnorm", [fuseRmsNormRule]);
