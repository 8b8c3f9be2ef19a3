// Errors as the OpenAI API writes them: `{"error": {"message", "type", "param", "code"}}` with the HTTP status.
// Everything the server refuses goes through ApiError, so every refusal has a status, a message naming what is
// wrong and (for a bad field) the field's path in the body as `param`.
import type { ZodError } from "zod";
import { EngineOverloadedError, EngineRequestError } from "../engine/api.js";

export type ApiErrorType = "invalid_request_error" | "rate_limit_error" | "server_error";

export interface ApiErrorBody {
  readonly error: { readonly message: string; readonly type: ApiErrorType; readonly param: string | null; readonly code: string | null };
}

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = status >= 500 ? "server_error" : "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After, Allow). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null): ApiError => new ApiError(400, message, "invalid_request_error", param, code);

/** A JSON body path as the API documents fields: `messages[2].content[0].type`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out === "" ? String(key) : `.${String(key)}`;
  return out;
}

interface Issue {
  readonly code: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly errors?: readonly (readonly Issue[])[];
}

/**
 * The most specific description of an issue. A union's branches that failed on the value's type itself (the value
 * is a string, not an array; not one of an enum's values) say nothing; when one branch took the type, its issue is the one (an image part in an
 * array of parts, a 17th stop string); when several did but only at the value itself (an empty array), the first
 * one's; otherwise the union's own message.
 */
function specificIssue(issue: Issue): { path: PropertyKey[]; message: string } {
  if (issue.code === "invalid_union" && issue.errors !== undefined) {
    const typed = issue.errors.filter((branch) => branch.length > 0 && !branch.some((i) => (i.code === "invalid_type" || i.code === "invalid_value") && i.path.length === 0));
    const chosen = typed.length === 1 || (typed.length > 1 && typed.every((b) => b.every((i) => i.path.length === 0))) ? typed[0]![0] : undefined;
    if (chosen !== undefined) {
      const inner = specificIssue(chosen);
      return { path: [...issue.path, ...inner.path], message: inner.message };
    }
  }
  return { path: [...issue.path], message: issue.message.replace(/^Invalid input: /, "") };
}

/** A zod failure as a 400 naming the first bad field (and how many others there are). */
export function fromZodError(error: ZodError): ApiError {
  const issues = error.issues.map((i) => specificIssue(i as Issue));
  const first = issues[0];
  if (first === undefined) return badRequest("the request body is invalid");
  const param = fieldPath(first.path);
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more: ${issues.slice(1, 4).map((i) => fieldPath(i.path) || "body").join(", ")})` : "";
  return badRequest(`${param === "" ? "the request body" : param}: ${first.message}${more}`, param === "" ? null : param);
}

/** Maps an engine field (`maxTokens`) to the request field it came from (`max_tokens`). */
export type EngineFieldNames = Readonly<Record<string, string>>;

/** What a failure thrown by the engine (or by the server itself) is for the client. */
export function toApiError(err: unknown, fields: EngineFieldNames, retryAfterSeconds: number): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EngineRequestError) {
    const param = fields[err.field] ?? err.field;
    return badRequest(`${param}: ${err.message}`, param);
  }
  if (err instanceof EngineOverloadedError) {
    return new ApiError(429, err.message, "rate_limit_error", null, "rate_limit_exceeded", { "Retry-After": String(retryAfterSeconds) });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(500, `internal error: ${message}`, "server_error", null, "internal_error");
}
