// scatter(x, idx, u) with many indices → scatter(x, uniqueIndices(idx), u).
//
// Pattern: scatter(x, idx i32 [N], u) whose N (its value, or its bound) exceeds SCATTER_SCAN_MAX.
// Semantics: scatter lets the last of equal indices win; uniqueIndices(idx) keeps exactly those winners
// (and turns negative indices into −1, which scatter skips too), so the result is unchanged, bit for bit.
// Profitability: the scatter kernel then writes each row at most once with no owner table (an owner table
// is as large as x's indexed dim: a KV pool's rows). Every scatter of one idx (a step's KV slots, in every
// layer of a KV group) shares one uniqueIndices node, so the duplicates are resolved once per call.

import type { NodeOf } from "../ir/node.js";
import { evalDim } from "../ir/shape.js";
import { SCATTER_SCAN_MAX } from "../codegen/movement.js";
import { capture, captured, op } from "./pattern.js";
import { type Rule, rulePass } from "./rewrite.js";

export const uniqueScatterIndicesRule: Rule = {
  name: "unique-scatter-indices",
  pattern: op("scatter", {}, [capture("x"), capture("idx", (n) => n.op !== "uniqueIndices" && n.dtype === "i32" && n.shape.length === 1), capture("u")]),
  rewrite(m, ctx) {
    const idx = captured(m, "idx");
    let count: number;
    try {
      count = evalDim(idx.shape[0]!, ctx.graph.symbols);
    } catch {
      return undefined;
    }
    if (count <= SCATTER_SCAN_MAX) return undefined; // the scan kernel resolves few duplicates in one launch
    const unique = ctx.table.make("uniqueIndices", {}, [idx], () => idx.site);
    const scatter = m.root as NodeOf<"scatter">;
    return ctx.table.make("scatter", { axis: scatter.attrs.axis }, [captured(m, "x"), unique, captured(m, "u")], () => scatter.site);
  },
};

export const uniqueScatterIndices = rulePass("unique-scatter-indices", [uniqueScatterIndicesRule]);
