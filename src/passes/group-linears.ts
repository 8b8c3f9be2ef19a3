// Linear layers of one input → GroupedLinear (q, k and v projections of the same normed hidden state).
//
// Pattern: fusedLinear{transposeB}(x, w_i [N_i, K], bias_i) for every fusedLinear user i of one x (2 to 8
// of them, all bf16 or f16)
// → groupedLinear{result: i}(x, w_0, bias_0, w_1, bias_1, …) for each, siblings that the scheduler
//   launches together.
// Legality: each layer is computed exactly as its fusedLinear (same product, same roundings); only the
// launch is shared. Profitability: in decode the tensor-core GEMV runs all layers' 16-row tiles in one
// grid, so a small layer (gpt-oss's k_proj and v_proj, N = 512: 32 blocks for 132 SMs) no longer runs
// mostly idle on its own; in prefill each layer keeps its own GEMM launch, as before.

import type { Node, NodeOf } from "../ir/node.js";
import { capture, captured, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

const MAX_LAYERS = 8;

const groupable = (n: Node, x: Node, dtype: string): n is NodeOf<"fusedLinear"> =>
  n.op === "fusedLinear" && (n as NodeOf<"fusedLinear">).attrs.transposeB && n.inputs[0] === x && n.inputs[1]!.shape.length === 2 && n.dtype === dtype;

export const groupLinearsRule: Rule = {
  name: "group-linears",
  pattern: op("fusedLinear", { transposeB: true }, [capture("x"), capture("w"), capture("bias")]),
  rewrite(m, ctx) {
    const x = captured(m, "x");
    if (m.root.dtype !== "bf16" && m.root.dtype !== "f16") return undefined;
    const layers = ctx.users(x).filter((u) => groupable(u, x, m.root.dtype));
    if (layers.length < 2 || layers.length > MAX_LAYERS || !layers.includes(m.root as NodeOf<"fusedLinear">)) return undefined;
    const inputs = [x, ...layers.flatMap((l) => [l.inputs[1]!, l.inputs[2]!])];
    const replace = new Map<Node, Node>(layers.map((l, result) => [l, ctx.table.make("groupedLinear", { result }, inputs, () => l.site)]));
    return { replace, consumed: layers };
  },
};

export const groupLinears = rulePass("group-linears", [groupLinearsRule]);
