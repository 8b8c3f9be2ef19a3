// Checks every generation request passes before it reaches the engine.
import type { z } from "zod";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";
import { ApiError, badRequest, fromZodError } from "./errors.js";
import type { RequestContext } from "./generation.js";

export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}

/** 404 unless `model` is a name this server serves the engine's model under. */
export function checkModel(ctx: RequestContext, model: string): void {
  if (!ctx.options.modelNames.includes(model)) {
    throw new ApiError(404, `the model ${JSON.stringify(model)} does not exist; this server serves ${ctx.options.modelNames.map((m) => JSON.stringify(m)).join(", ")}`, "invalid_request_error", "model", "model_not_found");
  }
}

/** The tokenizer, or a 400 naming `field`: models whose vocabulary is not o200k_harmony take token ids only. */
export function requireTokenizer(ctx: RequestContext, field: string, what: string): HarmonyTokenizer {
  if (ctx.tokenizer === undefined) {
    throw badRequest(`${field}: the model ${JSON.stringify(ctx.engine.model.name)} has no tokenizer (its vocabulary is not o200k_harmony): ${what}`, field, "tokenizer_required");
  }
  return ctx.tokenizer;
}

export function checkChoiceCount(ctx: RequestContext, choices: number, field: string): void {
  if (choices > ctx.options.maxChoices) throw badRequest(`${field}: ${choices} choices asked for, this server answers at most ${ctx.options.maxChoices} per request`, field);
}
