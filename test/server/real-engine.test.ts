// The server over the real engine (gpt-oss-tiny on the CPU interpreter, token-id prompts): greedy tokens equal
// `tsgc generate` on the same model and prompt, streamed and whole, many clients at once, blocks all free after.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openEngine } from "../../src/engine/open.js";
import type { ServingEngine } from "../../src/engine/engine.js";
import { createOpenAiServer, type OpenAiServer } from "../../src/server/index.js";
import { REPO_ROOT } from "../tiers.js";

let engine: ServingEngine;
let server: OpenAiServer;
let client: OpenAI;
const prompt = [3, 1, 4, 1, 5, 9, 2, 6];

beforeAll(async () => {
  engine = (await openEngine({ device: "cpu", model: "gpt-oss-tiny", seed: 2 })).engine;
  server = createOpenAiServer(engine, {});
  const { url } = await server.listen(0, "127.0.0.1");
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none", maxRetries: 0, timeout: 60_000 });
});
afterAll(async () => {
  await server.close();
  await engine.close();
});

interface WithTokenIds {
  readonly choices: { readonly token_ids?: number[]; readonly text: string }[];
}

describe("tsgc serve over the real engine", () => {
  it("gives the greedy tokens `tsgc generate` gives, whole and streamed, alone and among many clients", async () => {
    const cli = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), "generate", "gpt-oss-tiny", "--device", "cpu", "--seed", "2", "--prompt-ids", prompt.join(","), "--max-new-tokens", "12", "--json"], { encoding: "utf8", timeout: 120_000 });
    expect(cli.status, cli.stderr).toBe(0);
    const expected = (JSON.parse(cli.stdout) as { tokens: number[] }).tokens;
    const body = { model: "gpt-oss-tiny", prompt, max_tokens: 12, temperature: 0, return_token_ids: true } as const;
    const whole = (await client.completions.create(body as never)) as unknown as WithTokenIds;
    expect(whole.choices[0]!.token_ids).toEqual(expected);
    // 24 clients at once, half streaming: every one gets the same greedy tokens
    const many = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        if (i % 2 === 0) return ((await client.completions.create(body as never)) as unknown as WithTokenIds).choices[0]!.token_ids!;
        const stream = (await client.completions.create({ ...body, stream: true } as never)) as unknown as AsyncIterable<WithTokenIds>;
        const ids: number[] = [];
        for await (const chunk of stream) ids.push(...(chunk.choices[0]?.token_ids ?? []));
        return ids;
      }),
    );
    for (const ids of many) expect(ids).toEqual(expected);
    const stats = engine.stats();
    for (const c of Object.values(stats.blocks)) expect(c.used).toBe(0);
    expect(stats.finished.length).toBeGreaterThanOrEqual(25);
  }, 120_000);
});
