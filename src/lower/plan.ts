// The plan: everything the runtime needs to run a compiled model, as JSON validated with zod.
// Kernels (source, entry, cache key inputs), the arena layout (parameters and state, then each entry
// point's activations), and per entry point and shape bucket the launch list with arguments resolved to
// arena offsets and symbolic sizes. A saved plan runs without the compiler: its kernels come from the kernel cache.
//
// Arena: [ weights and fixed-size state | activations (shared by every entry and bucket) | state sized at load ].
// State whose shape holds a load-time symbol (a KV pool) is placed by the executor after the planned region,
// once the symbol's value is known; arguments that point into it carry the state's index and an offset within it.

import { z } from "zod";
import { DTYPES } from "../ir/dtype.js";

export const PLAN_FORMAT = "tsgc-plan";
export const PLAN_VERSION = 3;

const dim = z.union([z.number().int().nonnegative(), z.string().min(1)]);
const sizeExpr = z.strictObject({ dims: z.array(dim), scale: z.number(), divisor: z.number().positive() });
const dtype = z.enum(DTYPES);

const planArg = z.discriminatedUnion("kind", [
  /** A device pointer: the arena base plus this offset, or (with `state`) that load-sized state's base plus it. */
  z.strictObject({ kind: z.literal("buffer"), offset: z.number().int().nonnegative(), state: z.number().int().nonnegative().optional() }),
  z.strictObject({ kind: z.literal("i32"), value: sizeExpr }),
  z.strictObject({ kind: z.literal("f32"), value: z.number() }),
]);

const tensorSlot = z.strictObject({
  name: z.string().min(1),
  dtype,
  shape: z.array(dim),
  offset: z.number().int().nonnegative(),
  /** Bytes at the symbols' upper bounds. */
  bytes: z.number().int().nonnegative(),
});

export const planSchema = z.strictObject({
  format: z.literal(PLAN_FORMAT),
  version: z.literal(PLAN_VERSION),
  model: z.string(),
  /** Structural hash of the input graph (its entry outputs), the plan cache's key with the options. */
  graphHash: z.string(),
  arch: z.string().regex(/^sm_\d+a?$/),
  codegenVersion: z.string(),
  symbols: z.record(z.string(), z.number().int().positive()),
  /** Node counts by op of the fused graph the plan was made from. */
  opCounts: z.record(z.string(), z.number().int().nonnegative()),
  kernels: z.array(
    z.strictObject({
      name: z.string(),
      family: z.string(),
      entry: z.string(),
      source: z.string(),
      sourceHash: z.string(),
      /** The kernel cache's key (source, options, arch, NVRTC and codegen versions), once compiled. */
      cacheKey: z.string().optional(),
    }),
  ),
  arena: z.strictObject({
    bytes: z.number().int().nonnegative(),
    weightBytes: z.number().int().nonnegative(),
    activationOffset: z.number().int().nonnegative(),
    activationBytes: z.number().int().nonnegative(),
  }),
  /** Model state (the KV cache): zeroed when the plan is loaded, kept between runs; in the weights region, or (atLoad) after the planned arena, sized by load-time symbols. */
  states: z.array(tensorSlot.extend({ atLoad: z.boolean() })),
  params: z.array(tensorSlot.extend({
    quant: z.strictObject({ format: z.literal("mxfp4"), role: z.enum(["blocks", "scales"]), weight: z.string() }).optional(),
    /** A rank's slice of the checkpoint tensor of this name (src/ir/graph.ts ParamSlice): what the loader reads. */
    slice: z.strictObject({
      full: z.array(z.number().int().nonnegative()),
      axes: z.array(z.strictObject({ axis: z.number().int().nonnegative(), ranges: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])) })),
    }).optional(),
  })),
  entries: z.array(
    z.strictObject({
      name: z.string(),
      /** The bucketed symbol and those it bounds; absent: one bucket at the symbols' bounds. */
      bucketBy: z.strictObject({ symbol: z.string(), cobounded: z.array(z.string()) }).optional(),
      /**
       * A rank of a sharded model: outputs it holds a slice of (the logits' vocabulary), the slice of every rank
       * (parts[r]: ranges of `axis`, of size `size`). Absent: every output is whole.
       */
      splitOutputs: z.record(z.string(), z.strictObject({
        axis: z.number().int().nonnegative(),
        size: z.number().int().positive(),
        parts: z.array(z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]))),
      })).optional(),
      /** Ascending rungs: a call runs the first bucket whose bounds hold all of its symbol values. */
      buckets: z.array(
        z.strictObject({
          bounds: z.record(z.string(), z.number().int().positive()),
          inputs: z.array(tensorSlot),
          outputs: z.array(tensorSlot),
          launches: z.array(
            z.strictObject({
              kernel: z.number().int().nonnegative(),
              /** The IR op this launch computes (for profiles and error messages). */
              op: z.string(),
              grid: z.tuple([sizeExpr, sizeExpr, sizeExpr]),
              block: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
              sharedBytes: z.number().int().nonnegative(),
              args: z.array(planArg),
            }),
          ),
          /**
           * Collectives of a rank of a sharded model, in issue order: each runs (NCCL, on the launches' stream) before
           * launch `at`, after the last launch when `at` is their count. `count` is NCCL's element count: the operand's
           * (allReduce, allGather) or the result's (reduceScatter). Absent: none.
           */
          collectives: z.array(
            z.strictObject({
              at: z.number().int().nonnegative(),
              op: z.enum(["allReduce", "allGather", "reduceScatter"]),
              seq: z.number().int().nonnegative(),
              ranks: z.number().int().positive(),
              dtype,
              count: sizeExpr,
              send: z.strictObject({ offset: z.number().int().nonnegative() }),
              recv: z.strictObject({ offset: z.number().int().nonnegative() }),
            }),
          ).optional(),
          activationBytes: z.number().int().nonnegative(),
          peakLiveBytes: z.number().int().nonnegative(),
          naiveBytes: z.number().int().nonnegative(),
        }),
      ).min(1),
    }),
  ),
});

export type Plan = z.infer<typeof planSchema>;
export type PlanEntry = Plan["entries"][number];
export type PlanBucket = PlanEntry["buckets"][number];
export type PlanLaunch = PlanBucket["launches"][number];
export type PlanArg = PlanLaunch["args"][number];
export type PlanCollective = NonNullable<PlanBucket["collectives"]>[number];

/** Validates a plan read from disk; errors name the JSON path. */
export function parsePlan(value: unknown, source = "plan"): Plan {
  const r = planSchema.safeParse(value);
  if (!r.success) throw new Error(`${source} is not a valid tsgc plan: ${r.error.issues.slice(0, 5).map((i) => `$.${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const plan = r.data;
  for (const e of plan.entries) {
    for (const bucket of e.buckets) {
      const where = `${source}: entry ${e.name}${e.bucketBy ? ` (bucket ${e.bucketBy.symbol} ≤ ${bucket.bounds[e.bucketBy.symbol]})` : ""}`;
      for (const c of bucket.collectives ?? []) {
        if (c.at > bucket.launches.length) throw new Error(`${where} runs ${c.op} #${c.seq} before launch ${c.at}, but the bucket has ${bucket.launches.length}`);
      }
      for (const [i, l] of bucket.launches.entries()) {
        if (l.kernel >= plan.kernels.length) throw new Error(`${where} launch ${i} names kernel ${l.kernel}, but the plan has ${plan.kernels.length}`);
        for (const a of l.args) {
          if (a.kind !== "buffer") continue;
          if (a.state !== undefined) {
            if (!plan.states[a.state]?.atLoad) throw new Error(`${where} launch ${i} points into state ${a.state}, which is not sized at load`);
          } else if (a.offset >= plan.arena.bytes && plan.arena.bytes > 0) {
            throw new Error(`${where} launch ${i} points at offset ${a.offset}, outside the ${plan.arena.bytes}-byte arena`);
          }
        }
      }
    }
  }
  return plan;
}
