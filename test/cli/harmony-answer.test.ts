// How the CLI prints a harmony answer (tsgc chat, tsgc generate --prompt), fed scripted token streams one token at a
// time: the final answer alone by default, the reasoning marked with --show-reasoning, tool calls named with their
// arguments, no character split across writes, and output that is not harmony printed as the server reads it.
import { describe, expect, it } from "vitest";
import type { TokenOutput } from "../../src/engine/api.js";
import { AnswerPrinter, harmonyFlagsGiven, parseReasoningEffort } from "../../src/cli/harmony-answer.js";
import { HARMONY_TOKENS, HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { ChatChoiceOutput } from "../../src/server/chat-output.js";

const tok = HarmonyTokenizer.instance();

/** Prints `tokens` (or harmony text) through an AnswerPrinter; returns every write and the printer. */
function print(output: string | readonly number[], options: ConstructorParameters<typeof AnswerPrinter>[1] = {}) {
  const ids = typeof output === "string" ? tok.encodeWithSpecials(output) : output;
  const writes: string[] = [];
  const printer = new AnswerPrinter((t) => void writes.push(t), options);
  for (const t of ids) printer.push(t);
  printer.finish();
  return { printed: writes.join(""), writes, printer, ids };
}

/** What the server's chat completion makes of the same tokens (every function offered). */
function served(ids: readonly number[], toolNames: readonly string[] = []) {
  const choice = new ChatChoiceOutput({ tokenizer: tok, stop: [], toolNames: new Set(toolNames), logprobs: false });
  for (const token of ids) choice.push({ token, text: "" } as TokenOutput);
  choice.finish();
  return { content: choice.content, reasoning: choice.reasoning, toolCalls: choice.toolCalls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })) };
}

const ANSWER = "<|channel|>analysis<|message|>User asks about the sky.<|end|><|start|>assistant<|channel|>final<|message|>It is blue.<|return|>";

describe("AnswerPrinter", () => {
  it("prints the final channel alone, and keeps the reasoning", () => {
    const { printed, printer } = print(ANSWER);
    expect(printed).toBe("It is blue.");
    expect(printer.text).toBe("It is blue.");
    expect(printer.reasoning).toBe("User asks about the sky.");
    expect(printer.toolCalls).toEqual([]);
    expect(printer.messages.map((m) => m.channel)).toEqual(["analysis", "final"]);
  });

  it("prints the reasoning marked 'thinking:', a blank line before the answer, dimmed on a terminal", () => {
    expect(print(ANSWER, { showReasoning: true }).printed).toBe("thinking: User asks about the sky.\n\nIt is blue.");
    const dimmed = print(ANSWER, { showReasoning: true, dim: true }).printed;
    // each write of reasoning is dimmed on its own (joined up here), the answer after the reset is not
    expect(dimmed.replaceAll("\x1b[0m\x1b[2m", "")).toBe("\x1b[2mthinking: User asks about the sky.\x1b[0m\n\nIt is blue.");
    // the answer itself is never dimmed
    expect(print(ANSWER, { dim: true }).printed).toBe("It is blue.");
  });

  it("names a call to a function with its arguments, and keeps it", () => {
    const call = '<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>';
    const { printed, printer, ids } = print(call);
    expect(printed).toBe('tool call: functions.get_weather {"city":"Paris"}');
    expect(printer.toolCalls).toEqual([{ name: "get_weather", arguments: '{"city":"Paris"}' }]);
    expect(printer.text).toBe("");
    expect(print(call, { showReasoning: true }).printed).toBe('thinking: Need the weather.\n\ntool call: functions.get_weather {"city":"Paris"}');
    // as the server reports it when the request offers the function
    expect(served(ids, ["get_weather"])).toEqual({ content: "", reasoning: "Need the weather.", toolCalls: printer.toolCalls });
  });

  it("joins later messages of one kind with a newline, as the server does, and separates sections by a blank line", () => {
    const output =
      "<|channel|>analysis<|message|>First.<|end|><|start|>assistant<|channel|>commentary<|message|>Let me look.<|end|>" +
      "<|start|>assistant<|channel|>analysis<|message|>Second.<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>";
    const { printed, printer, ids } = print(output, { showReasoning: true });
    expect(printed).toBe("thinking: First.\n\nLet me look.\n\nthinking: Second.\n\nDone.");
    expect({ content: printer.text, reasoning: printer.reasoning }).toEqual({ content: "Let me look.\nDone.", reasoning: "First.\nSecond." });
    expect(served(ids)).toMatchObject({ content: printer.text, reasoning: printer.reasoning });
    expect(print(output).printed).toBe("Let me look.\nDone.");
  });

  it("never splits a character across writes", () => {
    // 🦀 is three tokens; 日本語 two
    const { writes, printed, ids } = print("<|channel|>final<|message|>Rust 🦀 and 日本語 🦀<|return|>");
    expect(ids.length).toBeGreaterThan(10);
    expect(printed).toBe("Rust 🦀 and 日本語 🦀");
    for (const w of writes) {
      expect(w).not.toContain("\ufffd");
      expect(w).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
    }
    // it streams: the answer arrives in several writes, not at the end
    expect(writes.length).toBeGreaterThan(3);
  });

  it("prints output that is not harmony as the server reads it, never throwing", () => {
    const cases: { name: string; ids: number[]; text: string }[] = [
      // random weights: ordinary tokens and no header at all, which the parser takes for a header until the end
      { name: "no header", ids: tok.encode("garbage words 🦀 here"), text: "garbage words 🦀 here" },
      { name: "a header cut by <|end|>", ids: tok.encodeWithSpecials("<|channel|>final no message<|end|>"), text: "no message" },
      { name: "text outside any message", ids: tok.encodeWithSpecials("<|channel|>analysis<|message|>Hmm.<|end|> stray text<|return|>"), text: " stray text" },
      { name: "an unknown channel", ids: tok.encodeWithSpecials("<|channel|>weird<|message|>Shown.<|end|>"), text: "Shown." },
      { name: "<|message|> alone", ids: tok.encodeWithSpecials("<|message|>Bare.<|return|>"), text: "Bare." },
      { name: "stray special tokens", ids: [HARMONY_TOKENS.constrain, ...tok.encodeWithSpecials("<|message|>A<|message|>B<|channel|>C<|end|>")], text: "ABC" },
      { name: "nothing", ids: [], text: "" },
    ];
    for (const c of cases) {
      const { printed, printer } = print(c.ids);
      expect(printed, c.name).toBe(c.text);
      expect(printer.text, c.name).toBe(c.text);
      expect(printer.text, c.name).toBe(served(c.ids).content);
      expect(printer.reasoning, c.name).toBe(served(c.ids).reasoning);
    }
    // a header that never ends streams as text once it is too long to be one
    const long = tok.encode("word ".repeat(200));
    const writes: string[] = [];
    const printer = new AnswerPrinter((t) => void writes.push(t));
    for (const t of long) printer.push(t);
    expect(writes.join("")).not.toBe("");
    printer.finish();
    expect(printer.text).toBe(served(long).content);
  });
});

describe("harmony flags", () => {
  it("parses --reasoning-effort and lists the flags given", () => {
    expect(parseReasoningEffort("high")).toBe("high");
    expect(() => parseReasoningEffort("max")).toThrow('--reasoning-effort must be low, medium or high, got "max"');
    expect(harmonyFlagsGiven({})).toEqual([]);
    expect(harmonyFlagsGiven({ system: "", reasoningEffort: "low", showReasoning: true })).toEqual(["--system", "--reasoning-effort", "--show-reasoning"]);
  });
});
