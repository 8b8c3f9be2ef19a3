// /metrics is Prometheus text exposition (every line checked against the format), its counters move with the
// traffic, its gauges show the engine's state; /health and /v1/models answer as documented.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Counter, Histogram } from "../../src/server/index.js";
import { eventually, startHarness, type Harness } from "./harness.js";

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(${LABEL}(?:,${LABEL})*)\\})? (-?\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?|\\+Inf|-Inf|NaN)$`);
const COMMENT = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`);

interface Family {
  type: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/** Parses exposition text, failing on any line that is not a HELP, TYPE or sample line of a declared family. */
function parseExposition(text: string): Map<string, Family> {
  expect(text.endsWith("\n")).toBe(true);
  const families = new Map<string, Family>();
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = COMMENT.exec(line);
    if (comment !== null) {
      const [, kind, name, rest] = comment;
      if (kind === "TYPE") {
        expect(["counter", "gauge", "histogram", "summary", "untyped"]).toContain(rest);
        expect(families.has(name!), `TYPE ${name} declared twice`).toBe(false);
        families.set(name!, { type: rest!, samples: [] });
      }
      continue;
    }
    const sample = SAMPLE.exec(line);
    expect(sample, `not an exposition line: ${JSON.stringify(line)}`).not.toBeNull();
    const [, name, labelText, value] = sample!;
    const family = families.get(name!) ?? families.get(name!.replace(/_(bucket|sum|count)$/, ""));
    expect(family, `sample ${name} before its TYPE`).toBeDefined();
    if (family!.type === "counter") expect(name!.endsWith("_total")).toBe(true);
    const labels: Record<string, string> = {};
    for (const m of (labelText ?? "").matchAll(new RegExp(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\]|\\\\.)*)"`, "g"))) labels[m[1]!] = m[2]!;
    family!.samples.push({ name: name!, labels, value: value === "+Inf" ? Infinity : Number(value) });
  }
  for (const [name, family] of families) {
    if (family.type !== "histogram") continue;
    const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
    const counts = buckets.map((b) => b.value);
    expect(counts, `${name} buckets are cumulative`).toEqual([...counts].sort((a, b) => a - b));
    expect(buckets[buckets.length - 1]!.labels["le"]).toBe("+Inf");
    expect(family.samples.find((s) => s.name === `${name}_count`)!.value).toBe(counts[counts.length - 1]);
  }
  return families;
}

const value = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number => {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  const sample = family?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return sample?.value ?? 0;
};

describe("metrics", () => {
  let h: Harness;
  const scrape = async () => {
    const res = await h.request("GET", "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    return parseExposition(res.text);
  };
  beforeAll(async () => {
    h = await startHarness({ stepMs: 2 });
  });
  afterAll(async () => {
    await h.close();
  });

  it("parses as exposition format and its counters move with requests", async () => {
    const before = await scrape();
    const reply = await h.client.chat.completions.create({ model: "fake-gpt-oss", messages: [{ role: "user", content: "Hi" }], max_tokens: 7 });
    await h.request("POST", "/v1/chat/completions", { model: "nope", messages: [] });
    await eventually(() => h.server.metrics.inFlight === 0);
    const after = await scrape();
    const chat200 = { endpoint: "/v1/chat/completions", status: "200" };
    expect(value(after, "tsgc_http_requests_total", chat200) - value(before, "tsgc_http_requests_total", chat200)).toBe(1);
    expect(value(after, "tsgc_http_requests_total", { endpoint: "/v1/chat/completions", status: "400" })).toBe(1);
    expect(value(after, "tsgc_http_requests_total", { endpoint: "/metrics", status: "200" })).toBeGreaterThanOrEqual(1);
    expect(value(after, "tsgc_generation_tokens_total") - value(before, "tsgc_generation_tokens_total")).toBe(7);
    expect(value(after, "tsgc_prompt_tokens_total") - value(before, "tsgc_prompt_tokens_total")).toBe(reply.usage!.prompt_tokens);
    expect(value(after, "tsgc_time_to_first_token_seconds_count") - value(before, "tsgc_time_to_first_token_seconds_count")).toBe(1);
    expect(value(after, "tsgc_inter_token_latency_seconds_count") - value(before, "tsgc_inter_token_latency_seconds_count")).toBe(6);
    expect(value(after, "tsgc_time_to_first_token_seconds_sum")).toBeGreaterThan(0);
    expect(value(after, "tsgc_request_finish_total", { finish_reason: "length" })).toBe(1);
    expect(value(after, "tsgc_engine_generated_tokens_total")).toBe(h.engine.stats().generatedTokens);
    expect(value(after, "tsgc_engine_finished_total", { reason: "length" })).toBe(1);
    expect(value(after, "tsgc_kv_blocks_total", { group: "full" })).toBe(65536);
    for (const name of ["tsgc_engine_preemptions_total", "tsgc_engine_prefix_cache_hit_tokens_total", "tsgc_sequences_waiting"]) expect(after.has(name), name).toBe(true);
  });

  it("shows running sequences and blocks in use while a request streams, none after", async () => {
    const controller = new AbortController();
    const res = await fetch(`${h.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "fake-gpt-oss", prompt: "Count", max_tokens: 2000, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const during = await scrape();
    expect(value(during, "tsgc_sequences_running")).toBe(1);
    expect(value(during, "tsgc_kv_blocks_used", { group: "full" })).toBeGreaterThan(0);
    expect(value(during, "tsgc_http_requests_in_flight")).toBe(2); // the stream and this scrape
    controller.abort();
    await eventually(() => h.engine.stats().running === 0);
    const after = await scrape();
    expect(value(after, "tsgc_kv_blocks_used", { group: "full" })).toBe(0);
    expect(value(after, "tsgc_engine_finished_total", { reason: "abort" })).toBe(1);
  });

  it("writes counters and histograms with escaped labels, and answers /health and /v1/models", async () => {
    const c = new Counter("x_total", "An example.");
    c.inc({ path: 'a"b\\c\nd' }, 2);
    expect(c.render()).toBe('# HELP x_total An example.\n# TYPE x_total counter\nx_total{path="a\\"b\\\\c\\nd"} 2\n');
    const hist = new Histogram("lat_seconds", "Latency.", [0.1, 1]);
    hist.observe(0.05);
    hist.observe(0.5);
    hist.observe(5);
    expect(hist.render()).toBe(
      '# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\nlat_seconds_bucket{le="0.1"} 1\nlat_seconds_bucket{le="1"} 2\nlat_seconds_bucket{le="+Inf"} 3\nlat_seconds_sum 5.55\nlat_seconds_count 3\n',
    );
    parseExposition(c.render() + hist.render());

    const health = await h.request("GET", "/health");
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ status: "ok", model: "fake-gpt-oss", running: 0, waiting: 0 });
    const models = await h.client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["fake-gpt-oss"]);
    expect(models.data[0]).toMatchObject({ object: "model", owned_by: "tsgc", max_model_len: 4096 });
    expect((await h.client.models.retrieve("fake-gpt-oss")).id).toBe("fake-gpt-oss");
  });
});
