// Prometheus metrics in the text exposition format (version 0.0.4): the server's own counters and latency
// histograms, and the engine's state read from engine.stats() at each scrape.
import type { EngineStats } from "../engine/api.js";

type Labels = Readonly<Record<string, string>>;

const escapeLabel = (v: string): string => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/** Prometheus renders numbers as Go does: +Inf, -Inf, NaN, plain decimals otherwise. */
function numberText(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (Number.isNaN(v)) return "NaN";
  return String(v);
}

function header(name: string, help: string, type: "counter" | "gauge" | "histogram"): string {
  return `# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n# TYPE ${name} ${type}\n`;
}

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key);
    if (entry === undefined) this.values.set(key, { labels, value: by });
    else entry.value += by;
  }

  value(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    let out = header(this.name, this.help, "counter");
    for (const { labels, value } of this.values.values()) out += `${this.name}${labelText(labels)} ${numberText(value)}\n`;
    if (this.values.size === 0) out += `${this.name} 0\n`;
    return out;
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  /** `buckets`: upper bounds in increasing order (+Inf is added). */
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = new Array<number>(buckets.length).fill(0);
  }

  observe(value: number): void {
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  get observations(): number {
    return this.count;
  }

  render(): string {
    let out = header(this.name, this.help, "histogram");
    this.buckets.forEach((le, i) => {
      out += `${this.name}_bucket{le="${numberText(le)}"} ${this.counts[i]}\n`;
    });
    out += `${this.name}_bucket{le="+Inf"} ${this.count}\n${this.name}_sum ${numberText(this.sum)}\n${this.name}_count ${this.count}\n`;
    return out;
  }
}

function gauge(name: string, help: string, samples: readonly { labels?: Labels; value: number }[]): string {
  return header(name, help, "gauge") + samples.map((s) => `${name}${labelText(s.labels ?? {})} ${numberText(s.value)}\n`).join("");
}

function engineCounter(name: string, help: string, samples: readonly { labels?: Labels; value: number }[]): string {
  return header(name, help, "counter") + samples.map((s) => `${name}${labelText(s.labels ?? {})} ${numberText(s.value)}\n`).join("");
}

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10];
const E2E_BUCKETS = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480];

export class ServerMetrics {
  readonly requests = new Counter("tsgc_http_requests_total", "HTTP requests answered, by endpoint and status code.");
  readonly promptTokens = new Counter("tsgc_prompt_tokens_total", "Prompt tokens of the generation requests served.");
  readonly generationTokens = new Counter("tsgc_generation_tokens_total", "Tokens generated for clients.");
  readonly finished = new Counter("tsgc_request_finish_total", "Choices finished, by the finish_reason the client saw (abort: the client went away).");
  readonly timeToFirstToken = new Histogram("tsgc_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.", TTFT_BUCKETS);
  readonly interTokenLatency = new Histogram("tsgc_inter_token_latency_seconds", "Seconds between consecutive tokens of a choice.", ITL_BUCKETS);
  readonly requestLatency = new Histogram("tsgc_request_duration_seconds", "Seconds from a generation request's arrival to its last token.", E2E_BUCKETS);
  inFlight = 0;

  render(stats: EngineStats): string {
    const blocks = Object.entries(stats.blocks);
    return [
      this.requests.render(),
      this.promptTokens.render(),
      this.generationTokens.render(),
      this.finished.render(),
      this.timeToFirstToken.render(),
      this.interTokenLatency.render(),
      this.requestLatency.render(),
      gauge("tsgc_http_requests_in_flight", "HTTP requests being answered now.", [{ value: this.inFlight }]),
      gauge("tsgc_sequences_running", "Sequences the engine is stepping.", [{ value: stats.running }]),
      gauge("tsgc_sequences_waiting", "Sequences waiting for KV blocks.", [{ value: stats.waiting }]),
      gauge("tsgc_kv_blocks_used", "KV blocks holding some sequence's tokens, by KV group.", blocks.map(([group, b]) => ({ labels: { group }, value: b.used }))),
      gauge("tsgc_kv_blocks_free", "KV blocks free (cached but unreferenced ones included), by KV group.", blocks.map(([group, b]) => ({ labels: { group }, value: b.free }))),
      gauge("tsgc_kv_blocks_total", "KV blocks in the pool, by KV group.", blocks.map(([group, b]) => ({ labels: { group }, value: b.total }))),
      engineCounter("tsgc_engine_preemptions_total", "Sequences preempted (recomputed later) for lack of KV blocks.", [{ value: stats.preemptions }]),
      engineCounter("tsgc_engine_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", [{ value: stats.prefixHitTokens }]),
      engineCounter("tsgc_engine_prefix_cache_query_tokens_total", "Prompt tokens looked up in the prefix cache.", [{ value: stats.prefixQueryTokens }]),
      engineCounter("tsgc_engine_steps_total", "Engine steps run.", [{ value: stats.steps }]),
      engineCounter("tsgc_engine_steps_ahead_total", "Engine steps queued behind the step before, their tokens fed back on the device.", [{ value: stats.stepsAhead }]),
      engineCounter("tsgc_engine_prompt_tokens_total", "Prompt tokens the engine prefilled or found cached.", [{ value: stats.promptTokens }]),
      engineCounter("tsgc_engine_generated_tokens_total", "Tokens the engine generated.", [{ value: stats.generatedTokens }]),
      engineCounter("tsgc_engine_finished_total", "Engine requests finished, by finish reason.", Object.entries(stats.finished).map(([reason, value]) => ({ labels: { reason }, value }))),
    ].join("");
  }
}
