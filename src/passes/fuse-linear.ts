// Matmul + bias → FusedLinear (the bias is added in the matmul kernel's store epilogue).
//
// Pattern (x [..., M, K]; w [N, K] (transposeB) or [K, N]; bias [N], all of dtype X):
//   add(matmul(x, w), broadcast(bias))      (operands in either order)
// → fusedLinear{transposeB}(x, w, bias) : X[..., M, N]
// Legality: the bias is a vector over the output columns in X (a bias stored in another dtype comes
// through its cast, which stays a small kernel of its own), and the product has no other user. Bit-exact: the
// fused op rounds the product to X, then the sum, like the two primitives.
// Profitability: always (one launch and one [M, N] round trip fewer per linear layer).

import { shapesEqual } from "../ir/shape.js";
import { capture, captured, maybe, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

export const fuseLinearRule: Rule = {
  name: "linear",
  pattern: op("binary", { fn: "add" }, [op("matmul", {}, [capture("x"), capture("w")], { name: "product" }), maybe("broadcast", capture("bias"))], { commutative: true }),
  rewrite(m, ctx) {
    const product = captured(m, "product", "matmul");
    const bias = captured(m, "bias");
    const n = product.shape[product.shape.length - 1]!;
    if (bias.dtype !== product.dtype || !shapesEqual(bias.shape, [n])) return undefined;
    return ctx.table.make("fusedLinear", { transposeB: product.attrs.transposeB }, [captured(m, "x"), captured(m, "w"), bias], () => m.root.site);
  },
};

export const fuseLinear = rulePass("fuse-linear", [fuseLinearRule]);
