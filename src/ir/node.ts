// IR nodes: immutable, interned, structurally hashed.
//
// A node's hash covers (op, dtype, shape, attrs, input hashes) and nothing else, so two structurally
// equal nodes built anywhere hash alike; that hash is the root of every cache key. The call site
// that first built a node is kept for error messages but is not part of its identity.

import { createHash } from "node:crypto";
import { formatShape } from "./shape.js";
import type { DType } from "./dtype.js";
import type { Shape } from "./shape.js";
import { type Op, type OpAttrs, type TensorType, TYPE_RULES, TypeRuleError } from "./ops.js";

/** Where a node was built: the user's file, line and column. */
export interface SourceSite {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

/** A call site, or a thunk that resolves it on first use (formatting a stack trace is costly). */
export type SiteSource = SourceSite | (() => SourceSite | undefined) | undefined;

function lazySite(source: SiteSource): () => SourceSite | undefined {
  if (typeof source !== "function") return () => source;
  let resolved: { site: SourceSite | undefined } | undefined;
  return () => (resolved ??= { site: source() }).site;
}

export function formatSite(site: SourceSite | undefined): string {
  return site ? `${site.file}:${site.line}:${site.column}` : "<unknown site>";
}

interface NodeFields<K extends Op> {
  readonly op: K;
  readonly attrs: OpAttrs[K];
  readonly inputs: readonly Node[];
  readonly dtype: DType;
  readonly shape: Shape;
  /** Structural hash (hex). */
  readonly hash: string;
  readonly site: SourceSite | undefined;
}

export type Node = { [K in Op]: NodeFields<K> }[Op];
export type NodeOf<K extends Op> = Extract<Node, { op: K }>;

/** A shape, dtype or structure error in the IR, naming the op, operand shapes and the call site. */
export class IRError extends Error {
  constructor(
    message: string,
    readonly site?: SourceSite,
  ) {
    super(message);
    this.name = "IRError";
  }
}

/** JSON with sorted keys and no whitespace: the canonical text attrs are hashed from. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value));
    if (Object.is(value, -0)) return "-0";
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(",")}}`;
}

function hashNode(op: Op, attrs: unknown, type: TensorType, inputs: readonly Node[]): string {
  const h = createHash("sha256");
  h.update(op);
  h.update("\0");
  h.update(type.dtype);
  h.update("\0");
  h.update(stableStringify(type.shape));
  h.update("\0");
  h.update(stableStringify(attrs));
  for (const i of inputs) {
    h.update("\0");
    h.update(i.hash);
  }
  return h.digest("hex").slice(0, 32);
}

export function describeOperands(inputs: readonly TensorType[]): string {
  return inputs.length === 0 ? "no operands" : inputs.map((t) => `${t.dtype}${formatShape(t.shape)}`).join(", ");
}

/**
 * The interning table: `make` returns the existing node when a structurally equal one was built
 * before, so equal subgraphs are shared and pointer equality implies structural equality.
 */
export class NodeTable {
  private readonly nodes = new Map<string, Node>();

  get size(): number {
    return this.nodes.size;
  }

  /** Builds (or finds) a node; type errors become IRErrors naming op, operands and site. */
  make<K extends Op>(op: K, attrs: OpAttrs[K], inputs: readonly Node[], site?: SiteSource): NodeOf<K> {
    const siteOf = lazySite(site);
    let type: TensorType;
    try {
      type = (TYPE_RULES[op] as (a: OpAttrs[K], i: readonly TensorType[]) => TensorType)(attrs, inputs);
    } catch (err) {
      if (err instanceof TypeRuleError) {
        throw new IRError(`${op}: ${err.message} (operands: ${describeOperands(inputs)}) at ${formatSite(siteOf())}`, siteOf());
      }
      throw err;
    }
    const hash = hashNode(op, attrs, type, inputs);
    const existing = this.nodes.get(hash);
    if (existing) return existing as NodeOf<K>;
    const fields = { op, attrs: freezeDeep(attrs), inputs: Object.freeze([...inputs]), dtype: type.dtype, shape: Object.freeze([...type.shape]), hash };
    const node = Object.freeze(Object.defineProperty(fields, "site", { get: siteOf, enumerable: true })) as unknown as NodeOf<K>;
    this.nodes.set(hash, node);
    return node;
  }

  /** Rebuilds `node` with new inputs; returns the same node when nothing changed. */
  withInputs(node: Node, inputs: readonly Node[]): Node {
    if (inputs.length === node.inputs.length && inputs.every((x, i) => x === node.inputs[i])) return node;
    return this.make(node.op, node.attrs as never, inputs, () => node.site);
  }
}

function freezeDeep<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    for (const x of Object.values(v as object)) freezeDeep(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * Nodes reachable from `roots`, inputs before users, in a deterministic order (depth-first, operands left
 * to right). `after(n)` adds nodes that must precede n without being its operands (a state's readers
 * before its in-place update); a cycle through them is an error.
 */
export function topoOrder(roots: readonly Node[], after?: (n: Node) => readonly Node[]): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  const onPath = new Set<Node>();
  // iterative DFS: models with thousands of nodes must not overflow the stack
  const stack: { node: Node; deps: readonly Node[]; next: number }[] = [];
  const depsOf = (n: Node): readonly Node[] => {
    const extra = after?.(n);
    return extra && extra.length > 0 ? [...n.inputs, ...extra] : n.inputs;
  };
  for (const root of roots) {
    if (seen.has(root)) continue;
    seen.add(root);
    onPath.add(root);
    stack.push({ node: root, deps: depsOf(root), next: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.deps.length) {
        const child = top.deps[top.next++]!;
        if (onPath.has(child)) throw new Error(`${top.node.op} must come after ${child.op}, which depends on it (a cycle through an ordering constraint)`);
        if (!seen.has(child)) {
          seen.add(child);
          onPath.add(child);
          stack.push({ node: child, deps: depsOf(child), next: 0 });
        }
      } else {
        order.push(top.node);
        onPath.delete(top.node);
        stack.pop();
      }
    }
  }
  return order;
}

/** The nodes among `nodes` that read each node (each user once, in the order of `nodes`). */
export function usersOf(nodes: readonly Node[]): Map<Node, Node[]> {
  const users = new Map<Node, Node[]>();
  for (const n of nodes) {
    for (const i of new Set(n.inputs)) {
      let list = users.get(i);
      if (!list) users.set(i, (list = []));
      list.push(n);
    }
  }
  return users;
}
