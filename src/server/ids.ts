// Ids of responses and tool calls: random, URL-safe, as OpenAI's look (`chatcmpl-…`, `call_…`).
import { randomBytes } from "node:crypto";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** 24 random letters and digits. */
export function randomId(length = 24): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}

/** Seconds since the epoch, the API's `created`. */
export const unixSeconds = (): number => Math.floor(Date.now() / 1000);
