// The harmony chat format of gpt-oss, rendered as openai/harmony's renderer does (src/encoding.rs):
//
//   <|start|>{role}[ to={recipient}][<|channel|>{channel}][ {content type}]<|message|>{content}<|end|>
//
// ending with `<|call|>` instead of `<|end|>` for an assistant message addressed to a tool. A prompt for completion
// is the conversation followed by `<|start|>assistant`. Each piece of text is tokenized on its own (special tokens
// between them), exactly like the reference, so token ids match it, not only the text.
//
// The system message carries the model identity, dates, reasoning effort and the valid channels:
//
//   You are ChatGPT, a large language model trained by OpenAI.
//   Knowledge cutoff: 2024-06
//   Current date: 2025-06-28
//
//   Reasoning: high
//
//   # Valid channels: analysis, commentary, final. Channel must be included for every message.
//
// and the developer message holds the instructions (what other formats call the system prompt) and the function
// tools (harmony-tools.ts renders them as a TypeScript-like `functions` namespace):
//
//   # Instructions
//
//   {instructions}
//
//   # Tools
//   …
//
// When some developer message declares function tools, the system message's channel line gains the reference's
// note "Calls to these tools must go to the commentary channel: 'functions'." An assistant's call to a tool is
// `<|start|>assistant to=functions.NAME<|channel|>commentary <|constrain|>json<|message|>{arguments}<|call|>` and
// the tool's answer `<|start|>functions.NAME to=assistant<|channel|>commentary<|message|>{output}<|end|>`
// (toolCallMessage, toolResultMessage).
import { renderToolsSection, type FunctionTool, type ToolNamespace } from "./harmony-tools.js";
import { HarmonyTokenizer } from "./tokenizer.js";

export type HarmonyRole = "system" | "developer" | "user" | "assistant" | "tool";
export type ReasoningEffort = "low" | "medium" | "high";

export interface SystemContent {
  readonly type: "system";
  /** null leaves the line out. */
  readonly modelIdentity?: string | null;
  readonly reasoningEffort?: ReasoningEffort | null;
  readonly knowledgeCutoff?: string | null;
  /** The conversation's date, `YYYY-MM-DD`; absent by default, as in the reference. */
  readonly currentDate?: string | null;
  readonly validChannels?: readonly string[] | null;
  readonly channelRequired?: boolean;
  /**
   * Adds the reference's note that function calls go to the commentary channel. Rendering a conversation sets it
   * by itself when a developer message declares function tools, as the reference does.
   */
  readonly hasFunctionTools?: boolean;
}

export interface DeveloperContent {
  readonly type: "developer";
  readonly instructions?: string;
  /** Tool namespaces (see functionsNamespace), rendered after the instructions in name order. */
  readonly tools?: readonly ToolNamespace[];
}

/** The namespace that holds a request's function tools; a call to one is addressed `to=functions.NAME`. */
export const FUNCTIONS_NAMESPACE = "functions";

export function functionsNamespace(tools: readonly FunctionTool[]): ToolNamespace {
  return { name: FUNCTIONS_NAMESPACE, tools };
}

export interface HarmonyMessage {
  readonly role: HarmonyRole;
  /** For tool messages: the tool's name, which replaces the role in the header (e.g. "functions.get_weather"). */
  readonly name?: string;
  readonly content: string | SystemContent | DeveloperContent;
  readonly channel?: string;
  readonly recipient?: string;
  readonly contentType?: string;
}

/** The reference's SystemContent defaults (openai_harmony.SystemContent.new()). */
export const DEFAULT_SYSTEM_CONTENT = {
  type: "system",
  modelIdentity: "You are ChatGPT, a large language model trained by OpenAI.",
  reasoningEffort: "medium",
  knowledgeCutoff: "2024-06",
  currentDate: null,
  validChannels: ["analysis", "commentary", "final"],
  channelRequired: true,
  hasFunctionTools: false,
} as const satisfies SystemContent;

export function renderSystemContent(content: SystemContent): string {
  const c = { ...DEFAULT_SYSTEM_CONTENT, ...content };
  const sections: string[] = [];
  const top: string[] = [];
  if (c.modelIdentity != null) top.push(c.modelIdentity);
  if (c.knowledgeCutoff != null) top.push(`Knowledge cutoff: ${c.knowledgeCutoff}`);
  if (c.currentDate != null) top.push(`Current date: ${c.currentDate}`);
  if (top.length > 0) sections.push(top.join("\n"));
  if (c.reasoningEffort != null) sections.push(`Reasoning: ${c.reasoningEffort}`);
  if (c.validChannels != null && c.validChannels.length > 0) {
    let channels = `# Valid channels: ${c.validChannels.join(", ")}.`;
    if (c.channelRequired) channels += " Channel must be included for every message.";
    if (c.hasFunctionTools) channels += "\nCalls to these tools must go to the commentary channel: 'functions'.";
    sections.push(channels);
  }
  return sections.join("\n\n");
}

export function renderDeveloperContent(content: DeveloperContent): string {
  const sections: string[] = [];
  if (content.instructions !== undefined) sections.push("# Instructions", content.instructions);
  if (content.tools !== undefined && content.tools.length > 0) sections.push(renderToolsSection(content.tools));
  return sections.join("\n\n");
}

/** Whether a developer message of the conversation declares function tools (the reference's conversation_has_function_tools). */
export function hasFunctionTools(messages: readonly HarmonyMessage[]): boolean {
  return messages.some((m) => typeof m.content !== "string" && m.content.type === "developer" && (m.content.tools ?? []).some((ns) => ns.name === FUNCTIONS_NAMESPACE && ns.tools.length > 0));
}

/** A prompt as an alternation of text (tokenized as ordinary text) and special tokens. */
export type HarmonySegment = { readonly special: string } | { readonly text: string };

const CONSTRAIN = "<|constrain|>";

function messageSegments(m: HarmonyMessage, conversationHasFunctionTools: boolean): HarmonySegment[] {
  const out: HarmonySegment[] = [{ special: "<|start|>" }];
  if (m.role === "tool") {
    if (m.name === undefined) throw new Error("harmony: a tool message needs the tool's name");
    out.push({ text: m.name });
  } else {
    out.push({ text: m.role });
    if (m.name !== undefined) out.push({ text: `:${m.name}` });
  }
  if (m.recipient !== undefined && m.recipient !== "all") out.push({ text: ` to=${m.recipient}` });
  if (m.channel !== undefined) out.push({ special: "<|channel|>" }, { text: m.channel });
  if (m.contentType !== undefined) {
    if (m.contentType.startsWith(CONSTRAIN)) {
      out.push({ text: " " }, { special: CONSTRAIN });
      const rest = m.contentType.slice(CONSTRAIN.length);
      if (rest !== "") out.push({ text: rest });
    } else {
      out.push({ text: ` ${m.contentType}` });
    }
  }
  out.push({ special: "<|message|>" });
  const content = m.content;
  if (typeof content === "string") out.push({ text: content });
  else if (content.type === "system") {
    if (m.role !== "system") throw new Error(`harmony: system content may only appear in a system message, found in ${m.role}`);
    out.push({ text: renderSystemContent(conversationHasFunctionTools ? { ...content, hasFunctionTools: true } : content) });
  } else {
    if (m.role !== "developer") throw new Error(`harmony: developer content may only appear in a developer message, found in ${m.role}`);
    out.push({ text: renderDeveloperContent(content) });
  }
  out.push({ special: m.role === "assistant" && m.recipient !== undefined ? "<|call|>" : "<|end|>" });
  return out;
}

export interface RenderOptions {
  /** Append `<|start|>{role}` for the model to continue (default "assistant"); null renders the conversation only. */
  readonly nextRole?: HarmonyRole | null;
  /**
   * Drop earlier analysis (chain-of-thought) messages once the conversation's last assistant message is final, as
   * the reference does by default (RenderConversationConfig.auto_drop_analysis).
   */
  readonly autoDropAnalysis?: boolean;
}

export function harmonySegments(messages: readonly HarmonyMessage[], options: RenderOptions = {}): HarmonySegment[] {
  const lastAssistant = [...messages].reverse().find((m) => m.role === "assistant");
  const dropAnalysis = (options.autoDropAnalysis ?? true) && lastAssistant?.channel === "final";
  const firstFinal = messages.findIndex((m) => m.channel === "final");
  const functionTools = hasFunctionTools(messages);
  const out: HarmonySegment[] = [];
  messages.forEach((m, i) => {
    if (dropAnalysis && firstFinal >= 0 && i < firstFinal && m.channel === "analysis") return;
    out.push(...messageSegments(m, functionTools));
  });
  const next = options.nextRole === undefined ? "assistant" : options.nextRole;
  if (next !== null) out.push({ special: "<|start|>" }, { text: next });
  return out;
}

/** The prompt as text (special tokens spelled out). */
export function renderHarmony(messages: readonly HarmonyMessage[], options: RenderOptions = {}): string {
  return harmonySegments(messages, options)
    .map((s) => ("special" in s ? s.special : s.text))
    .join("");
}

/** The prompt as token ids, each text piece tokenized on its own as the reference renderer does. */
export function encodeHarmony(
  messages: readonly HarmonyMessage[],
  options: RenderOptions = {},
  tokenizer: HarmonyTokenizer = HarmonyTokenizer.instance(),
): number[] {
  const ids: number[] = [];
  for (const s of harmonySegments(messages, options)) {
    if ("special" in s) {
      const id = tokenizer.specialTokenId(s.special);
      if (id === undefined) throw new Error(`harmony: ${s.special} is not a special token of o200k_harmony`);
      ids.push(id);
    } else if (s.text !== "") {
      ids.push(...tokenizer.encode(s.text));
    }
  }
  return ids;
}

/** An assistant's call to function tool `name` with JSON `args`, as the model writes one (ends with `<|call|>`). */
export function toolCallMessage(name: string, args: string): HarmonyMessage {
  return { role: "assistant", channel: "commentary", recipient: `${FUNCTIONS_NAMESPACE}.${name}`, contentType: "<|constrain|>json", content: args };
}

/** Function tool `name`'s answer to the assistant. */
export function toolResultMessage(name: string, output: string): HarmonyMessage {
  return { role: "tool", name: `${FUNCTIONS_NAMESPACE}.${name}`, recipient: "assistant", channel: "commentary", content: output };
}

/**
 * Drops the chain of thought of completed turns: every analysis message followed by a final answer. Reasoning of
 * the turn in progress (analysis, tool call, tool result, …, no final answer yet) stays, so the model can continue
 * it. The reference renderer's autoDropAnalysis only drops analysis before the conversation's first final answer;
 * this is OpenAI's guidance for multi-turn chats (and what vLLM does).
 */
export function dropCompletedReasoning(messages: readonly HarmonyMessage[]): HarmonyMessage[] {
  let finalSeen = false;
  const kept: HarmonyMessage[] = [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === "assistant" && m.channel === "final") finalSeen = true;
    if (finalSeen && m.role === "assistant" && m.channel === "analysis") continue;
    kept.push(m);
  }
  return kept.reverse();
}

export interface ConversationOptions {
  /** Developer instructions (the "system prompt" of other formats). */
  readonly instructions?: string;
  /** Function tools, declared in the developer message's `functions` namespace. */
  readonly tools?: readonly FunctionTool[];
  readonly reasoningEffort?: ReasoningEffort;
  /** `YYYY-MM-DD`; omitted when absent. */
  readonly currentDate?: string;
  readonly knowledgeCutoff?: string;
}

/** The messages that open a chat: system (identity, dates, effort, channels), and developer when there are instructions or tools. */
export function conversationStart(options: ConversationOptions): HarmonyMessage[] {
  const system: SystemContent = {
    type: "system",
    reasoningEffort: options.reasoningEffort ?? "medium",
    currentDate: options.currentDate ?? null,
    ...(options.knowledgeCutoff !== undefined ? { knowledgeCutoff: options.knowledgeCutoff } : {}),
  };
  const messages: HarmonyMessage[] = [{ role: "system", content: system }];
  const tools = options.tools ?? [];
  if (options.instructions !== undefined || tools.length > 0) {
    const developer: DeveloperContent = {
      type: "developer",
      ...(options.instructions !== undefined ? { instructions: options.instructions } : {}),
      ...(tools.length > 0 ? { tools: [functionsNamespace(tools)] } : {}),
    };
    messages.push({ role: "developer", content: developer });
  }
  return messages;
}

export interface ChatPromptOptions extends ConversationOptions {
  readonly user: string;
}

/** The messages of a one-turn chat: conversationStart, then the user's message. */
export function chatMessages(options: ChatPromptOptions): HarmonyMessage[] {
  return [...conversationStart(options), { role: "user", content: options.user }];
}
