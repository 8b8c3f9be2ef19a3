// Client disconnects and shutdown: a client that goes away aborts its engine request (stream or not); close()
// answers 503 to requests that arrive while it drains, lets in-flight requests finish within the grace period,
// aborts the ones that take longer, and returns.
import { describe, expect, it } from "vitest";
import { eventually, startHarness } from "./harness.js";

const completion = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: "fake-gpt-oss", prompt: "Go", ...extra });

describe("client disconnects", () => {
  it("abort the engine request of a whole (non-streamed) response", async () => {
    const h = await startHarness({ stepMs: 5 });
    try {
      const controller = new AbortController();
      const pending = fetch(`${h.url}/v1/completions`, { method: "POST", body: completion({ max_tokens: 1000 }), signal: controller.signal }).catch((e: unknown) => e);
      await eventually(() => h.engine.stats().running === 1);
      controller.abort();
      expect(await pending).toBeInstanceOf(Error);
      await eventually(() => h.engine.stats().running === 0);
      expect(h.engine.stats().finished.abort).toBe(1);
      expect(h.engine.stats().blocks["full"]!.used).toBe(0);
      await eventually(() => h.server.metrics.inFlight === 0);
      expect(h.server.metrics.finished.value({ finish_reason: "abort" })).toBe(1);
    } finally {
      await h.close();
    }
  });
});

describe("shutdown", () => {
  it("answers 503 to new requests while in-flight ones finish, then stops listening", async () => {
    const h = await startHarness({ stepMs: 3 });
    const inFlight = h.request("POST", "/v1/completions", JSON.parse(completion({ max_tokens: 40 })));
    await eventually(() => h.engine.stats().running === 1);
    const closed = h.server.close();
    expect(h.server.closing).toBe(true);
    for (const [method, path, body] of [
      ["GET", "/health", undefined],
      ["POST", "/v1/chat/completions", { model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi" }] }],
    ] as const) {
      const res = await h.request(method, path, body);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(res.headers.get("connection")).toBe("close");
      expect(res.json).toMatchObject({ error: { code: "shutting_down", type: "server_error" } });
    }
    const finished = await inFlight;
    expect(finished.status).toBe(200);
    expect(finished.json).toMatchObject({ choices: [{ finish_reason: "length" }], usage: { completion_tokens: 40 } });
    await closed;
    await expect(fetch(`${h.url}/health`)).rejects.toThrow();
    expect(h.engine.requests).toHaveLength(1);
    await h.engine.close();
  });

  it("aborts requests that outlast the grace period: a whole response gets 503, a stream an error event", async () => {
    const h = await startHarness({ stepMs: 5 }, { shutdownGraceMs: 150 });
    const whole = h.request("POST", "/v1/completions", JSON.parse(completion({ max_tokens: 3000 })));
    const stream = h.request("POST", "/v1/chat/completions", { model: "fake-gpt-oss", messages: [{ role: "user", content: "Go" }], max_tokens: 3000, stream: true });
    await eventually(() => h.engine.stats().running === 2);
    const started = Date.now();
    await h.server.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    const wholeRes = await whole;
    expect(wholeRes.status).toBe(503);
    expect(wholeRes.json).toMatchObject({ error: { code: "shutting_down", type: "server_error" } });
    const streamRes = await stream;
    const events = streamRes.text.split("\n\n").filter((e) => e !== "");
    expect(events[events.length - 1]).toBe("data: [DONE]");
    expect(JSON.parse(events[events.length - 2]!.slice(6))).toMatchObject({ error: { code: "shutting_down" } });
    expect(h.engine.stats().running).toBe(0);
    expect(h.engine.stats().blocks["full"]!.used).toBe(0);
    await h.engine.close();
  });

  it("is idempotent and returns at once with nothing in flight", async () => {
    const h = await startHarness();
    const started = Date.now();
    await Promise.all([h.server.close(), h.server.close()]);
    expect(Date.now() - started).toBeLessThan(1_000);
    await h.engine.close();
  });
});
