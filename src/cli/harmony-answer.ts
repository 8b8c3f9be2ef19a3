// How the CLI shows a gpt-oss answer in the harmony format as it streams (`tsgc chat`, `tsgc generate --prompt`),
// and the flags that shape such a prompt and its display. The model's tokens go through the harmony output parser
// (src/generate/harmony-parser.ts); what comes out is written by what it is for:
//
//   thinking: The user asks…          the analysis channel, only with --show-reasoning
//
//   tool call: functions.get_weather {"location":"Tokyo"}
//
//   It is sunny.                      the final channel (and a commentary preamble): the answer
//
// A blank line separates sections; a later message of the same kind joins with a newline. Reasoning and tool calls
// are dimmed on a terminal. Each message's text is decoded by the parser's own streaming decoder, so no UTF-8
// character is split across writes. Output that is not well-formed harmony (random weights, a header cut short)
// degrades to answer text, as in the server: the parser never throws on it.
//
// What was said is kept as the server keeps a chat choice (src/server/chat-output.ts): `text` and `reasoning` join
// messages of one kind with a newline; every call to a function is kept (the CLI offers none, so none is run, but
// the caller is shown what the model asked for).
import type { Command } from "commander";
import type { ReasoningEffort } from "../generate/harmony.js";
import { HarmonyOutputParser, type HarmonyOutputEvent, type ParsedHarmonyMessage } from "../generate/harmony-parser.js";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";

export interface AnswerToolCall {
  readonly name: string;
  /** The JSON arguments as the model wrote them (not parsed: a random model's are rarely JSON). */
  readonly arguments: string;
}

export interface AnswerPrinterOptions {
  /** Also write the analysis channel, marked "thinking: ". */
  readonly showReasoning?: boolean;
  /** Dim reasoning and tool calls with ANSI codes (for a terminal). */
  readonly dim?: boolean;
  readonly tokenizer?: HarmonyTokenizer;
}

type Section = "reasoning" | "content" | "tool-call";

/** Faint text on a terminal (ANSI SGR 2), for what is not the answer. */
export function dimmed(text: string, on: boolean): string {
  return on ? `\x1b[2m${text}\x1b[0m` : text;
}

export class AnswerPrinter {
  /** The answer: final-channel text (and preambles, and malformed output), messages joined with a newline. */
  text = "";
  /** The analysis channel's text, messages joined with a newline (kept whether shown or not). */
  reasoning = "";
  private readonly calls: { name: string; arguments: string }[] = [];
  private readonly parser: HarmonyOutputParser;
  /** The section being written. */
  private showing: Section | undefined;
  /** The last message whose text went into `text` / `reasoning`: a different one joins with a newline. */
  private lastMessage = { reasoning: -1, content: -1 };
  /** Parser tool-call index → index in calls. */
  private readonly callIndex = new Map<number, number>();

  constructor(
    private readonly write: (text: string) => void,
    private readonly options: AnswerPrinterOptions = {},
  ) {
    this.parser = new HarmonyOutputParser(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {});
  }

  /** Calls to functions, in order. */
  get toolCalls(): readonly AnswerToolCall[] {
    return this.calls;
  }

  /** The parsed messages (complete ones, all of them after finish()). */
  get messages(): readonly ParsedHarmonyMessage[] {
    return this.parser.messages;
  }

  push(token: number): void {
    for (const e of this.parser.push(token)) this.apply(e);
  }

  /** The output ended: writes what the parser held back (a partial character, a header that never closed). */
  finish(): void {
    for (const e of this.parser.finish()) this.apply(e);
  }

  private dim(text: string): string {
    return dimmed(text, this.options.dim === true);
  }

  /** Starts writing `section`: a blank line after another section (each tool call is one), a header where it has one. */
  private enter(section: Section, header: string): void {
    const was = this.showing;
    this.showing = section;
    if (was === section && section !== "tool-call") return;
    if (was !== undefined) this.write("\n\n");
    if (header !== "") this.write(this.dim(header));
  }

  /** Text of a later message of the same kind begins on a new line (as the server joins them). */
  private joined(kind: "reasoning" | "content", message: number, text: string): string {
    const sofar = kind === "reasoning" ? this.reasoning : this.text;
    const out = message !== this.lastMessage[kind] && sofar !== "" ? `\n${text}` : text;
    this.lastMessage[kind] = message;
    return out;
  }

  private apply(e: HarmonyOutputEvent): void {
    switch (e.type) {
      case "reasoning": {
        const text = this.joined("reasoning", e.message, e.text);
        this.reasoning += text;
        if (this.options.showReasoning !== true) return;
        const continuing = this.showing === "reasoning";
        this.enter("reasoning", "thinking: ");
        // the newline joining two messages only matters within the section; a new section starts fresh
        this.write(this.dim(continuing ? text : e.text));
        return;
      }
      case "content": {
        const text = this.joined("content", e.message, e.text);
        this.text += text;
        const continuing = this.showing === "content";
        this.enter("content", "");
        this.write(continuing ? text : e.text);
        return;
      }
      case "tool-call":
        this.callIndex.set(e.index, this.calls.length);
        this.calls.push({ name: e.name, arguments: "" });
        this.enter("tool-call", `tool call: functions.${e.name} `);
        return;
      case "tool-arguments": {
        const call = this.calls[this.callIndex.get(e.index) ?? -1];
        if (call === undefined) return;
        call.arguments += e.text;
        this.write(this.dim(e.text));
        return;
      }
    }
  }
}

// ---- flags ----------------------------------------------------------------------------------------

export interface HarmonyFlags {
  readonly system?: string;
  readonly reasoningEffort?: ReasoningEffort;
  readonly showReasoning?: boolean;
}

export function parseReasoningEffort(v: string): ReasoningEffort {
  if (v !== "low" && v !== "medium" && v !== "high") throw new Error(`--reasoning-effort must be low, medium or high, got "${v}"`);
  return v;
}

/** The flags of a harmony prompt and its display (chat, generate --prompt). */
export function harmonyFlags(cmd: Command): Command {
  return cmd
    .option("--system <text>", "developer instructions (the system prompt)")
    .option("--reasoning-effort <effort>", "low, medium (the default) or high", parseReasoningEffort)
    .option("--show-reasoning", "print the model's reasoning (the analysis channel) before its answer");
}

/** The harmony flags given, by name ("--system", …): generate refuses them without a harmony prompt. */
export function harmonyFlagsGiven(flags: HarmonyFlags): string[] {
  return [
    ...(flags.system !== undefined ? ["--system"] : []),
    ...(flags.reasoningEffort !== undefined ? ["--reasoning-effort"] : []),
    ...(flags.showReasoning === true ? ["--show-reasoning"] : []),
  ];
}
