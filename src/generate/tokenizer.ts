// The o200k_harmony tokenizer of gpt-oss: o200k_base's byte-pair ranks and split pattern (data from the js-tiktoken
// package, no network) with the special-token table of tiktoken's `o200k_harmony` encoding
// (tiktoken_ext/openai_public.py), which the gpt-oss reference implementation's tokenizer reproduces:
//
//   <|startoftext|> 199998   <|endoftext|> 199999   <|return|> 200002   <|constrain|> 200003   <|channel|> 200005
//   <|start|> 200006   <|end|> 200007   <|message|> 200008   <|call|> 200012   <|endofprompt|> 200018 (from o200k_base)
//   <|reserved_N|> for every other id in 200000‥201087
//
// (openai/harmony's Rust crate names 200018 `<|reserved_200018|>` instead; tiktoken maps both names to 200018 and we
// do the same, decoding it as `<|endofprompt|>`.) Ordinary ids are 0‥199997; the model's vocabulary is 201088.
//
// Encoding follows tiktoken (src/lib.rs) exactly: the pattern splits text into pieces, a piece that is a token is
// that token, and a longer one is merged pair by pair, lowest rank first and leftmost among equals. A piece of
// fewer than 100 bytes is merged by scanning for the best pair (tiktoken's `_byte_pair_merge`); a longer one (a
// 100,000-letter word is one piece) by a heap of candidate merges (tiktoken's `_byte_pair_merge_large`), so
// encoding time grows as n log n, not n²; both give the same ids.
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

/** A rank no pair has: "no merge here". */
const NO_RANK = 0xffffffff;
/** tiktoken merges pieces of at least this many bytes with the heap. */
const LARGE_PIECE_BYTES = 100;

/** o200k_base's byte-pair table: token bytes, one latin1 character per byte, ↔ rank (= token id). */
class BytePairRanks {
  private readonly rankOf = new Map<string, number>();
  private readonly bytesOf: Buffer[] = [];

  constructor(compressed: string) {
    // js-tiktoken's format: lines of "<tag> <first rank> <base64 token> <base64 token> …", ranks consecutive
    for (const line of compressed.split("\n")) {
      if (line === "") continue;
      const [, first, ...tokens] = line.split(" ");
      const offset = Number.parseInt(first ?? "", 10);
      tokens.forEach((token, i) => {
        const bytes = Buffer.from(token, "base64");
        this.rankOf.set(bytes.toString("latin1"), offset + i);
        this.bytesOf[offset + i] = bytes;
      });
    }
  }

  rank(bytes: string): number {
    return this.rankOf.get(bytes) ?? NO_RANK;
  }

  bytes(rank: number): Buffer | undefined {
    return this.bytesOf[rank];
  }

  /** The ids of one piece (its UTF-8 bytes as latin1 characters). */
  encodePiece(piece: string, out: number[]): void {
    const whole = this.rankOf.get(piece);
    if (whole !== undefined) out.push(whole);
    else if (piece.length < LARGE_PIECE_BYTES) this.mergeSmall(piece, out);
    else this.mergeLarge(piece, out);
  }

  /** tiktoken's `_byte_pair_merge`: parts[i] starts at starts[i]; ranks[i] is the rank of parts i and i+1 merged. */
  private mergeSmall(piece: string, out: number[]): void {
    const starts: number[] = [];
    const ranks: number[] = [];
    for (let i = 0; i < piece.length - 1; i++) {
      starts.push(i);
      ranks.push(this.rank(piece.slice(i, i + 2)));
    }
    starts.push(piece.length - 1, piece.length);
    ranks.push(NO_RANK, NO_RANK);
    // the rank of parts i and i+1 once parts i+1 and i+2 are merged (read before parts i+1 is removed)
    const rankAfter = (i: number): number => (i + 3 < starts.length ? this.rank(piece.slice(starts[i]!, starts[i + 3]!)) : NO_RANK);
    for (;;) {
      let best = -1;
      let bestRank = NO_RANK;
      for (let i = 0; i < ranks.length - 1; i++) {
        if (ranks[i]! < bestRank) {
          bestRank = ranks[i]!;
          best = i;
        }
      }
      if (best < 0) break;
      if (best > 0) ranks[best - 1] = rankAfter(best - 1);
      ranks[best] = rankAfter(best);
      starts.splice(best + 1, 1);
      ranks.splice(best + 1, 1);
    }
    for (let i = 0; i + 1 < starts.length; i++) out.push(this.rank(piece.slice(starts[i]!, starts[i + 1]!)));
  }

  /**
   * tiktoken's `_byte_pair_merge_large`: the same merges in the same order, found with a min-heap of candidate
   * merges keyed (rank, start). A token starting at byte s ends at end[s]; the one before it starts at prev[s].
   * nextEnd[s]/nextRank[s] describe the merge of the token at s with its right neighbour; a heap entry whose rank
   * is no longer nextRank[s] was invalidated by an earlier merge and is skipped.
   */
  private mergeLarge(piece: string, out: number[]): void {
    const n = piece.length;
    const prev = new Int32Array(n);
    const end = new Int32Array(n);
    const nextEnd = new Int32Array(n);
    const nextRank = new Uint32Array(n).fill(NO_RANK);
    const ownRank = new Uint32Array(n).fill(NO_RANK);
    const heap = new MergeHeap();
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      end[i] = i + 1;
      nextEnd[i] = i + 2;
    }
    for (let i = 0; i < n - 1; i++) {
      const r = this.rank(piece.slice(i, i + 2));
      if (r !== NO_RANK) {
        nextRank[i] = r;
        heap.push(r, i);
      }
    }
    const proposeMerge = (start: number, until: number): void => {
      nextEnd[start] = until;
      nextRank[start] = NO_RANK;
      if (until > n) return;
      const r = this.rank(piece.slice(start, until));
      if (r !== NO_RANK) {
        nextRank[start] = r;
        heap.push(r, start);
      }
    };
    while (heap.size > 0) {
      const { rank, start: left } = heap.pop();
      if (rank !== nextRank[left]) continue;
      const right = end[left]!;
      const rightEnd = nextEnd[left]!;
      const rightNextEnd = nextEnd[right]!;
      ownRank[left] = rank;
      end[left] = rightEnd;
      proposeMerge(left, rightNextEnd);
      if (rightEnd < n) prev[rightEnd] = left;
      if (left > 0) proposeMerge(prev[left]!, rightEnd);
      nextRank[right] = NO_RANK;
    }
    for (let i = 0; i < n; i = end[i]!) out.push(ownRank[i] !== NO_RANK ? ownRank[i]! : this.rank(piece.slice(i, end[i]!)));
  }
}

/** A binary min-heap of (rank, start), ordered by rank then start: tiktoken's merge order. */
class MergeHeap {
  // rank · 2^32 + start: one number per entry (ranks < 2^18, starts < 2^32: exact in a double)
  private readonly keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(rank: number, start: number): void {
    const keys = this.keys;
    let i = keys.push(rank * 4294967296 + start) - 1;
    const key = keys[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (keys[parent]! <= key) break;
      keys[i] = keys[parent]!;
      i = parent;
    }
    keys[i] = key;
  }

  pop(): { rank: number; start: number } {
    const keys = this.keys;
    const top = keys[0]!;
    const last = keys.pop()!;
    if (keys.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= keys.length) break;
        const child = left + 1 < keys.length && keys[left + 1]! < keys[left]! ? left + 1 : left;
        if (keys[child]! >= last) break;
        keys[i] = keys[child]!;
        i = child;
      }
      keys[i] = last;
    }
    const rank = Math.floor(top / 4294967296);
    return { rank, start: top - rank * 4294967296 };
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

export class HarmonyTokenizer {
  readonly vocabSize = O200K_HARMONY_VOCAB_SIZE;
  private readonly ranks: BytePairRanks;
  private readonly pieces: RegExp;
  private readonly specialPattern: RegExp;
  private readonly specials: ReadonlyMap<string, number>;
  private readonly specialNames: ReadonlyMap<number, string>;
  private readonly specialBytes: ReadonlyMap<number, Buffer>;
  // ignoreBOM: a leading U+FEFF is text the model produced, not a byte-order mark to drop
  private readonly utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

  private static shared: HarmonyTokenizer | undefined;

  /** Building the byte-pair tables takes about half a second; share one instance. */
  static instance(): HarmonyTokenizer {
    HarmonyTokenizer.shared ??= new HarmonyTokenizer();
    return HarmonyTokenizer.shared;
  }

  constructor() {
    const table = o200kHarmonySpecialTokens();
    this.ranks = new BytePairRanks(o200kBase.bpe_ranks);
    this.pieces = new RegExp(o200kBase.pat_str, "gu");
    this.specialPattern = new RegExp(Object.keys(table).map(escapeRegExp).join("|"), "g");
    this.specials = new Map(Object.entries(table));
    const names = new Map<number, string>();
    for (const [name, id] of Object.entries(table)) names.set(id, name); // later (named) entries win
    this.specialNames = names;
    this.specialBytes = new Map([...names].map(([id, name]) => [id, Buffer.from(name, "utf8")]));
  }

  /** Ordinary text: a special token's string (e.g. "<|end|>" typed by a user) is encoded as plain text. */
  encode(text: string): number[] {
    const out: number[] = [];
    this.encodeOrdinary(text, out);
    return out;
  }

  /** Text in which special-token strings stand for their ids (rendered prompts, test data). */
  encodeWithSpecials(text: string): number[] {
    const out: number[] = [];
    let start = 0;
    for (const match of text.matchAll(this.specialPattern)) {
      this.encodeOrdinary(text.slice(start, match.index), out);
      out.push(this.specials.get(match[0])!);
      start = match.index + match[0].length;
    }
    this.encodeOrdinary(text.slice(start), out);
    return out;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    for (const match of text.matchAll(this.pieces)) this.ranks.encodePiece(Buffer.from(match[0], "utf8").toString("latin1"), out);
  }

  /** Concatenated text of `ids`; an id outside the vocabulary throws. Incomplete UTF-8 becomes U+FFFD. */
  decode(ids: readonly number[]): string {
    const parts: Buffer[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the o200k_harmony vocabulary (0‥${this.vocabSize - 1})`);
      }
      const bytes = this.ranks.bytes(id) ?? this.specialBytes.get(id);
      if (bytes !== undefined) parts.push(bytes);
    }
    return this.utf8.decode(Buffer.concat(parts));
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
