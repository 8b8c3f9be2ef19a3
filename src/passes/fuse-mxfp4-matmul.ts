// Matmul by an MXFP4 weight → Mxfp4Matmul, which reads the packed weight directly.
//
// Pattern (x [..., M, K]; blocks fp4e2m1x2 [N, K/32, 16]; scales e8m0 [N, K/32]):
//   matmul{transposeB}(x, dequantMxfp4(blocks, scales) : X[N, K])
// → mxfp4Matmul(x, blocks, scales) : X[..., M, N]
// Legality: a rank-2 (shared) weight used transposed, as Hugging Face linear layers are; the
// dequantized dtype is x's (the matmul already demands it). The dequantized weight may have other
// users: each fused matmul re-reads the packed form, which is the point. Bit-exact.
// Profitability: always (the bf16 weight, 3.8x the packed bytes, is never written or read).

import { capture, captured, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

export const fuseMxfp4MatmulRule: Rule = {
  name: "mxfp4-matmul",
  pattern: op("matmul", { transposeB: true }, [capture("x"), op("dequantMxfp4", {}, [capture("blocks"), capture("scales")], { name: "dequant" })]),
  sharedInterior: true,
  rewrite(m, ctx) {
    const blocks = captured(m, "blocks");
    if (blocks.shape.length !== 3) return undefined;
    return ctx.table.make("mxfp4Matmul", {}, [captured(m, "x"), blocks, captured(m, "scales")], () => m.root.site);
  },
};

export const fuseMxfp4Matmul = rulePass("fuse-mxfp4-matmul", [fuseMxfp4MatmulRule]);
