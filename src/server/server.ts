// The OpenAI-compatible HTTP server over an Engine, on node:http: five routes need no framework, and node:http
// gives the control this server needs over body limits, server-sent events, client disconnects (each aborts its
// engine requests) and shutdown.
//
//   POST /v1/chat/completions   chat-completions.ts
//   POST /v1/completions        completions.ts
//   GET  /v1/models[/{id}]      the served model
//   GET  /health                200 while serving, 503 while shutting down
//   GET  /metrics               Prometheus text (metrics.ts)
//
// close() drains: every request that arrives from then on is answered 503 with Retry-After (so /health tells a load
// balancer to look elsewhere, and clients retry there), in-flight requests get shutdownGraceMs to finish, then the
// ones still running are aborted, and the listener and every connection are closed.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Engine } from "../engine/api.js";
import { HarmonyTokenizer } from "../generate/tokenizer.js";
import { handleChatCompletion } from "./chat-completions.js";
import { handleCompletion } from "./completions.js";
import { ApiError, toApiError } from "./errors.js";
import type { AbortCause, RequestContext } from "./generation.js";
import { readJsonBody, sendJson, sendText } from "./http-io.js";
import { unixSeconds } from "./ids.js";
import { ServerMetrics } from "./metrics.js";
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from "./options.js";

type Handler = (ctx: RequestContext, req: IncomingMessage, res: ServerResponse) => Promise<void>;

interface Route {
  /** The `endpoint` label of the request metrics. */
  readonly endpoint: string;
  readonly methods: Partial<Record<string, Handler>>;
}

export interface ListeningAddress {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
}

export interface OpenAiServer {
  readonly http: Server;
  readonly metrics: ServerMetrics;
  readonly options: ResolvedServerOptions;
  /** Listens on `host` (default 127.0.0.1) and `port` (default 8000; 0 picks a free one). */
  listen(port?: number, host?: string): Promise<ListeningAddress>;
  /** Graceful shutdown (see the file comment); the engine stays open, its owner closes it. */
  close(): Promise<void>;
  readonly closing: boolean;
}

const withBody = (handle: (ctx: RequestContext, body: unknown, res: ServerResponse) => Promise<void>): Handler => async (ctx, req, res) =>
  handle(ctx, await readJsonBody(req, ctx.options.maxBodyBytes), res);

function modelObject(id: string, engine: Engine, created: number) {
  return { id, object: "model", created, owned_by: "tsgc", root: engine.model.name, max_model_len: engine.model.maxContext };
}

export function createOpenAiServer(engine: Engine, serverOptions: ServerOptions = {}): OpenAiServer {
  const options = resolveServerOptions(engine, serverOptions);
  const metrics = new ServerMetrics();
  const tokenizer = engine.model.tokenizer === "o200k_harmony" ? HarmonyTokenizer.instance() : undefined;
  const startedAt = unixSeconds();
  const inFlight = new Set<{ readonly controller: AbortController; readonly done: Promise<void> }>();
  let closing = false;
  let closed: Promise<void> | undefined;

  const models: Handler = async (_ctx, req, res) => {
    const raw = (req.url ?? "").split("?")[0]!.slice("/v1/models/".length);
    let id: string;
    try {
      id = decodeURIComponent(raw);
    } catch {
      id = raw;
    }
    if (id !== "") {
      if (!options.modelNames.includes(id)) throw new ApiError(404, `the model ${JSON.stringify(id)} does not exist`, "invalid_request_error", "model", "model_not_found");
      sendJson(res, 200, modelObject(id, engine, startedAt));
      return;
    }
    sendJson(res, 200, { object: "list", data: options.modelNames.map((name) => modelObject(name, engine, startedAt)) });
  };
  const routes: Readonly<Record<string, Route>> = {
    "/v1/chat/completions": { endpoint: "/v1/chat/completions", methods: { POST: withBody(handleChatCompletion) } },
    "/v1/completions": { endpoint: "/v1/completions", methods: { POST: withBody(handleCompletion) } },
    "/v1/models": { endpoint: "/v1/models", methods: { GET: models } },
    "/health": {
      endpoint: "/health",
      methods: {
        GET: async (_ctx, _req, res) => {
          const stats = engine.stats();
          sendJson(res, 200, { status: "ok", model: engine.model.name, running: stats.running, waiting: stats.waiting });
        },
      },
    },
    "/metrics": { endpoint: "/metrics", methods: { GET: async (_ctx, _req, res) => sendText(res, 200, metrics.render(engine.stats()), "text/plain; version=0.0.4; charset=utf-8") } },
  };

  function routeOf(path: string): Route | undefined {
    const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
    return routes[trimmed] ?? (trimmed.startsWith("/v1/models/") ? routes["/v1/models"] : undefined);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, controller: AbortController): Promise<void> {
    const receivedAt = performance.now();
    const route = routeOf((req.url ?? "/").split("?")[0]!);
    const endpoint = route?.endpoint ?? "other";
    metrics.inFlight++;
    res.on("close", () => {
      metrics.inFlight--;
      metrics.requests.inc({ endpoint, status: String(res.statusCode) });
    });
    res.on("close", () => {
      if (!res.writableFinished) controller.abort("client-gone" satisfies AbortCause);
    });
    try {
      if (closing) {
        res.shouldKeepAlive = false;
        throw new ApiError(503, "the server is shutting down", "server_error", null, "shutting_down", { "Retry-After": String(options.retryAfterSeconds) });
      }
      if (route === undefined) throw new ApiError(404, `no route ${req.method ?? ""} ${req.url ?? ""}; this server answers /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics`, "invalid_request_error", null, "unknown_url");
      const handler = route.methods[req.method ?? ""];
      if (handler === undefined) {
        const allow = Object.keys(route.methods).join(", ");
        throw new ApiError(405, `${req.method ?? ""} is not allowed on ${endpoint}; use ${allow}`, "invalid_request_error", null, "method_not_allowed", { Allow: allow });
      }
      const ctx: RequestContext = { engine, options, metrics, tokenizer, signal: controller.signal, receivedAt };
      await handler(ctx, req, res);
    } catch (err) {
      const error = toApiError(err, {}, options.retryAfterSeconds);
      if (error.status >= 500) options.log(`${req.method ?? ""} ${req.url ?? ""}: ${error.status} ${error.message}`);
      try {
        if (!res.headersSent) sendJson(res, error.status, error.body(), error.headers);
        else if (!res.writableEnded) res.end();
      } catch {
        res.destroy();
      }
    }
  }

  const http = createServer((req, res) => {
    const controller = new AbortController();
    const tracked = { controller, done: handle(req, res, controller) };
    inFlight.add(tracked);
    void tracked.done.finally(() => inFlight.delete(tracked));
  });

  async function settle(ms: number): Promise<void> {
    if (inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...inFlight].map((e) => e.done)), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  return {
    http,
    metrics,
    options,
    get closing() {
      return closing;
    },
    listen(port = 8000, host = "127.0.0.1") {
      return new Promise<ListeningAddress>((resolve, reject) => {
        http.once("error", reject);
        http.listen(port, host, () => {
          http.off("error", reject);
          const address = http.address() as AddressInfo;
          const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve({ host: address.address, port: address.port, url: `http://${shown}:${address.port}` });
        });
      });
    },
    close() {
      closed ??= (async () => {
        closing = true;
        await settle(options.shutdownGraceMs);
        for (const e of inFlight) e.controller.abort("shutdown" satisfies AbortCause);
        await settle(2_000);
        const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
        http.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
