// Resolves the model argument of `tsgc compile` and friends: a built-in name, or a model file
// (.ts, .js, .mjs) whose default export is a Graph or a function (options) => Graph.
//
// A model file is a program: loading it runs its code with the user's permissions, as `node FILE` would
// (README and `tsgc compile --help` say so). What it exports is checked before the compiler sees it.

import { existsSync } from "node:fs";
import { register } from "node:module";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { BUILTIN_MODELS, findBuiltinModel } from "../../models/index.js";
import type { Graph } from "../ir/graph.js";
import { verifyGraph } from "../ir/verify.js";

export interface ModelLoadOptions {
  readonly dtype: "bf16" | "f32";
}

let hooksRegistered = false;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Why `v` is not a graph defineModel built (a user's object may look like one on the surface), or undefined. */
function notAGraph(v: unknown): string | undefined {
  if (!isRecord(v)) return `it is ${v === null ? "null" : Array.isArray(v) ? "an array" : typeof v}`;
  if (typeof v["name"] !== "string") return "it has no name";
  if (!isRecord(v["symbols"]) || !Object.values(v["symbols"]).every((b) => typeof b === "number")) return "its symbols are not a map of bounds";
  for (const list of ["params", "states", "entries"] as const) if (!Array.isArray(v[list])) return `its ${list} are not a list`;
  if (!isRecord(v["table"]) || typeof v["table"]["make"] !== "function") return "it has no node table";
  for (const [i, e] of (v["entries"] as unknown[]).entries()) {
    if (!isRecord(e) || typeof e["name"] !== "string") return `its entry ${i} has no name`;
    for (const list of ["inputs", "outputs", "updates"] as const) if (!Array.isArray(e[list])) return `entry ${e["name"]}: its ${list} are not a list`;
    for (const o of [...(e["outputs"] as unknown[]), ...(e["updates"] as unknown[])]) {
      if (!isRecord(o) || typeof o["name"] !== "string" || !isRecord(o["node"]) || typeof o["node"]["op"] !== "string") return `entry ${e["name"]}: an output is not a named node`;
    }
  }
  return undefined;
}

/** The graph a model file exported, checked; a lookalike object is an error saying what it lacks. */
function checkedGraph(arg: string, value: unknown): Graph {
  const usage = `model file ${arg} must default-export a graph (defineModel(...)) or a function (options) => graph`;
  if (value === undefined) throw new Error(`${usage}; it has no default export`);
  const problem = notAGraph(value);
  if (problem !== undefined) throw new Error(`${usage}; its default export is not a graph: ${problem}`);
  const graph = value as Graph;
  let problems: string[];
  try {
    problems = verifyGraph(graph);
  } catch (err) {
    throw new Error(`${usage}; its default export is not a well-formed graph (${err instanceof Error ? err.message : String(err)})`);
  }
  if (problems.length > 0) throw new Error(`model file ${arg}: graph ${graph.name} is invalid: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? `; … ${problems.length - 3} more` : ""}`);
  return graph;
}

/**
 * Awaits a model file's promise. A promise that never settles leaves Node nothing to run, and it would exit
 * silently (code 13, "unsettled top-level await"); instead the command fails saying so.
 */
async function settled<T>(promise: Promise<T>, never: string): Promise<T> {
  const onIdle = (): void => {
    process.stderr.write(`tsgc: ${never} (nothing is left to run that could settle it)\n`);
    process.exit(1);
  };
  process.once("beforeExit", onIdle);
  try {
    return await promise;
  } finally {
    process.removeListener("beforeExit", onIdle);
  }
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
    mod = (await settled(import(pathToFileURL(path).href), `model file ${arg}: loading it never finished: a top-level await never settles`)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load model file ${arg}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const exported = mod["default"] ?? mod["model"];
  let value: unknown;
  try {
    value = typeof exported === "function" ? await settled(Promise.resolve((exported as (o: ModelLoadOptions) => unknown)(opts)), `model file ${arg}: the promise its default export returned never settles`) : exported;
  } catch (err) {
    throw new Error(`model file ${arg}: its default export threw: ${err instanceof Error ? err.message : String(err)}`);
  }
  return checkedGraph(arg, value);
}
