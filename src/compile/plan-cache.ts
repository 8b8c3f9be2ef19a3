// The plan cache: compiled plans on disk beside the kernels, so a second compile of a model runs no pass.
//
// Layout: <cache dir>/plans/<key>.json, key = sha256(graph hash, arch, compiler fingerprint) (compile.ts).
// File format: one header line of JSON, then the plan's JSON text:
//
//   {"format":"tsgc-plan-entry","version":1,"key":"<key>","checksum":"<sha256(key \0 plan text)>"}\n
//   {…the plan…}
//
// A plan is served only when its checksum (bound to the key it is filed under, so a plan copied under
// another model's key fails too) matches, it parses as a plan, and every kernel's source hashes to its
// recorded sourceHash. Anything else (an edited arena offset, an edited kernel source, a truncated file)
// is reported once and recompiled, and the good plan replaces it. Like kernel entries, plans are written
// atomically; an unusable cache directory degrades to no plan cache with the kernel cache's one warning,
// and a full disk is an error. Listing, verifying and clearing never follow a symbolic link.

import { createHash } from "node:crypto";
import { lstatSync, readdirSync, rmSync, unlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { sourceHash } from "../lower/kernel.js";
import { type Plan, parsePlan } from "../lower/plan.js";
import { errnoCode, FileAccessError, fileKind, readRegularFileSync, TEMP_MARKER, ensureDirectory, writeFileAtomically } from "../fs-safe.js";
import { CacheUnusableError, cacheWriteError, warnCacheUnusable } from "../../runtime/kernel-cache.js";

const PLANS_DIR = "plans";
const ENTRY_FORMAT = "tsgc-plan-entry";
const ENTRY_VERSION = 1;
const PLAN_NAME_PATTERN = /^[0-9a-f]{64}\.json$/;

export function planCachePath(cacheDir: string, key: string): string {
  return join(resolve(cacheDir), PLANS_DIR, `${key}.json`);
}

function checksum(key: string, planText: string): string {
  return createHash("sha256").update(`tsgc-plan-v1\0${key}\0`).update(planText).digest("hex");
}

/** The bytes of a plan entry filed under `key`. */
export function encodePlanEntry(key: string, plan: Plan): string {
  const text = JSON.stringify(plan);
  return `${JSON.stringify({ format: ENTRY_FORMAT, version: ENTRY_VERSION, key, checksum: checksum(key, text) })}\n${text}`;
}

/** A plan file that is damaged, edited, or filed under the wrong key. */
export class PlanEntryError extends Error {
  override readonly name = "PlanEntryError";
}

/**
 * Parses and checks a plan entry: header, key (the name it is filed under), checksum, plan schema and
 * every kernel's sourceHash. Throws PlanEntryError saying what is wrong.
 */
export function decodePlanEntry(text: string, expectedKey: string, source = "plan"): Plan {
  const newline = text.indexOf("\n");
  if (newline < 0) throw new PlanEntryError("not a tsgc plan entry (no header line)");
  let header: unknown;
  try {
    header = JSON.parse(text.slice(0, newline));
  } catch {
    throw new PlanEntryError("not a tsgc plan entry (the header line is not JSON)");
  }
  const h = (typeof header === "object" && header !== null ? header : {}) as Record<string, unknown>;
  if (h["format"] !== ENTRY_FORMAT || h["version"] !== ENTRY_VERSION) throw new PlanEntryError(`not a tsgc plan entry of version ${ENTRY_VERSION}`);
  if (h["key"] !== expectedKey) throw new PlanEntryError(`filed under ${expectedKey.slice(0, 12)}… but made for ${String(h["key"]).slice(0, 12)}…`);
  const planText = text.slice(newline + 1);
  if (h["checksum"] !== checksum(expectedKey, planText)) throw new PlanEntryError("checksum mismatch (edited, truncated or corrupted)");
  let plan: Plan;
  try {
    plan = parsePlan(JSON.parse(planText), source);
  } catch (err) {
    throw new PlanEntryError(err instanceof Error ? err.message : String(err));
  }
  for (const [i, k] of plan.kernels.entries()) {
    if (sourceHash(k) !== k.sourceHash) throw new PlanEntryError(`kernel ${i} (${k.name}): its source does not hash to its sourceHash ${k.sourceHash}`);
  }
  return plan;
}

/**
 * The cached plan for `key`, or undefined on a miss. A damaged plan is reported (one warning) and
 * treated as a miss; so is a plan whose graph hash is not `graphHash`. An unreadable cache warns once.
 */
export function readCachedPlan(cacheDir: string, key: string, graphHash?: string): Plan | undefined {
  const path = planCachePath(cacheDir, key);
  let text: string;
  try {
    text = readRegularFileSync(path).toString("utf8");
  } catch (err) {
    const code = errnoCode(err);
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code !== "TSGC_NOT_REGULAR") {
      warnCacheUnusable(resolve(cacheDir), err instanceof FileAccessError ? `${path}: ${err.reason}` : String(err));
      return undefined;
    }
    warnDamaged(path, err instanceof FileAccessError ? err.reason : String(err));
    return undefined;
  }
  try {
    const plan = decodePlanEntry(text, key, path);
    if (graphHash !== undefined && plan.graphHash !== graphHash) throw new PlanEntryError(`made for graph ${plan.graphHash.slice(0, 12)}…, not ${graphHash.slice(0, 12)}…`);
    return plan;
  } catch (err) {
    warnDamaged(path, err instanceof Error ? err.message : String(err));
    return undefined;
  }
}

function warnDamaged(path: string, reason: string): void {
  process.emitWarning(`ignoring a damaged cached plan ${path} (${reason}); recompiling`, { code: "TSGC_PLAN_CACHE" });
}

/**
 * Files `plan` under `key`, atomically. A cache directory that cannot be written is warned about once
 * (shared with the kernel cache) and skipped; a full disk throws CacheFullError.
 */
export function writeCachedPlan(cacheDir: string, key: string, plan: Plan): void {
  const path = planCachePath(cacheDir, key);
  try {
    ensureDirectory(join(path, ".."));
    writeFileAtomically(path, encodePlanEntry(key, plan), { links: "replace" });
  } catch (err) {
    const failure = cacheWriteError(err, resolve(cacheDir), path, "plan cache");
    if (!(failure instanceof CacheUnusableError)) throw failure;
    warnCacheUnusable(failure.dir, failure.reason);
  }
}

export interface PlanListing {
  /** Path relative to the cache directory, e.g. "plans/<key>.json". */
  readonly relativePath: string;
  readonly path: string;
  readonly bytes: number;
  /** The plan's model, architecture and kernel count, for a good entry. */
  readonly model?: string;
  readonly arch?: string;
  readonly kernels?: number;
  /** Why the file is not a usable plan (absent for good ones). */
  readonly problem?: string;
}

function plansDir(cacheDir: string): string {
  return join(resolve(cacheDir), PLANS_DIR);
}

/** Every file under plans/, each checked like a read would; symbolic links are reported, not followed. */
export function listCachedPlans(cacheDir: string): PlanListing[] {
  const dir = plansDir(cacheDir);
  let stats;
  try {
    stats = lstatSync(dir);
  } catch {
    return [];
  }
  if (!stats.isDirectory()) return [{ relativePath: PLANS_DIR, path: dir, bytes: stats.size, problem: `${fileKind(stats)} where the plans directory belongs` }];
  const out: PlanListing[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const relativePath = `${PLANS_DIR}/${name}`;
    const file = lstatSync(path);
    const base = { relativePath, path, bytes: file.size };
    if (file.isSymbolicLink()) out.push({ ...base, problem: "a symbolic link (not followed; the cache writes none)" });
    else if (name.includes(TEMP_MARKER)) out.push({ ...base, problem: "unfinished temp file (a writer died or is still writing)" });
    else if (!PLAN_NAME_PATTERN.test(name)) out.push({ ...base, problem: "not a plan entry name" });
    else if (!file.isFile()) out.push({ ...base, problem: `${fileKind(file)}, not a regular file` });
    else {
      try {
        const plan = decodePlanEntry(readRegularFileSync(path).toString("utf8"), name.slice(0, 64), path);
        out.push({ ...base, model: plan.model, arch: plan.arch, kernels: plan.kernels.length });
      } catch (err) {
        out.push({ ...base, problem: err instanceof Error ? err.message : String(err) });
      }
    }
  }
  return out;
}

/** Removes one file (or symbolic link, never its target) of the plan cache. */
export function removeCachedPlanFile(cacheDir: string, relativePath: string): void {
  rmSync(join(resolve(cacheDir), ...relativePath.split("/")), { force: true });
}

/** Removes every plan and temp file; a symbolic link is removed itself, its target left alone. */
export function clearCachedPlans(cacheDir: string): number {
  const dir = plansDir(cacheDir);
  try {
    if (!lstatSync(dir).isDirectory()) return 0;
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of readdirSync(dir)) {
    if (PLAN_NAME_PATTERN.test(name) || (name.includes(TEMP_MARKER) && name.includes(".json"))) {
      unlinkSync(join(dir, name));
      removed++;
    }
  }
  return removed;
}
