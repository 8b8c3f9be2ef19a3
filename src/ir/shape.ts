// Shapes: a list of dims, each a number or a symbolic dim.
//
// A symbolic dim is a canonical linear expression over named symbols, written as a string:
// "tokens", "kvLen+tokens", "tokens+127". Symbols are declared once per graph with an upper bound;
// the memory planner plans at that bound and kernels take the actual value as an argument.
// Keeping symbolic dims as canonical strings makes them trivially hashable, printable and comparable.

export type Dim = number | string;
export type Shape = readonly Dim[];

/** Upper bounds of the symbols a graph declares. */
export type SymbolBounds = Readonly<Record<string, number>>;
/** Actual values of symbols for one run. */
export type SymbolValues = Readonly<Record<string, number>>;

const SYMBOL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isSymbolName(s: string): boolean {
  return SYMBOL_NAME.test(s);
}

interface LinearDim {
  readonly terms: ReadonlyMap<string, number>; // symbol -> coefficient (non-zero)
  readonly constant: number;
}

/** Parses a dim into its linear form; throws on a malformed expression. */
function parseDim(d: Dim): LinearDim {
  if (typeof d === "number") return { terms: new Map(), constant: d };
  const terms = new Map<string, number>();
  let constant = 0;
  for (const raw of d.split("+")) {
    const part = raw.trim();
    const m = /^(?:(\d+)\*)?([A-Za-z_][A-Za-z0-9_]*)$/.exec(part);
    if (m) {
      const coeff = m[1] === undefined ? 1 : Number(m[1]);
      terms.set(m[2]!, (terms.get(m[2]!) ?? 0) + coeff);
    } else if (/^\d+$/.test(part)) {
      constant += Number(part);
    } else {
      throw new Error(`malformed symbolic dim "${d}"`);
    }
  }
  return { terms, constant };
}

function formatDim(l: LinearDim): Dim {
  const names = [...l.terms.keys()].filter((k) => l.terms.get(k) !== 0).sort();
  if (names.length === 0) return l.constant;
  const parts = names.map((n) => (l.terms.get(n) === 1 ? n : `${l.terms.get(n)}*${n}`));
  if (l.constant !== 0) parts.push(String(l.constant));
  return parts.join("+");
}

/** Canonical form of a dim (sorted terms, folded constants); a purely numeric expression becomes a number. */
export function canonicalDim(d: Dim): Dim {
  return typeof d === "number" ? d : formatDim(parseDim(d));
}

export function isStaticDim(d: Dim): d is number {
  return typeof d === "number";
}

export function isStaticShape(s: Shape): s is readonly number[] {
  return s.every(isStaticDim);
}

/** Symbols a dim mentions. */
export function dimSymbols(d: Dim): string[] {
  return typeof d === "number" ? [] : [...parseDim(d).terms.keys()];
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a + b;
  const la = parseDim(a);
  const lb = parseDim(b);
  const terms = new Map(la.terms);
  for (const [k, v] of lb.terms) terms.set(k, (terms.get(k) ?? 0) + v);
  return formatDim({ terms, constant: la.constant + lb.constant });
}

export function dimsEqual(a: Dim, b: Dim): boolean {
  return canonicalDim(a) === canonicalDim(b);
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimsEqual(d, b[i]!));
}

/** Value of a dim given actual symbol values (or bounds, to get its upper bound). */
export function evalDim(d: Dim, values: SymbolValues): number {
  if (typeof d === "number") return d;
  const l = parseDim(d);
  let v = l.constant;
  for (const [name, coeff] of l.terms) {
    const x = values[name];
    if (x === undefined) throw new Error(`symbol "${name}" has no value`);
    v += coeff * x;
  }
  return v;
}

/** A dim's upper bound under `bounds`: Infinity when one of its symbols has none (unbounded, prefill-sized). */
export function dimBound(d: Dim, bounds: SymbolValues = {}): number {
  try {
    return evalDim(d, bounds);
  } catch {
    return Infinity;
  }
}

export function evalShape(s: Shape, values: SymbolValues): number[] {
  return s.map((d) => evalDim(d, values));
}

/**
 * The most elements one tensor may hold: kernels index buffers with a 32-bit `int`, so a tensor of 2^31
 * elements or more would be addressed with wrapped, negative indices.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

export function numElements(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function formatShape(s: Shape): string {
  return `[${s.join(", ")}]`;
}

/**
 * Whether two shapes hold the same number of elements for every value of the symbols: the symbolic
 * dims must match as a multiset and the products of the static dims must agree. (Reshape never
 * splits or merges a symbolic dim with others.)
 */
export function sameElementCount(a: Shape, b: Shape): boolean {
  const staticProduct = (s: Shape) => numElements(s.filter(isStaticDim));
  const symbolic = (s: Shape) => s.filter((d) => !isStaticDim(d)).map((d) => String(canonicalDim(d))).sort();
  const sa = symbolic(a);
  const sb = symbolic(b);
  return staticProduct(a) === staticProduct(b) && sa.length === sb.length && sa.every((d, i) => d === sb[i]);
}

/** Normalizes a possibly negative axis against `rank`; undefined when out of range. */
export function normalizeAxis(axis: number, rank: number): number | undefined {
  const a = axis < 0 ? axis + rank : axis;
  return Number.isInteger(a) && a >= 0 && a < rank ? a : undefined;
}

/**
 * Binds symbol values by matching a declared shape against an actual one; returns an error string on
 * mismatch. Only plain-symbol dims bind; compound dims are checked after binding.
 */
export function bindShape(declared: Shape, actual: readonly number[], values: Record<string, number>): string | undefined {
  if (declared.length !== actual.length) return `rank ${actual.length} does not match ${formatShape(declared)}`;
  for (let i = 0; i < declared.length; i++) {
    const d = declared[i]!;
    if (typeof d === "string" && isSymbolName(d)) {
      const prev = values[d];
      if (prev !== undefined && prev !== actual[i]) return `symbol ${d} is ${prev} elsewhere but ${actual[i]} here`;
      values[d] = actual[i]!;
    }
  }
  for (let i = 0; i < declared.length; i++) {
    const d = declared[i]!;
    const expected = evalDim(d, values);
    if (expected !== actual[i]) return `dim ${i} is ${actual[i]}, expected ${d}${typeof d === "string" ? ` = ${expected}` : ""}`;
  }
  return undefined;
}

/** a − b when it is a constant (the symbols cancel), else undefined. */
export function constantDifference(a: Dim, b: Dim): number | undefined {
  const la = parseDim(a);
  const lb = parseDim(b);
  const names = new Set([...la.terms.keys(), ...lb.terms.keys()]);
  for (const n of names) if ((la.terms.get(n) ?? 0) !== (lb.terms.get(n) ?? 0)) return undefined;
  return la.constant - lb.constant;
}
