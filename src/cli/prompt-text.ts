// The user messages of `tsgc generate`: `--prompt TEXT` and `--prompt-file FILE`, each repeatable, in the order
// given on the command line (commander keeps one list per flag, so each value carries its place). `-` for either
// reads the standard input to its end (once: it cannot be read twice). Text read from a file or the standard input
// loses its final line breaks (a file's last line ends with one; it is no part of the message). Every message must
// hold some text; a file must be a regular file of UTF-8 text. Errors are one line naming the flag and the path.
import { readInputFile } from "../fs-safe.js";

export type PromptFlag = "--prompt" | "--prompt-file";

export interface PromptSource {
  readonly flag: PromptFlag;
  /** The text (--prompt), the path (--prompt-file), or "-": the standard input. */
  readonly value: string;
  /** Its place among all --prompt and --prompt-file values. */
  readonly order: number;
}

/** "-": read the standard input. */
export const STDIN = "-";

let given = 0;

/** A commander option parser that collects `flag`'s values, each with its place on the command line. */
export function collectPrompt(flag: PromptFlag) {
  return (value: string, previous: readonly PromptSource[] = []): PromptSource[] => [...previous, { flag, value, order: given++ }];
}

/** The values of both flags in command-line order. */
export function promptSources(...lists: readonly (readonly PromptSource[] | undefined)[]): PromptSource[] {
  return lists.flatMap((l) => l ?? []).sort((a, b) => a.order - b.order);
}

export interface PromptInput {
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  /** Where to say that the standard input is being read, when it is a terminal. */
  readonly note: (text: string) => void;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

function utf8(bytes: Uint8Array, where: string): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new Error(`${where}: it is not UTF-8 text`);
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/** The messages' texts, in order. Reads the files and the standard input. */
export async function readPrompts(sources: readonly PromptSource[], input: PromptInput): Promise<string[]> {
  const fromStdin = sources.filter((s) => s.value === STDIN);
  if (fromStdin.length > 1) throw new Error(`${fromStdin[1]!.flag} -: the standard input is read once; give - to one --prompt or --prompt-file`);
  const texts: string[] = [];
  for (const [i, s] of sources.entries()) {
    let text: string;
    let where: string;
    if (s.value === STDIN) {
      where = `${s.flag} - (the standard input)`;
      if (input.stdin.isTTY === true) input.note("tsgc: reading the prompt from the standard input, up to its end (Ctrl-D)\n");
      text = utf8(await readAll(input.stdin), where).replace(/(\r?\n)+$/, "");
    } else if (s.flag === "--prompt-file") {
      where = `--prompt-file ${s.value}`;
      text = utf8(await readInputFile(s.value, "--prompt-file"), where).replace(/(\r?\n)+$/, "");
    } else {
      where = sources.length > 1 ? `--prompt (prompt ${i + 1})` : "--prompt";
      text = s.value;
    }
    if (text.trim() === "") throw new Error(`${where}: the message is empty`);
    texts.push(text);
  }
  return texts;
}
