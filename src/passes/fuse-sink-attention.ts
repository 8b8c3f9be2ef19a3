// Scaled dot-product attention with a position mask and optional sinks → SinkAttention.
//
// Pattern (B = batch dims; q [B, T, H, D], k and v [B, S, KVH, D], G = H / KVH; all math in f32):
//   qg     = transpose(reshape(cast(q), [B, T, KVH, G, D]), [.., 1, 2, 0, 3])            [B, KVH, G, T, D]
//   kg, vg = broadcast(reshape(transpose(cast(k|v), [.., 1, 0, 2]), [B, KVH, 1, S, D]))   [B, KVH, G, S, D]
//   scores = reshape(matmul{transposeB}(qg, kg), [B, H, T, S]) · scale
//   masked = where(visible, scores, −inf)      visible: kpos ≥ 0 ∧ kpos ≤ qpos (∧ qpos − kpos < window)
//   probs  = slice(softmax(concat(masked, sinkColumn), −1), −1, 0, S)   or softmax(masked) without sinks
//   out    = cast(transpose(reshape(matmul(reshape(probs, [B, KVH, G, T, S]), vg), [B, H, T, D]), [.., 1, 0, 2]))
// → sinkAttention{scale, window, hasSinks}(q, k, v, qpos, kpos[, sinks]) : q.dtype[B, T, H, D]
// The mask and the positions are inputs of the match, not part of it: every layer of a kind shares
// one mask, which dies once all of them are fused. Legality: the grouping perms and reshapes are
// exactly GQA's (head h reads kv head ⌊h / G⌋), the mask is exactly the position rule above, the
// softmax runs over the last axis, the sink column is [H] broadcast over queries, the slice drops
// only that column, and the result is cast back to q's dtype. A mask of any other form (not causal,
// a window written differently) does not fuse. Bit-exact with the builder's expansion.
// Profitability: always (the T×S score matrix never reaches memory).
// Keys that are the first S rows of a larger static-size tensor (slice(cache, S axis, 0, S), a KV cache
// with a row per position) are read in place: the fused op takes the whole tensor and S from kpos.

import type { Node, NodeOf } from "../ir/node.js";
import { dimsEqual, sameElementCount, shapesEqual } from "../ir/shape.js";
import { type Pattern, capture, captured, constant, match, maybe, op, oneOf } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

const f32Of = (name: string) => maybe("cast", capture(name));
const groupedQueries = op("transpose", {}, [op("reshape", {}, [f32Of("q")], { name: "qReshape" })], { name: "qTranspose" });
const groupedKv = (name: string) =>
  maybe("broadcast", op("reshape", {}, [op("transpose", {}, [f32Of(name)], { name: `${name}Transpose` })], { name: `${name}Reshape` }));
const scores = op("binary", { fn: "mul" }, [op("reshape", {}, [op("matmul", { transposeB: true }, [groupedQueries, groupedKv("k")])], { name: "scores" }), constant("scale")], { commutative: true });
const masked = op("ternary", { fn: "where" }, [capture("visible"), scores, constant("negInf", (v) => v === -Infinity)], { name: "masked" });

/** softmax(x) over the last axis as the builder writes it: exp(x − max) / sum(exp(x − max)). */
function softmaxOf(x: Pattern, tag: string): Pattern {
  const shifted = op("binary", { fn: "sub" }, [x, maybe("broadcast", op("reduce", { fn: "max", keepDims: true }, [x], { name: `${tag}Max` }))]);
  const e = op("unary", { fn: "exp" }, [shifted], { name: `${tag}Exp` });
  return op("binary", { fn: "div" }, [e, maybe("broadcast", op("reduce", { fn: "sum", keepDims: true }, [e], { name: `${tag}Sum` }))]);
}

const sinkColumn = maybe("broadcast", op("reshape", {}, [maybe("cast", capture("sinks"))]));
const probs = oneOf(
  op("slice", { start: 0, step: 1 }, [softmaxOf(op("concat", {}, [masked, sinkColumn], { name: "withSink" }), "sm")], { name: "dropSink" }),
  softmaxOf(masked, "sm"),
);
const attention = maybe(
  "cast",
  op("transpose", {}, [op("reshape", {}, [op("matmul", { transposeB: false }, [op("reshape", {}, [probs]), groupedKv("v")])])], { name: "outTranspose" }),
);

// ---- the mask ------------------------------------------------------------------------------------

const position = (name: string) => maybe("broadcast", op("reshape", {}, [maybe("cast", capture(name))]));
const falseConstant = constant(undefined, (v) => v === 0);
const causal = op("ternary", { fn: "where" }, [
  op("compare", { fn: "ge" }, [position("kpos"), constant(undefined, (v) => v === 0)]),
  op("compare", { fn: "le" }, [position("kpos"), position("qpos")]),
  falseConstant,
]);
const windowed = op("ternary", { fn: "where" }, [causal, op("compare", { fn: "lt" }, [op("binary", { fn: "sub" }, [position("qpos"), position("kpos")]), constant("window")]), falseConstant]);

interface MaskInfo {
  readonly qpos: Node;
  readonly kpos: Node;
  readonly window: number;
}

function analyzeMask(visible: Node): MaskInfo | undefined {
  for (const [pattern, hasWindow] of [[windowed, true], [causal, false]] as const) {
    const m = match(pattern, visible);
    if (!m) continue;
    const window = hasWindow ? (captured(m, "window", "constant").attrs.value) : 0;
    if (!Number.isInteger(window) || window < 0) return undefined;
    return { qpos: captured(m, "qpos"), kpos: captured(m, "kpos"), window };
  }
  return undefined;
}

const permOf = (n: Node) => (n as NodeOf<"transpose">).attrs.perm;
const samePerm = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** k and v as the first S rows (axis nb) of larger static-size tensors: those tensors, read in place. */
function readInPlace(k: Node, v: Node, nb: number): [Node, Node] | undefined {
  const prefix = (x: Node): Node | undefined => {
    if (x.op !== "slice") return undefined;
    const { axis, start, step } = (x as NodeOf<"slice">).attrs;
    const from = x.inputs[0]!;
    const leading = axis === nb || axis === nb - from.shape.length;
    return leading && start === 0 && step === 1 && typeof from.shape[nb] === "number" ? from : undefined;
  };
  const [kFrom, vFrom] = [prefix(k), prefix(v)];
  if (!kFrom || !vFrom || !shapesEqual(kFrom.shape, vFrom.shape) || !dimsEqual(k.shape[nb]!, v.shape[nb]!)) return undefined;
  return [kFrom, vFrom];
}

export const fuseSinkAttentionRule: Rule = {
  name: "sink-attention",
  pattern: attention,
  rewrite(m, ctx) {
    const [k, v] = [captured(m, "k"), captured(m, "v")];
    let q = captured(m, "q");
    if (q.dtype !== k.dtype || q.dtype !== v.dtype || m.root.dtype !== q.dtype) return undefined;
    // q [B, T, H, D] as the grouping reshape sees it: [B, T, KVH, G, D]
    const grouped = captured(m, "qReshape").shape;
    const nb = grouped.length - 4;
    if (nb < 0 || k.shape.length !== nb + 3 || v.shape.length !== nb + 3) return undefined;
    const batch = grouped.slice(0, nb);
    const [t, kvh, g, d] = grouped.slice(nb) as [string | number, number, number, number];
    const [s, kKvh] = k.shape.slice(nb) as [string | number, number];
    if (typeof kvh !== "number" || typeof g !== "number" || kKvh !== kvh) return undefined;
    const h = kvh * g;
    const b = (...rest: number[]) => [...batch.map((_, i) => i), ...rest.map((x) => x + nb)];
    // the canonicalizer may have folded a reshape of q into the grouping one: q in another shape of the same elements
    if (!shapesEqual(q.shape, [...batch, t, h, d])) {
      if (!sameElementCount(q.shape, [...batch, t, h, d])) return undefined;
      const from = q;
      q = ctx.table.make("reshape", { shape: [...batch, t, h, d] }, [from], () => from.site);
    }
    // GQA grouping exactly as the builder writes it
    if (!samePerm(permOf(captured(m, "qTranspose")), b(1, 2, 0, 3))) return undefined;
    for (const name of ["k", "v"]) {
      if (!samePerm(permOf(captured(m, `${name}Transpose`)), b(1, 0, 2))) return undefined;
      if (!shapesEqual(captured(m, `${name}Reshape`).shape, [...batch, kvh, 1, s, d])) return undefined;
    }
    if (!shapesEqual(captured(m, "scores").shape, [...batch, h, t, s]) || !samePerm(permOf(captured(m, "outTranspose")), b(1, 0, 2))) return undefined;
    // softmax over the last axis; with sinks, only the sink column is dropped
    const lastAxis = nb + 2;
    if (captured(m, "smMax", "reduce").attrs.axis !== lastAxis || captured(m, "smSum", "reduce").attrs.axis !== lastAxis) return undefined;
    const sinks = m.captures.get("sinks");
    if (sinks) {
      const drop = captured(m, "dropSink", "slice");
      const withSink = captured(m, "withSink", "concat");
      if (drop.attrs.axis !== lastAxis || withSink.attrs.axis !== lastAxis || !dimsEqual(drop.attrs.end, s)) return undefined;
      if (!shapesEqual(sinks.shape, [h])) return undefined;
    }
    const mask = analyzeMask(captured(m, "visible"));
    if (!mask) return undefined;
    // positions may arrive in another shape of the same elements (the canonicalizer folds reshape chains)
    const positionsAs = (x: Node, shape: readonly (string | number)[]): Node | undefined => {
      if (shapesEqual(x.shape, shape)) return x;
      return sameElementCount(x.shape, shape) ? ctx.table.make("reshape", { shape }, [x], () => x.site) : undefined;
    };
    const [qpos, kpos] = [positionsAs(mask.qpos, [...batch, t]), positionsAs(mask.kpos, [...batch, s])];
    if (!qpos || !kpos) return undefined;
    const scale = captured(m, "scale", "constant").attrs.value;
    const [keys, values] = readInPlace(k, v, nb) ?? [k, v];
    const inputs = [q, keys, values, qpos, kpos, ...(sinks ? [sinks] : [])];
    try {
      return ctx.table.make("sinkAttention", { scale, window: mask.window, hasSinks: sinks !== undefined }, inputs, () => m.root.site);
    } catch {
      return undefined; // operand types the fused op does not take (e.g. float positions): not attention as we know it
    }
  },
};

export const fuseSinkAttention = rulePass("fuse-sink-attention", [fuseSinkAttentionRule]);
