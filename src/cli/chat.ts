// `tsgc chat`: a multi-turn chat in the terminal on the engine. The conversation is kept as harmony messages
// across turns (reasoning of answered turns dropped, as for the server), each answer streams through the harmony
// output parser and is printed as `tsgc generate --prompt` prints one (harmony-answer.ts): the final answer, the
// reasoning too with --show-reasoning. Ctrl-C aborts the answer in progress; a second Ctrl-C (or /exit, or the end
// of input) quits. The engine factory is injected, as for serve.
import { createInterface } from "node:readline";
import type { Command } from "commander";
import type { Engine } from "../engine/api.js";
import { conversationStart, dropCompletedReasoning, encodeHarmony, type HarmonyMessage, type ReasoningEffort } from "../generate/harmony.js";
import type { ParsedHarmonyMessage } from "../generate/harmony-parser.js";
import { HARMONY_STOP_TOKENS, HarmonyTokenizer } from "../generate/tokenizer.js";
import type { OpenEngine } from "../server/index.js";
import { type EngineFlags, engineOptions } from "./engine-options.js";
import { AnswerPrinter, dimmed, harmonyFlags, type HarmonyFlags } from "./harmony-answer.js";
import { addEngineArguments } from "./serve.js";

export interface ChatSessionOptions {
  readonly engine: Engine;
  readonly input: NodeJS.ReadableStream;
  readonly output: NodeJS.WritableStream;
  /** readline's terminal mode (line editing, Ctrl-C as an event, dimmed reasoning); default: whether output is a TTY. */
  readonly terminal?: boolean;
  /** Developer instructions (the "system prompt"). */
  readonly instructions?: string;
  readonly reasoningEffort?: ReasoningEffort;
  readonly showReasoning?: boolean;
  /** Most tokens per answer; default: what the context leaves. */
  readonly maxTokens?: number;
  readonly temperature?: number;
  readonly topP?: number;
  /** `YYYY-MM-DD` for the system message; default today's (UTC). */
  readonly currentDate?: string;
}

/** A parsed answer message as conversation history: text on the final channel, reasoning on analysis; tool calls (no tools run here) dropped. */
function historyOf(messages: readonly ParsedHarmonyMessage[], interrupted: boolean): HarmonyMessage[] {
  const out: HarmonyMessage[] = [];
  for (const m of messages) {
    if (m.role !== "assistant" || m.kind === "tool-call" || m.content === "") continue;
    if (m.kind === "content") out.push({ role: "assistant", channel: "final", content: m.content });
    else if (!interrupted) out.push({ role: "assistant", channel: "analysis", content: m.content });
  }
  return out;
}

export async function runChatSession(o: ChatSessionOptions): Promise<void> {
  const { engine, output } = o;
  if (engine.model.tokenizer !== "o200k_harmony") throw new Error(`tsgc chat needs a model with the o200k_harmony tokenizer; ${engine.model.name} has none (serve it and send token ids instead)`);
  const tokenizer = HarmonyTokenizer.instance();
  const terminal = o.terminal ?? (output as { isTTY?: boolean }).isTTY === true;
  const write = (text: string) => void output.write(text);
  const dim = (text: string) => dimmed(text, terminal);
  const start = conversationStart({
    ...(o.instructions !== undefined ? { instructions: o.instructions } : {}),
    reasoningEffort: o.reasoningEffort ?? "medium",
    currentDate: o.currentDate ?? new Date().toISOString().slice(0, 10),
  });
  let conversation: HarmonyMessage[] = [];
  let answering: AbortController | undefined;
  let interrupts = 0;
  let quitting = false;

  const rl = createInterface({ input: o.input, output, terminal, prompt: "> " });
  rl.on("SIGINT", () => {
    interrupts++;
    if (interrupts >= 2) {
      quitting = true;
      answering?.abort();
      write("\n");
      rl.close();
    } else if (answering !== undefined) {
      answering.abort();
    } else {
      write("\n(Ctrl-C again, or /exit, quits)\n");
      rl.prompt();
    }
  });

  async function answer(line: string): Promise<void> {
    conversation.push({ role: "user", content: line });
    const promptIds = encodeHarmony([...start, ...dropCompletedReasoning(conversation)], { nextRole: "assistant" }, tokenizer);
    const room = engine.model.maxContext - promptIds.length;
    if (room < 1) {
      conversation.pop();
      write(`(the conversation, ${promptIds.length} tokens, no longer fits the model's context of ${engine.model.maxContext}; /reset starts over)\n`);
      return;
    }
    const controller = new AbortController();
    answering = controller;
    let stream;
    try {
      stream = engine.generate({
        promptIds,
        maxTokens: Math.min(o.maxTokens ?? room, room),
        temperature: o.temperature ?? 1,
        ...(o.topP !== undefined ? { topP: o.topP } : {}),
        stopTokenIds: [...HARMONY_STOP_TOKENS, ...engine.model.eosTokenIds],
        signal: controller.signal,
      });
    } catch (err) {
      conversation.pop();
      answering = undefined;
      write(`(${err instanceof Error ? err.message : String(err)})\n`);
      return;
    }
    const printer = new AnswerPrinter(write, { tokenizer, dim: terminal, showReasoning: o.showReasoning === true });
    for await (const token of stream) printer.push(token.token);
    printer.finish();
    if (printer.toolCalls.length > 0) write(dim("\n(tsgc chat runs no tools)"));
    const summary = await stream.done;
    answering = undefined;
    write("\n");
    if (summary.finishReason === "abort") write(dim("[interrupted]\n"));
    else if (summary.finishReason === "length") write(dim("[cut at the token limit]\n"));
    else if (summary.finishReason === "error") write(`(the engine failed: ${summary.error ?? "unknown error"})\n`);
    const said = historyOf(printer.messages, summary.finishReason === "abort");
    if (said.length === 0 && summary.finishReason !== "stop") conversation.pop(); // nothing was answered: forget the question too
    else conversation.push(...said);
  }

  write(dim(`tsgc chat: ${engine.model.name}; /reset starts over, /exit quits\n`));
  rl.prompt();
  for await (const raw of rl) {
    interrupts = 0;
    const line = raw.trim();
    if (line === "/exit" || line === "/quit") break;
    if (line === "/reset") {
      conversation = [];
      write(dim("(a new conversation)\n"));
    } else if (line !== "") {
      await answer(line);
    }
    if (quitting) break;
    rl.prompt();
  }
  answering?.abort();
  rl.close();
}

interface ChatFlags extends EngineFlags, HarmonyFlags {
  readonly maxTokens?: number;
  readonly temperature: number;
  readonly topP?: number;
}

export interface ChatDeps {
  readonly input?: NodeJS.ReadableStream;
  readonly output?: NodeJS.WritableStream;
  readonly terminal?: boolean;
}

export function registerChatCommand(program: Command, openEngine: OpenEngine, deps: ChatDeps = {}): Command {
  const command = program.command("chat").description("chat with a model in the terminal (harmony format, multi-turn; Ctrl-C stops an answer, twice quits)");
  return harmonyFlags(addEngineArguments(command))
    .option("--max-tokens <n>", "most tokens per answer", (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--max-tokens must be a positive integer, got "${v}"`);
      return n;
    })
    .option("--temperature <t>", "sampling temperature (0: greedy)", (v: string) => {
      const n = Number(v);
      if (!(n >= 0 && Number.isFinite(n))) throw new Error(`--temperature must be a number >= 0, got "${v}"`);
      return n;
    }, 1)
    .option("--top-p <p>", "sample within this probability mass", (v: string) => {
      const n = Number(v);
      if (!(n > 0 && n <= 1)) throw new Error(`--top-p must be in (0, 1], got "${v}"`);
      return n;
    })
    .action(async (model: string, flags: ChatFlags) => {
      const engine = await openEngine(engineOptions(flags, model));
      try {
        await runChatSession({
          engine,
          input: deps.input ?? process.stdin,
          output: deps.output ?? process.stdout,
          ...(deps.terminal !== undefined ? { terminal: deps.terminal } : {}),
          ...(flags.system !== undefined ? { instructions: flags.system } : {}),
          ...(flags.reasoningEffort !== undefined ? { reasoningEffort: flags.reasoningEffort } : {}),
          ...(flags.showReasoning === true ? { showReasoning: true } : {}),
          ...(flags.maxTokens !== undefined ? { maxTokens: flags.maxTokens } : {}),
          temperature: flags.temperature,
          ...(flags.topP !== undefined ? { topP: flags.topP } : {}),
        });
      } finally {
        await engine.close();
      }
    });
}
