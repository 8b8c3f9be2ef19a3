// A chat request's messages as a harmony conversation (src/generate/harmony.ts renders it):
//
//   system, developer messages → the developer message's instructions (in order, joined by a blank line), as
//                                gpt-oss's chat template does; harmony's own system message carries the identity,
//                                date, reasoning effort and channels
//   tools (unless tool_choice is "none") → the developer message's `functions` namespace
//   user                       → user
//   assistant                  → its reasoning_content (or reasoning) on the analysis channel, then its content on
//                                the final channel, or, when it has tool calls, the content as a commentary
//                                preamble and each call as `to=functions.NAME … <|call|>`
//   tool                       → `functions.NAME to=assistant` on the commentary channel, NAME found from the
//                                tool_call_id of an earlier assistant tool call
//
// then the reasoning of completed turns is dropped (dropCompletedReasoning).
import {
  conversationStart,
  dropCompletedReasoning,
  encodeHarmony,
  toolCallMessage,
  toolResultMessage,
  type HarmonyMessage,
} from "../generate/harmony.js";
import type { FunctionTool, JsonSchema } from "../generate/harmony-tools.js";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";
import { badRequest } from "./errors.js";
import type { ChatCompletionRequest, ChatRequestMessage } from "./schemas.js";

export interface ChatPrompt {
  readonly messages: HarmonyMessage[];
  readonly promptIds: number[];
  /** The function tools offered to the model (none with tool_choice "none"). */
  readonly toolNames: ReadonlySet<string>;
}

type Content = Extract<ChatRequestMessage, { role: "user" }>["content"];

function text(content: Content | null | undefined): string {
  if (content === null || content === undefined) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

function offeredTools(request: ChatCompletionRequest): FunctionTool[] {
  const choice = request.tool_choice ?? "auto";
  if (choice === "none" || request.tools === null || request.tools === undefined) return [];
  if (choice === "required" || typeof choice === "object") {
    throw badRequest('tool_choice "required" and a named function need constrained decoding, which this server does not do; use "auto" or "none"', "tool_choice");
  }
  return request.tools.map(({ function: f }) => ({
    name: f.name,
    ...(f.description !== null && f.description !== undefined ? { description: f.description } : {}),
    ...(f.parameters !== null && f.parameters !== undefined ? { parameters: f.parameters as JsonSchema } : {}),
  }));
}

export function chatPrompt(request: ChatCompletionRequest, currentDate: string, tokenizer: HarmonyTokenizer): ChatPrompt {
  const tools = offeredTools(request);
  const instructions = request.messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => text(m.content));
  const conversation: HarmonyMessage[] = [];
  const toolNameById = new Map<string, string>();
  request.messages.forEach((m, i) => {
    switch (m.role) {
      case "system":
      case "developer":
        return;
      case "user":
        conversation.push({ role: "user", content: text(m.content) });
        return;
      case "assistant": {
        const reasoning = m.reasoning_content ?? m.reasoning;
        if (reasoning !== null && reasoning !== undefined && reasoning !== "") conversation.push({ role: "assistant", channel: "analysis", content: reasoning });
        const content = text(m.content);
        const calls = m.tool_calls ?? [];
        if (calls.length === 0) {
          if (content !== "") conversation.push({ role: "assistant", channel: "final", content });
          return;
        }
        if (content !== "") conversation.push({ role: "assistant", channel: "commentary", content });
        for (const call of calls) {
          toolNameById.set(call.id, call.function.name);
          conversation.push(toolCallMessage(call.function.name, call.function.arguments));
        }
        return;
      }
      case "tool": {
        const name = toolNameById.get(m.tool_call_id);
        if (name === undefined) throw badRequest(`messages[${i}].tool_call_id: no earlier assistant tool call has the id ${JSON.stringify(m.tool_call_id)}`, `messages[${i}].tool_call_id`);
        conversation.push(toolResultMessage(name, text(m.content)));
        return;
      }
    }
  });
  const messages = [
    ...conversationStart({
      ...(instructions.length > 0 ? { instructions: instructions.join("\n\n") } : {}),
      tools,
      reasoningEffort: request.reasoning_effort ?? "medium",
      currentDate,
    }),
    ...dropCompletedReasoning(conversation),
  ];
  return { messages, promptIds: encodeHarmony(messages, { nextRole: "assistant" }, tokenizer), toolNames: new Set(tools.map((t) => t.name)) };
}
