// Request bodies in, JSON and server-sent events out, over node:http.
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, badRequest } from "./errors.js";

/** Reads and parses a JSON body of at most `limit` bytes (413 beyond, 400 when it is not JSON). */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () => new ApiError(413, `the request body is larger than ${limit} bytes`, "invalid_request_error", null, "request_too_large", { Connection: "close" });
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, null, "invalid_json");
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string, contentType: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** One response as a stream of `data: {json}` events, ended by `data: [DONE]`. */
export class SseWriter {
  private closed = false;

  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", Connection: "keep-alive", "X-Accel-Buffering": "no" });
    res.flushHeaders();
    res.on("close", () => {
      this.closed = true;
    });
  }

  /** The client went away (or the stream ended): nothing more is written. */
  get isClosed(): boolean {
    return this.closed || this.res.destroyed;
  }

  /** Writes one event; resolves once the socket can take more (at once unless the client reads slowly). */
  send(data: unknown): Promise<void> | undefined {
    if (this.isClosed) return undefined;
    if (this.res.write(`data: ${JSON.stringify(data)}\n\n`)) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        this.res.off("drain", done);
        this.res.off("close", done);
        resolve();
      };
      this.res.on("drain", done);
      this.res.on("close", done);
    });
  }

  end(): void {
    if (this.isClosed) return;
    this.res.end("data: [DONE]\n\n");
    this.closed = true;
  }
}
