// A hand-built step plan (a decode, a prefill chunk that does not sample, a chunk that does and crosses a block)
// as the step entry's exact input tensors, and the mismatches between plan and model layout that must fail.
import { describe, expect, it } from "vitest";
import { blockTableInput, type KvGroup, kvSlotsInput, STEP_NAMES } from "../../src/engine/contract.js";
import type { StepPlan } from "../../src/engine/scheduler.js";
import { StepInputBuilder, stepInputs } from "../../src/engine/step-inputs.js";

const group = (name: string, window?: number): KvGroup => ({ name, layers: [0], bytesPerBlock: 1, ...(window !== undefined ? { window } : {}) });
// the model lists its groups in another order than the scheduler: inputs are matched by name
const layout = { blockSize: 4, maxBlocksPerSeq: 4, groups: [group("sliding", 8), group("full")] };

const plan: StepPlan = {
  step: 3,
  blockSize: 4,
  groups: ["full", "sliding"],
  seqs: [
    { id: "a", start: 5, tokenIds: [42], sample: true, blockTables: [[3, 1], [-1, 2]] },
    { id: "b", start: 0, tokenIds: [7, 8, 9], sample: false, blockTables: [[0], [4]] },
    { id: "c", start: 8, tokenIds: [1, 2, 3, 4, 5], sample: true, blockTables: [[5, 6, 7, 8], [-1, -1, 9, 10]] },
  ],
  numTokens: 9,
  numSampled: 2,
  preempted: [],
};

const values = (inputs: ReturnType<typeof stepInputs>, name: string): { shape: readonly number[]; data: number[] } => {
  const t = inputs[name];
  if (t === undefined) throw new Error(`no input ${name}`);
  expect(t.dtype).toBe("i32");
  return { shape: t.shape, data: [...t.data] };
};

describe("stepInputs", () => {
  it("lays out tokens, positions, sequences, logit rows, block tables and pool rows exactly", () => {
    const inputs = stepInputs(plan, layout);
    expect(Object.keys(inputs).sort()).toEqual(
      [STEP_NAMES.ids, STEP_NAMES.positions, STEP_NAMES.tokenSeqs, STEP_NAMES.contextLens, STEP_NAMES.logitRows, blockTableInput("full"), blockTableInput("sliding"), kvSlotsInput("full"), kvSlotsInput("sliding")].sort(),
    );
    expect(values(inputs, "ids")).toEqual({ shape: [9], data: [42, 7, 8, 9, 1, 2, 3, 4, 5] });
    expect(values(inputs, "positions")).toEqual({ shape: [9], data: [5, 0, 1, 2, 8, 9, 10, 11, 12] });
    expect(values(inputs, "token_seqs")).toEqual({ shape: [9], data: [0, 1, 1, 1, 2, 2, 2, 2, 2] });
    expect(values(inputs, "context_lens")).toEqual({ shape: [3], data: [5, 0, 8] });
    expect(values(inputs, "logit_rows")).toEqual({ shape: [2], data: [0, 8] });
    expect(values(inputs, "block_tables.full")).toEqual({ shape: [3, 4], data: [3, 1, -1, -1, 0, -1, -1, -1, 5, 6, 7, 8] });
    expect(values(inputs, "block_tables.sliding")).toEqual({ shape: [3, 4], data: [-1, 2, -1, -1, 4, -1, -1, -1, -1, -1, 9, 10] });
    // position 5 of a: block 1 of its table, offset 1; c's positions 8 … 11 in its block 2, 12 in block 3
    expect(values(inputs, "kv_slots.full")).toEqual({ shape: [9], data: [5, 0, 1, 2, 28, 29, 30, 31, 32] });
    expect(values(inputs, "kv_slots.sliding")).toEqual({ shape: [9], data: [9, 16, 17, 18, 36, 37, 38, 39, 40] });
  });

  it("a builder reused from step to step gives what fresh arrays give: rows written further before are padded again", () => {
    const builder = new StepInputBuilder(layout, 4, 16);
    const shorter: StepPlan = {
      ...plan,
      seqs: [
        { id: "c", start: 12, tokenIds: [6], sample: true, blockTables: [[5, 6, 7, 8], [-1, -1, -1, 10]] },
        { id: "a", start: 6, tokenIds: [43], sample: true, blockTables: [[3, 1], [-1, 2]] },
      ],
      numTokens: 2,
      numSampled: 2,
    };
    for (const p of [plan, shorter, plan, { ...plan, seqs: [plan.seqs[1]!], numTokens: 3, numSampled: 0 }, shorter]) {
      const reused = builder.build(p);
      const fresh = stepInputs(p, layout);
      expect(Object.keys(reused).sort()).toEqual(Object.keys(fresh).sort());
      for (const name of Object.keys(fresh)) expect(values(reused, name), `step input ${name}`).toEqual(values(fresh, name));
    }
    expect(() => builder.build({ ...plan, seqs: [...plan.seqs, ...plan.seqs], numTokens: 18, numSampled: 4 })).toThrow(/runs 6 sequences; the step inputs hold at most 4/);
  });

  it("a step that samples nothing has no logit rows", () => {
    const prefillOnly: StepPlan = { ...plan, seqs: [plan.seqs[1]!], numTokens: 3, numSampled: 0 };
    const inputs = stepInputs(prefillOnly, layout);
    expect(values(inputs, "logit_rows")).toEqual({ shape: [0], data: [] });
    expect(values(inputs, "block_tables.full")).toEqual({ shape: [1, 4], data: [0, -1, -1, -1] });
  });

  it("fails on a plan that does not match the model or is inconsistent", () => {
    expect(() => stepInputs(plan, { ...layout, blockSize: 8 })).toThrow(/blocks of 4 tokens but the model's are 8/);
    expect(() => stepInputs(plan, { ...layout, groups: [group("full"), group("swa", 8)] })).toThrow(/the model has KV group "swa"/);
    expect(() => stepInputs(plan, { ...layout, groups: [group("full")] })).toThrow(/the scheduler has KV groups full, sliding but the model full/);
    expect(() => stepInputs(plan, { ...layout, maxBlocksPerSeq: 3 })).toThrow(/request "c" has 4 blocks in group "sliding", more than maxBlocksPerSeq 3/);
    const hole: StepPlan = { ...plan, seqs: [{ ...plan.seqs[0]!, blockTables: [[3, 1], [2, -1]] }], numTokens: 1, numSampled: 1 };
    expect(() => stepInputs(hole, layout)).toThrow(/request "a": position 5 has no block in group "sliding"/);
    expect(() => stepInputs({ ...plan, numTokens: 8 }, layout)).toThrow(/counts 8 tokens/);
  });
});
