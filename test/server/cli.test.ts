// `tsgc serve` and `tsgc chat` with an injected fake engine: flags become EngineOpenOptions, serve listens and
// drains on shutdown, chat keeps a multi-turn harmony conversation on stdin/stdout and Ctrl-C stops an answer.
import { PassThrough } from "node:stream";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { registerChatCommand, runChatSession } from "../../src/cli/chat.js";
import { registerServeCommand } from "../../src/cli/serve.js";
import type { GenerationRequest } from "../../src/engine/api.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import type { ListeningAddress } from "../../src/server/index.js";
import type { OpenEngineOptions } from "../../src/engine/open.js";
import { FakeEngine, type FakeEngineOptions } from "./fake-engine.js";
import { eventually } from "./harness.js";

const tok = HarmonyTokenizer.instance();

/** Answers "Answer N" (N: the number of user turns in the prompt), after some reasoning. */
function respond(r: GenerationRequest): number[] {
  const prompt = tok.decode(r.promptIds);
  const turns = prompt.split("<|start|>user").length - 1;
  return tok.encodeWithSpecials(`<|channel|>analysis<|message|>Turn ${turns} thoughts.<|end|><|start|>assistant<|channel|>final<|message|>Answer ${turns} ✓<|return|>`);
}

function program(): Command {
  return new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
}

/** A chat on piped streams; returns the output so far and a way to type. */
function chatStreams() {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.on("data", (d: Buffer) => (text += d.toString()));
  return { input, output, type: (s: string) => input.write(s), text: () => text };
}

describe("tsgc chat", () => {
  it("keeps a multi-turn conversation, with reasoning of answered turns dropped", async () => {
    const engine = new FakeEngine({ respond });
    const io = chatStreams();
    const session = runChatSession({ engine, input: io.input, output: io.output, terminal: false, instructions: "Be brief.", currentDate: "2025-06-28", temperature: 0 });
    io.type("Hi\n");
    await eventually(() => io.text().includes("Answer 1"));
    io.type("And again?\n/exit\n");
    await session;
    const out = io.text();
    expect(out).toContain("Answer 1 ✓\n");
    expect(out).toContain("Answer 2 ✓\n");
    expect(out).not.toContain("thoughts"); // reasoning is hidden by default
    const second = tok.decode(engine.requests[1]!.promptIds);
    expect(second).toContain("<|start|>developer<|message|># Instructions\n\nBe brief.<|end|>");
    expect(second).toContain("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Answer 1 ✓<|end|><|start|>user<|message|>And again?<|end|><|start|>assistant");
    expect(second).not.toContain("Turn 1 thoughts");
    expect(engine.requests.map((r) => r.temperature)).toEqual([0, 0]);
    await engine.close();
  });

  it("shows reasoning with --show-reasoning, through the registered verb, and closes the engine", async () => {
    const io = chatStreams();
    const opened: OpenEngineOptions[] = [];
    let engine: FakeEngine | undefined;
    const cli = program();
    registerChatCommand(
      cli,
      async (options) => {
        opened.push(options);
        engine = new FakeEngine({ respond });
        return engine;
      },
      { input: io.input, output: io.output, terminal: false },
    );
    const run = cli.parseAsync(["chat", "--system", "Be brief.", "--show-reasoning", "--reasoning-effort", "low", "--max-tokens", "100", "--device", "cpu", "--max-context", "2048"], { from: "user" });
    await eventually(() => engine !== undefined);
    io.type("Hi\n");
    io.input.end();
    await run;
    expect(opened).toEqual([{ model: "gpt-oss-tiny", device: "cpu", maxContext: 2048 }]);
    expect(io.text()).toContain("thinking: Turn 1 thoughts.\n\nAnswer 1 ✓\n");
    expect(tok.decode(engine!.requests[0]!.promptIds)).toContain("Reasoning: low");
    expect(engine!.requests[0]!.maxTokens).toBe(100);
    expect(() => engine!.generate({ promptIds: [1], maxTokens: 1 })).toThrow("the engine is closed");
  });

  it("stops an answer at Ctrl-C, carries on, and quits at a second Ctrl-C", async () => {
    const long = (r: GenerationRequest) => (tok.decode(r.promptIds).endsWith("Slow<|end|><|start|>assistant") ? tok.encodeWithSpecials(`<|channel|>final<|message|>${"word ".repeat(500)}<|return|>`) : respond(r));
    const engine = new FakeEngine({ respond: long, stepMs: 5 });
    const io = chatStreams();
    const session = runChatSession({ engine, input: io.input, output: io.output, terminal: true, currentDate: "2025-06-28" });
    io.type("Slow\r");
    await eventually(() => engine.stats().running === 1 && io.text().includes("word word"));
    io.type("\x03");
    await eventually(() => io.text().includes("[interrupted]"));
    await eventually(() => engine.stats().running === 0);
    expect(engine.stats().finished.abort).toBe(1);
    expect(engine.stats().blocks["full"]!.used).toBe(0);
    io.type("Fast\r");
    // Answered, and back at the prompt.
    await eventually(() => io.text().includes("Answer 2 ✓") && io.text().slice(io.text().indexOf("Answer 2 ✓")).includes("> "));
    // The interrupted answer stays in the conversation as far as it went.
    expect(tok.decode(engine.requests[1]!.promptIds)).toMatch(/<\|start\|>user<\|message\|>Slow<\|end\|><\|start\|>assistant<\|channel\|>final<\|message\|>word word( word)*<\|end\|><\|start\|>user<\|message\|>Fast<\|end\|>/);
    io.type("\x03");
    await eventually(() => io.text().includes("Ctrl-C again"));
    io.type("\x03");
    await session;
    await engine.close();
  });

  it("refuses a model without the harmony tokenizer", async () => {
    const io = chatStreams();
    await expect(runChatSession({ engine: new FakeEngine({ tokenizer: null }), input: io.input, output: io.output })).rejects.toThrow("tsgc chat needs a model with the o200k_harmony tokenizer");
  });
});

describe("tsgc serve", () => {
  it("opens the engine from its flags, serves until shutdown, then drains and closes the engine", async () => {
    const err: string[] = [];
    const opened: OpenEngineOptions[] = [];
    let engine: FakeEngine | undefined;
    let address: ListeningAddress | undefined;
    let shutdown!: () => void;
    const cli = program();
    registerServeCommand(
      cli,
      async (options) => {
        opened.push(options);
        engine = new FakeEngine({ respond } satisfies FakeEngineOptions);
        return engine;
      },
      { io: { stdout: () => {}, stderr: (t) => void err.push(t) }, untilShutdown: () => new Promise((resolve) => (shutdown = resolve)), onListening: (a) => (address = a) },
    );
    const run = cli.parseAsync(
      ["serve", "gpt-oss-20b", "--port", "0", "--served-model-name", "gpt-oss,oss", "--device", "cpu", "--dtype", "f32", "--max-batch", "4", "--kv-blocks", "512", "--gpu-memory-utilization", "0.8", "--seed", "3", "--shutdown-grace", "1"],
      { from: "user" },
    );
    await eventually(() => address !== undefined);
    expect(opened).toEqual([{ model: "gpt-oss-20b", dtype: "f32", device: "cpu", seed: 3, maxSeqs: 4, kvBlocks: 512, gpuMemoryUtilization: 0.8 }]);
    const models = (await (await fetch(`${address!.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["gpt-oss", "oss"]);
    const reply = await fetch(`${address!.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "oss", messages: [{ role: "user", content: "Hi" }] }) });
    expect(((await reply.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe("Answer 1 ✓");
    shutdown();
    await run;
    expect(err.join("")).toMatch(/tsgc serve: gpt-oss, oss on http:\/\/127\.0\.0\.1:\d+ /);
    expect(err.join("")).toContain("tsgc serve: stopped\n");
    expect(() => engine!.generate({ promptIds: [1], maxTokens: 1 })).toThrow("the engine is closed");
    await expect(fetch(`${address!.url}/health`)).rejects.toThrow();
  });

  it("names a bad flag, and a port it cannot listen on", async () => {
    const open = async () => new FakeEngine();
    for (const [args, message] of [
      [["--port", "x"], '--port must be an integer >= 0, got "x"'],
      [["--device", "tpu"], '--device must be cuda or cpu, got "tpu"'],
      [["--gpu-memory-utilization", "1.5"], '--gpu-memory-utilization must be in (0, 1], got "1.5"'],
      [["--port", "70000"], "--port must be at most 65535, got 70000"],
    ] as const) {
      const cli = program();
      registerServeCommand(cli, open, { io: { stdout: () => {}, stderr: () => {} }, untilShutdown: async () => {} });
      await expect(cli.parseAsync(["serve", ...args], { from: "user" })).rejects.toThrow(message);
    }
    // A taken port: the engine is closed again and the error says why.
    const first = program();
    let address: ListeningAddress | undefined;
    let stop!: () => void;
    registerServeCommand(first, open, { io: { stdout: () => {}, stderr: () => {} }, untilShutdown: () => new Promise((r) => (stop = r)), onListening: (a) => (address = a) });
    const running = first.parseAsync(["serve", "--port", "0"], { from: "user" });
    await eventually(() => address !== undefined);
    let second: FakeEngine | undefined;
    const taken = program();
    registerServeCommand(taken, async () => (second = new FakeEngine()), { io: { stdout: () => {}, stderr: () => {} }, untilShutdown: async () => {} });
    await expect(taken.parseAsync(["serve", "--port", String(address!.port)], { from: "user" })).rejects.toThrow(`cannot listen on 127.0.0.1:${address!.port}: the address is in use`);
    expect(() => second!.generate({ promptIds: [1], maxTokens: 1 })).toThrow("the engine is closed");
    stop();
    await running;
  });
});
