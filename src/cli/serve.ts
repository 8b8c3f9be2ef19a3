// `tsgc serve`: the OpenAI-compatible HTTP server (src/server) on an engine opened from the engine flags, which
// `tsgc chat` shares. The engine factory is injected, so this verb never names a backend; SIGINT or SIGTERM drains
// the server (a second one exits at once) and closes the engine.
import type { Command } from "commander";
import { DEFAULT_MODEL } from "../../models/index.js";
import { createOpenAiServer, type ListeningAddress, type OpenEngine } from "../server/index.js";
import { type EngineFlags, engineFlags, engineOptions } from "./engine-options.js";
import { processIo, type CliIo } from "./io.js";

const integer = (flag: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer >= ${min}, got "${v}"`);
  return n;
};

/** Adds the `[model]` argument and the engine's flags (shared by serve and chat). */
export function addEngineArguments(command: Command): Command {
  return engineFlags(command.argument("[model]", "built-in model name, with seeded random weights (ignored with --checkpoint)", DEFAULT_MODEL))
    .option("--seed <n>", "seed of a built-in model's random weights", integer("--seed", 0));
}

interface ServeFlags extends EngineFlags {
  readonly host: string;
  readonly port: number;
  readonly servedModelName?: string[];
  readonly maxBodyBytes?: number;
  readonly shutdownGrace: number;
}

export interface ServeDeps {
  readonly io?: CliIo;
  /** Resolves when the server should drain and stop; default: the first SIGINT or SIGTERM. */
  readonly untilShutdown?: () => Promise<void>;
  /** Told the address once the server listens. */
  readonly onListening?: (address: ListeningAddress) => void;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(); // the handlers are gone: a second signal ends the process
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

export function registerServeCommand(program: Command, openEngine: OpenEngine, deps: ServeDeps = {}): Command {
  const io = deps.io ?? processIo;
  const command = program.command("serve").description("serve a model over an OpenAI-compatible HTTP API (chat completions, completions, models, health, metrics)");
  return addEngineArguments(command)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", integer("--port", 0), 8000)
    .option("--served-model-name <names>", "comma-separated names clients use for the model (default: the model's name)", (v: string) => v.split(",").map((s) => s.trim()).filter((s) => s !== ""))
    .option("--max-body-bytes <n>", "largest request body (413 above it)", integer("--max-body-bytes", 1))
    .option("--shutdown-grace <seconds>", "how long shutdown lets in-flight requests finish before aborting them", integer("--shutdown-grace", 0), 10)
    .action(async (model: string, flags: ServeFlags) => {
      if (flags.port > 65535) throw new Error(`--port must be at most 65535, got ${flags.port}`);
      io.stderr(`tsgc serve: loading ${flags.checkpoint ?? model} on ${flags.device}\n`);
      const engine = await openEngine(engineOptions(flags, model));
      const server = createOpenAiServer(engine, {
        ...(flags.servedModelName !== undefined ? { modelNames: flags.servedModelName } : {}),
        ...(flags.maxBodyBytes !== undefined ? { maxBodyBytes: flags.maxBodyBytes } : {}),
        shutdownGraceMs: flags.shutdownGrace * 1000,
        log: (line) => io.stderr(`tsgc serve: ${line}\n`),
      });
      let address: ListeningAddress;
      try {
        address = await server.listen(flags.port, flags.host);
      } catch (err) {
        await engine.close();
        const reason = (err as NodeJS.ErrnoException).code === "EADDRINUSE" ? "the address is in use" : err instanceof Error ? err.message : String(err);
        throw new Error(`cannot listen on ${flags.host}:${flags.port}: ${reason}`);
      }
      io.stderr(`tsgc serve: ${server.options.modelNames.join(", ")} on ${address.url} (POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health, /metrics)\n`);
      deps.onListening?.(address);
      await (deps.untilShutdown ?? untilSignal)();
      io.stderr("tsgc serve: shutting down (finishing in-flight requests)\n");
      await server.close();
      await engine.close();
      io.stderr("tsgc serve: stopped\n");
    });
}
