// gpt-oss mixture of experts → MoeExperts (a routing kernel plus grouped expert kernels).
//
// Pattern (x [T, D] of dtype X; E experts, top k; I = intermediate):
//   logits  = matmul{transposeB}(x, Wr [E, D]) + cast(br [E])                       [T, E]
//   idx     = topk{k, indices}(logits);  w = softmax(topk{k, values}(logits))        [T, k]
//   rows    = broadcast(reshape(x, [T, 1, 1, D]), [T, k, 1, D])
//   gu      = reshape(rows · gather(Wgu [E, D, 2I], idx), [T, k, 2I]) + cast(gather(bgu, idx))
//             (MXFP4: rows · gather(dequant(blocks [E, 2I, D/32, 16], scales), idx)ᵀ)
//   gate    = min(reshape(slice(reshape(gu, [T, k, I, 2]), −1, 0, 1)), limit)
//   up      = clamp(reshape(slice(…, −1, 1, 2)), −limit, limit)
//   h       = (up + 1) · gate · sigmoid(gate · alpha)                              [T, k, I]
//   down    = reshape(reshape(h, [T, k, 1, I]) · gather(Wd [E, I, D], idx), [T, k, D]) + cast(gather(bd, idx))
//   y       = sum(down · reshape(cast(w), [T, k, 1]), axis 1)                       [T, D]
// → moeExperts{topK, limit, alpha, weightFormat}(x, Wr, br, gate_up…, bgu, down…, bd) : X[T, D]
// Legality: every gather selects experts with the same top-k indices, the values feeding the
// softmax come from the same logits, the slices take the even (gate) and odd (up) columns, limit
// and −limit agree, the added 1 is exactly 1, and the sum runs over the k axis. Bit-exact with the
// builder's expansion. Profitability: always (only the k selected experts' weights are read, packed
// when MXFP4, and the [T, k, D, 2I] gathered weights never exist).

import type { Node, NodeOf } from "../ir/node.js";
import { shapesEqual } from "../ir/shape.js";
import { type Pattern, capture, captured, constant, maybe, op, oneOf } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

const bias = (name: string) => maybe("broadcast", maybe("cast", capture(name)));
const logits = op("binary", { fn: "add" }, [op("matmul", { transposeB: true }, [capture("x"), capture("routerWeight")]), bias("routerBias")], { name: "logits" });
const indices = op("topk", { result: "indices" }, [logits], { name: "indices" });
const values = op("topk", { result: "values" }, [logits], { name: "values" });

/** softmax over the last axis (as in fuse-sink-attention, restated for the router's [T, k]). */
function softmaxOf(x: Pattern): Pattern {
  const shifted = op("binary", { fn: "sub" }, [x, maybe("broadcast", op("reduce", { fn: "max", keepDims: true }, [x], { name: "routeMax" }))]);
  const e = op("unary", { fn: "exp" }, [shifted], { name: "routeExp" });
  return op("binary", { fn: "div" }, [e, maybe("broadcast", op("reduce", { fn: "sum", keepDims: true }, [e], { name: "routeSum" }))]);
}

const rows = maybe("broadcast", op("reshape", {}, [capture("x")]));
const gathered = (weight: Pattern) => op("gather", { axis: 0 }, [weight, indices]);
/** input · W[expert]: dense (x·W) or MXFP4 (x·dequant(W)ᵀ). */
const expertMatmul = (input: Pattern, name: string): Pattern =>
  oneOf(
    op("matmul", { transposeB: false }, [input, gathered(capture(`${name}Weight`))]),
    op("matmul", { transposeB: true }, [input, gathered(op("dequantMxfp4", {}, [capture(`${name}Blocks`), capture(`${name}Scales`)], { name: `${name}Dequant` }))]),
  );
const withBias = (product: Pattern, name: string) =>
  op("binary", { fn: "add" }, [op("reshape", {}, [product]), maybe("broadcast", maybe("cast", gathered(capture(`${name}Bias`))))]);

const gateUp = withBias(expertMatmul(rows, "gateUp"), "gateUp");
const pairs = op("reshape", {}, [gateUp], { name: "pairs" });
const half = (name: string) => op("reshape", {}, [op("slice", {}, [pairs], { name })]);
const gate = op("binary", { fn: "min" }, [half("gateSlice"), constant("limit")], { name: "gate" });
const up = op("ternary", { fn: "clamp" }, [half("upSlice"), constant("negLimit"), constant("limit")]);
const glu = op("binary", { fn: "mul" }, [gate, op("unary", { fn: "sigmoid" }, [op("binary", { fn: "mul" }, [gate, constant("alpha")], { commutative: true })])], { commutative: true });
const hidden = op("binary", { fn: "mul" }, [op("binary", { fn: "add" }, [up, constant("one", (v) => v === 1)], { commutative: true }), glu], { commutative: true });
const down = withBias(expertMatmul(op("reshape", {}, [hidden]), "down"), "down");
const routeWeights = maybe("broadcast", op("reshape", {}, [maybe("cast", softmaxOf(values))]));
const moe = op("reduce", { fn: "sum", keepDims: false, axis: 1 }, [op("binary", { fn: "mul" }, [down, routeWeights], { commutative: true })]);

const constValue = (n: Node | undefined) => (n && n.op === "constant" ? (n as NodeOf<"constant">).attrs.value : undefined);

export const fuseMoeRule: Rule = {
  name: "moe",
  pattern: moe,
  rewrite(m, ctx) {
    const x = captured(m, "x");
    if (x.shape.length !== 2 || m.root.dtype !== x.dtype) return undefined;
    const topk = captured(m, "indices", "topk");
    const k = topk.attrs.k;
    if (captured(m, "values", "topk").attrs.k !== k) return undefined;
    const [t, d] = x.shape;
    const logitsNode = captured(m, "logits");
    if (!shapesEqual(m.root.shape, [t!, d!]) || logitsNode.shape.length !== 2) return undefined;
    // the router softmax runs over the k axis
    if (captured(m, "routeMax", "reduce").attrs.axis !== 1 || captured(m, "routeSum", "reduce").attrs.axis !== 1) return undefined;
    // gate = even columns, up = odd columns of the [T, k, I, 2] pairs
    const pairsNode = captured(m, "pairs");
    const gateSlice = captured(m, "gateSlice", "slice").attrs;
    const upSlice = captured(m, "upSlice", "slice").attrs;
    const lastAxis = pairsNode.shape.length - 1;
    if (pairsNode.shape[lastAxis] !== 2) return undefined;
    if (gateSlice.axis !== lastAxis || gateSlice.start !== 0 || gateSlice.end !== 1 || upSlice.axis !== lastAxis || upSlice.start !== 1 || upSlice.end !== 2) return undefined;
    const limit = constValue(m.captures.get("limit"));
    const negLimit = constValue(m.captures.get("negLimit"));
    const alpha = constValue(m.captures.get("alpha"));
    if (limit === undefined || alpha === undefined || negLimit !== -limit) return undefined;
    const dense = m.captures.has("gateUpWeight");
    if (dense !== m.captures.has("downWeight")) return undefined; // one expert matrix packed, the other not: not a layout we fuse
    const weights = dense
      ? [captured(m, "gateUpWeight"), captured(m, "gateUpBias"), captured(m, "downWeight"), captured(m, "downBias")]
      : [captured(m, "gateUpBlocks"), captured(m, "gateUpScales"), captured(m, "gateUpBias"), captured(m, "downBlocks"), captured(m, "downScales"), captured(m, "downBias")];
    if (!dense && (captured(m, "gateUpDequant").dtype !== x.dtype || captured(m, "downDequant").dtype !== x.dtype)) return undefined;
    // weights share x's dtype (the matmuls demand it); biases of any float type are rounded to it
    const inputs = [x, captured(m, "routerWeight"), captured(m, "routerBias"), ...weights];
    try {
      return ctx.table.make("moeExperts", { topK: k, limit, alpha, weightFormat: dense ? "dense" : "mxfp4" }, inputs, () => m.root.site);
    } catch {
      return undefined; // shapes the fused op does not take: not gpt-oss's MoE
    }
  },
};

export const fuseMoe = rulePass("fuse-moe", [fuseMoeRule]);
