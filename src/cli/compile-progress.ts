// Compile progress on stderr, shared by `tsgc compile` and the first (cold) run of `tsgc generate --device cuda`:
// one line per pass, a live kernel counter on a terminal, one "kernels N ready" line otherwise.

import type { CompileEvent } from "../compile/compile.js";

/** One line per phase on stderr (or `write`); a live counter while kernels compile on a terminal. */
export function compileProgressReporter(
  quiet: boolean,
  write: (text: string) => void = (text) => void process.stderr.write(text),
  tty = process.stderr.isTTY === true,
): (e: CompileEvent) => void {
  return (e) => {
    if (quiet) return;
    switch (e.kind) {
      case "plan-cache":
        if (e.hit) write(`plan: from cache (${e.path})\n`);
        return;
      case "pass": {
        const fired = Object.entries(e.report.rewrites).map(([rule, n]) => `${rule} ×${n}`).join(", ");
        write(`pass ${e.report.pass.padEnd(22)} ${e.report.nodesBefore} → ${e.report.nodesAfter} nodes  ${e.report.ms.toFixed(0)} ms${fired ? `  (${fired})` : ""}\n`);
        return;
      }
      case "kernel": {
        const { done, total, origin } = e.progress;
        const line = `kernels ${done}/${total} (${origin === "nvrtc" ? "compiled" : "cached"}: ${e.progress.name})`;
        if (tty) write(`\r\x1b[K${line}${done === total ? "\n" : ""}`);
        else if (done === total) write(`kernels ${total} ready\n`);
        return;
      }
      case "nvrtc-missing":
        write(`NVRTC was not found, so no kernel was compiled: ${e.reason.split("\n")[0]}\n`);
        return;
    }
  };
}
