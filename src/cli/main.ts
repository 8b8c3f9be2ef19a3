// The `tsgc` command line: one commander program; each verb lives in its own module under src/cli/.
import { Command, CommanderError } from "commander";
import { describeErrno, errnoCode } from "../fs-safe.js";
import { registerBenchCommand } from "./bench.js";
import { registerCompileCommand } from "./compile.js";
import { registerGenerateCommand } from "./generate.js";
import { registerModelCommands } from "./model-commands.js";
import { registerCacheCommand } from "./cache.js";
import { registerInspectCommand } from "./inspect.js";
import { registerQuantizeCommand } from "./quantize.js";
import { registerChatCommand } from "./chat.js";
import { registerServeCommand } from "./serve.js";
import { openEngine } from "../engine/open.js";
import type { OpenEngineOptions } from "../engine/open.js";
import { progressPrinter } from "./generate.js";

/** The serve and chat verbs' engine: opened with progress on stderr. */
const openServingEngine = async (o: OpenEngineOptions) => (await openEngine({ ...o, onProgress: progressPrinter(false) })).engine;

export function buildProgram(): Command {
  const program = new Command()
    .name("tsgc")
    .description("Compile transformer models declared as typed IR graphs into fused CUDA kernels, and run them.")
    .version("0.1.0")
    .showHelpAfterError();
  registerModelCommands(program);
  registerCompileCommand(program);
  registerGenerateCommand(program);
  registerServeCommand(program, openServingEngine);
  registerChatCommand(program, openServingEngine);
  registerBenchCommand(program);
  registerCacheCommand(program);
  registerInspectCommand(program);
  registerQuantizeCommand(program);
  return program;
}

/** An error as the one line the CLI prints: a file-system errno becomes what failed, on which path, in words. */
export function errorLine(err: unknown): string {
  const code = errnoCode(err);
  if (err instanceof Error && code !== undefined && !err.message.startsWith("tsgc: ")) {
    const { syscall, path } = err as NodeJS.ErrnoException;
    if (syscall !== undefined && path !== undefined) return `tsgc: cannot ${syscall} ${path}: ${describeErrno(err)}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  return `${message.startsWith("tsgc: ") ? "" : "tsgc: "}${message}`;
}

/** Process warnings (an unusable cache, a damaged plan) as one `tsgc: warning:` line each, without Node's hint line. */
function printWarningsAsOneLine(): void {
  process.removeAllListeners("warning");
  process.on("warning", (w) => void process.stderr.write(`tsgc: warning: ${w.message}\n`));
}

/** Runs the CLI on `argv` (process.argv form). Errors print one clear line and set a non-zero exit code. */
export async function run(argv: readonly string[]): Promise<void> {
  printWarningsAsOneLine();
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`${errorLine(err)}\n`);
    process.exitCode = 1;
  }
}
