// The pattern language of rewrite rules.
//
// A pattern is a tree matched against a node and its operands:
//   op("binary", { fn: "mul" }, [capture("x"), capture("x")])        x · x (both operands the same node)
//   op("binary", { fn: "add" }, [p, constant()], { commutative: true }) p + c in either order
//   maybe("cast", p)                                                  cast(p) or p itself
// `capture(name)` matches any node (optionally filtered) and binds it; a name bound twice must bind
// the same node. Attribute filters are partial: only the listed attributes must be equal.
// A match reports its interior (the nodes matched by `op` patterns), which the driver uses for the
// legality check that fused intermediates have no users outside the match.

import type { Node, NodeOf } from "../ir/node.js";
import type { Op, OpAttrs } from "../ir/ops.js";

export type NodePredicate = (n: Node) => boolean;

export type Pattern =
  | { readonly kind: "capture"; readonly name: string | undefined; readonly where: NodePredicate | undefined }
  | {
      readonly kind: "op";
      readonly op: Op;
      readonly attrs: Readonly<Record<string, unknown>> | undefined;
      readonly inputs: readonly Pattern[] | undefined;
      readonly commutative: boolean;
      readonly name: string | undefined;
      readonly where: NodePredicate | undefined;
    }
  | { readonly kind: "maybe"; readonly op: Op; readonly attrs: Readonly<Record<string, unknown>> | undefined; readonly inner: Pattern }
  | { readonly kind: "oneOf"; readonly options: readonly Pattern[] };

export interface OpPatternOptions {
  /** Try the two operands in both orders. */
  readonly commutative?: boolean;
  /** Bind the matched node under this name. */
  readonly name?: string;
  readonly where?: NodePredicate;
}

/** Matches any node; binds it when named. */
export function capture(name?: string, where?: NodePredicate): Pattern {
  return { kind: "capture", name, where };
}

/** Matches a node of `op` whose attributes include `attrs` and whose operands match `inputs` (all of them, in order). */
export function op<K extends Op>(opName: K, attrs?: Partial<OpAttrs[K]>, inputs?: readonly Pattern[], options: OpPatternOptions = {}): Pattern {
  return {
    kind: "op",
    op: opName,
    attrs: attrs as Readonly<Record<string, unknown>> | undefined,
    inputs,
    commutative: options.commutative ?? false,
    name: options.name,
    where: options.where,
  };
}

/** `op(inner)` or `inner` itself: for optional casts and broadcasts around a pattern. */
export function maybe<K extends Op>(opName: K, inner: Pattern, attrs?: Partial<OpAttrs[K]>): Pattern {
  return { kind: "maybe", op: opName, attrs: attrs as Readonly<Record<string, unknown>> | undefined, inner };
}

/** The first alternative that matches. */
export function oneOf(...options: Pattern[]): Pattern {
  return { kind: "oneOf", options };
}

/** A scalar-valued constant: a splat `constant`, optionally broadcast. Binds the constant node when named. */
export function constant(name?: string, where?: (value: number) => boolean): Pattern {
  return maybe("broadcast", capture(name, (n) => n.op === "constant" && (where === undefined || where((n as NodeOf<"constant">).attrs.value))));
}

export interface Match {
  readonly root: Node;
  readonly captures: ReadonlyMap<string, Node>;
  /** Nodes matched by `op` and `maybe` patterns (the computation a fusion replaces), root included. */
  readonly interior: ReadonlySet<Node>;
}

/** Match state, mutated while matching and restored on backtracking. */
interface State {
  readonly captures: Map<string, Node>;
  /** Interior nodes with how many pattern positions matched them (a node can be matched twice, e.g. x · x). */
  readonly interior: Map<Node, number>;
}

function attrsMatch(n: Node, attrs: Readonly<Record<string, unknown>> | undefined): boolean {
  if (!attrs) return true;
  const actual = n.attrs as Readonly<Record<string, unknown>>;
  return Object.entries(attrs).every(([k, v]) => JSON.stringify(actual[k]) === JSON.stringify(v));
}

/** Binds `name` to `n` (or checks an existing binding); returns an undo function, or undefined on conflict. */
function bind(s: State, name: string | undefined, n: Node): (() => void) | undefined {
  if (name === undefined) return () => {};
  const prev = s.captures.get(name);
  if (prev !== undefined) return prev === n ? () => {} : undefined;
  s.captures.set(name, n);
  return () => s.captures.delete(name);
}

function enter(s: State, n: Node): () => void {
  s.interior.set(n, (s.interior.get(n) ?? 0) + 1);
  return () => {
    const c = s.interior.get(n)! - 1;
    if (c === 0) s.interior.delete(n);
    else s.interior.set(n, c);
  };
}

/**
 * Yields once for every way `p` matches `n`, with `s` holding that match's bindings; the bindings
 * are undone before the generator moves on (backtracking), so states are never copied.
 */
function* matchAll(p: Pattern, n: Node, s: State): Generator<void> {
  switch (p.kind) {
    case "capture": {
      if (p.where && !p.where(n)) return;
      const undo = bind(s, p.name, n);
      if (!undo) return;
      yield;
      undo();
      return;
    }
    case "oneOf":
      for (const o of p.options) yield* matchAll(o, n, s);
      return;
    case "maybe": {
      // prefer consuming the optional wrapper
      if (n.op === p.op && attrsMatch(n, p.attrs) && n.inputs.length === 1) {
        const leave = enter(s, n);
        yield* matchAll(p.inner, n.inputs[0]!, s);
        leave();
      }
      yield* matchAll(p.inner, n, s);
      return;
    }
    case "op": {
      if (n.op !== p.op || !attrsMatch(n, p.attrs) || (p.where && !p.where(n))) return;
      const undo = bind(s, p.name, n);
      if (!undo) return;
      const leave = enter(s, n);
      if (!p.inputs) yield;
      else if (p.inputs.length === n.inputs.length) {
        const orders = p.commutative && n.inputs.length === 2 ? [[0, 1], [1, 0]] : [n.inputs.map((_, i) => i)];
        for (const order of orders) yield* matchInputs(p.inputs, n, order, 0, s);
      }
      leave();
      undo();
      return;
    }
  }
}

function* matchInputs(patterns: readonly Pattern[], n: Node, order: readonly number[], i: number, s: State): Generator<void> {
  if (i === patterns.length) {
    yield;
    return;
  }
  for (const _ of matchAll(patterns[i]!, n.inputs[order[i]!]!, s)) yield* matchInputs(patterns, n, order, i + 1, s);
}

function snapshot(root: Node, s: State): Match {
  return { root, captures: new Map(s.captures), interior: new Set(s.interior.keys()) };
}

/** The ops a node must have for `pattern` to match it there, or "any". Lets the driver skip rules cheaply. */
export function rootOps(pattern: Pattern): ReadonlySet<Op> | "any" {
  switch (pattern.kind) {
    case "capture":
      return "any";
    case "op":
      return new Set([pattern.op]);
    case "maybe": {
      const inner = rootOps(pattern.inner);
      return inner === "any" ? "any" : new Set([pattern.op, ...inner]);
    }
    case "oneOf": {
      const all = new Set<Op>();
      for (const o of pattern.options) {
        const r = rootOps(o);
        if (r === "any") return "any";
        for (const x of r) all.add(x);
      }
      return all;
    }
  }
}

/** Matches `pattern` at `node`; undefined when it does not match. */
export function match(pattern: Pattern, node: Node): Match | undefined {
  const s: State = { captures: new Map(), interior: new Map() };
  for (const _ of matchAll(pattern, node, s)) return snapshot(node, s);
  return undefined;
}

/** Every way `pattern` matches `node`, lazily (rules take the first one their legality accepts). */
export function* matches(pattern: Pattern, node: Node): Generator<Match> {
  const s: State = { captures: new Map(), interior: new Map() };
  for (const _ of matchAll(pattern, node, s)) yield snapshot(node, s);
}

/** A captured node, typed by op; throws if the rule's pattern did not bind it (a rule bug). */
export function captured<K extends Op>(m: Match, name: string, opName?: K): NodeOf<K> {
  const n = m.captures.get(name);
  if (!n) throw new Error(`pattern bound no node named ${name}`);
  if (opName !== undefined && n.op !== opName) throw new Error(`capture ${name} is ${n.op}, expected ${opName}`);
  return n as NodeOf<K>;
}
