// `tsgc generate --prompt` end to end (a child process, the CPU interpreter) on small checkpoints with the
// o200k_harmony vocabulary: scripted ones (scripted-checkpoint.ts) whose greedy output is given harmony text, so
// the printed answer, reasoning and tool calls can be checked exactly, and a random one whose output is not
// harmony at all. Then the refusals: conflicting flags, prompt files that cannot be read, empty messages.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnswerPrinter } from "../../src/cli/harmony-answer.js";
import { chatMessages, encodeHarmony } from "../../src/generate/harmony.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { REPO_ROOT } from "../tiers.js";
import { HARMONY_TINY, writeScriptedCheckpoint } from "./scripted-checkpoint.js";

const tok = HarmonyTokenizer.instance();
/** The prompt's last token: harmony prompts end with `<|start|>assistant`. */
const ASSISTANT = tok.encode("assistant")[0]!;
const SCRIPTS = {
  final: "<|channel|>final<|message|>Sky is blue 🦀<|return|>",
  reasoning: "<|channel|>analysis<|message|>Think about it.<|end|>Done<|return|>",
  // a header without a channel: the recipient alone makes it a call
  toolCall: ' to=functions.get_weather<|message|>{"city":"Paris"}<|call|>',
} as const;

let root: string;
const dirs: Record<keyof typeof SCRIPTS | "random", string> = { final: "", reasoning: "", toolCall: "", random: "" };
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-generate-prompt-"));
  for (const [name, script] of Object.entries(SCRIPTS) as [keyof typeof SCRIPTS, string][]) {
    dirs[name] = join(root, name);
    await writeScriptedCheckpoint(dirs[name], [ASSISTANT, ...tok.encodeWithSpecials(script)]);
  }
  dirs.random = join(root, "random");
  await writeRandomGptOssCheckpoint(dirs.random, HARMONY_TINY, { seed: 5, std: 0.5, dtype: "F32" });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tsgc(args: readonly string[], input = "") {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", input, timeout: 60_000, killSignal: "SIGKILL" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Json {
  prompt: number[];
  tokens: number[];
  text: string;
  reasoning: string;
  toolCalls?: { name: string; arguments: string }[];
  finishReasons: string[];
}

function json(args: readonly string[], input = ""): Json {
  const r = tsgc([...args, "--json"], input);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Json;
}

describe("tsgc generate --prompt", () => {
  it("prints the final channel's text alone, with a banner saying so", () => {
    const r = tsgc(["generate", "--checkpoint", dirs.final, "--prompt", "Why is the sky blue?"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("Sky is blue 🦀\n");
    const prompt = encodeHarmony(chatMessages({ user: "Why is the sky blue?" }), { nextRole: "assistant" });
    expect(r.stderr.split("\n")[1]).toBe(`prompt: a harmony user message of ${prompt.length} tokens; printing the answer (the final channel) of up to 1024 new tokens:`);
    const out = json(["generate", "--checkpoint", dirs.final, "--prompt", "Why is the sky blue?"]);
    expect(out.prompt).toEqual(prompt);
    expect(out.tokens).toEqual(tok.encodeWithSpecials(SCRIPTS.final));
    expect(out).toMatchObject({ text: "Sky is blue 🦀", reasoning: "", finishReasons: ["stop"] });
    expect(out.toolCalls).toBeUndefined();
  });

  it("prints the reasoning with --show-reasoning, and says why there is no answer when there is none", () => {
    expect(tsgc(["generate", "--checkpoint", dirs.reasoning, "--prompt", "Hi"]).stdout).toBe("Done\n");
    const shown = tsgc(["generate", "--checkpoint", dirs.reasoning, "--prompt", "Hi", "--show-reasoning"]);
    expect(shown.stdout).toBe("thinking: Think about it.\n\nDone\n");
    expect(shown.stderr).toContain("printing the answer (the final channel, and the reasoning)");
    expect(json(["generate", "--checkpoint", dirs.reasoning, "--prompt", "Hi"])).toMatchObject({ text: "Done", reasoning: "Think about it." });
    // the default room for an answer is what the context leaves, when that is less than 1024 tokens
    const prompt = encodeHarmony(chatMessages({ user: "Hi" }), { nextRole: "assistant" });
    expect(tsgc(["generate", "--checkpoint", dirs.reasoning, "--prompt", "Hi", "--max-context", "128"]).stderr).toContain(`of up to ${128 - prompt.length + 1} new tokens:`);
    // cut while reasoning: nothing to print, and a note on stderr saying why
    const cut = tsgc(["generate", "--checkpoint", dirs.reasoning, "--prompt", "Hi", "--max-new-tokens", "4"]);
    expect(cut.code, cut.stderr).toBe(0);
    expect(cut.stdout).toBe("\n");
    expect(cut.stderr).toContain("(no final answer: cut at --max-new-tokens 4 while the model was reasoning; raise --max-new-tokens; --show-reasoning prints the reasoning)\n");
  });

  it("shows a call to a function, and lists it in --json", () => {
    expect(tsgc(["generate", "--checkpoint", dirs.toolCall, "--prompt", "Weather in Paris?"]).stdout).toBe('tool call: functions.get_weather {"city":"Paris"}\n');
    expect(json(["generate", "--checkpoint", dirs.toolCall, "--prompt", "Weather in Paris?"])).toMatchObject({ text: "", toolCalls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }], finishReasons: ["stop"] });
  });

  it("reads messages from files and the standard input, in command-line order, with --system and --reasoning-effort", () => {
    const file = join(root, "message.txt");
    writeFileSync(file, "From a file\n");
    const several = tsgc(["generate", "--checkpoint", dirs.final, "--prompt-file", file, "--prompt", "Inline"]);
    expect(several.code, several.stderr).toBe(0);
    expect(several.stdout).toBe("0: Sky is blue 🦀\n1: Sky is blue 🦀\n");
    expect(several.stderr.split("\n")[1]).toMatch(/^prompt: 2 harmony user messages, decoded together; printing the answer/);
    const r = tsgc(["generate", "--checkpoint", dirs.final, "--prompt-file", file, "--prompt", "-", "--system", "Be brief.", "--reasoning-effort", "high", "--json"], "From stdin\r\n\n");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { prompts: number[][]; texts: string[]; reasonings: string[]; finishReasons: string[] };
    // the final line breaks of a file and of the standard input are no part of the message
    const render = (user: string) => encodeHarmony(chatMessages({ user, instructions: "Be brief.", reasoningEffort: "high" }), { nextRole: "assistant" });
    expect(out.prompts).toEqual([render("From a file"), render("From stdin")]);
    expect(out).toMatchObject({ texts: ["Sky is blue 🦀", "Sky is blue 🦀"], reasonings: ["", ""], finishReasons: ["stop", "stop"] });
    expect(json(["generate", "--checkpoint", dirs.final, "--prompt-file", "-"], "Piped").prompt).toEqual(encodeHarmony(chatMessages({ user: "Piped" }), { nextRole: "assistant" }));
  });

  it("prints what it can of output that is not harmony (random weights), as the parser reads it", () => {
    const args = ["generate", "--checkpoint", dirs.random, "--prompt", "Hi", "--max-new-tokens", "12"];
    const out = json(args);
    expect(out.tokens).toHaveLength(12);
    // no channel was ever opened: the text of the tokens is the answer, the role word and markers dropped
    expect(out.text).not.toBe("");
    const printer = new AnswerPrinter(() => {});
    for (const t of out.tokens) printer.push(t);
    printer.finish();
    expect(out.text).toBe(printer.text);
    expect(out.reasoning).toBe(printer.reasoning);
    const printed = tsgc(args);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toBe(`${printer.text}\n`);
    expect(printed.stdout).not.toContain("\ufffd");
  });
});

describe("tsgc generate --prompt refusals", () => {
  /** One `tsgc:` line on stderr and a non-zero exit. */
  function refused(args: readonly string[], input = ""): string {
    const r = tsgc(args, input);
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stderr).toMatch(/^tsgc: [^\n]*\n$/);
    return r.stderr.trim();
  }
  // gpt-oss-20b has the harmony vocabulary; every refusal comes before its weights would be made
  const model = ["generate", "gpt-oss-20b", "--device", "cpu"];

  it("refuses conflicting and misplaced flags", () => {
    expect(refused([...model, "--prompt", "Hi", "--prompt-ids", "1,2"])).toBe("tsgc: give --prompt or --prompt-ids, not both");
    expect(refused([...model, "--prompt-file", "x", "--prompt-ids", "1,2"])).toBe("tsgc: give --prompt-file or --prompt-ids, not both");
    for (const flag of [["--system", "Be brief."], ["--reasoning-effort", "low"], ["--show-reasoning"]]) {
      expect(refused(["generate", "--prompt-ids", "1,2", ...flag])).toBe(`tsgc: ${flag[0]} is for a harmony prompt: give the user message with --prompt or --prompt-file`);
    }
    expect(refused([...model, "--prompt", "-", "--prompt-file", "-"], "Hi")).toBe("tsgc: --prompt-file -: the standard input is read once; give - to one --prompt or --prompt-file");
    expect(refused(["generate", "--prompt-file", "-"], "Hi")).toBe("tsgc: --prompt-file needs a model with the o200k_harmony vocabulary (201088 tokens); gpt-oss-tiny has 128: give token ids with --prompt-ids");
  });

  it("names a prompt file it cannot read, and an empty message", () => {
    const dir = join(root, "refusals");
    mkdirSync(dir, { recursive: true });
    const missing = join(dir, "missing.txt");
    expect(refused([...model, "--prompt-file", missing])).toBe(`tsgc: --prompt-file ${missing}: does not exist`);
    expect(refused([...model, "--prompt-file", dir])).toBe(`tsgc: --prompt-file ${dir}: it is a directory, not a regular file`);
    const fifo = join(dir, "fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    expect(refused([...model, "--prompt-file", fifo])).toBe(`tsgc: --prompt-file ${fifo}: it is a named pipe, not a regular file`);
    const binary = join(dir, "binary");
    writeFileSync(binary, Buffer.from([0xff, 0xfe, 0x00]));
    expect(refused([...model, "--prompt-file", binary])).toBe(`tsgc: --prompt-file ${binary}: it is not UTF-8 text`);
    const blank = join(dir, "blank.txt");
    writeFileSync(blank, "\n \n");
    expect(refused([...model, "--prompt-file", blank])).toBe(`tsgc: --prompt-file ${blank}: the message is empty`);
    expect(refused([...model, "--prompt", ""])).toBe("tsgc: --prompt: the message is empty");
    expect(refused([...model, "--prompt", "Hi", "--prompt", " "])).toBe("tsgc: --prompt (prompt 2): the message is empty");
    expect(refused([...model, "--prompt", "-"], "\n")).toBe("tsgc: --prompt - (the standard input): the message is empty");
  });
});
