// Resolves the model argument of `tsgc compile` and friends: a built-in name, or a model file
// (.ts, .js, .mjs) whose default export is a Graph or a function (options) => Graph.

import { existsSync } from "node:fs";
import { register } from "node:module";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { BUILTIN_MODELS, findBuiltinModel } from "../../models/index.js";
import type { Graph } from "../ir/graph.js";

export interface ModelLoadOptions {
  readonly dtype: "bf16" | "f32";
}

let hooksRegistered = false;

function isGraph(v: unknown): v is Graph {
  return typeof v === "object" && v !== null && "entries" in v && "params" in v && "table" in v && "symbols" in v;
}

export function looksLikeModelFile(arg: string): boolean {
  return /\.(m?[jt]s)$/.test(arg);
}

/** Loads a built-in model by name or a model file by path. */
export async function loadModel(arg: string, opts: ModelLoadOptions): Promise<Graph> {
  if (!looksLikeModelFile(arg)) return findBuiltinModel(arg).build(opts);
  const path = resolvePath(arg);
  if (!existsSync(path)) throw new Error(`model file ${arg} does not exist (built-in models: ${BUILTIN_MODELS.map((m) => m.name).join(", ")})`);
  if (path.endsWith(".ts") && !hooksRegistered) {
    register(new URL("./ts-hooks.js", import.meta.url));
    hooksRegistered = true;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load model file ${arg}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const exported = mod["default"] ?? mod["model"];
  const value = typeof exported === "function" ? await (exported as (o: ModelLoadOptions) => unknown)(opts) : exported;
  if (!isGraph(value)) {
    throw new Error(`model file ${arg} must default-export a graph (defineModel(...)) or a function (options) => graph; its default export is ${value === undefined ? "missing" : typeof value}`);
  }
  return value;
}
