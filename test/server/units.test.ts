// The server's pure parts: stop-string matching as text streams, and chat messages as a harmony conversation.
import { describe, expect, it } from "vitest";
import { renderHarmony } from "../../src/generate/harmony.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { chatCompletionRequest, chatPrompt, StopStringMatcher } from "../../src/server/index.js";

describe("stop strings", () => {
  const run = (stops: string[], pieces: string[]) => {
    const m = new StopStringMatcher(stops);
    const sent = pieces.map((p) => m.push(p));
    return { sent, rest: m.flush(), stoppedBy: m.stoppedBy };
  };

  it("hold back text that may begin a stop string until the next text decides", () => {
    expect(run(["STOP"], ["Hello S", "T", "OP and more"])).toEqual({ sent: ["Hello ", "", ""], rest: "", stoppedBy: "STOP" });
    expect(run(["STOP"], ["Hello S", "T", "ay"])).toEqual({ sent: ["Hello ", "", "STay"], rest: "", stoppedBy: undefined });
    expect(run(["STOP"], ["end ST"])).toEqual({ sent: ["end "], rest: "ST", stoppedBy: undefined });
  });

  it("stop at the earliest of several stop strings, and send nothing after it", () => {
    expect(run(["world", "lo w"], ["hello world"])).toEqual({ sent: ["hel"], rest: "", stoppedBy: "lo w" });
    expect(run(["\n\n"], ["a\n", "\nb", "c"])).toEqual({ sent: ["a", "", ""], rest: "", stoppedBy: "\n\n" });
    expect(run([], ["anything"])).toEqual({ sent: ["anything"], rest: "", stoppedBy: undefined });
    expect(run([""], ["empty stops are ignored"])).toEqual({ sent: ["empty stops are ignored"], rest: "", stoppedBy: undefined });
  });
});

describe("chat messages as harmony", () => {
  const tok = HarmonyTokenizer.instance();
  const prompt = (body: Record<string, unknown>) => chatPrompt(chatCompletionRequest.parse({ model: "m", ...body }), "2025-01-02", tok);

  it("merges system and developer messages into the developer instructions, in order", () => {
    const p = prompt({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "text", text: "Use " }, { type: "text", text: "French." }] },
        { role: "user", content: "Hi" },
      ],
      reasoning_effort: "low",
    });
    const text = renderHarmony(p.messages);
    expect(text).toContain("Current date: 2025-01-02\n\nReasoning: low\n\n");
    expect(text).toContain("<|start|>developer<|message|># Instructions\n\nBe brief.\n\nUse French.<|end|><|start|>user<|message|>Hi<|end|><|start|>assistant");
    expect(p.promptIds).toEqual(tok.encodeWithSpecials(text));
  });

  it("renders assistant turns: reasoning only for the turn in progress, a preamble before tool calls", () => {
    const p = prompt({
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: {} } } }],
      messages: [
        { role: "user", content: "Q1" },
        { role: "assistant", reasoning_content: "old thoughts", content: "A1" },
        { role: "user", content: "Q2" },
        { role: "assistant", reasoning: "new thoughts", content: "Let me look.", tool_calls: [{ id: "c1", type: "function", function: { name: "lookup", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "c1", content: [{ type: "text", text: "found" }] },
      ],
    });
    const text = renderHarmony(p.messages);
    expect(text).not.toContain("old thoughts");
    expect(text).toContain(
      "<|start|>user<|message|>Q1<|end|><|start|>assistant<|channel|>final<|message|>A1<|end|><|start|>user<|message|>Q2<|end|>" +
        "<|start|>assistant<|channel|>analysis<|message|>new thoughts<|end|>" +
        "<|start|>assistant<|channel|>commentary<|message|>Let me look.<|end|>" +
        "<|start|>assistant to=functions.lookup<|channel|>commentary <|constrain|>json<|message|>{}<|call|>" +
        "<|start|>functions.lookup to=assistant<|channel|>commentary<|message|>found<|end|><|start|>assistant",
    );
    expect(text).toContain("type lookup = (_: {\n}) => any;");
    expect([...p.toolNames]).toEqual(["lookup"]);
  });
});
