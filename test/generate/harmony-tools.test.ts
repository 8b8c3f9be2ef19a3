// Function tools in the developer message, checked against the text openai/harmony renders for the same
// conversations (its test_render_functions_with_parameters and test_browser_and_function_tool), token for token.
import { describe, expect, it } from "vitest";
import { conversationStart, encodeHarmony, renderHarmony, type HarmonyMessage } from "../../src/generate/harmony.js";
import { renderToolsSection, schemaToTypeScript, type FunctionTool } from "../../src/generate/harmony-tools.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";

const tok = HarmonyTokenizer.instance();

const weatherTools: FunctionTool[] = [
  { name: "get_location", description: "Gets the location of the user." },
  {
    name: "get_current_weather",
    description: "Gets the current weather in the provided location.",
    parameters: {
      type: "object",
      properties: {
        location: { type: "string", description: "The city and state, e.g. San Francisco, CA" },
        format: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" },
      },
      required: ["location"],
    },
  },
  {
    name: "get_multiple_weathers",
    description: "Gets the current weather in the provided list of locations.",
    parameters: {
      type: "object",
      properties: {
        locations: { type: "array", items: { type: "string" }, description: 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]' },
        format: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" },
      },
      required: ["locations"],
    },
  },
  {
    name: "kitchensink",
    description: "A function with various complex schemas.",
    parameters: {
      description: "params object",
      type: "object",
      properties: {
        string: { type: "string", title: "STRING", description: "A string", examples: ["hello", "world"] },
        string_nullable: { type: "string", nullable: true, description: "A nullable string", default: "the default" },
        string_enum: { type: "string", enum: ["a", "b", "c"] },
        oneof_string_or_number: {
          oneOf: [
            { type: "string", default: "default_string_in_oneof" },
            { type: "number", description: "numbers can happen too" },
          ],
          description: "a oneof",
          default: 20,
        },
      },
    },
  },
];

describe("harmony function tools", () => {
  it("renders tools with parameters exactly as openai/harmony (test_render_functions_with_parameters)", () => {
    const messages: HarmonyMessage[] = [
      ...conversationStart({ reasoningEffort: "high", currentDate: "2025-06-28", instructions: "Always respond in riddles", tools: weatherTools }),
      { role: "user", content: "What is the weather like in SF?" },
    ];
    const expected =
      "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\n" +
      "Reasoning: high\n\n" +
      "# Valid channels: analysis, commentary, final. Channel must be included for every message.\n" +
      "Calls to these tools must go to the commentary channel: 'functions'.<|end|>" +
      "<|start|>developer<|message|># Instructions\n\nAlways respond in riddles\n\n" +
      "# Tools\n\n## functions\n\nnamespace functions {\n\n" +
      "// Gets the location of the user.\ntype get_location = () => any;\n\n" +
      "// Gets the current weather in the provided location.\ntype get_current_weather = (_: {\n" +
      "// The city and state, e.g. San Francisco, CA\nlocation: string,\n" +
      'format?: "celsius" | "fahrenheit", // default: celsius\n}) => any;\n\n' +
      "// Gets the current weather in the provided list of locations.\ntype get_multiple_weathers = (_: {\n" +
      '// List of city and state, e.g. ["San Francisco, CA", "New York, NY"]\nlocations: string[],\n' +
      'format?: "celsius" | "fahrenheit", // default: celsius\n}) => any;\n\n' +
      "// A function with various complex schemas.\ntype kitchensink = (_: // params object\n{\n" +
      '// STRING\n//\n// A string\n// Examples:\n// - "hello"\n// - "world"\nstring?: string,\n' +
      '// A nullable string\nstring_nullable?: string | null, // default: "the default"\n' +
      'string_enum?: "a" | "b" | "c",\n' +
      "// a oneof\n// default: 20\noneof_string_or_number?:\n" +
      ' | string // default: "default_string_in_oneof"\n | number // numbers can happen too\n,\n}) => any;\n\n' +
      "} // namespace functions<|end|>" +
      "<|start|>user<|message|>What is the weather like in SF?<|end|><|start|>assistant";
    expect(renderHarmony(messages)).toBe(expected);
    expect(encodeHarmony(messages)).toEqual(tok.encodeWithSpecials(expected));
  });

  it("renders a developer message with function tools only (test_browser_and_function_tool's developer part)", () => {
    const tools: FunctionTool[] = [
      {
        name: "lookup_weather",
        description: "Use this tool to lookup the weather in a given location. Call it with the parameter 'location', can be any textual description of a location.",
        parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
      },
    ];
    const [, developer] = conversationStart({ tools });
    expect(renderHarmony([developer!], { nextRole: null })).toBe(
      "<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n\n" +
        "// Use this tool to lookup the weather in a given location. Call it with the parameter 'location', can be any textual description of a location.\n" +
        "type lookup_weather = (_: {\nlocation: string,\n}) => any;\n\n} // namespace functions<|end|>",
    );
  });

  it("adds the commentary-channel note to the system message only when function tools are declared", () => {
    const withTools = renderHarmony(conversationStart({ tools: [{ name: "f" }] }));
    expect(withTools).toContain("Channel must be included for every message.\nCalls to these tools must go to the commentary channel: 'functions'.<|end|>");
    expect(renderHarmony(conversationStart({ instructions: "x" }))).not.toContain("Calls to these tools");
    expect(renderHarmony(conversationStart({ tools: [] }))).not.toContain("<|start|>developer");
  });

  it("translates the other schema shapes as the reference does", () => {
    expect(schemaToTypeScript({ type: ["integer", "string"] })).toBe("number | string");
    expect(schemaToTypeScript({ type: "array" })).toBe("Array<any>");
    expect(schemaToTypeScript({ type: "array", items: { type: "integer" } })).toBe("number[]");
    expect(schemaToTypeScript({ type: "boolean" })).toBe("boolean");
    expect(schemaToTypeScript({ anyOf: [{ type: "string" }] })).toBe("any"); // the reference knows no anyOf
    expect(schemaToTypeScript({ type: "null" })).toBe("any");
    expect(schemaToTypeScript({ oneOf: [{ type: "string", description: "s" }, { type: "number", nullable: true, default: 3 }] })).toBe("\n | string // s\n | number | null // default: 3");
    // Nested objects indent their properties by four spaces per level; required marks drop the `?`.
    expect(
      schemaToTypeScript({
        type: "object",
        properties: { point: { type: "object", properties: { x: { type: "number" }, y: { type: "number", default: 0 } }, required: ["x"] } },
        required: ["point"],
      }),
    ).toBe("{\npoint: {\n    x: number,\n    y?: number, // default: 0\n    },\n}");
    expect(schemaToTypeScript({ type: "object", properties: { tags: { type: "array", items: { type: "string" }, default: ["a"] } } })).toBe('{\ntags?: string[], // default: ["a"]\n}');
  });

  it("renders a namespace's description and multi-line tool descriptions as comment lines", () => {
    expect(renderToolsSection([{ name: "functions", description: "Line one\nline two\n", tools: [{ name: "f", description: "Does f.\nCarefully." }] }])).toBe(
      "# Tools\n\n## functions\n\n// Line one\n// line two\nnamespace functions {\n\n// Does f.\n// Carefully.\ntype f = () => any;\n\n} // namespace functions",
    );
    expect(renderToolsSection([{ name: "b", tools: [] }, { name: "a", description: "plain", tools: [] }])).toBe("# Tools\n\n## a\n\nplain\n\n## b\n");
  });
});
