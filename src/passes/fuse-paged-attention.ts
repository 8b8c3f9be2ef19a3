// Sink attention over keys gathered from a paged KV pool → PagedAttention (the pool read in place).
//
// Pattern (the builder's `pagedAttention` after sink-attention fusion; T tokens, L = MB·B pool slots per
// sequence, B = block size, [P, KVH, D] pools, all index math i32):
//   keys   = concat([gather(kPool, rows, 0), broadcast(reshape(k → [1, T, KVH, D]), [T, T, KVH, D])], 1)
//   values = concat([gather(vPool, rows, 0), broadcast(reshape(v → …))], 1)           the same rows
//   rows   = gather(gather(blockTable, tokenSeqs, 0), ⌊j / B⌋, 1) · B + j mod B       [T, L], j = 0 … L − 1
//   kpos   = concat([where(j < gather(contextLens, tokenSeqs)[t], j, −1),               [T, L]
//                    where(tokenSeqs[t'] == tokenSeqs[t], positions[t'], −1)], 1)       [T, T]
//   sinkAttention(reshape(q → [T, 1, H, D]), keys, values, reshape(positions → [T, 1]), kpos[, sinks])
// → reshape(pagedAttention{scale, window, blockSize: B, hasSinks}(q, k, v, kPool, vPool, positions,
//   tokenSeqs, contextLens, blockTable, seqTokenRanges(tokenSeqs, contextLens)[, sinks]), [T, 1, H, D])
// The pools are states (the KV cache); rows and kpos are inputs of the match, since every layer of a KV
// group shares them. The static index vectors (j, ⌊j / B⌋, j mod B) are recognized by their values, so
// constant folding may have turned them into literals or not. Legality: every piece is exactly the form
// above, with one tokenSeqs, positions, contextLens and blockTable throughout. Bit-exact with the builder's
// expansion (the interpreter computes pagedAttention with sinkAttention's roundings and key order).
// Profitability: always — the [T, L + T, KVH, D] gathered keys never exist, and the pool is read once per
// sequence instead of once per token.

import { evaluateNodes } from "../ir/interpret.js";
import type { Node, NodeOf } from "../ir/node.js";
import { dimsEqual, isStaticShape, numElements, sameElementCount, shapesEqual } from "../ir/shape.js";
import { type Match, op } from "./pattern.js";
import { type Rule, type RewriteContext, rulePass } from "./rewrite.js";

/** The node under any chain of reshapes and broadcasts. */
function underViews(n: Node): Node {
  while (n.op === "reshape" || n.op === "broadcast") n = n.inputs[0]!;
  return n;
}

const CONSTANT_LEAVES = new Set(["constant", "literal", "iota"]);

/** The values of a node computed from constants alone (iota, literals, splats), else undefined. */
function staticValues(n: Node): Float64Array | undefined {
  if (!isStaticShape(n.shape) || numElements(n.shape) > 1 << 20) return undefined;
  const stack = [n];
  const seen = new Set<Node>();
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (seen.has(x)) continue;
    seen.add(x);
    if (x.inputs.length === 0 && !CONSTANT_LEAVES.has(x.op)) return undefined;
    stack.push(...x.inputs);
  }
  return evaluateNodes([n], { symbols: {}, inputs: {}, params: {} })[0]!.data;
}

/** Whether `n` holds f(0), f(1), …, f(L − 1) along its last axis, broadcast over any leading axes. */
function isIndexVector(n: Node, length: number, f: (j: number) => number): boolean {
  // leading-axis broadcasts and reshapes keep the vector; look under them for a static [.., L] node
  while ((n.op === "broadcast" || n.op === "reshape") && n.inputs[0]!.shape[n.inputs[0]!.shape.length - 1] === length) n = n.inputs[0]!;
  if (n.shape[n.shape.length - 1] !== length) return false;
  const values = staticValues(n);
  if (!values) return false;
  for (let i = 0; i < values.length; i++) if (values[i] !== f(i % length)) return false;
  return true;
}

/** Whether `n` is the splat `value` (a constant, possibly broadcast). */
function isConstant(n: Node, value: number): boolean {
  const base = underViews(n);
  if (base.op === "constant") return (base as NodeOf<"constant">).attrs.value === value;
  const values = staticValues(base);
  return values !== undefined && values.length > 0 && values.every((v) => v === value);
}

/** The splat value of `n` (a constant, possibly broadcast), if it is one. */
function splatValue(n: Node): number | undefined {
  const base = underViews(n);
  if (base.op === "constant") return (base as NodeOf<"constant">).attrs.value;
  const values = staticValues(base);
  return values && values.length > 0 && values.every((v) => v === values[0]) ? values[0] : undefined;
}

/** The pieces of the paged rows expression, or undefined when `rows` is not exactly it. */
function pagedRows(rows: Node, tokens: Node["shape"][number]): { blockTable: Node; tokenSeqs: Node; blockSize: number } | undefined {
  if (rows.op !== "binary" || (rows as NodeOf<"binary">).attrs.fn !== "add" || rows.shape.length !== 2) return undefined;
  const slots = rows.shape[1];
  if (typeof slots !== "number" || !dimsEqual(rows.shape[0]!, tokens)) return undefined;
  for (const [scaled, offset] of [[rows.inputs[0]!, rows.inputs[1]!], [rows.inputs[1]!, rows.inputs[0]!]] as const) {
    if (scaled.op !== "binary" || (scaled as NodeOf<"binary">).attrs.fn !== "mul") continue;
    for (const [blocks, factor] of [[scaled.inputs[0]!, scaled.inputs[1]!], [scaled.inputs[1]!, scaled.inputs[0]!]] as const) {
      const blockSize = splatValue(factor);
      if (blockSize === undefined || !Number.isInteger(blockSize) || blockSize < 1) continue;
      if (slots % blockSize !== 0 || !isIndexVector(offset, slots, (j) => j % blockSize)) continue;
      // blocks = gather(gather(blockTable, tokenSeqs, 0), ⌊j / B⌋, 1)
      if (blocks.op !== "gather" || (blocks as NodeOf<"gather">).attrs.axis !== 1) continue;
      const [perToken, logical] = [blocks.inputs[0]!, blocks.inputs[1]!];
      if (!isIndexVector(logical, slots, (j) => Math.floor(j / blockSize)) || logical.shape.length !== 1) continue;
      if (perToken.op !== "gather" || (perToken as NodeOf<"gather">).attrs.axis !== 0) continue;
      const [blockTable, tokenSeqs] = [perToken.inputs[0]!, perToken.inputs[1]!];
      if (blockTable.shape.length !== 2 || blockTable.shape[1] !== slots / blockSize || !shapesEqual(tokenSeqs.shape, [tokens])) continue;
      return { blockTable, tokenSeqs, blockSize };
    }
  }
  return undefined;
}

const isWhere = (n: Node): n is NodeOf<"ternary"> => n.op === "ternary" && (n as NodeOf<"ternary">).attrs.fn === "where";
const isCompare = (n: Node, fn: string) => n.op === "compare" && (n as NodeOf<"compare">).attrs.fn === fn;

/** Checks kpos = concat([cached positions, step positions], 1) for these tokenSeqs; returns contextLens and positions. */
function pagedKeyPositions(kpos: Node, tokenSeqs: Node, slots: number): { contextLens: Node; positions: Node } | undefined {
  if (kpos.op !== "concat" || (kpos as NodeOf<"concat">).attrs.axis !== 1 || kpos.inputs.length !== 2) return undefined;
  const [cached, step] = kpos.inputs as [Node, Node];
  // cached: where(j < contextLens[tokenSeqs[t]], j, −1)
  if (!isWhere(cached) || !isConstant(cached.inputs[2]!, -1) || !isIndexVector(cached.inputs[1]!, slots, (j) => j)) return undefined;
  const less = underViews(cached.inputs[0]!);
  if (!isCompare(less, "lt") || !isIndexVector(less.inputs[0]!, slots, (j) => j)) return undefined;
  const lens = less.inputs[1]!;
  // the per-token length varies along the tokens (axis 0) only: [T, 1] broadcast over the slots
  const lensColumn = lens.op === "broadcast" ? lens.inputs[0]! : lens;
  if (lensColumn.shape.length !== 2 || lensColumn.shape[1] !== 1) return undefined;
  const perToken = underViews(lensColumn);
  if (perToken.op !== "gather" || (perToken as NodeOf<"gather">).attrs.axis !== 0 || perToken.inputs[1] !== tokenSeqs) return undefined;
  const contextLens = perToken.inputs[0]!;
  // step: where(tokenSeqs[t'] == tokenSeqs[t], positions[t'], −1)
  if (!isWhere(step) || !isConstant(step.inputs[2]!, -1)) return undefined;
  const same = underViews(step.inputs[0]!);
  if (!isCompare(same, "eq") || underViews(same.inputs[0]!) !== tokenSeqs || underViews(same.inputs[1]!) !== tokenSeqs) return undefined;
  const orientations = same.inputs.map((x) => (x.op === "broadcast" ? x.inputs[0]! : x).shape);
  const row = (s: Node["shape"]) => s.length === 2 && s[0] === 1;
  const column = (s: Node["shape"]) => s.length === 2 && s[1] === 1;
  if (!((row(orientations[0]!) && column(orientations[1]!)) || (column(orientations[0]!) && row(orientations[1]!)))) return undefined;
  const stepPositions = step.inputs[1]!;
  const positionsRow = stepPositions.op === "broadcast" ? stepPositions.inputs[0]! : stepPositions;
  if (!row(positionsRow.shape)) return undefined; // positions[t'] varies along the keys (axis 1)
  return { contextLens, positions: underViews(positionsRow) };
}

/** keys = concat([gather(pool, rows, 0), broadcast(reshape(step))], 1): the pool, the rows and the step's keys. */
function pagedKeys(keys: Node): { pool: Node; rows: Node; step: Node } | undefined {
  if (keys.op !== "concat" || (keys as NodeOf<"concat">).attrs.axis !== 1 || keys.inputs.length !== 2) return undefined;
  const [gathered, everyToken] = keys.inputs as [Node, Node];
  if (gathered.op !== "gather" || (gathered as NodeOf<"gather">).attrs.axis !== 0 || gathered.inputs[0]!.op !== "state") return undefined;
  if (everyToken.op !== "broadcast") return undefined;
  const once = everyToken.inputs[0]!; // [1, T, KVH, D]
  if (once.shape.length !== 4 || once.shape[0] !== 1) return undefined;
  return { pool: gathered.inputs[0]!, rows: gathered.inputs[1]!, step: once.op === "reshape" ? once.inputs[0]! : once };
}

/** `x` as [shape] (x itself, or a reshape of the same elements). */
function as(ctx: RewriteContext, x: Node, shape: Node["shape"]): Node | undefined {
  if (shapesEqual(x.shape, shape)) return x;
  return sameElementCount(x.shape, shape) ? ctx.table.make("reshape", { shape }, [x], () => x.site) : undefined;
}

function rewritePaged(m: Match, ctx: RewriteContext): Node | undefined {
  const att = m.root as NodeOf<"sinkAttention">;
  const [q4, keys, values, qpos, kpos] = att.inputs as [Node, Node, Node, Node, Node];
  if (q4.shape.length !== 4 || q4.shape[1] !== 1) return undefined;
  const [tokens, , h, d] = q4.shape as [Node["shape"][number], number, number, number];
  const kk = pagedKeys(keys);
  const vv = pagedKeys(values);
  if (!kk || !vv || kk.rows !== vv.rows || kk.pool === vv.pool) return undefined;
  const paged = pagedRows(kk.rows, tokens);
  if (!paged) return undefined;
  const slots = kk.rows.shape[1] as number;
  const pos = pagedKeyPositions(kpos, paged.tokenSeqs, slots);
  if (!pos || underViews(qpos) !== pos.positions || !shapesEqual(pos.positions.shape, [tokens])) return undefined;
  if (!shapesEqual(qpos.shape, [tokens, 1])) return undefined;
  const kvh = kk.pool.shape[1]!;
  const [q, k, v] = [as(ctx, q4, [tokens, h, d]), as(ctx, kk.step, [tokens, kvh, d]), as(ctx, vv.step, [tokens, kvh, d])];
  if (!q || !k || !v) return undefined;
  const sinks = att.attrs.hasSinks ? [att.inputs[5]!] : [];
  // every layer shares one seqTokenRanges node (interning): computed once per call
  const ranges = ctx.table.make("seqTokenRanges", {}, [paged.tokenSeqs, pos.contextLens], () => att.site);
  const inputs = [q, k, v, kk.pool, vv.pool, pos.positions, paged.tokenSeqs, pos.contextLens, paged.blockTable, ranges, ...sinks];
  let fused: Node;
  try {
    fused = ctx.table.make("pagedAttention", { scale: att.attrs.scale, window: att.attrs.window, blockSize: paged.blockSize, hasSinks: att.attrs.hasSinks }, inputs, () => att.site);
  } catch {
    return undefined; // operand types the fused op does not take: not paged attention as the builder writes it
  }
  return ctx.table.make("reshape", { shape: att.shape }, [fused], () => att.site);
}

// Only the root is matched by the pattern: keys, values, rows and kpos are checked by the rewrite (their
// pieces are shared by every layer of a KV group, so they are inputs of the match, not its interior).
export const fusePagedAttentionRule: Rule = {
  name: "paged-attention",
  pattern: op("sinkAttention"),
  rewrite: rewritePaged,
};

export const fusePagedAttention = rulePass("fuse-paged-attention", [fusePagedAttentionRule]);
