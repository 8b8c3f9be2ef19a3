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

interface State {
  captures: Map<string, Node>;
  interior: Set<Node>;
}

function attrsMatch(n: Node, attrs: Readonly<Record<string, unknown>> | undefined): boolean {
  if (!attrs) return true;
  const actual = n.attrs as Readonly<Record<string, unknown>>;
  return Object.entries(attrs).every(([k, v]) => JSON.stringify(actual[k]) === JSON.stringify(v));
}

function clone(s: State): State {
  return { captures: new Map(s.captures), interior: new Set(s.interior) };
}

function bind(s: State, name: string | undefined, n: Node): boolean {
  if (name === undefined) return true;
  const prev = s.captures.get(name);
  if (prev !== undefined) return prev === n;
  s.captures.set(name, n);
  return true;
}

/** All states in which `p` matches `n`, extending `s` (several when commutative or oneOf branches both match). */
function matchAll(p: Pattern, n: Node, s: State): State[] {
  switch (p.kind) {
    case "capture": {
      if (p.where && !p.where(n)) return [];
      const next = clone(s);
      return bind(next, p.name, n) ? [next] : [];
    }
    case "oneOf":
      return p.options.flatMap((o) => matchAll(o, n, s));
    case "maybe": {
      const direct = matchAll(p.inner, n, s);
      if (n.op !== p.op || !attrsMatch(n, p.attrs) || n.inputs.length !== 1) return direct;
      const through = matchAll(p.inner, n.inputs[0]!, s).map((st) => (st.interior.add(n), st));
      return [...through, ...direct]; // prefer consuming the optional wrapper
    }
    case "op": {
      if (n.op !== p.op || !attrsMatch(n, p.attrs) || (p.where && !p.where(n))) return [];
      const start = clone(s);
      if (!bind(start, p.name, n)) return [];
      start.interior.add(n);
      if (!p.inputs) return [start];
      if (p.inputs.length !== n.inputs.length) return [];
      const orders = p.commutative && n.inputs.length === 2 ? [[0, 1], [1, 0]] : [n.inputs.map((_, i) => i)];
      const results: State[] = [];
      for (const order of orders) {
        let states = [start];
        p.inputs.forEach((sub, i) => {
          states = states.flatMap((st) => matchAll(sub, n.inputs[order[i]!]!, st));
        });
        results.push(...states);
      }
      return results;
    }
  }
}

/** Matches `pattern` at `node`; undefined when it does not match. */
export function match(pattern: Pattern, node: Node): Match | undefined {
  const states = matchAll(pattern, node, { captures: new Map(), interior: new Set() });
  const first = states[0];
  return first ? { root: node, captures: first.captures, interior: first.interior } : undefined;
}

/** Every way `pattern` matches `node` (for rules whose legality picks among alternatives). */
export function matches(pattern: Pattern, node: Node): Match[] {
  return matchAll(pattern, node, { captures: new Map(), interior: new Set() }).map((s) => ({ root: node, captures: s.captures, interior: s.interior }));
}

/** A captured node, typed by op; throws if the rule's pattern did not bind it (a rule bug). */
export function captured<K extends Op>(m: Match, name: string, opName?: K): NodeOf<K> {
  const n = m.captures.get(name);
  if (!n) throw new Error(`pattern bound no node named ${name}`);
  if (opName !== undefined && n.op !== opName) throw new Error(`capture ${name} is ${n.op}, expected ${opName}`);
  return n as NodeOf<K>;
}
