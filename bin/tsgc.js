#!/usr/bin/env node
// Entry point of the `tsgc` command: runs the compiled CLI (built by `npm install` via `prepare`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
const main = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
if (!existsSync(main)) {
  process.stderr.write("tsgc: the CLI is not built; run `npm run build` (npm install does this) first.\n");
  process.exit(1);
}
// A closed pipe (`tsgc ir | head`) ends the command quietly instead of throwing EPIPE.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});
const { run } = await import(main);
await run(process.argv);
