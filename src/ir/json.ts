// The JSON form of a graph, validated with zod, that round-trips exactly:
// graphToJson(graphFromJson(j)) deep-equals j, and the reloaded nodes hash as the originals did.
//
// Nodes are listed once, inputs before users, and referenced by index. Non-finite numbers and
// negative zero (legal in constants) are written as the strings "Infinity", "-Infinity", "NaN", "-0".

import { z } from "zod";
import { DTYPES, type DType } from "./dtype.js";
import type { EntryPoint, Graph, ParamDecl } from "./graph.js";
import { graphNodes } from "./graph.js";
import { type Node, type SourceSite, IRError, NodeTable } from "./node.js";
import { ALL_OPS, BINARY_FNS, COMPARE_FNS, type Op, type OpAttrs, REDUCE_FNS, TERNARY_FNS, UNARY_FNS } from "./ops.js";
import { type Dim, type Shape, formatShape, shapesEqual } from "./shape.js";
import { verifyGraph } from "./verify.js";

export const IR_JSON_FORMAT = "tsgc-ir";
export const IR_JSON_VERSION = 1;

// ---- number and shape encodings ----------------------------------------------------------------

type JsonNumber = number | "Infinity" | "-Infinity" | "NaN" | "-0";

function encodeNumber(v: number): JsonNumber {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  if (Object.is(v, -0)) return "-0";
  return v;
}
const SPECIAL_NUMBERS: Record<string, number> = { Infinity: Infinity, "-Infinity": -Infinity, NaN: NaN, "-0": -0 };

const numberSchema = z.union([z.number(), z.enum(["Infinity", "-Infinity", "NaN", "-0"]).transform((s) => SPECIAL_NUMBERS[s]!)]);
const intSchema = z.number().int();
const dimSchema = z.union([z.number().int().nonnegative(), z.string().min(1)]);
const shapeSchema = z.array(dimSchema);
const dtypeSchema = z.enum(DTYPES);

const fusedInstrSchema = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("input"), index: intSchema }),
  z.strictObject({ op: z.literal("constant"), value: numberSchema, dtype: dtypeSchema }),
  z.strictObject({ op: z.literal("unary"), fn: z.enum(UNARY_FNS), a: intSchema }),
  z.strictObject({ op: z.literal("binary"), fn: z.enum(BINARY_FNS), a: intSchema, b: intSchema }),
  z.strictObject({ op: z.literal("compare"), fn: z.enum(COMPARE_FNS), a: intSchema, b: intSchema }),
  z.strictObject({ op: z.literal("ternary"), fn: z.enum(TERNARY_FNS), a: intSchema, b: intSchema, c: intSchema }),
  z.strictObject({ op: z.literal("cast"), to: dtypeSchema, a: intSchema }),
]);

/** The attribute schema of each op. */
const ATTR_SCHEMAS: { readonly [K in Op]: z.ZodType<OpAttrs[K]> } = {
  input: z.strictObject({ name: z.string(), dtype: dtypeSchema, shape: shapeSchema }),
  param: z.strictObject({ name: z.string(), dtype: dtypeSchema, shape: shapeSchema }),
  state: z.strictObject({ name: z.string(), dtype: dtypeSchema, shape: shapeSchema }),
  constant: z.strictObject({ value: numberSchema, dtype: dtypeSchema, shape: shapeSchema }),
  literal: z.strictObject({ data: z.array(numberSchema), dtype: dtypeSchema, shape: z.array(z.number().int().nonnegative()) }),
  iota: z.strictObject({ axis: intSchema, dtype: dtypeSchema, shape: shapeSchema }),
  unary: z.strictObject({ fn: z.enum(UNARY_FNS) }),
  binary: z.strictObject({ fn: z.enum(BINARY_FNS) }),
  ternary: z.strictObject({ fn: z.enum(TERNARY_FNS) }),
  compare: z.strictObject({ fn: z.enum(COMPARE_FNS) }),
  cast: z.strictObject({ to: dtypeSchema }),
  reduce: z.strictObject({ fn: z.enum(REDUCE_FNS), axis: intSchema, keepDims: z.boolean() }),
  matmul: z.strictObject({ transposeB: z.boolean() }),
  reshape: z.strictObject({ shape: shapeSchema }),
  transpose: z.strictObject({ perm: z.array(intSchema) }),
  slice: z.strictObject({ axis: intSchema, start: intSchema, end: dimSchema, step: intSchema }),
  concat: z.strictObject({ axis: intSchema }),
  gather: z.strictObject({ axis: intSchema }),
  scatter: z.strictObject({ axis: intSchema }),
  broadcast: z.strictObject({ shape: shapeSchema }),
  topk: z.strictObject({ k: intSchema, result: z.enum(["values", "indices"]) }),
  sample: z.strictObject({}),
  dequantMxfp4: z.strictObject({ dtype: dtypeSchema }),
  fusedRmsNorm: z.strictObject({ eps: z.number(), hasResidual: z.boolean(), result: z.enum(["normed", "sum"]) }),
  sinkAttention: z.strictObject({ scale: z.number(), window: intSchema, hasSinks: z.boolean() }),
  seqTokenRanges: z.strictObject({}),
  uniqueIndices: z.strictObject({}),
  pagedAttention: z.strictObject({ scale: z.number(), window: intSchema, blockSize: intSchema, hasSinks: z.boolean() }),
  moeExperts: z.strictObject({ topK: intSchema, limit: z.number(), alpha: z.number(), weightFormat: z.enum(["dense", "mxfp4"]), firstExpert: intSchema.optional() }) as unknown as z.ZodType<OpAttrs["moeExperts"]>,
  mxfp4Matmul: z.strictObject({}) as unknown as z.ZodType<OpAttrs["mxfp4Matmul"]>,
  fusedLinear: z.strictObject({ transposeB: z.boolean() }),
  groupedLinear: z.strictObject({ result: z.number().int().nonnegative() }),
  fusedRope: z.strictObject({}) as unknown as z.ZodType<OpAttrs["fusedRope"]>,
  fusedElementwise: z.strictObject({ body: z.array(fusedInstrSchema), shape: shapeSchema }),
  allReduce: z.strictObject({ ranks: intSchema, seq: intSchema }),
  allGather: z.strictObject({ ranks: intSchema, seq: intSchema }),
  reduceScatter: z.strictObject({ ranks: intSchema, seq: intSchema }),
};

const siteSchema = z.strictObject({ file: z.string(), line: intSchema, column: intSchema });

const nodeSchema = z.strictObject({
  op: z.enum(ALL_OPS as [Op, ...Op[]]),
  attrs: z.record(z.string(), z.unknown()),
  inputs: z.array(z.number().int().nonnegative()),
  dtype: dtypeSchema,
  shape: shapeSchema,
  site: siteSchema.optional(),
});

const declSchema = z.strictObject({ name: z.string().min(1), dtype: dtypeSchema, shape: shapeSchema });

export const graphJsonSchema = z.strictObject({
  format: z.literal(IR_JSON_FORMAT),
  version: z.literal(IR_JSON_VERSION),
  name: z.string().min(1),
  symbols: z.record(z.string(), z.number().int().positive()),
  params: z.array(
    z.strictObject({
      name: z.string().min(1),
      dtype: dtypeSchema,
      shape: shapeSchema,
      quant: z.strictObject({ format: z.literal("mxfp4"), role: z.enum(["blocks", "scales"]), weight: z.string() }).optional(),
      slice: z.strictObject({
        full: z.array(z.number().int().nonnegative()),
        axes: z.array(z.strictObject({ axis: z.number().int().nonnegative(), ranges: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])) })),
      }).optional(),
    }),
  ),
  /** Model state (absent in graphs without any). */
  states: z.array(declSchema).optional(),
  nodes: z.array(nodeSchema),
  entries: z.array(
    z.strictObject({
      name: z.string().min(1),
      buckets: z.strictObject({ symbol: z.string().min(1), cobounded: z.array(z.string().min(1)) }).optional(),
      inputs: z.array(declSchema),
      outputs: z.array(z.strictObject({ name: z.string().min(1), node: z.number().int().nonnegative() })),
      updates: z.array(z.strictObject({ name: z.string().min(1), node: z.number().int().nonnegative() })).optional(),
    }),
  ),
});

/** The JSON value of a graph (what `JSON.stringify` writes to disk). */
export type GraphJson = z.input<typeof graphJsonSchema>;

// ---- encoding ----------------------------------------------------------------------------------

/** Replaces non-finite numbers and −0 by their string spellings, recursively. */
function encodeNumbers(v: unknown): unknown {
  if (typeof v === "number") return encodeNumber(v);
  if (Array.isArray(v)) return v.map(encodeNumbers);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encodeNumbers(x)]));
  return v;
}

function encodeShape(s: Shape): Dim[] {
  return [...s];
}

export function graphToJson(g: Graph): GraphJson {
  const nodes = graphNodes(g);
  const ids = new Map<Node, number>();
  nodes.forEach((n, i) => ids.set(n, i));
  return {
    format: IR_JSON_FORMAT,
    version: IR_JSON_VERSION,
    name: g.name,
    symbols: { ...g.symbols },
    params: g.params.map((p) => ({
      name: p.name,
      dtype: p.dtype,
      shape: encodeShape(p.shape),
      ...(p.quant ? { quant: { ...p.quant } } : {}),
      ...(p.slice ? { slice: { full: [...p.slice.full], axes: p.slice.axes.map((a) => ({ axis: a.axis, ranges: a.ranges.map(([s, e]): [number, number] => [s, e]) })) } } : {}),
    })),
    ...(g.states.length ? { states: g.states.map((st) => ({ name: st.name, dtype: st.dtype, shape: encodeShape(st.shape) })) } : {}),
    nodes: nodes.map((n) => ({
      op: n.op,
      attrs: encodeNumbers(n.attrs) as Record<string, unknown>,
      inputs: n.inputs.map((i) => ids.get(i)!),
      dtype: n.dtype,
      shape: encodeShape(n.shape),
      ...(n.site ? { site: { ...n.site } } : {}),
    })),
    entries: g.entries.map((e) => ({
      name: e.name,
      ...(e.buckets ? { buckets: { symbol: e.buckets.symbol, cobounded: [...e.buckets.cobounded] } } : {}),
      inputs: e.inputs.map((i) => ({ name: i.name, dtype: i.dtype, shape: encodeShape(i.shape) })),
      outputs: e.outputs.map((o) => ({ name: o.name, node: ids.get(o.node)! })),
      ...(e.updates.length ? { updates: e.updates.map((u) => ({ name: u.name, node: ids.get(u.node)! })) } : {}),
    })),
  };
}

export function graphToJsonText(g: Graph): string {
  return JSON.stringify(graphToJson(g), null, 1);
}

// ---- decoding ----------------------------------------------------------------------------------

function zodProblems(err: z.ZodError, prefix: string): string {
  return err.issues.map((i) => `${prefix}${i.path.length ? `.${i.path.join(".")}` : ""}: ${i.message}`).join("; ");
}

/** Validates and rebuilds a graph from its JSON value; errors name the offending path or node. */
export function graphFromJson(value: unknown, source = "graph JSON"): Graph {
  const parsed = graphJsonSchema.safeParse(value);
  if (!parsed.success) throw new IRError(`${source} is malformed: ${zodProblems(parsed.error, "$")}`);
  const j = parsed.data;
  const table = new NodeTable();
  const nodes: Node[] = [];
  j.nodes.forEach((raw, idx) => {
    const where = `${source}: node ${idx} (${raw.op})`;
    const attrs = (ATTR_SCHEMAS[raw.op] as z.ZodType<OpAttrs[Op]>).safeParse(raw.attrs);
    if (!attrs.success) throw new IRError(`${where} has bad attributes: ${zodProblems(attrs.error, "attrs")}`);
    const inputs = raw.inputs.map((i) => {
      const n = nodes[i];
      if (!n) throw new IRError(`${where} refers to node ${i}, which is not an earlier node`);
      return n;
    });
    const site: SourceSite | undefined = raw.site;
    let node: Node;
    try {
      node = table.make(raw.op, attrs.data, inputs, site);
    } catch (err) {
      throw new IRError(`${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (node.dtype !== raw.dtype || !shapesEqual(node.shape, raw.shape)) {
      throw new IRError(`${where} records ${raw.dtype}${formatShape(raw.shape)} but its operands give ${node.dtype}${formatShape(node.shape)}`);
    }
    nodes.push(node);
  });
  const nodeAt = (i: number, what: string): Node => {
    const n = nodes[i];
    if (!n) throw new IRError(`${source}: ${what} refers to node ${i}, but there are ${nodes.length}`);
    return n;
  };
  const entries: EntryPoint[] = j.entries.map((e) => ({
    name: e.name,
    ...(e.buckets ? { buckets: { symbol: e.buckets.symbol, cobounded: [...e.buckets.cobounded] } } : {}),
    inputs: e.inputs.map((i) => ({ name: i.name, dtype: i.dtype as DType, shape: i.shape })),
    outputs: e.outputs.map((o) => ({ name: o.name, node: nodeAt(o.node, `entry ${e.name} output ${o.name}`) })),
    updates: (e.updates ?? []).map((u) => ({ name: u.name, node: nodeAt(u.node, `entry ${e.name} update of ${u.name}`) })),
  }));
  const params: ParamDecl[] = j.params.map((p) => ({ name: p.name, dtype: p.dtype, shape: p.shape, ...(p.quant ? { quant: p.quant } : {}), ...(p.slice ? { slice: p.slice } : {}) }));
  const states = (j.states ?? []).map((st) => ({ name: st.name, dtype: st.dtype as DType, shape: st.shape }));
  const g: Graph = { name: j.name, symbols: j.symbols, params, states, entries, table };
  const problems = verifyGraph(g);
  if (problems.length) throw new IRError(`${source} describes an invalid graph:\n  ${problems.join("\n  ")}`);
  return g;
}

export function graphFromJsonText(text: string, source = "graph JSON"): Graph {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new IRError(`${source} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return graphFromJson(value, source);
}
