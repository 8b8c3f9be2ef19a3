// Function tools in the harmony developer message, rendered as openai/harmony's renderer does
// (src/encoding.rs: template_tools_section and json_schema_to_typescript): each namespace becomes a
// TypeScript-like declaration whose parameter types come from the tools' JSON schemas.
//
//   # Tools
//
//   ## functions
//
//   namespace functions {
//
//   // Gets the current weather in the provided location.
//   type get_current_weather = (_: {
//   // The city and state, e.g. San Francisco, CA
//   location: string,
//   format?: "celsius" | "fahrenheit", // default: celsius
//   }) => any;
//
//   } // namespace functions
//
// The schema translation reproduces the reference's choices byte for byte, quirks included (indents that
// differ between nesting levels, `anyOf` and `$ref` rendered as `any`, an enum's default written without
// quotes), because the model was trained on exactly this text. Properties keep their order in the schema.

/** A JSON value, as `JSON.parse` returns it. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };
/** A JSON schema object (OpenAPI style: `type`, `properties`, `required`, `enum`, `oneOf`, `nullable`, …). */
export type JsonSchema = { readonly [key: string]: JsonValue };

export interface FunctionTool {
  readonly name: string;
  /** Rendered as `//` comment lines above the declaration; absent or empty: none. */
  readonly description?: string;
  /** The parameters' JSON schema; absent: `() => any`. */
  readonly parameters?: JsonSchema;
}

export interface ToolNamespace {
  /** `functions` for the request's function tools. */
  readonly name: string;
  readonly description?: string;
  readonly tools: readonly FunctionTool[];
}

const isObject = (v: JsonValue | undefined): v is JsonSchema => typeof v === "object" && v !== null && !Array.isArray(v);
const isArray = (v: JsonValue | undefined): v is readonly JsonValue[] => Array.isArray(v);
const stringOf = (v: JsonValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);

/** Rust's `str::lines()`: no lines for "", no empty last line for a trailing newline, `\r\n` as one break. */
function lines(text: string): string[] {
  if (text === "") return [];
  const parts = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (text.endsWith("\n")) parts.pop();
  return parts;
}

function isEnum(schema: JsonSchema): boolean {
  const values = schema["enum"];
  return isArray(values) && values.length > 0;
}

const isNullable = (schema: JsonValue): boolean => isObject(schema) && schema["nullable"] === true;

/** `T | null` for a nullable schema whose rendering does not already mention null. */
function withNullable(type: string, schema: JsonValue): string {
  return isNullable(schema) && !type.includes("null") ? `${type} | null` : type;
}

/**
 * A default value as the reference writes it: a quoted string for plain strings, the bare string for an
 * enum's string default (`quoteEnumString` false) and JSON for everything else.
 */
function defaultText(value: JsonValue, schema: JsonSchema, quoteEnumString: boolean): string {
  if (typeof value === "string") return !isEnum(schema) ? `"${value}"` : quoteEnumString ? JSON.stringify(value) : value;
  return JSON.stringify(value);
}

/** The variants of a `oneOf`, each on its own line after ` | `, with their description and default as a trailing comment. */
function topLevelOneOf(variants: readonly JsonValue[], indent: string): string {
  let out = "";
  for (const variant of variants) {
    out += `\n${indent} | `;
    out += withNullable(schemaToTypeScript(variant, `${indent}   `), variant);
    if (!isObject(variant)) continue;
    const comments: string[] = [];
    const description = stringOf(variant["description"]);
    if (description !== undefined) comments.push(description);
    const value = variant["default"];
    if (value !== undefined) comments.push(`default: ${defaultText(value, variant, true)}`);
    if (comments.length > 0) out += ` // ${comments.join(" ")}`;
  }
  return out;
}

/** A property whose schema is a `oneOf`: comments above the name, then one ` | variant` line per variant. */
function oneOfProperty(key: string, optional: boolean, property: JsonSchema, variants: readonly JsonValue[], indent: string): string {
  let out = "";
  const propertyDescription = stringOf(property["description"]);
  const first = variants[0];
  const firstDescription = isObject(first) ? stringOf(first["description"]) : undefined;
  const describedAbove = propertyDescription !== undefined && propertyDescription !== firstDescription;
  if (describedAbove) out += `${indent}// ${propertyDescription}\n`;
  const value = property["default"];
  if (value !== undefined) out += `${indent}// default: ${defaultText(value, property, false)}\n`;
  out += `${indent}${key}${optional ? "?" : ""}:\n`;
  variants.forEach((variant, i) => {
    out += `${indent} | `;
    out += withNullable(schemaToTypeScript(variant, `${indent}   `), variant);
    const comments: string[] = [];
    if (isObject(variant) && !(i === 0 && describedAbove)) {
      const description = stringOf(variant["description"]);
      if (description !== undefined && description !== propertyDescription) comments.push(description);
    }
    if (isObject(variant) && variant["default"] !== undefined) comments.push(`default: ${defaultText(variant["default"], variant, false)}`);
    if (comments.length > 0) out += ` // ${comments.join(" ")}`;
    out += "\n";
  });
  out += `${indent},\n`;
  return out;
}

function objectType(schema: JsonSchema, indent: string): string {
  let out = "";
  const description = stringOf(schema["description"]);
  if (description !== undefined) out += `${indent}// ${description}\n`;
  out += "{\n";
  const properties = schema["properties"];
  if (isObject(properties)) {
    const requiredList = schema["required"];
    const required = new Set(isArray(requiredList) ? requiredList.filter((r): r is string => typeof r === "string") : []);
    for (const [key, property] of Object.entries(properties)) {
      const optional = !required.has(key);
      if (!isObject(property)) {
        out += `${indent}${key}${optional ? "?" : ""}: ${schemaToTypeScript(property, `${indent}    `)},\n`;
        continue;
      }
      const title = stringOf(property["title"]);
      if (title !== undefined) out += `${indent}// ${title}\n${indent}//\n`;
      const oneOf = property["oneOf"];
      if (oneOf === undefined) {
        const propertyDescription = stringOf(property["description"]);
        if (propertyDescription !== undefined) out += `${indent}// ${propertyDescription}\n`;
      }
      const examples = property["examples"];
      if (isArray(examples) && examples.length > 0) {
        out += `${indent}// Examples:\n`;
        for (const example of examples) if (typeof example === "string") out += `${indent}// - "${example}"\n`;
      }
      if (isArray(oneOf)) {
        out += oneOfProperty(key, optional, property, oneOf, indent);
        continue;
      }
      out += `${indent}${key}${optional ? "?" : ""}: `;
      out += withNullable(schemaToTypeScript(property, `${indent}    `), property);
      out += ",";
      const value = property["default"];
      if (oneOf === undefined && value !== undefined) out += ` // default: ${defaultText(value, property, false)}`;
      out += "\n";
    }
  }
  out += `${indent}}`;
  return out;
}

/** The TypeScript-like type of a JSON schema, as the reference's json_schema_to_typescript writes it. */
export function schemaToTypeScript(schema: JsonValue, indent = ""): string {
  if (!isObject(schema)) return "any";
  const oneOf = schema["oneOf"];
  if (isArray(oneOf)) return topLevelOneOf(oneOf, indent);
  const type = schema["type"];
  if (isArray(type)) {
    const names = type.filter((t): t is string => typeof t === "string").map((t) => (t === "integer" ? "number" : t));
    if (names.length > 0) return names.join(" | ");
  }
  switch (type) {
    case "object":
      return objectType(schema, indent);
    case "string": {
      const values = schema["enum"];
      const names = isArray(values) ? values.filter((v): v is string => typeof v === "string").map((v) => `"${v}"`) : [];
      return names.length > 0 ? names.join(" | ") : "string";
    }
    case "number":
    case "integer":
      return "number";
    case "boolean":
      return "boolean";
    case "array": {
      const items = schema["items"];
      return items !== undefined ? `${schemaToTypeScript(items, indent)}[]` : "Array<any>";
    }
    default:
      return "any";
  }
}

/** One `## name` section: the namespace's description, then its tools as `type name = (_: …) => any;`. */
function namespaceSection(namespace: ToolNamespace): string {
  const parts: string[] = [`## ${namespace.name}\n`];
  const hasTools = namespace.tools.length > 0;
  for (const line of lines(namespace.description ?? "")) parts.push(hasTools ? `// ${line}` : line);
  if (hasTools) {
    parts.push(`namespace ${namespace.name} {\n`);
    for (const tool of namespace.tools) {
      for (const line of lines(tool.description ?? "")) parts.push(`// ${line}`);
      parts.push(tool.parameters !== undefined ? `type ${tool.name} = (_: ${schemaToTypeScript(tool.parameters)}) => any;\n` : `type ${tool.name} = () => any;\n`);
    }
    parts.push(`} // namespace ${namespace.name}`);
  }
  return parts.join("\n");
}

/** The `# Tools` section of a developer (or system) message; namespaces in name order, as the reference's BTreeMap. */
export function renderToolsSection(namespaces: readonly ToolNamespace[]): string {
  const sorted = [...namespaces].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return ["# Tools", ...sorted.map(namespaceSection)].join("\n\n");
}
