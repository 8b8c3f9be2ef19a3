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
