// tsgc serve: the OpenAI-compatible HTTP server over the engine (see server.ts), and its parts that other front
// ends (the CLI's chat) share.
export { createOpenAiServer, type ListeningAddress, type OpenAiServer } from "./server.js";
export { resolveServerOptions, type OpenEngine, type ResolvedServerOptions, type ServerOptions } from "./options.js";
export { ApiError, type ApiErrorBody, type ApiErrorType } from "./errors.js";
export { ServerMetrics, Counter, Histogram } from "./metrics.js";
export { chatPrompt, type ChatPrompt } from "./chat-prompt.js";
export { chatCompletionRequest, completionRequest, type ChatCompletionRequest, type CompletionRequest } from "./schemas.js";
export { StopStringMatcher } from "./stop-strings.js";
