// The o200k_harmony tokenizer of gpt-oss: o200k_base's byte-pair ranks (from the js-tiktoken package, pure JS, no
// network) with the special-token table of tiktoken's `o200k_harmony` encoding (tiktoken_ext/openai_public.py),
// which the gpt-oss reference implementation's tokenizer reproduces:
//
//   <|startoftext|> 199998   <|endoftext|> 199999   <|return|> 200002   <|constrain|> 200003   <|channel|> 200005
//   <|start|> 200006   <|end|> 200007   <|message|> 200008   <|call|> 200012   <|endofprompt|> 200018 (from o200k_base)
//   <|reserved_N|> for every other id in 200000‥201087
//
// (openai/harmony's Rust crate names 200018 `<|reserved_200018|>` instead; tiktoken maps both names to 200018 and we
// do the same, decoding it as `<|endofprompt|>`.) Ordinary ids are 0‥199997; the model's vocabulary is 201088.
import { Tiktoken } from "js-tiktoken/lite";
import o200kBase from "js-tiktoken/ranks/o200k_base";

/** Named special tokens of o200k_harmony. */
export const HARMONY_TOKENS = {
  startOfText: 199998,
  endOfText: 199999,
  return: 200002,
  constrain: 200003,
  channel: 200005,
  start: 200006,
  end: 200007,
  message: 200008,
  call: 200012,
  endOfPrompt: 200018,
} as const;

/** Tokens after which the assistant is done sampling: `<|return|>` (final answer) and `<|call|>` (tool call). */
export const HARMONY_STOP_TOKENS: readonly number[] = [HARMONY_TOKENS.return, HARMONY_TOKENS.call];

/** Number of token ids gpt-oss's embedding and unembedding cover. */
export const O200K_HARMONY_VOCAB_SIZE = 201088;
/** First id above o200k_base's byte-pair ranks. */
const FIRST_SPECIAL_ID = 199998;

/** The full special-token table (string → id), as tiktoken's o200k_harmony defines it. */
export function o200kHarmonySpecialTokens(): Record<string, number> {
  const table: Record<string, number> = {};
  // Reserved names first, so that the named tokens registered after them win when an id has two names (200018).
  for (let id = 200013; id < O200K_HARMONY_VOCAB_SIZE; id++) table[`<|reserved_${id}|>`] = id;
  Object.assign(table, {
    "<|endoftext|>": 199999,
    "<|endofprompt|>": 200018,
    "<|startoftext|>": 199998,
    "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011,
    "<|call|>": 200012,
  });
  return table;
}

export class HarmonyTokenizer {
  readonly vocabSize = O200K_HARMONY_VOCAB_SIZE;
  private readonly bpe: Tiktoken;
  private readonly specials: ReadonlyMap<string, number>;
  private readonly specialNames: ReadonlyMap<number, string>;

  private static shared: HarmonyTokenizer | undefined;

  /** Building the byte-pair tables takes about half a second; share one instance. */
  static instance(): HarmonyTokenizer {
    HarmonyTokenizer.shared ??= new HarmonyTokenizer();
    return HarmonyTokenizer.shared;
  }

  constructor() {
    const table = o200kHarmonySpecialTokens();
    this.bpe = new Tiktoken({ pat_str: o200kBase.pat_str, bpe_ranks: o200kBase.bpe_ranks, special_tokens: table });
    this.specials = new Map(Object.entries(table));
    const names = new Map<number, string>();
    for (const [name, id] of Object.entries(table)) names.set(id, name); // later (named) entries win
    this.specialNames = names;
  }

  /** Ordinary text: a special token's string (e.g. "<|end|>" typed by a user) is encoded as plain text. */
  encode(text: string): number[] {
    return this.bpe.encode(text, [], []);
  }

  /** Text in which special-token strings stand for their ids (rendered prompts, test data). */
  encodeWithSpecials(text: string): number[] {
    return this.bpe.encode(text, "all", []);
  }

  /** Concatenated text of `ids`; an id outside the vocabulary throws. Incomplete UTF-8 becomes U+FFFD. */
  decode(ids: readonly number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the o200k_harmony vocabulary (0‥${this.vocabSize - 1})`);
      }
    }
    return this.bpe.decode([...ids]);
  }

  isSpecial(id: number): boolean {
    return id >= FIRST_SPECIAL_ID && id < this.vocabSize;
  }

  /** The id of a special token's string, e.g. "<|start|>" → 200006. */
  specialTokenId(text: string): number | undefined {
    return this.specials.get(text);
  }

  /** The string of a special id, e.g. 200006 → "<|start|>". */
  specialTokenName(id: number): string | undefined {
    return this.specialNames.get(id);
  }
}

/**
 * Turns a stream of token ids into text as it arrives. A character split across tokens (emoji, CJK) is held back
 * until its last byte arrives, so no U+FFFD is emitted for it; `flush()` returns whatever is still held.
 */
export class StreamingDecoder {
  private pending: number[] = [];
  /** UTF-8 characters are at most 4 bytes, so 4 tokens always complete one unless the text really holds U+FFFD. */
  private static readonly MAX_HELD = 4;

  constructor(private readonly tokenizer: HarmonyTokenizer) {}

  push(id: number): string {
    this.pending.push(id);
    const text = this.tokenizer.decode(this.pending);
    if (text.endsWith("\uFFFD") && this.pending.length < StreamingDecoder.MAX_HELD) return "";
    this.pending = [];
    return text;
  }

  flush(): string {
    const text = this.pending.length > 0 ? this.tokenizer.decode(this.pending) : "";
    this.pending = [];
    return text;
  }
}
