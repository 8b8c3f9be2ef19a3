// The structural identity of a graph: the root of the plan cache's key.

import { createHash } from "node:crypto";
import type { Graph } from "../ir/graph.js";

/** Structural identity of a graph: its name, symbols, params, state and every entry output's and update's hash. */
export function graphHash(g: Graph): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ name: g.name, symbols: g.symbols, params: g.params, states: g.states }));
  for (const e of g.entries) {
    h.update(`\0${e.name}${e.buckets ? `\0buckets ${e.buckets.symbol} ${e.buckets.cobounded.join(",")}` : ""}`);
    for (const o of e.outputs) h.update(`\0${o.name}=${o.node.hash}`);
    for (const u of e.updates) h.update(`\0update ${u.name}=${u.node.hash}`);
  }
  return h.digest("hex");
}
