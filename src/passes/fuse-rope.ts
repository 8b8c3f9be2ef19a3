// Half-split RoPE → FusedRope (one kernel instead of two slices, two elementwise kernels and a concat).
//
// Pattern (x [..., T, H, D] of dtype X; c, s [..., T, 1, D/2] of dtype X, broadcast over heads):
//   x1 = slice(x, −1, 0, D/2); x2 = slice(x, −1, D/2, D)
//   out = concat([x1·c − x2·s, x2·c + x1·s], −1)          (products in either operand order)
// → fusedRope(x, c, s) : X[..., T, H, D]
// Legality: both slices split the last axis of the same x exactly in half; c and s are the same
// tensors in both halves, shaped [..., T, 1, D/2] before their broadcast. Bit-exact (the fused op
// rounds each product and the sum like the primitives). Near misses (an interleaved rotation, halves
// swapped, a different sign) do not match. Profitability: always.

import type { NodeOf } from "../ir/node.js";
import { shapesEqual } from "../ir/shape.js";
import { capture, captured, maybe, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

const first = op("slice", { start: 0, step: 1 }, [capture("x")], { name: "first" });
const second = op("slice", { step: 1 }, [capture("x")], { name: "second" });
const table = (name: string) => maybe("broadcast", capture(name));
const times = (a: ReturnType<typeof op>, b: ReturnType<typeof table>) => op("binary", { fn: "mul" }, [a, b], { commutative: true });

export const fuseRopeRule: Rule = {
  name: "rope",
  pattern: op("concat", {}, [
    op("binary", { fn: "sub" }, [times(first, table("cos")), times(second, table("sin"))]),
    op("binary", { fn: "add" }, [times(second, table("cos")), times(first, table("sin"))], { commutative: true }),
  ]),
  rewrite(m, ctx) {
    const x = captured(m, "x");
    const [cos, sin] = [captured(m, "cos"), captured(m, "sin")];
    const r = x.shape.length;
    const d = x.shape[r - 1];
    if (r < 3 || typeof d !== "number" || d % 2 !== 0) return undefined;
    const lo = captured(m, "first", "slice").attrs;
    const hi = captured(m, "second", "slice").attrs;
    const concat = m.root as NodeOf<"concat">;
    if (concat.attrs.axis !== r - 1 || lo.axis !== r - 1 || hi.axis !== r - 1) return undefined;
    if (lo.end !== d / 2 || hi.start !== d / 2 || hi.end !== d) return undefined;
    const expected = [...x.shape.slice(0, -2), 1, d / 2];
    if (!shapesEqual(cos.shape, expected) || !shapesEqual(sin.shape, expected) || cos.dtype !== x.dtype || sin.dtype !== x.dtype) return undefined;
    return ctx.table.make("fusedRope", {}, [x, cos, sin], () => m.root.site);
  },
};

export const fuseRope = rulePass("fuse-rope", [fuseRopeRule]);
