import { Tiktoken } from "js-tiktoken/lite";
import o200kBase from "js-tiktoken/ranks/o200k_base";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/ir/host-tensor.js";
import { HARMONY_STOP_TOKENS, HARMONY_TOKENS, HarmonyTokenizer, StreamingDecoder, o200kHarmonySpecialTokens } from "../../src/generate/tokenizer.js";

const tok = HarmonyTokenizer.instance();

describe("o200k_harmony tokenizer", () => {
  it("encodes text to the ids OpenAI's harmony guide shows", () => {
    // From the openai-cookbook harmony article (StreamableParser example) and openai/harmony's test data.
    expect(tok.encode('User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.')).toEqual([
      1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17, 16842, 12295, 81645, 13, 51441, 6052, 13,
    ]);
    expect(tok.encode("2 + 2 = 4.")).toEqual([17, 659, 220, 17, 314, 220, 19, 13]);
    expect(tok.encode("analysis")).toEqual([35644]);
    expect(tok.encode("assistant")).toEqual([173781]);
    expect(tok.encode("final")).toEqual([17196]);
    expect(tok.encode("hello world")).toEqual([24912, 2375]); // openai/harmony tests/test_harmony.py
    expect(tok.encode("<|start|>")).toEqual([27, 91, 5236, 91, 29]); // same test, special disallowed → plain text
  });

  it("decodes a whole harmony completion, specials included, and encodes it back", () => {
    const ids = [
      200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17, 16842, 12295, 81645, 13, 51441, 6052, 13, 200007,
      200006, 173781, 200005, 17196, 200008, 17, 659, 220, 17, 314, 220, 19, 13, 200002,
    ];
    const text =
      '<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.<|end|>' +
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>";
    expect(tok.decode(ids)).toBe(text);
    expect(tok.encodeWithSpecials(text)).toEqual(ids);
  });

  it("maps every harmony special token to its id", () => {
    const named: [string, number][] = [
      ["<|startoftext|>", 199998],
      ["<|endoftext|>", 199999],
      ["<|return|>", 200002],
      ["<|constrain|>", 200003],
      ["<|channel|>", 200005],
      ["<|start|>", 200006],
      ["<|end|>", 200007],
      ["<|message|>", 200008],
      ["<|call|>", 200012],
      ["<|endofprompt|>", 200018],
      ["<|reserved_200000|>", 200000],
      ["<|reserved_200013|>", 200013],
      ["<|reserved_200018|>", 200018],
      ["<|reserved_201087|>", 201087],
    ];
    for (const [text, id] of named) {
      expect(tok.encodeWithSpecials(text)).toEqual([id]);
      expect(tok.specialTokenId(text)).toBe(id);
    }
    expect(tok.specialTokenName(200018)).toBe("<|endofprompt|>");
    expect(tok.decode([200006, 200013, 201087])).toBe("<|start|><|reserved_200013|><|reserved_201087|>");
    expect(HARMONY_TOKENS).toMatchObject({ start: 200006, end: 200007, message: 200008, channel: 200005, return: 200002, call: 200012 });
    expect(HARMONY_STOP_TOKENS).toEqual([200002, 200012]);
    // Every id from 199998 to 201087 is a special token; nothing above.
    const ids = new Set(Object.values(o200kHarmonySpecialTokens()));
    for (let id = 199998; id < 201088; id++) expect(ids.has(id)).toBe(true);
    expect(Math.max(...ids)).toBe(201087);
    expect(tok.encodeWithSpecials("<|reserved_201088|>").length).toBeGreaterThan(1);
  });

  it("treats special-token strings in ordinary text as text", () => {
    const ids = tok.encode("<|end|>");
    expect(ids).not.toContain(200007);
    expect(ids.every((id) => id < 199998)).toBe(true);
    expect(tok.decode(ids)).toBe("<|end|>");
  });

  it("round-trips varied Unicode exactly", () => {
    const samples = [
      "",
      "Hello, world!",
      "  leading and trailing spaces  \n\n\ttabs\r\nCRLF",
      "naïve café — “quotes” … ½ ° €",
      "日本語のテキストと中文字符，한국어 텍스트",
      "emoji 👋🏽 👩‍👩‍👧‍👦 🇫🇷 and ZWJ sequences",
      "Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย",
      "math ∑_{i=1}^{n} x² ≤ ∞; code: const x = a?.b ?? `t${1}`;",
      "combining e\u0301 vs é, lone surrogate-free astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀",
      "12345678901234567890 3.14159 1e-9 0xdeadbeef",
      "I'm we're they'LL DON'T",
    ];
    for (const s of samples) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it("rejects ids outside the vocabulary", () => {
    expect(() => tok.decode([201088])).toThrow("token id 201088 is outside the o200k_harmony vocabulary (0‥201087)");
    expect(() => tok.decode([-1])).toThrow(/outside/);
    expect(tok.vocabSize).toBe(201088);
    expect(tok.isSpecial(199997)).toBe(false);
    expect(tok.isSpecial(199998)).toBe(true);
  });

  it("streams text without splitting multi-byte characters", () => {
    const text = "héllo 👋🏽 世界 👩‍👩‍👧‍👦!";
    const ids = tok.encode(text);
    // At least one character spans several tokens, or this test would not test the hold-back.
    expect(ids.some((id) => tok.decode([id]).includes("\uFFFD"))).toBe(true);
    const decoder = new StreamingDecoder(tok);
    const pieces = ids.map((id) => decoder.push(id));
    pieces.push(decoder.flush());
    expect(pieces.join("")).toBe(text);
    expect(pieces.some((p) => p.includes("\uFFFD"))).toBe(false);
  });
});

describe("o200k_harmony encoding of long pieces", () => {
  // js-tiktoken's encoder (quadratic in a piece's length) is the reference for pieces short enough for it
  const reference = new Tiktoken({ pat_str: o200kBase.pat_str, bpe_ranks: o200kBase.bpe_ranks, special_tokens: o200kHarmonySpecialTokens() });

  it("encodes 100,000 characters of one word in well under 5 s (linear, not quadratic), and decodes them back", () => {
    const word = "a".repeat(100_000);
    const started = performance.now();
    const ids = tok.encode(word);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(tok.decode(ids)).toBe(word);
    // the run is cut into the same tokens all along: a tenth of the text is about a tenth of the tokens
    expect(Math.abs(tok.encode(word.slice(0, 10_000)).length * 10 - ids.length)).toBeLessThan(20);
  });

  it("gives the reference's ids for long words, digits, punctuation and whitespace runs", () => {
    const samples = [
      "a".repeat(150), "ab".repeat(400), "x".repeat(99), "x".repeat(100), "x".repeat(101),
      "Supercalifragilistic".repeat(30), "=".repeat(300), " ".repeat(250) + "end", "\n".repeat(120) + "x",
      "ééé".repeat(60), "日本".repeat(80), "😀".repeat(40), "https://example.com/" + "path/".repeat(60),
    ];
    for (const s of samples) expect(tok.encode(s), s.slice(0, 20)).toEqual(reference.encode(s, [], []));
  });

  it("gives the reference's ids for random text of every kind of character, specials included", () => {
    const alphabet = ["a", "B", "z", "e", "ing", " ", "  ", "\n", "\t", "0", "7", "42", ".", ",", "'s", "!", "?", "-", "é", "ß", "中", "文", "😀", "👋🏽", "<|start|>", "<|end|>", "<|message|>"];
    const rand = seededRandom(11);
    for (let n = 0; n < 60; n++) {
      let text = "";
      const length = 5 + Math.floor(rand() * 200);
      while (text.length < length) text += alphabet[Math.floor(rand() * alphabet.length)]!;
      expect(tok.encode(text)).toEqual(reference.encode(text, [], []));
      expect(tok.encodeWithSpecials(text)).toEqual(reference.encode(text, "all", []));
    }
  });
});
