// Incremental parser of gpt-oss output in the harmony format, over token ids. A completion prompt ends with
// `<|start|>assistant`, so the output starts inside a header:
//
//   <|channel|>analysis<|message|>User asks…<|end|>
//   <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>
//   <|start|>assistant<|channel|>final<|message|>It is sunny.<|return|>
//
// Tokens go in one at a time; out come events by what the text is for: analysis text → reasoning, final (and
// commentary without a recipient: a preamble for the user) → content, a message addressed `to=functions.NAME` → a
// tool call (its name once the header is complete, then its JSON arguments as they stream). Headers are parsed as
// openai/harmony's StreamableParser does (src/encoding.rs: the recipient may stand before or after the channel,
// `<|constrain|>` may touch the recipient). Each message's text is decoded by its own StreamingDecoder, so no
// UTF-8 character is split and no bytes leak from one message into the next.
//
// Model output is not trusted to be well formed, and nothing here throws on it: a header that never reaches
// `<|message|>` (cut by a stop token, the end of the output, or longer than maxHeaderTokens), a header that does
// not parse, an unknown channel, text outside any message: all of it degrades to content (or reasoning, when the
// analysis channel is known), never to a tool call.
import type { HarmonyMessage, HarmonyRole } from "./harmony.js";
import { FUNCTIONS_NAMESPACE } from "./harmony.js";
import { HARMONY_TOKENS, HarmonyTokenizer, StreamingDecoder } from "./tokenizer.js";

/** What a message's text is for. */
export type HarmonyOutputKind = "reasoning" | "content" | "tool-call";

export type HarmonyOutputEvent =
  /** Text of message `message` (an index into the output's messages) on the analysis channel, or to a built-in tool. */
  | { readonly type: "reasoning"; readonly message: number; readonly text: string }
  /** Text for the user: the final channel, a commentary preamble, or malformed output. */
  | { readonly type: "content"; readonly message: number; readonly text: string }
  /** A call to function `name` begins: the `index`-th tool call of the output. */
  | { readonly type: "tool-call"; readonly message: number; readonly index: number; readonly name: string }
  /** More of tool call `index`'s JSON arguments. */
  | { readonly type: "tool-arguments"; readonly message: number; readonly index: number; readonly text: string };

/** What the last token pushed was: part of a header, text of some kind, or a control token (message boundaries). */
export type HarmonyTokenRole = "header" | "reasoning" | "content" | "tool-arguments" | "control";

/** A message of the output, complete or (while it streams, or cut by the end of the output) partial. */
export interface ParsedHarmonyMessage extends HarmonyMessage {
  readonly content: string;
  readonly kind: HarmonyOutputKind;
  /** For kind "tool-call": the function's name (the recipient without `functions.`). */
  readonly toolName?: string;
  /** The token that ended it: `<|end|>`, `<|return|>`, `<|call|>`; undefined when the output ended inside it. */
  readonly endToken?: number;
}

export interface HarmonyParserOptions {
  /**
   * The role whose header the output starts in: the prompt ended with `<|start|>{role}` (the default, "assistant").
   * null: the output starts with `<|start|>`.
   */
  readonly role?: HarmonyRole | null;
  readonly tokenizer?: HarmonyTokenizer;
  /** A header longer than this is taken for text: its tokens become content (default 128). */
  readonly maxHeaderTokens?: number;
}

const ROLES: ReadonlySet<string> = new Set<HarmonyRole>(["system", "developer", "user", "assistant", "tool"]);
/** Recipients of the reference's built-in tools, which this parser reports as reasoning (no server runs them). */
const BUILTIN_TOOLS: ReadonlySet<string> = new Set(["python", "browser", "container"]);
const FUNCTION_PREFIX = `${FUNCTIONS_NAMESPACE}.`;
const CHANNEL_MARK = "<|channel|>";
const CONSTRAIN_MARK = "<|constrain|>";
const END_TOKENS: ReadonlySet<number> = new Set([HARMONY_TOKENS.end, HARMONY_TOKENS.return, HARMONY_TOKENS.call]);

interface Header {
  readonly role: HarmonyRole;
  readonly name?: string;
  readonly channel?: string;
  readonly recipient?: string;
  readonly contentType?: string;
}

/** Splits the channel off a decoded header: `<|channel|>` followed by a word ending at whitespace or `<`. */
function splitChannel(text: string): { channel?: string; rest: string } | undefined {
  const at = text.indexOf(CHANNEL_MARK);
  if (at < 0) return { rest: text };
  const after = text.slice(at + CHANNEL_MARK.length);
  const end = after.search(/[\s<]/);
  const channel = end < 0 ? after : after.slice(0, end);
  if (channel === "") return undefined;
  return { channel, rest: text.slice(0, at) + (end < 0 ? "" : after.slice(end)) };
}

/** A header's text parsed as the reference does; undefined when it does not parse. */
export function parseHarmonyHeader(text: string, knownRole: HarmonyRole | undefined): Header | undefined {
  const split = splitChannel(text);
  if (split === undefined) return undefined;
  let rest = split.rest.trim();
  if (rest.includes(CONSTRAIN_MARK)) rest = rest.replaceAll(CONSTRAIN_MARK, ` ${CONSTRAIN_MARK}`).trim();
  const parts = rest.split(/[ \t\n\r\f]+/).filter((p) => p !== "");
  let role: HarmonyRole;
  let name: string | undefined;
  if (knownRole !== undefined) {
    role = knownRole;
  } else {
    const first = parts[0];
    if (first === undefined) return undefined;
    if (ROLES.has(first)) role = first as HarmonyRole;
    // An author that is no role but a tool's name (`functions.get_weather to=assistant`): a tool message.
    else if (first.includes(".") && (parts.length > 1 || first.startsWith("to="))) {
      parts.shift();
      role = "tool";
      name = first;
    } else return undefined;
  }
  if (parts[0] === role) parts.shift();
  let recipient: string | undefined;
  let contentType: string | undefined;
  if (parts.length > 0) {
    const count = parts.length;
    const last = parts.pop()!;
    if (last.startsWith("to=")) recipient = last.slice(3);
    else if (count === 1) recipient = last;
    else {
      contentType = last;
      const raw = parts.pop();
      if (raw !== undefined) recipient = raw.startsWith("to=") ? raw.slice(3) : raw;
    }
  }
  if (parts.length > 0) return undefined;
  return {
    role,
    ...(name !== undefined ? { name } : {}),
    ...(split.channel !== undefined ? { channel: split.channel } : {}),
    ...(recipient !== undefined ? { recipient } : {}),
    ...(contentType !== undefined ? { contentType } : {}),
  };
}

/** What a message with this header is for. */
export function classifyHarmonyHeader(header: Header): HarmonyOutputKind {
  if (header.role !== "assistant") return "reasoning"; // the model writing a tool's (or user's) turn: not an answer
  const to = header.recipient;
  if (to !== undefined && to !== "all") {
    if (to.startsWith(FUNCTION_PREFIX) && to.length > FUNCTION_PREFIX.length) return "tool-call";
    if (to.includes(".") || BUILTIN_TOOLS.has(to)) return "reasoning";
  }
  return header.channel === "analysis" ? "reasoning" : "content";
}

type State =
  | { readonly at: "start" }
  | { readonly at: "header"; readonly role: HarmonyRole | undefined; readonly tokens: number[] }
  | { readonly at: "body"; readonly header: Header; readonly kind: HarmonyOutputKind; readonly decoder: StreamingDecoder; text: string; readonly toolIndex: number };

export class HarmonyOutputParser {
  private readonly tokenizer: HarmonyTokenizer;
  private readonly maxHeaderTokens: number;
  private state: State;
  private readonly parsed: ParsedHarmonyMessage[] = [];
  private toolCalls = 0;
  private role: HarmonyTokenRole = "control";
  private ended: number | undefined;

  constructor(options: HarmonyParserOptions = {}) {
    this.tokenizer = options.tokenizer ?? HarmonyTokenizer.instance();
    this.maxHeaderTokens = options.maxHeaderTokens ?? 128;
    const role = options.role === undefined ? "assistant" : options.role;
    this.state = role === null ? { at: "start" } : { at: "header", role, tokens: [] };
  }

  /** Messages completed so far (the one streaming now is not among them until it ends, or finish()). */
  get messages(): readonly ParsedHarmonyMessage[] {
    return this.parsed;
  }

  /** What the last token pushed was. */
  get lastTokenRole(): HarmonyTokenRole {
    return this.role;
  }

  /** Tool calls begun so far. */
  get toolCallCount(): number {
    return this.toolCalls;
  }

  /** `<|return|>` or `<|call|>` when one ended the assistant's turn, else undefined. */
  get turnEndToken(): number | undefined {
    return this.ended;
  }

  push(token: number): HarmonyOutputEvent[] {
    const events: HarmonyOutputEvent[] = [];
    this.role = "control";
    const s = this.state;
    if (token === HARMONY_TOKENS.start) {
      this.closeCurrent(events, undefined);
      this.state = { at: "header", role: undefined, tokens: [] };
    } else if (END_TOKENS.has(token)) {
      this.closeCurrent(events, token);
      this.state = { at: "start" };
      if (token !== HARMONY_TOKENS.end) this.ended = token;
    } else if (token === HARMONY_TOKENS.message) {
      if (s.at === "header") this.openBody(this.headerOf(s.tokens, s.role), events);
      else if (s.at === "start") this.openBody(undefined, events);
      // inside a body, a stray <|message|> is dropped
    } else if (s.at === "header") {
      s.tokens.push(token);
      this.role = "header";
      if (s.tokens.length > this.maxHeaderTokens) {
        this.headerAsText(s, events);
        if (this.state.at === "body") this.role = this.state.kind === "tool-call" ? "tool-arguments" : this.state.kind;
      }
    } else if (this.tokenizer.isSpecial(token)) {
      // <|channel|> where a message should start: the model left out `<|start|>assistant`.
      if (s.at === "start" && (token === HARMONY_TOKENS.channel || token === HARMONY_TOKENS.constrain)) {
        this.state = { at: "header", role: "assistant", tokens: [token] };
        this.role = "header";
      }
      // any other special token inside a body or between messages carries no text: dropped
    } else {
      if (s.at === "start") this.openBody(undefined, events); // text outside any message
      this.bodyText(token, events);
    }
    return events;
  }

  /** The output ended (a stop token, the token limit, an abort): flushes held-back bytes and closes the open message. */
  finish(): HarmonyOutputEvent[] {
    const events: HarmonyOutputEvent[] = [];
    this.closeCurrent(events, undefined);
    this.state = { at: "start" };
    return events;
  }

  private headerOf(tokens: readonly number[], role: HarmonyRole | undefined): Header | undefined {
    return parseHarmonyHeader(this.tokenizer.decode(tokens), role);
  }

  private openBody(header: Header | undefined, events: HarmonyOutputEvent[]): void {
    const h: Header = header ?? { role: "assistant" };
    const kind = classifyHarmonyHeader(h);
    const toolIndex = kind === "tool-call" ? this.toolCalls++ : -1;
    this.state = { at: "body", header: h, kind, decoder: new StreamingDecoder(this.tokenizer), text: "", toolIndex };
    if (kind === "tool-call") events.push({ type: "tool-call", message: this.parsed.length, index: toolIndex, name: h.recipient!.slice(FUNCTION_PREFIX.length) });
  }

  private emitText(text: string, events: HarmonyOutputEvent[]): void {
    const s = this.state;
    if (s.at !== "body" || text === "") return;
    s.text += text;
    const message = this.parsed.length;
    if (s.kind === "tool-call") events.push({ type: "tool-arguments", message, index: s.toolIndex, text });
    else events.push({ type: s.kind, message, text });
  }

  private bodyText(token: number, events: HarmonyOutputEvent[]): void {
    const s = this.state;
    if (s.at !== "body") return;
    this.role = s.kind === "tool-call" ? "tool-arguments" : s.kind;
    this.emitText(s.decoder.push(token), events);
  }

  /**
   * A header that will not end well becomes the start of a message's text: its channel (if any) picks the kind,
   * never a tool call, and the rest of its text (role word and markers dropped) is the message's first text.
   */
  private headerAsText(s: Extract<State, { at: "header" }>, events: HarmonyOutputEvent[]): void {
    const decoder = new StreamingDecoder(this.tokenizer);
    const ordinary = s.tokens.filter((t) => !this.tokenizer.isSpecial(t) || t === HARMONY_TOKENS.channel);
    const text = ordinary.map((t) => decoder.push(t)).join("");
    const split = splitChannel(text) ?? { rest: text.replace(CHANNEL_MARK, "") };
    let rest = split.rest.replaceAll(CHANNEL_MARK, "").replace(/^\s+/, "");
    const firstWord = /^\S+/.exec(rest)?.[0];
    if (s.role === undefined && firstWord !== undefined && ROLES.has(firstWord)) rest = rest.slice(firstWord.length).replace(/^\s+/, "");
    else if (s.role !== undefined && firstWord === s.role) rest = rest.slice(firstWord.length).replace(/^\s+/, "");
    const header: Header = { role: "assistant", ...(split.channel !== undefined ? { channel: split.channel } : {}) };
    const kind = classifyHarmonyHeader(header);
    this.state = { at: "body", header, kind, decoder, text: "", toolIndex: -1 };
    this.emitText(rest, events);
  }

  private closeCurrent(events: HarmonyOutputEvent[], endToken: number | undefined): void {
    let s = this.state;
    if (s.at === "header") {
      if (s.tokens.length === 0) return;
      this.headerAsText(s, events);
      s = this.state;
    }
    if (s.at !== "body") return;
    this.emitText(s.decoder.flush(), events);
    const h = s.header;
    this.parsed.push({
      role: h.role,
      ...(h.name !== undefined ? { name: h.name } : {}),
      ...(h.channel !== undefined ? { channel: h.channel } : {}),
      ...(h.recipient !== undefined ? { recipient: h.recipient } : {}),
      ...(h.contentType !== undefined ? { contentType: h.contentType } : {}),
      content: s.text,
      kind: s.kind,
      ...(s.kind === "tool-call" ? { toolName: h.recipient!.slice(FUNCTION_PREFIX.length) } : {}),
      ...(endToken !== undefined ? { endToken } : {}),
    });
    this.state = { at: "start" };
  }
}
