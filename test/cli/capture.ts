// A commander program with some tsgc verbs whose output is captured instead of printed.
import { Command } from "commander";
import type { CliIo } from "../../src/cli/io.js";

export type RegisterVerb = (program: Command, io: CliIo) => unknown;

export function captureCli(...verbs: RegisterVerb[]): { run: (...args: string[]) => Promise<void>; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t) };
  return {
    out,
    err,
    run: async (...args) => {
      const program = new Command().exitOverride().configureOutput({ writeErr: (t) => void err.push(t), writeOut: (t) => void out.push(t) });
      for (const register of verbs) register(program, io);
      await program.parseAsync(args, { from: "user" });
    },
  };
}

/** Runs `args` through the given verbs: everything printed (stdout and stderr, in order) and the error's message, if any. */
export async function runVerbs(verbs: readonly RegisterVerb[], ...args: string[]): Promise<{ out: string; error?: string }> {
  let out = "";
  const program = new Command().exitOverride().configureOutput({ writeOut: (t) => (out += t), writeErr: (t) => (out += t) });
  for (const register of verbs) register(program, { stdout: (t) => (out += t), stderr: (t) => (out += t) });
  try {
    await program.parseAsync(args, { from: "user" });
    return { out };
  } catch (err) {
    return { out, error: err instanceof Error ? err.message : String(err) };
  }
}
