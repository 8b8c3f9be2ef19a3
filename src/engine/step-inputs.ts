// A StepPlan (scheduler.ts) as the `step` entry's input tensors, exactly as contract.ts documents them:
// sequences in plan order, each sequence's tokens contiguous and in position order, logit rows the last token of
// each sampling sequence in plan order, block tables padded with −1 to maxBlocksPerSeq, and each token's pool
// row per group. O(tokens + sequences · maxBlocksPerSeq) per step: the block tables are the largest part, built
// as Int32Arrays, which hostTensor and tensorToBytes copy whole (no per-element rounding or DataView writes; a
// [256, 4104] table, 64k contexts, takes about 8 ms for both on the dev host).

import { type HostTensor, hostTensor } from "../ir/host-tensor.js";
import { NO_BLOCK } from "./block-pool.js";
import { blockTableInput, kvSlotsInput, type PagedDecoderLayout, STEP_NAMES } from "./contract.js";
import type { StepPlan } from "./scheduler.js";

/** The `step` entry's inputs for `plan` (the layout's groups are matched to the plan's by name). */
export function stepInputs(plan: StepPlan, layout: Pick<PagedDecoderLayout, "blockSize" | "maxBlocksPerSeq" | "groups">): Record<string, HostTensor> {
  const B = layout.blockSize;
  if (plan.blockSize !== B) throw new Error(`step ${plan.step} was planned with blocks of ${plan.blockSize} tokens but the model's are ${B}`);
  if (plan.groups.length !== layout.groups.length) throw new Error(`the scheduler has KV groups ${plan.groups.join(", ")} but the model ${layout.groups.map((g) => g.name).join(", ")}`);
  const groupIndex = layout.groups.map((g) => {
    const i = plan.groups.indexOf(g.name);
    if (i < 0) throw new Error(`the model has KV group "${g.name}" but the scheduler's groups are ${plan.groups.join(", ")}`);
    return i;
  });
  const MB = layout.maxBlocksPerSeq;
  const S = plan.seqs.length;
  const T = plan.numTokens;
  const ids = new Int32Array(T);
  const positions = new Int32Array(T);
  const tokenSeqs = new Int32Array(T);
  const contextLens = new Int32Array(S);
  const logitRows = new Int32Array(plan.numSampled);
  const tables = layout.groups.map(() => new Int32Array(S * MB).fill(NO_BLOCK));
  const slots = layout.groups.map(() => new Int32Array(T));
  let t = 0;
  let row = 0;
  plan.seqs.forEach((seq, s) => {
    contextLens[s] = seq.start;
    groupIndex.forEach((pg, g) => {
      const table = seq.blockTables[pg]!;
      if (table.length > MB) throw new Error(`request "${seq.id}" has ${table.length} blocks in group "${layout.groups[g]!.name}", more than maxBlocksPerSeq ${MB}`);
      tables[g]!.set(table, s * MB);
    });
    seq.tokenIds.forEach((id, k) => {
      const p = seq.start + k;
      ids[t] = id;
      positions[t] = p;
      tokenSeqs[t] = s;
      groupIndex.forEach((pg, g) => {
        const block = seq.blockTables[pg]![Math.floor(p / B)];
        if (block === undefined || block === NO_BLOCK) throw new Error(`request "${seq.id}": position ${p} has no block in group "${layout.groups[g]!.name}"`);
        slots[g]![t] = block * B + (p % B);
      });
      t++;
    });
    if (seq.sample) logitRows[row++] = t - 1;
  });
  if (t !== T || row !== plan.numSampled) throw new Error(`step ${plan.step}: the plan counts ${plan.numTokens} tokens and ${plan.numSampled} samples but lists ${t} and ${row}`);
  const inputs: Record<string, HostTensor> = {
    [STEP_NAMES.ids]: hostTensor("i32", [T], ids),
    [STEP_NAMES.positions]: hostTensor("i32", [T], positions),
    [STEP_NAMES.tokenSeqs]: hostTensor("i32", [T], tokenSeqs),
    [STEP_NAMES.contextLens]: hostTensor("i32", [S], contextLens),
    [STEP_NAMES.logitRows]: hostTensor("i32", [plan.numSampled], logitRows),
  };
  layout.groups.forEach((g, i) => {
    inputs[blockTableInput(g.name)] = hostTensor("i32", [S, MB], tables[i]!);
    inputs[kvSlotsInput(g.name)] = hostTensor("i32", [T], slots[i]!);
  });
  return inputs;
}
