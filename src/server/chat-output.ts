// One chat choice's output: engine tokens → harmony parser → the API's message (reasoning_content, content,
// tool_calls) and, while streaming, its deltas. Stop strings apply to the content only. Text of a later message of
// the same kind is joined with a newline, in the deltas too, so the streamed deltas add up to the whole message.
// A call to a function the request did not offer (or any call with tool_choice "none") is not a tool call the
// client could run: its arguments go to the reasoning.
import type { TokenOutput } from "../engine/api.js";
import { HarmonyOutputParser, type HarmonyOutputEvent } from "../generate/harmony-parser.js";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";
import { chatTokenLogprob, type ChatTokenLogprob } from "./logprobs.js";
import { StopStringMatcher } from "./stop-strings.js";
import { randomId } from "./ids.js";

export interface ChatToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; arguments: string };
}

export interface ChatDeltaToolCall {
  readonly index: number;
  readonly id?: string;
  readonly type?: "function";
  readonly function: { readonly name?: string; readonly arguments?: string };
}

export interface ChatDelta {
  content?: string;
  reasoning_content?: string;
  tool_calls?: ChatDeltaToolCall[];
}

/** What one token (or the end) adds: a delta when there is something to show, with the tokens it covers. */
export interface ChatStep {
  readonly delta: ChatDelta | undefined;
  /** Log-probabilities of content tokens since the last delta. */
  readonly logprobs: ChatTokenLogprob[];
  /** Token ids since the last delta. */
  readonly tokenIds: number[];
}

export interface ChatChoiceOptions {
  readonly tokenizer: HarmonyTokenizer;
  readonly stop: readonly string[];
  /** Functions the request offered; calls to others are reasoning. */
  readonly toolNames: ReadonlySet<string>;
  readonly logprobs: boolean;
}

export class ChatChoiceOutput {
  content = "";
  reasoning = "";
  readonly toolCalls: ChatToolCall[] = [];
  readonly tokenIds: number[] = [];
  readonly logprobs: ChatTokenLogprob[] = [];
  reasoningTokens = 0;

  private readonly parser: HarmonyOutputParser;
  private readonly matcher: StopStringMatcher;
  /** Parser tool-call index → index in toolCalls (undefined: routed to reasoning). */
  private readonly callIndex = new Map<number, number>();
  private lastMessage: { reasoning: number; content: number } = { reasoning: -1, content: -1 };
  private pendingLogprobs: ChatTokenLogprob[] = [];
  private pendingIds: number[] = [];

  constructor(private readonly options: ChatChoiceOptions) {
    this.parser = new HarmonyOutputParser({ tokenizer: options.tokenizer });
    this.matcher = new StopStringMatcher(options.stop);
  }

  /** A stop string ended the content: the engine request should be aborted. */
  get stopped(): boolean {
    return this.matcher.stoppedBy !== undefined;
  }

  push(output: TokenOutput): ChatStep {
    this.tokenIds.push(output.token);
    this.pendingIds.push(output.token);
    const events = this.parser.push(output.token);
    const role = this.parser.lastTokenRole;
    if (role === "reasoning") this.reasoningTokens++;
    if (role === "content" && this.options.logprobs) {
      const entry = chatTokenLogprob(output, this.options.tokenizer);
      if (entry !== undefined) {
        this.logprobs.push(entry);
        this.pendingLogprobs.push(entry);
      }
    }
    return this.step(events, false);
  }

  finish(): ChatStep {
    return this.step(this.stopped ? [] : this.parser.finish(), true);
  }

  private step(events: readonly HarmonyOutputEvent[], end: boolean): ChatStep {
    const delta: ChatDelta = {};
    for (const e of events) this.apply(e, delta);
    if (end && !this.stopped) this.addContent(this.matcher.flush(), delta);
    const empty = delta.content === undefined && delta.reasoning_content === undefined && delta.tool_calls === undefined;
    if (empty && !end) return { delta: undefined, logprobs: [], tokenIds: [] };
    const step = { delta: empty ? undefined : delta, logprobs: this.pendingLogprobs, tokenIds: this.pendingIds };
    this.pendingLogprobs = [];
    this.pendingIds = [];
    return step;
  }

  private addContent(text: string, delta: ChatDelta): void {
    if (text === "") return;
    this.content += text;
    delta.content = (delta.content ?? "") + text;
  }

  private addReasoning(text: string, message: number, delta: ChatDelta): void {
    if (text === "") return;
    const joined = message !== this.lastMessage.reasoning && this.reasoning !== "" ? `\n${text}` : text;
    this.lastMessage.reasoning = message;
    this.reasoning += joined;
    delta.reasoning_content = (delta.reasoning_content ?? "") + joined;
  }

  private apply(e: HarmonyOutputEvent, delta: ChatDelta): void {
    if (this.stopped) return;
    switch (e.type) {
      case "reasoning":
        this.addReasoning(e.text, e.message, delta);
        return;
      case "content": {
        const joined = e.message !== this.lastMessage.content && this.content !== "" ? `\n${e.text}` : e.text;
        this.lastMessage.content = e.message;
        this.addContent(this.matcher.push(joined), delta);
        return;
      }
      case "tool-call": {
        if (!this.options.toolNames.has(e.name)) return;
        const index = this.toolCalls.length;
        const call: ChatToolCall = { id: `call_${randomId()}`, type: "function", function: { name: e.name, arguments: "" } };
        this.toolCalls.push(call);
        this.callIndex.set(e.index, index);
        (delta.tool_calls ??= []).push({ index, id: call.id, type: "function", function: { name: e.name, arguments: "" } });
        return;
      }
      case "tool-arguments": {
        const index = this.callIndex.get(e.index);
        if (index === undefined) {
          this.addReasoning(e.text, e.message, delta);
          return;
        }
        this.toolCalls[index]!.function.arguments += e.text;
        const calls = (delta.tool_calls ??= []);
        const last = calls[calls.length - 1];
        if (last !== undefined && last.index === index) calls[calls.length - 1] = { ...last, function: { ...last.function, arguments: (last.function.arguments ?? "") + e.text } };
        else calls.push({ index, function: { arguments: e.text } });
        return;
      }
    }
  }
}
