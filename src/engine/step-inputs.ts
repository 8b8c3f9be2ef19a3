// A StepPlan (scheduler.ts) as the `step` entry's input tensors, exactly as contract.ts documents them:
// sequences in plan order, each sequence's tokens contiguous and in position order, logit rows the last token of
// each sampling sequence in plan order, block tables padded with −1 to maxBlocksPerSeq, and each token's pool
// row per group.
//
// The block tables are the largest part: [S, maxBlocksPerSeq] per group, 256 × 4096 entries per group at 64k
// contexts, although a sequence holds only its context's blocks (and a sliding group about 9). A StepInputBuilder
// therefore keeps its arrays from step to step: a table row is rewritten only up to the sequence's blocks, and
// padded with −1 only where the previous step wrote further (each row remembers its written length), so a step
// costs O(tokens + the plan's table entries) instead of O(S · maxBlocksPerSeq), with no allocation. The tensors it
// returns are views of those arrays: valid until the next build (contract.ts: a backend reads them until its step's
// promise settles). `stepInputs` builds into fresh arrays, for callers that keep the tensors.

import { NO_BLOCK } from "./block-pool.js";
import { blockTableInput, kvSlotsInput, type PagedDecoderLayout, STEP_NAMES, type StepTensor } from "./contract.js";
import type { StepPlan } from "./scheduler.js";

type InputLayout = Pick<PagedDecoderLayout, "blockSize" | "maxBlocksPerSeq" | "groups">;

export class StepInputBuilder {
  private readonly ids: Int32Array;
  private readonly positions: Int32Array;
  private readonly tokenSeqs: Int32Array;
  private readonly contextLens: Int32Array;
  private readonly logitRows: Int32Array;
  /** Per layout group: [maxSeqs, maxBlocksPerSeq], −1 wherever no row was written. */
  private readonly tables: Int32Array[];
  /** Per layout group and row: entries written by the last build (beyond them the row is −1). */
  private readonly written: Int32Array[];
  private readonly slots: Int32Array[];
  /** The last build's names per group: the plan's group order → the layout's, checked once per order. */
  private groupIndexFor: { readonly key: readonly string[]; readonly index: readonly number[] } | undefined;

  constructor(
    private readonly layout: InputLayout,
    /** Most sequences and tokens one step holds (the plan's bounds). */
    readonly maxSeqs: number,
    readonly maxTokens: number,
  ) {
    const MB = layout.maxBlocksPerSeq;
    this.ids = new Int32Array(maxTokens);
    this.positions = new Int32Array(maxTokens);
    this.tokenSeqs = new Int32Array(maxTokens);
    this.contextLens = new Int32Array(maxSeqs);
    this.logitRows = new Int32Array(maxSeqs);
    this.tables = layout.groups.map(() => new Int32Array(maxSeqs * MB).fill(NO_BLOCK));
    this.written = layout.groups.map(() => new Int32Array(maxSeqs));
    this.slots = layout.groups.map(() => new Int32Array(maxTokens));
  }

  /** The `step` entry's inputs for `plan` (the layout's groups are matched to the plan's by name). */
  build(plan: StepPlan): Record<string, StepTensor> {
    const layout = this.layout;
    const B = layout.blockSize;
    if (plan.blockSize !== B) throw new Error(`step ${plan.step} was planned with blocks of ${plan.blockSize} tokens but the model's are ${B}`);
    const groupIndex = this.groupIndex(plan.groups);
    const MB = layout.maxBlocksPerSeq;
    const S = plan.seqs.length;
    const T = plan.numTokens;
    if (S > this.maxSeqs) throw new Error(`step ${plan.step} runs ${S} sequences; the step inputs hold at most ${this.maxSeqs}`);
    if (T > this.maxTokens) throw new Error(`step ${plan.step} runs ${T} tokens; the step inputs hold at most ${this.maxTokens}`);
    const { ids, positions, tokenSeqs, contextLens, logitRows, tables, written, slots } = this;
    const G = groupIndex.length;
    let t = 0;
    let row = 0;
    for (let s = 0; s < S; s++) {
      const seq = plan.seqs[s]!;
      contextLens[s] = seq.start;
      for (let g = 0; g < G; g++) {
        const table = seq.blockTables[groupIndex[g]!]!;
        const n = table.length;
        if (n > MB) throw new Error(`request "${seq.id}" has ${n} blocks in group "${layout.groups[g]!.name}", more than maxBlocksPerSeq ${MB}`);
        const out = tables[g]!;
        const at = s * MB;
        for (let j = 0; j < n; j++) out[at + j] = table[j]!;
        const before = written[g]![s]!;
        if (before > n) out.fill(NO_BLOCK, at + n, at + before);
        written[g]![s] = n;
      }
      const tokenIds = seq.tokenIds;
      const k0 = t;
      if (t + tokenIds.length > T) throw new Error(`step ${plan.step}: the plan counts ${plan.numTokens} tokens but lists more`);
      for (let k = 0; k < tokenIds.length; k++, t++) {
        ids[t] = tokenIds[k]!;
        positions[t] = seq.start + k;
        tokenSeqs[t] = s;
      }
      for (let g = 0; g < G; g++) {
        const table = seq.blockTables[groupIndex[g]!]!;
        const out = slots[g]!;
        for (let i = k0; i < t; i++) {
          const p = positions[i]!;
          const block = table[Math.floor(p / B)];
          if (block === undefined || block === NO_BLOCK) throw new Error(`request "${seq.id}": position ${p} has no block in group "${layout.groups[g]!.name}"`);
          out[i] = block * B + (p % B);
        }
      }
      if (seq.sample) {
        if (row >= plan.numSampled) throw new Error(`step ${plan.step}: the plan counts ${plan.numSampled} samples but lists more`);
        logitRows[row++] = t - 1;
      }
    }
    // rows past S keep what an earlier, larger step wrote: the tensors below end at S, so nothing reads them, and
    // the next build that reaches them pads them again
    if (t !== T || row !== plan.numSampled) throw new Error(`step ${plan.step}: the plan counts ${plan.numTokens} tokens and ${plan.numSampled} samples but lists ${t} and ${row}`);
    const i32 = (shape: readonly number[], data: Int32Array): StepTensor => ({ dtype: "i32", shape, data });
    const inputs: Record<string, StepTensor> = {
      [STEP_NAMES.ids]: i32([T], ids.subarray(0, T)),
      [STEP_NAMES.positions]: i32([T], positions.subarray(0, T)),
      [STEP_NAMES.tokenSeqs]: i32([T], tokenSeqs.subarray(0, T)),
      [STEP_NAMES.contextLens]: i32([S], contextLens.subarray(0, S)),
      [STEP_NAMES.logitRows]: i32([row], logitRows.subarray(0, row)),
    };
    for (let g = 0; g < G; g++) {
      const name = layout.groups[g]!.name;
      inputs[blockTableInput(name)] = i32([S, MB], tables[g]!.subarray(0, S * MB));
      inputs[kvSlotsInput(name)] = i32([T], slots[g]!.subarray(0, T));
    }
    return inputs;
  }

  /** For each layout group, its index in the plan's groups (matched by name). */
  private groupIndex(planGroups: readonly string[]): readonly number[] {
    const cached = this.groupIndexFor;
    if (cached !== undefined && cached.key.length === planGroups.length && cached.key.every((g, i) => g === planGroups[i])) return cached.index;
    const groups = this.layout.groups;
    if (planGroups.length !== groups.length) throw new Error(`the scheduler has KV groups ${planGroups.join(", ")} but the model ${groups.map((g) => g.name).join(", ")}`);
    const index = groups.map((g) => {
      const i = planGroups.indexOf(g.name);
      if (i < 0) throw new Error(`the model has KV group "${g.name}" but the scheduler's groups are ${planGroups.join(", ")}`);
      return i;
    });
    this.groupIndexFor = { key: [...planGroups], index };
    return index;
  }
}

/** The `step` entry's inputs for `plan`, in arrays of their own (the caller may keep them). */
export function stepInputs(plan: StepPlan, layout: InputLayout): Record<string, StepTensor> {
  return new StepInputBuilder(layout, plan.seqs.length, plan.numTokens).build(plan);
}
