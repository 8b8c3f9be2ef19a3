// What it takes to open an engine for `tsgc serve` and `tsgc chat` (the CLI fills it from flags, the lead's factory
// turns it into an Engine), and the server's own settings.
import type { Engine } from "../engine/api.js";
import type { OpenEngineOptions } from "../engine/open.js";

/** Opens an engine; injected into the CLI verbs so they never name a backend. */
export type OpenEngine = (options: OpenEngineOptions) => Promise<Engine>;

export interface ServerOptions {
  /** Names clients may use for the model in `model`; the first is the one listed first. Default: the engine's model name. */
  readonly modelNames?: readonly string[];
  /** Largest request body in bytes (413 above it); default 4 MiB. */
  readonly maxBodyBytes?: number;
  /** The Retry-After header of a 429 (engine queue full) or 503 (shutting down), in seconds; default 1. */
  readonly retryAfterSeconds?: number;
  /** How long close() lets in-flight requests finish before aborting them, in ms; default 10 000. */
  readonly shutdownGraceMs?: number;
  /** The date in the system message (`YYYY-MM-DD`); default today's, UTC. Tests pin it. */
  readonly currentDate?: () => string;
  /** Most choices one request may ask for (`n`, times the prompts of a completion); default 16. */
  readonly maxChoices?: number;
  /** Where one line per failed request goes (default: nowhere). */
  readonly log?: (line: string) => void;
}

export interface ResolvedServerOptions {
  readonly modelNames: readonly string[];
  readonly maxBodyBytes: number;
  readonly retryAfterSeconds: number;
  readonly shutdownGraceMs: number;
  readonly currentDate: () => string;
  readonly maxChoices: number;
  readonly log: (line: string) => void;
}

const todayUtc = (): string => new Date().toISOString().slice(0, 10);

export function resolveServerOptions(engine: Engine, options: ServerOptions): ResolvedServerOptions {
  const modelNames = options.modelNames !== undefined && options.modelNames.length > 0 ? options.modelNames : [engine.model.name];
  return {
    modelNames,
    maxBodyBytes: options.maxBodyBytes ?? 4 * 1024 * 1024,
    retryAfterSeconds: options.retryAfterSeconds ?? 1,
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    currentDate: options.currentDate ?? todayUtc,
    maxChoices: options.maxChoices ?? 16,
    log: options.log ?? (() => {}),
  };
}
