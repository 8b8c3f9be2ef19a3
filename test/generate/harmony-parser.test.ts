// The incremental harmony output parser, fed exact token sequences (openai/harmony's test data where it has
// some, and sequences encoded with the o200k_harmony tokenizer) one token at a time.
import { describe, expect, it } from "vitest";
import { HarmonyOutputParser, parseHarmonyHeader, type HarmonyOutputEvent } from "../../src/generate/harmony-parser.js";
import { HARMONY_TOKENS, HarmonyTokenizer } from "../../src/generate/tokenizer.js";

const tok = HarmonyTokenizer.instance();

function parse(tokens: readonly number[], options: ConstructorParameters<typeof HarmonyOutputParser>[0] = {}) {
  const parser = new HarmonyOutputParser(options);
  const steps = tokens.map((t) => parser.push(t));
  const tail = parser.finish();
  const events = [...steps.flat(), ...tail];
  const text = (type: "reasoning" | "content") => events.filter((e): e is Extract<HarmonyOutputEvent, { type: typeof type }> => e.type === type).map((e) => e.text).join("");
  const args = (index: number) => events.filter((e) => e.type === "tool-arguments" && e.index === index).map((e) => (e.type === "tool-arguments" ? e.text : "")).join("");
  return { parser, steps, events, reasoning: text("reasoning"), content: text("content"), args };
}

describe("harmony output parser", () => {
  it("parses the reference's simple tool call token for token (test_simple_tool_call)", () => {
    // The model's output after `<|start|>assistant`: analysis, then a call addressed to a bare recipient with content type `code`.
    const response = [
      200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 290, 11122, 306, 40510, 16842, 1416, 1309, 316, 1199, 37342, 170154, 4584, 13, 200007, 200006,
      173781, 200005, 35644, 316, 28, 29712, 170154, 3490, 200008, 10848, 7693, 1243, 392, 173844, 18583,
    ];
    const { parser } = parse(response);
    expect(parser.messages.map(({ role, channel, recipient, contentType, content }) => ({ role, channel, recipient, contentType, content }))).toEqual([
      { role: "assistant", channel: "analysis", recipient: undefined, contentType: undefined, content: 'User asks: "What is the weather in Tokyo?" We need to use lookup_weather tool.' },
      { role: "assistant", channel: "analysis", recipient: "lookup_weather", contentType: "code", content: '{"location": "Tokyo"}' },
    ]);
    // Neither is addressed to functions.*: both are reasoning, no tool call.
    expect(parser.messages.map((m) => m.kind)).toEqual(["reasoning", "reasoning"]);
    expect(parser.toolCallCount).toBe(0);
  });

  it("streams analysis as reasoning, a functions call as a tool call and final as content", () => {
    const output =
      "<|channel|>analysis<|message|>Need the weather.<|end|>" +
      '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>';
    const ids = tok.encodeWithSpecials(output);
    expect(ids.slice(0, 3)).toEqual([HARMONY_TOKENS.channel, 35644, HARMONY_TOKENS.message]);
    const { parser, events, reasoning, content, args, steps } = parse(ids);
    expect(reasoning).toBe("Need the weather.");
    expect(content).toBe("");
    expect(events.filter((e) => e.type === "tool-call")).toEqual([{ type: "tool-call", message: 1, index: 0, name: "get_weather" }]);
    expect(args(0)).toBe('{"location":"Tokyo"}');
    expect(parser.turnEndToken).toBe(HARMONY_TOKENS.call);
    const call = parser.messages[1]!;
    expect(call).toMatchObject({ role: "assistant", channel: "commentary", recipient: "functions.get_weather", contentType: "<|constrain|>json", kind: "tool-call", toolName: "get_weather", endToken: HARMONY_TOKENS.call });
    // The call's name arrives with <|message|>, before any argument text.
    const messageAt = ids.lastIndexOf(HARMONY_TOKENS.message);
    expect(steps[messageAt]).toEqual([{ type: "tool-call", message: 1, index: 0, name: "get_weather" }]);
    expect(steps.slice(0, messageAt).flat().some((e) => e.type === "tool-arguments")).toBe(false);

    const answer = parse(tok.encodeWithSpecials("<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>"));
    expect(answer.reasoning).toBe("Simple.");
    expect(answer.content).toBe("2 + 2 = 4.");
    expect(answer.parser.turnEndToken).toBe(HARMONY_TOKENS.return);
    expect(answer.parser.messages.map((m) => m.endToken)).toEqual([HARMONY_TOKENS.end, HARMONY_TOKENS.return]);
  });

  it("finds the recipient before or after the channel, with <|constrain|> touching it (the reference's three layouts)", () => {
    for (const header of [
      "<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json",
      "<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json",
      "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json",
    ]) {
      const { parser, args } = parse(tok.encodeWithSpecials(`${header}<|message|>{"latitude":48.8566,"longitude":2.3522}<|call|>`), { role: null });
      expect(parser.messages).toHaveLength(1);
      expect(parser.messages[0]).toMatchObject({ channel: "commentary", recipient: "functions.get_weather", contentType: "<|constrain|>json", toolName: "get_weather" });
      expect(args(0)).toBe('{"latitude":48.8566,"longitude":2.3522}');
    }
  });

  it("parses three messages of the reference's streamable-parser data, the last a tool's answer", () => {
    const text =
      "<|channel|>analysis<|message|>User asks who is president. Let's browse.<|end|>" +
      '<|start|>assistant<|channel|>commentary to=browser.search code<|message|>{"query": "current US president"}<|call|>' +
      '<|start|>browser.search to=assistant<|channel|>commentary<|message|>{"result": "https://openai.com/"}<|end|>';
    const { parser, content } = parse(tok.encodeWithSpecials(text));
    expect(parser.messages.map((m) => [m.role, m.name, m.recipient, m.kind])).toEqual([
      ["assistant", undefined, undefined, "reasoning"],
      ["assistant", undefined, "browser.search", "reasoning"], // a built-in tool this server does not run
      ["tool", "browser.search", "assistant", "reasoning"],
    ]);
    expect(content).toBe("");
  });

  it("never splits a UTF-8 character across events, and keeps each message's bytes to itself", () => {
    const heart = tok.encode("💖");
    expect(heart.length).toBeGreaterThanOrEqual(2);
    const parser = new HarmonyOutputParser({ role: null });
    for (const t of tok.encodeWithSpecials("<|start|>assistant<|channel|>final<|message|>")) parser.push(t);
    expect(parser.push(heart[0]!)).toEqual([]);
    expect(parser.lastTokenRole).toBe("content");
    expect(parser.push(heart[1]!)).toEqual([{ type: "content", message: 0, text: "💖" }]);

    // 9552 alone is an incomplete UTF-8 sequence: it must not leak into the next message.
    const leak = parse([...tok.encodeWithSpecials("<|start|>assistant<|message|>"), 9552, 9552, HARMONY_TOKENS.end, ...tok.encodeWithSpecials("<|start|>assistant<|message|>Hi<|end|>")], { role: null });
    expect(leak.parser.messages).toHaveLength(2);
    expect(leak.parser.messages[1]!.content).toBe("Hi");
    expect(leak.events.map((e) => ("text" in e ? e.text : "")).join("")).not.toContain("\uFFFD\uFFFDHi");

    // Held-back bytes are flushed when the output ends (the reference's " \uFFFDHi").
    const flushed = parse([...tok.encodeWithSpecials("<|start|>assistant<|message|>"), 9552, ...tok.encode("Hi")], { role: null });
    expect(flushed.content).toBe(" \uFFFDHi");
    expect(flushed.parser.messages[0]!.endToken).toBeUndefined();

    // Multilingual text round-trips exactly through per-token events.
    const text = "Grüße, 世界! Ça va? 🤖🎉 ok";
    expect(parse(tok.encodeWithSpecials(`<|channel|>final<|message|>${text}<|return|>`)).content).toBe(text);
  });

  it("degrades malformed output to content and never throws", () => {
    // A header cut by <|end|>: the reference's non-strict result ("Hello" on commentary), here as content.
    const cut = parse(tok.encodeWithSpecials("<|channel|>commentary Hello<|end|>"));
    expect(cut.content).toBe("Hello");
    expect(cut.parser.messages[0]).toMatchObject({ channel: "commentary", kind: "content" });
    // An unknown channel.
    expect(parse(tok.encodeWithSpecials("<|channel|>banana<|message|>peel<|end|>")).content).toBe("peel");
    // A header that never ends streams as content once it passes maxHeaderTokens.
    const words = "lorem ipsum dolor sit amet ".repeat(20).trim();
    const long = parse(tok.encode(words), { maxHeaderTokens: 16 });
    expect(long.content).toBe(words);
    expect(long.steps.slice(0, 16).flat()).toEqual([]);
    expect(long.steps[16]!.length).toBe(1);
    // A header still open when the output ends.
    expect(parse(tok.encodeWithSpecials("<|channel|>final")).parser.messages).toHaveLength(1);
    // A header that does not parse (no role after <|start|>, leftover words) still yields its message's text as content.
    expect(parse(tok.encodeWithSpecials("<|start|><|channel|>final<|message|>a<|end|><|start|>assistant<|channel|>final x y z<|message|>b<|end|>"), { role: null }).content).toBe("ab");
    // Text outside any message, stray special tokens and an empty channel.
    const stray = parse([HARMONY_TOKENS.end, ...tok.encode("loose"), HARMONY_TOKENS.endOfText, ...tok.encodeWithSpecials("<|start|>assistant<|channel|><|message|>x<|end|>")]);
    expect(stray.content).toBe("loosex");
    // A call addressed to `functions.` with no name is not a tool call.
    expect(parse(tok.encodeWithSpecials("<|channel|>commentary to=functions.<|message|>{}<|call|>")).parser.toolCallCount).toBe(0);
  });

  it("starts a header at <|start|> or <|channel|> wherever the model puts one", () => {
    // <|start|> inside a body ends the message (the model left out <|end|>).
    const a = parse(tok.encodeWithSpecials("<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>answer<|return|>"));
    expect([a.reasoning, a.content]).toEqual(["think", "answer"]);
    // <|channel|> right after <|end|> (the model left out <|start|>assistant).
    const b = parse(tok.encodeWithSpecials("<|channel|>analysis<|message|>think<|end|><|channel|>final<|message|>answer<|return|>"));
    expect([b.reasoning, b.content]).toEqual(["think", "answer"]);
    expect(b.events.filter((e) => e.type === "content")[0]).toMatchObject({ message: 1 });
    // Two tool calls get indices 0 and 1.
    const two = parse(tok.encodeWithSpecials('<|channel|>commentary to=functions.a json<|message|>{}<|end|><|start|>assistant to=functions.b<|channel|>commentary json<|message|>{"x":1}<|call|>'));
    expect(two.events.filter((e) => e.type === "tool-call").map((e) => (e.type === "tool-call" ? [e.index, e.name] : []))).toEqual([[0, "a"], [1, "b"]]);
    expect(two.args(1)).toBe('{"x":1}');
  });

  it("parses headers as the reference does", () => {
    expect(parseHarmonyHeader("assistant<|channel|>commentary to=functions.f <|constrain|>json", undefined)).toEqual({ role: "assistant", channel: "commentary", recipient: "functions.f", contentType: "<|constrain|>json" });
    expect(parseHarmonyHeader("<|channel|>final", "assistant")).toEqual({ role: "assistant", channel: "final" });
    expect(parseHarmonyHeader("functions.f to=assistant<|channel|>commentary", undefined)).toEqual({ role: "tool", name: "functions.f", recipient: "assistant", channel: "commentary" });
    expect(parseHarmonyHeader(" to=python<|channel|>analysis code", "assistant")).toEqual({ role: "assistant", channel: "analysis", recipient: "python", contentType: "code" });
    expect(parseHarmonyHeader("<|channel|>", "assistant")).toBeUndefined();
    expect(parseHarmonyHeader("stranger things happen", undefined)).toBeUndefined();
    expect(parseHarmonyHeader("<|channel|>final a b c", "assistant")).toBeUndefined();
  });
});
