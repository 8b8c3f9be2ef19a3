// Log-probabilities in the two shapes of the API: chat's per-token objects and completions' parallel arrays.
import type { TokenOutput } from "../engine/api.js";
import type { HarmonyTokenizer } from "../generate/tokenizer.js";

/**
 * A token as text for logprobs: its decoded text, or `token_id:N` when the model has no tokenizer (vLLM's
 * convention). A token holding part of a UTF-8 character reads as U+FFFD.
 */
export function tokenText(id: number, tokenizer: HarmonyTokenizer | undefined): string {
  return tokenizer !== undefined ? tokenizer.decode([id]) : `token_id:${id}`;
}

const utf8 = (text: string): number[] => Array.from(Buffer.from(text, "utf8"));

export interface ChatTopLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  readonly top_logprobs: ChatTopLogprob[];
}

/** One token's entry of `choices[].logprobs.content`; undefined when the engine reported no log-probability. */
export function chatTokenLogprob(output: TokenOutput, tokenizer: HarmonyTokenizer | undefined): ChatTokenLogprob | undefined {
  if (output.logprob === undefined) return undefined;
  const token = tokenText(output.token, tokenizer);
  return {
    token,
    logprob: output.logprob,
    bytes: utf8(token),
    top_logprobs: (output.topLogprobs ?? []).map((t) => {
      const text = tokenText(t.token, tokenizer);
      return { token: text, logprob: t.logprob, bytes: utf8(text) };
    }),
  };
}

/** `choices[].logprobs` of a completion: parallel arrays over the tokens, alternatives as `{text: logprob}`. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export const emptyCompletionLogprobs = (): CompletionLogprobs => ({ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });

/** Appends one token at character offset `textOffset` of the choice's text. */
export function addCompletionLogprob(into: CompletionLogprobs, output: TokenOutput, textOffset: number, tokenizer: HarmonyTokenizer | undefined): void {
  if (output.logprob === undefined) return;
  into.tokens.push(tokenText(output.token, tokenizer));
  into.token_logprobs.push(output.logprob);
  const top: Record<string, number> = {};
  for (const t of output.topLogprobs ?? []) top[tokenText(t.token, tokenizer)] ??= t.logprob;
  into.top_logprobs.push(top);
  into.text_offset.push(textOffset);
}
