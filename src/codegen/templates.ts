// Renders the `.cu.njk` kernel templates (one per kernel family) with nunjucks.
// Templates live in src/codegen/templates/ and are read from the package root, so the built
// CLI (dist/) and the tests (src/) render the same files.

import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import nunjucks from "nunjucks";
import { withGridDependencyWait } from "../lower/kernel.js";

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("tsgc: cannot find the package root (package.json) above the codegen module");
    dir = parent;
  }
  return dir;
}

export const TEMPLATE_DIR = join(packageRoot(), "src", "codegen", "templates");

let env: nunjucks.Environment | undefined;

function environment(): nunjucks.Environment {
  env ??= new nunjucks.Environment(new nunjucks.FileSystemLoader(TEMPLATE_DIR, { noCache: false }), {
    autoescape: false,
    throwOnUndefined: true,
    trimBlocks: true,
    lstripBlocks: true,
  });
  return env;
}

/**
 * Renders `name` (e.g. "rmsnorm.cu.njk") with `context`; an undefined variable is an error. Every kernel of a
 * `.cu.njk` family starts with the grid-dependency wait (withGridDependencyWait).
 */
export function renderTemplate(name: string, context: Record<string, unknown>): string {
  let source: string;
  try {
    source = environment().render(name, context);
  } catch (err) {
    throw new Error(`tsgc: rendering kernel template ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return name.endsWith(".cu.njk") ? withGridDependencyWait(source, name) : source;
}


/** C type of a tensor element of each storage dtype in generated kernels (see common.cuh.njk). */
export const CUDA_STORAGE_TYPE = {
  f32: "float",
  f16: "unsigned short",
  bf16: "unsigned short",
  i32: "int",
  i64: "long long",
  u8: "unsigned char",
  bool: "unsigned char",
  fp4e2m1x2: "unsigned char",
  e8m0: "unsigned char",
} as const;
