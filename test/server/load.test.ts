// A bounded load: 200 concurrent streaming chats, every fifth aborted by its client mid-stream. Every stream ends
// cleanly ([DONE] with a finish_reason, or the client's own abort), /health answers throughout, and afterwards
// the engine holds no sequence and no KV block.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerationRequest } from "../../src/engine/api.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { eventually, startHarness, type Harness } from "./harness.js";

const tok = HarmonyTokenizer.instance();
const STREAMS = 200;

/** Each client's answer names its number, so a mixed-up stream would show. */
const answer = (i: number) => `Hello, client ${i}! ${"la ".repeat(i % 7)}Bye.`;
/** Clients that will abort get a long answer, so that they surely abort before it ends. */
const aborts = (i: number) => i % 5 === 0;

function respond(r: GenerationRequest): number[] {
  const i = Number(/client (\d+)/.exec(tok.decode(r.promptIds))?.[1]);
  const final = aborts(i) ? `${answer(i)} ${"and more ".repeat(300)}` : answer(i);
  return tok.encodeWithSpecials(`<|channel|>analysis<|message|>Client ${i} says hi.<|end|><|start|>assistant<|channel|>final<|message|>${final}<|return|>`);
}

interface Outcome {
  readonly kind: "done" | "aborted";
  readonly content: string;
  readonly finish: string | undefined;
}

async function streamChat(url: string, i: number, abortAfterChunks: number | undefined): Promise<Outcome> {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new Error("timed out")), 20_000);
  let content = "";
  let finish: string | undefined;
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "fake-gpt-oss", messages: [{ role: "user", content: `I am client ${i}.` }], stream: true }),
      signal: controller.signal,
    });
    if (res.status !== 200) throw new Error(`client ${i}: status ${res.status}: ${await res.text()}`);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    let chunks = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`client ${i}: the stream ended without [DONE]`);
      buffered += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (event === "data: [DONE]") return { kind: "done", content, finish };
        const chunk = JSON.parse(event.slice("data: ".length)) as { choices: { delta: { content?: string }; finish_reason: string | null }[] };
        for (const c of chunk.choices) {
          content += c.delta.content ?? "";
          finish = c.finish_reason ?? finish;
        }
        if (abortAfterChunks !== undefined && ++chunks >= abortAfterChunks) {
          controller.abort();
          return { kind: "aborted", content, finish };
        }
      }
    }
  } finally {
    clearTimeout(timeout);
  }
}

describe("load", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ respond, maxRunning: 48, maxWaiting: 400, stepMs: 1 });
  });
  afterAll(async () => {
    await h.close();
  });

  it(`serves ${STREAMS} concurrent streams, some aborted, with /health answering and every block freed`, async () => {
    let loading = true;
    const healthStatuses: number[] = [];
    const health = (async () => {
      for (let i = 0; loading && i < 2_000; i++) {
        const res = await fetch(`${h.url}/health`, { signal: AbortSignal.timeout(5_000) });
        healthStatuses.push(res.status);
        await res.text();
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const started = Date.now();
    const outcomes = await Promise.all(Array.from({ length: STREAMS }, (_, i) => streamChat(h.url, i, aborts(i) ? 2 + (i % 4) : undefined)));
    loading = false;
    await health;

    const done = outcomes.filter((o) => o.kind === "done");
    const aborted = outcomes.filter((o) => o.kind === "aborted");
    expect(aborted).toHaveLength(STREAMS / 5);
    expect(done).toHaveLength(STREAMS - STREAMS / 5);
    outcomes.forEach((o, i) => {
      if (o.kind !== "done") return;
      expect(o.finish).toBe("stop");
      expect(o.content).toBe(answer(i));
    });
    expect(healthStatuses.length).toBeGreaterThan(2);
    expect(healthStatuses.every((s) => s === 200)).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000);

    // Aborted streams are aborted in the engine too: nothing left running, every block back.
    await eventually(() => {
      const s = h.engine.stats();
      return s.running === 0 && s.waiting === 0 && s.blocks["full"]!.used === 0 && h.server.metrics.inFlight === 0;
    });
    const stats = h.engine.stats();
    expect(stats.finished.stop).toBe(done.length);
    expect(stats.finished.abort).toBe(aborted.length);
    expect(h.engine.peakBlocks).toBeGreaterThan(48); // many sequences really held blocks at once
    expect(h.server.metrics.finished.value({ finish_reason: "abort" })).toBe(aborted.length);
  }, 30_000);
});
