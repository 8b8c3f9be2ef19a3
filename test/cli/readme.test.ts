// README's model-definition example is examples/quickstart.ts verbatim, and prints what README shows.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url);
const readme = readFileSync(new URL("README.md", root), "utf8");

describe("README", () => {
  it("shows the set-up commands", () => {
    expect(readme).toContain("npm install");
    expect(readme).toContain("npm test");
  });

  it("says that a model file runs its code, and what the cache checks and trusts", () => {
    expect(readme).toContain("**A model file is a program.**");
    const integrity = /### Cache integrity\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? "";
    for (const topic of ["**Kernel entries**", "**Plans**", "**Imports**", "**The directory**"]) expect(integrity).toContain(topic);
  });

  it("contains examples/quickstart.ts verbatim, and the example prints the output README shows", () => {
    const example = readFileSync(new URL("examples/quickstart.ts", root), "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
    const shown = /```ts\n[\s\S]*?```\n\nprints\n\n```\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(shown).toBeDefined();
    // dist/ is built by `npm test` (tsc) before vitest runs
    const printed = execFileSync(process.execPath, [new URL("dist/examples/quickstart.js", root).pathname], { encoding: "utf8" });
    expect(printed).toBe(shown);
  });
});
