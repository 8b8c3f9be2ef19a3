// Starts a server on 127.0.0.1 (an ephemeral port) over a FakeEngine, with the official openai client pointed at it.
import OpenAI from "openai";
import { createOpenAiServer, type OpenAiServer, type ServerOptions } from "../../src/server/index.js";
import { FakeEngine, type FakeEngineOptions } from "./fake-engine.js";

export interface Harness {
  readonly engine: FakeEngine;
  readonly server: OpenAiServer;
  readonly url: string;
  readonly client: OpenAI;
  /** POSTs (or GETs, without a body) and returns status, headers and the parsed JSON body (or the text). */
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; json: unknown; text: string }>;
  close(): Promise<void>;
}

export const DATE = "2025-06-28";

export async function startHarness(engineOptions: FakeEngineOptions = {}, serverOptions: ServerOptions = {}): Promise<Harness> {
  const engine = new FakeEngine(engineOptions);
  const server = createOpenAiServer(engine, { currentDate: () => DATE, shutdownGraceMs: 2_000, ...serverOptions });
  const { url } = await server.listen(0, "127.0.0.1");
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "test", maxRetries: 0, timeout: 20_000 });
  return {
    engine,
    server,
    url,
    client,
    async request(method, path, body, headers = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { "content-type": "application/json", ...headers },
        ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(20_000),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, json, text };
    },
    async close() {
      await server.close();
      await engine.close();
    },
  };
}

/** Polls `check` every few ms until it holds (at most `ms`). */
export async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`condition not reached in ${ms} ms: ${check.toString()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
