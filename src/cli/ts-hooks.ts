// Node module hooks that run TypeScript model files without a TypeScript install: `.ts` files are
// transpiled on load with the compiler ts-morph ships (types are not checked, as with any loader),
// an import of `./x.js` from a `.ts` file finds `./x.ts` when no `.js` file exists, and `tsgc` resolves
// to the running tsgc when the model's own project does not install it.
// Registered by load-model.ts with `module.register`.

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ts } from "ts-morph";

interface ResolveContext {
  readonly parentURL?: string | undefined;
}
interface ResolveResult {
  readonly url: string;
  readonly format?: string | null | undefined;
  readonly shortCircuit?: boolean;
}
interface LoadResult {
  readonly format: string;
  readonly source?: string | ArrayBuffer | Uint8Array | null | undefined;
  readonly shortCircuit?: boolean;
}

export async function resolve(
  specifier: string,
  context: ResolveContext,
  next: (specifier: string, context: ResolveContext) => Promise<ResolveResult>,
): Promise<ResolveResult> {
  const fromTs = context.parentURL?.endsWith(".ts") ?? false;
  if (fromTs && specifier.startsWith(".") && specifier.endsWith(".js") && context.parentURL) {
    const asJs = new URL(specifier, context.parentURL);
    const asTs = new URL(specifier.replace(/\.js$/, ".ts"), context.parentURL);
    if (!existsSync(fileURLToPath(asJs)) && existsSync(fileURLToPath(asTs))) return { url: asTs.href, shortCircuit: true };
  }
  try {
    return await next(specifier, context);
  } catch (err) {
    // a model file outside a project that installs tsgc still gets the tsgc running it
    if (specifier === "tsgc") return { url: new URL("../index.js", import.meta.url).href, shortCircuit: true };
    throw err;
  }
}

export async function load(url: string, context: object, next: (url: string, context: object) => Promise<LoadResult>): Promise<LoadResult> {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return next(url, context);
  const fileName = fileURLToPath(url);
  const out = ts.transpileModule(readFileSync(fileName, "utf8"), {
    fileName,
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true, verbatimModuleSyntax: false },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) {
    const text = errors
      .map((d) => {
        const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
        return `${at ? `${at.line + 1}:${at.character + 1}: ` : ""}${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
      })
      .join("; ");
    throw new SyntaxError(`${fileName}: ${text}`);
  }
  return { format: "module", source: out.outputText, shortCircuit: true };
}
