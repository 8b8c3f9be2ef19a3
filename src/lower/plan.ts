// The plan: everything the runtime needs to run a compiled model, as JSON validated with zod.
// Kernels (source, entry, cache key inputs), the arena layout (parameters and state, then each entry
// point's activations), and per entry point the launch list with arguments resolved to arena offsets and
// symbolic sizes. A saved plan runs without the compiler: its kernels come from the kernel cache.

import { z } from "zod";
import { DTYPES } from "../ir/dtype.js";

export const PLAN_FORMAT = "tsgc-plan";
export const PLAN_VERSION = 2;

const dim = z.union([z.number().int().nonnegative(), z.string().min(1)]);
const sizeExpr = z.strictObject({ dims: z.array(dim), scale: z.number(), divisor: z.number().positive() });
const dtype = z.enum(DTYPES);

const planArg = z.discriminatedUnion("kind", [
  /** A device pointer: the arena base plus this offset. */
  z.strictObject({ kind: z.literal("buffer"), offset: z.number().int().nonnegative() }),
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
  arch: z.string().regex(/^sm_\d+$/),
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
  /** Model state (the KV cache): in the weights region, zeroed when the plan is loaded, kept between runs. */
  states: z.array(tensorSlot),
  params: z.array(tensorSlot.extend({ quant: z.strictObject({ format: z.literal("mxfp4"), role: z.enum(["blocks", "scales"]), weight: z.string() }).optional() })),
  entries: z.array(
    z.strictObject({
      name: z.string(),
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
      activationBytes: z.number().int().nonnegative(),
      peakLiveBytes: z.number().int().nonnegative(),
      naiveBytes: z.number().int().nonnegative(),
    }),
  ),
});

export type Plan = z.infer<typeof planSchema>;
export type PlanLaunch = Plan["entries"][number]["launches"][number];
export type PlanArg = PlanLaunch["args"][number];

/** Validates a plan read from disk; errors name the JSON path. */
export function parsePlan(value: unknown, source = "plan"): Plan {
  const r = planSchema.safeParse(value);
  if (!r.success) throw new Error(`${source} is not a valid tsgc plan: ${r.error.issues.slice(0, 5).map((i) => `$.${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const plan = r.data;
  for (const e of plan.entries) {
    for (const [i, l] of e.launches.entries()) {
      if (l.kernel >= plan.kernels.length) throw new Error(`${source}: entry ${e.name} launch ${i} names kernel ${l.kernel}, but the plan has ${plan.kernels.length}`);
      for (const a of l.args) {
        if (a.kind === "buffer" && a.offset >= plan.arena.bytes && plan.arena.bytes > 0) throw new Error(`${source}: entry ${e.name} launch ${i} points at offset ${a.offset}, outside the ${plan.arena.bytes}-byte arena`);
      }
    }
  }
  return plan;
}
