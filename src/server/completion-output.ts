// One completion choice's output: engine tokens → text (decoded here, never splitting a UTF-8 character; special
// tokens read as their names, `<|channel|>`, since a completion is raw model output) with stop strings, token ids
// and logprobs. The stop token that ended the request (an eos or a stop_token_ids entry) adds no text, as other
// servers do, but is in token_ids and counted. A model without a tokenizer has no text: only token ids.
import type { TokenOutput } from "../engine/api.js";
import { StreamingDecoder, type HarmonyTokenizer } from "../generate/tokenizer.js";
import { addCompletionLogprob, emptyCompletionLogprobs, type CompletionLogprobs } from "./logprobs.js";
import { StopStringMatcher } from "./stop-strings.js";

export interface CompletionStep {
  readonly text: string;
  readonly tokenIds: number[];
  /** The logprobs of this step's tokens, when asked for. */
  readonly logprobs: CompletionLogprobs | undefined;
}

export interface CompletionChoiceOptions {
  readonly tokenizer: HarmonyTokenizer | undefined;
  readonly stop: readonly string[];
  readonly stopTokenIds: ReadonlySet<number>;
  readonly logprobs: boolean;
}

export class CompletionChoiceOutput {
  text = "";
  readonly tokenIds: number[] = [];
  readonly logprobs: CompletionLogprobs | undefined;

  private readonly decoder: StreamingDecoder | undefined;
  private readonly matcher: StopStringMatcher;
  /** Characters decoded so far (sent or held back): where the next token's text begins. */
  private decodedLength = 0;

  constructor(private readonly options: CompletionChoiceOptions) {
    this.decoder = options.tokenizer !== undefined ? new StreamingDecoder(options.tokenizer) : undefined;
    this.matcher = new StopStringMatcher(options.stop);
    this.logprobs = options.logprobs ? emptyCompletionLogprobs() : undefined;
  }

  get stopped(): boolean {
    return this.matcher.stoppedBy !== undefined;
  }

  push(output: TokenOutput): CompletionStep {
    this.tokenIds.push(output.token);
    let stepLogprobs: CompletionLogprobs | undefined;
    if (this.logprobs !== undefined) {
      stepLogprobs = emptyCompletionLogprobs();
      addCompletionLogprob(stepLogprobs, output, this.decodedLength, this.options.tokenizer);
      addCompletionLogprob(this.logprobs, output, this.decodedLength, this.options.tokenizer);
    }
    const decoded = this.decoder === undefined || this.options.stopTokenIds.has(output.token) ? "" : this.decoder.push(output.token);
    this.decodedLength += decoded.length;
    return { text: this.emit(this.matcher.push(decoded)), tokenIds: [output.token], logprobs: stepLogprobs };
  }

  finish(): CompletionStep {
    const rest = this.stopped ? "" : this.matcher.push(this.decoder?.flush() ?? "") + this.matcher.flush();
    return { text: this.emit(rest), tokenIds: [], logprobs: undefined };
  }

  private emit(text: string): string {
    this.text += text;
    return text;
  }
}
