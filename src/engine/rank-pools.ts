// KV pools of a sharded model on GPUs: what each rank's memory holds, and the pool sizes every rank takes.
// The engine's block tables are shared by all ranks (one scheduler), so every rank's pools have the same number of
// blocks: the rank with the least room decides. A rank's block is smaller than the whole model's (its KV heads only),
// and a rank without full-attention heads holds any number.

import { dtypeBytes } from "../ir/dtype.js";
import type { Plan } from "../lower/plan.js";
import type { PagedDecoderLayout } from "./contract.js";
import type { RankInfo } from "./rank-group.js";

/**
 * Full-attention KV blocks a rank's memory holds beside its plan: its share of the card (`utilization` of the total,
 * less what others already use) after the plan's arena and the windowed pools, divided by the bytes one block of the
 * full pools takes on this rank (its KV heads only). Infinity when the rank holds no full-attention KV heads.
 */
export function rankKvCapacity(plan: Pick<Plan, "states" | "arena">, memory: { readonly freeBytes: number; readonly totalBytes: number }, utilization: number, windowedBlocks: Readonly<Record<string, number>>, blockSize: number): number {
  const { freeBytes, totalBytes } = memory;
  // bytes of one block of each pool of this rank
  const perBlock = new Map<string, number>();
  for (const st of plan.states) {
    if (!st.atLoad) continue;
    const symbol = st.shape.find((d): d is string => typeof d === "string")!;
    const rowBytes = st.shape.filter((d): d is number => typeof d === "number").reduce((a, b) => a * b, 1) * dtypeBytes(st.dtype);
    perBlock.set(symbol, (perBlock.get(symbol) ?? 0) + rowBytes * blockSize);
  }
  let windowed = 0;
  for (const [symbol, blocks] of Object.entries(windowedBlocks)) windowed += (perBlock.get(symbol) ?? 0) * blocks;
  const budget = utilization * totalBytes - (totalBytes - freeBytes) - plan.arena.bytes - windowed;
  const full = [...perBlock.entries()].filter(([symbol]) => !(symbol in windowedBlocks)).reduce((a, [, b]) => a + b, 0);
  return full === 0 ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(budget / full));
}

/** Blocks of every KV group: windowed groups by need (`windowed`), the full group by the tightest rank's room (or `kvBlocks`). */
export function choosePoolBlocks(
  layout: PagedDecoderLayout,
  infos: readonly RankInfo[],
  o: { readonly kvBlocks?: number | undefined; readonly maxFullBlocks: number; readonly windowed: Readonly<Record<string, number>>; readonly maxSeqs: number; readonly utilization: number },
): Record<string, number> {
  const full = layout.groups.find((g) => g.window === undefined);
  const capacity = Math.min(...infos.map((i) => i.kvCapacity ?? Number.POSITIVE_INFINITY));
  // when no rank holds full-attention heads, any number fits: enough for every sequence at its longest
  const room = Number.isFinite(capacity) ? capacity : o.maxSeqs * layout.maxBlocksPerSeq;
  const fullBlocks = o.kvBlocks ?? (full ? Math.floor(Math.min(room, o.maxFullBlocks)) : 0);
  if (full && fullBlocks < layout.maxBlocksPerSeq) {
    const tight = infos.reduce((a, b) => ((b.kvCapacity ?? Infinity) < (a.kvCapacity ?? Infinity) ? b : a));
    throw new Error(
      `the KV cache does not fit: rank ${tight.rank} holds ${fullBlocks} full-attention blocks after its ${((tight.arenaBytes ?? 0) / 1e9).toFixed(2)} GB plan ` +
        `(--gpu-memory-utilization ${o.utilization}); one ${layout.maxContext}-token sequence needs ${layout.maxBlocksPerSeq}. Lower --max-context or --max-batch, or raise --gpu-memory-utilization`,
    );
  }
  const sizes: Record<string, number> = {};
  for (const g of layout.groups) sizes[g.name] = g.window !== undefined ? o.windowed[g.name]! : fullBlocks;
  return sizes;
}
