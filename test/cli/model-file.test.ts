// Model files that are not what `tsgc compile` expects, run as a user runs them: a lookalike object, a default
// export that throws, a promise that never settles (Node would exit 13 without a word), and the trust note.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/main.js";
import { errorLine } from "../../src/cli/main.js";
import { REPO_ROOT } from "../tiers.js";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "tsgc-model-file-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function compileFile(name: string, source: string) {
  const file = join(root, name);
  writeFileSync(file, source);
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), "compile", file, "--arch", "sm_80", "--no-cache"], {
    cwd: REPO_ROOT, encoding: "utf8", timeout: 30_000, killSignal: "SIGKILL",
  });
  return { file, code: r.status, stderr: r.stderr };
}

describe("model files", () => {
  it("a lookalike graph object is refused saying what it lacks, not with a TypeError from inside the compiler", () => {
    const r = compileFile("fake.js", "export default { entries: 1, params: [], table: {}, symbols: {} };\n");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(`tsgc: model file ${r.file} must default-export a graph (defineModel(...)) or a function (options) => graph; its default export is not a graph: it has no name\n`);
    const noTable = compileFile("no-table.js", `export default { name: "x", symbols: {}, params: [], states: [], entries: [], table: {} };\n`);
    expect(noTable.stderr).toContain("its default export is not a graph: it has no node table");
  });

  it("a default export that throws is named", () => {
    const r = compileFile("throws.js", `export default () => { throw new Error("boom"); };\n`);
    expect(r.stderr).toBe(`tsgc: model file ${r.file}: its default export threw: boom\n`);
  });

  it("a promise that never settles is an error, not a silent exit 13", () => {
    const r = compileFile("never.js", "export default () => new Promise(() => {});\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tsgc: model file ${r.file}: the promise its default export returned never settles (nothing is left to run that could settle it)\n`);
    const tla = compileFile("never-tla.js", "await new Promise(() => {});\nexport default 1;\n");
    expect(tla.code).toBe(1);
    expect(tla.stderr).toContain(`tsgc: model file ${tla.file}: loading it never finished: a top-level await never settles`);
  });

  it("compile --help says that a model file runs its code", () => {
    const compile = buildProgram().commands.find((c) => c.name() === "compile")!;
    let help = "";
    compile.configureOutput({ writeOut: (t) => (help += t) });
    compile.outputHelp();
    expect(help).toContain("A model file is a program: compiling it runs its code with your permissions");
  });
});

describe("errors the CLI prints", () => {
  it("turn a bare errno into what failed, on which path", () => {
    const err = Object.assign(new Error("EISDIR: illegal operation on a directory, read"), { code: "EISDIR", syscall: "read", path: "/some/dir" });
    expect(errorLine(err)).toBe("tsgc: cannot read /some/dir: is a directory");
    expect(errorLine(new Error("tsgc: already one line"))).toBe("tsgc: already one line");
    expect(errorLine(new Error("plain"))).toBe("tsgc: plain");
  });
});
