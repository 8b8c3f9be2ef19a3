// Elementwise code generation: one generic emitter turns a body of FusedInstr over strided sources
// into a kernel, and every elementwise primitive (unary, binary, ternary, compare, cast, broadcast,
// constant, iota, literal) is a one-instruction body that goes through it. Pure data movement whose
// index map is affine (slice, a transpose that keeps the last dim) uses the same engine with a body
// that only reads its input (see movement.ts).
//
// Index mapping. The output is written contiguously. Each source is read at
//   base + Σ_k coord_k · stride_k
// over the output dims, with stride 0 on broadcast dims. Before emitting, adjacent output dims that
// every source walks contiguously are merged (a same-shape op becomes one flat dim, a bias broadcast
// [T, D] ← [D] two), size-1 dims are dropped, and only the merged dims are decomposed in the kernel.
// Sizes and strides are monomials (static factor × symbolic dims); symbolic dims arrive as i32
// arguments, static ones are baked in, so index arithmetic by static sizes is division by constants.
//
// Vectorization: each thread handles VEC consecutive output elements (16-byte stores where the
// innermost merged dim allows); sources whose innermost stride is 1 and whose offsets stay
// VEC-aligned load 16 bytes at once, sources broadcast along it load once, others load per element.
// Buffers are assumed 16-byte aligned (the arena aligns every buffer to 256 bytes; a reshape is a
// view of the same base).
//
// Numerics follow interpret.ts exactly in structure: every instruction's result is rounded to its
// dtype (bf16/f16 round to nearest even), f32 arithmetic uses the _rn intrinsics so nothing is
// contracted into an FMA, integer division truncates (÷0 gives 0), min/max propagate NaN,
// sigmoid = 1/(1+exp(−x)), float→int casts truncate and wrap like a two's-complement store, a cast to
// bool is (x != 0) (NaN is true), bool is 0/1. Integer pow is exact modulo 2^32 / 2^64 (the
// interpreter's f64 power agrees wherever it is exact, |x^y| < 2^53).

import { createHash } from "node:crypto";
import { type DType, dtypeBytes, isFloat, roundTo } from "../ir/dtype.js";
import type { Node, NodeOf } from "../ir/node.js";
import { type FusedInstr, fusedBodyTypes } from "../ir/ops.js";
import { type Dim, type Shape, canonicalDim, formatShape } from "../ir/shape.js";
import { type ArgBinding, type KernelLaunch, type NodeKernels, type SizeExpr, linearGrid, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

// ---- monomials: static factor × symbolic dims ----------------------------------------------------

/** c · Π syms, where each sym is a canonical symbolic dim ("tokens", "past+tokens") passed as an i32 argument. */
export interface Mono {
  readonly c: number;
  readonly syms: readonly string[];
}

export const ZERO: Mono = { c: 0, syms: [] };
export const ONE: Mono = { c: 1, syms: [] };

export function monoOf(d: Dim): Mono {
  const canon = canonicalDim(d);
  return typeof canon === "number" ? { c: canon, syms: [] } : { c: 1, syms: [canon] };
}

export function monoConst(c: number): Mono {
  return { c, syms: [] };
}

export function monoMul(a: Mono, b: Mono): Mono {
  const c = a.c * b.c;
  return c === 0 ? ZERO : { c, syms: [...a.syms, ...b.syms].sort() };
}

export function monoProduct(ms: readonly Mono[]): Mono {
  return ms.reduce(monoMul, ONE);
}

export function monoEq(a: Mono, b: Mono): boolean {
  return a.c === b.c && a.syms.length === b.syms.length && a.syms.every((s, i) => s === b.syms[i]);
}

export function isStaticMono(m: Mono, value?: number): boolean {
  return m.syms.length === 0 && (value === undefined || m.c === value);
}

/** Whether v divides the monomial for every value of its symbols. */
export function monoDivisible(m: Mono, v: number): boolean {
  return m.c % v === 0;
}

/** The monomial as a launch-size expression. */
export function monoSize(m: Mono, divisor = 1): SizeExpr {
  return sizeExpr(m.syms, m.c, divisor);
}

/** Row-major strides of a shape, as monomials. */
export function contiguousStrides(shape: Shape): Mono[] {
  const out: Mono[] = new Array<Mono>(shape.length);
  let acc = ONE;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc = monoMul(acc, monoOf(shape[i]!));
  }
  return out;
}

/** Strides with which an operand of `inShape` is read when broadcast (numpy, right-aligned) to `outShape`. */
export function broadcastStrides(inShape: Shape, outShape: Shape): Mono[] {
  const off = outShape.length - inShape.length;
  const strides = contiguousStrides(inShape);
  return outShape.map((_, k) => {
    const a = k - off;
    return a < 0 || inShape[a] === 1 ? ZERO : strides[a]!;
  });
}

/** Largest power of two ≤ cap that divides the monomial's static factor. */
export function pow2Divisor(m: Mono, cap: number): number {
  let v = cap;
  while (v > 1 && !monoDivisible(m, v)) v >>= 1;
  return Math.max(v, 1);
}

/** Symbolic dims used by a kernel: each becomes an `int sN` parameter bound to the dim's value. */
export class SymbolArgs {
  private readonly atoms: string[] = [];

  name(atom: string): string {
    let i = this.atoms.indexOf(atom);
    if (i < 0) i = this.atoms.push(atom) - 1;
    return `s${i}`;
  }

  /** C expression (unsigned long long) for a monomial. */
  expr(m: Mono): string {
    if (m.c === 0) return "0ull";
    const parts = m.syms.map((s) => `(u64)${this.name(s)}`);
    if (m.c !== 1 || parts.length === 0) parts.unshift(`${m.c}ull`);
    return parts.join(" * ");
  }

  /** `int s0, int s1, …` parameter declarations (as a list) and their bindings, in order. */
  params(): string[] {
    return this.atoms.map((_, i) => `int s${i}`);
  }

  bindings(): ArgBinding[] {
    return this.atoms.map((a) => ({ kind: "i32", value: sizeExpr([a]) }));
  }
}

/** Merged iteration dims: sizes and, per source, strides. */
export interface Collapsed {
  readonly sizes: readonly Mono[];
  /** strides[source][dim] */
  readonly strides: readonly (readonly Mono[])[];
}

/**
 * Drops size-1 dims and merges adjacent dims k, k+1 wherever every source has
 * stride_k = stride_{k+1} · size_{k+1}. Always returns at least one dim.
 */
export function collapseDims(sizes: readonly Mono[], strides: readonly (readonly Mono[])[]): Collapsed {
  const axes = sizes
    .map((size, k) => ({ size, strides: strides.map((s) => s[k]!) }))
    .filter((a) => !isStaticMono(a.size, 1));
  const out: { size: Mono; strides: Mono[] }[] = [];
  for (let k = axes.length - 1; k >= 0; k--) {
    const a = axes[k]!;
    const inner = out[0];
    if (inner && a.strides.every((s, i) => monoEq(s, monoMul(inner.strides[i]!, inner.size)))) {
      out[0] = { size: monoMul(a.size, inner.size), strides: inner.strides };
    } else {
      out.unshift({ size: a.size, strides: a.strides });
    }
  }
  if (out.length === 0) out.push({ size: ONE, strides: strides.map(() => ZERO) });
  return { sizes: out.map((a) => a.size), strides: strides.map((_, i) => out.map((a) => a.strides[i]!)) };
}

// ---- dtypes in generated code ---------------------------------------------------------------------

/** Register type of a value of each dtype inside a kernel body. */
export function computeType(d: DType): string {
  switch (d) {
    case "f32": case "f16": case "bf16": return "float";
    case "i32": case "u8": case "bool": return "int";
    case "i64": return "long long";
    case "fp4e2m1x2": case "e8m0": throw new Error(`tsgc codegen: ${d} is storage-only; only dequantMxfp4 reads it`);
  }
}

export function storageType(d: DType): string {
  return CUDA_STORAGE_TYPE[d];
}

/** Storage element → register value. */
export function loadExpr(d: DType, raw: string): string {
  switch (d) {
    case "bf16": return `bf16_to_f32(${raw})`;
    case "f16": return `f16_to_f32(${raw})`;
    case "u8": return `(int)(${raw})`;
    case "bool": return `(int)((${raw}) != 0)`;
    default: return raw;
  }
}

/** Register value (already representable in d) → storage element. */
export function storeExpr(d: DType, v: string): string {
  switch (d) {
    case "bf16": return `f32_to_bf16(${v})`;
    case "f16": return `f32_to_f16(${v})`;
    case "u8": case "bool": return `(unsigned char)(${v})`;
    default: return v;
  }
}

/** Rounds an f32 register value to what a float dtype holds. */
function roundFloat(d: DType, v: string): string {
  return d === "bf16" ? `tsgc_round_bf16(${v})` : d === "f16" ? `tsgc_round_f16(${v})` : v;
}

/** A C literal of `value` stored in `dtype` (rounded as the interpreter rounds constants). */
export function cLiteral(dtype: DType, value: number): string {
  const v = roundTo(dtype, value);
  if (isFloat(dtype)) {
    if (Number.isNaN(v)) return "__int_as_float(0x7fc00000)";
    if (v === Infinity) return "__int_as_float(0x7f800000)";
    if (v === -Infinity) return "__int_as_float(0xff800000)";
    if (Object.is(v, -0)) return "-0.0f";
    return `${v.toPrecision(9)}f`;
  }
  if (dtype === "i64") return v <= -(2 ** 63) ? "(-9223372036854775807LL - 1)" : `${v}LL`;
  if (dtype === "i32" && v === -2147483648) return "(-2147483647 - 1)";
  return `${v}`;
}

/** The C vector type moving `bytes` bytes at once. */
export function rawVectorType(bytes: number): string {
  switch (bytes) {
    case 16: return "uint4";
    case 8: return "uint2";
    case 4: return "unsigned int";
    case 2: return "unsigned short";
    case 1: return "unsigned char";
    default: throw new Error(`tsgc codegen: no vector type of ${bytes} bytes`);
  }
}

// ---- instruction semantics ------------------------------------------------------------------------

function unaryCode(fn: string, d: DType, a: string): string {
  if (isFloat(d)) {
    const f: Record<string, string> = {
      exp: `expf(${a})`,
      log: `logf(${a})`,
      sqrt: `sqrtf(${a})`,
      rsqrt: `__fdiv_rn(1.0f, sqrtf(${a}))`,
      sigmoid: `__fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-${a})))`,
      tanh: `tanhf(${a})`,
      neg: `(-${a})`,
      abs: `fabsf(${a})`,
      sin: `sinf(${a})`,
      cos: `cosf(${a})`,
    };
    return roundFloat(d, f[fn]!);
  }
  if (d === "u8") return fn === "neg" ? `((-${a}) & 255)` : a;
  const [ct, ut] = d === "i64" ? ["long long", "unsigned long long"] : ["int", "unsigned int"];
  const negated = `(${ct})((${ut})0 - (${ut})${a})`;
  return fn === "neg" ? negated : `(${a} < 0 ? ${negated} : ${a})`;
}

function binaryCode(fn: string, d: DType, a: string, b: string): string {
  if (isFloat(d)) {
    const f: Record<string, string> = {
      add: `__fadd_rn(${a}, ${b})`,
      sub: `__fsub_rn(${a}, ${b})`,
      mul: `__fmul_rn(${a}, ${b})`,
      div: `__fdiv_rn(${a}, ${b})`,
      min: `tsgc_fminf(${a}, ${b})`,
      max: `tsgc_fmaxf(${a}, ${b})`,
      pow: `tsgc_powf(${a}, ${b})`,
    };
    return roundFloat(d, f[fn]!);
  }
  if (d === "u8") {
    const f: Record<string, string> = {
      add: `((${a} + ${b}) & 255)`,
      sub: `((${a} - ${b}) & 255)`,
      mul: `((${a} * ${b}) & 255)`,
      div: `tsgc_idiv(${a}, ${b})`,
      min: `tsgc_min(${a}, ${b})`,
      max: `tsgc_max(${a}, ${b})`,
      pow: `(tsgc_ipow(${a}, ${b}) & 255)`,
    };
    return f[fn]!;
  }
  const [ct, ut] = d === "i64" ? ["long long", "unsigned long long"] : ["int", "unsigned int"];
  const wrap = (op: string) => `(${ct})((${ut})${a} ${op} (${ut})${b})`;
  const f: Record<string, string> = {
    add: wrap("+"),
    sub: wrap("-"),
    mul: wrap("*"),
    div: `tsgc_idiv(${a}, ${b})`,
    min: `tsgc_min(${a}, ${b})`,
    max: `tsgc_max(${a}, ${b})`,
    pow: d === "i64" ? `tsgc_lpow(${a}, ${b})` : `tsgc_ipow(${a}, ${b})`,
  };
  return f[fn]!;
}

const COMPARE_OPS: Record<string, string> = { eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">", ge: ">=" };

function castCode(from: DType, to: DType, a: string): string {
  if (from === to) return a;
  if (isFloat(from)) {
    switch (to) {
      case "f32": case "bf16": case "f16": return roundFloat(to, a);
      case "i32": return `tsgc_f2i32(${a})`;
      case "u8": return `(tsgc_f2i32(${a}) & 255)`;
      case "i64": return `tsgc_f2i64(${a})`;
      case "bool": return `((${a}) != 0.0f ? 1 : 0)`; // C's (x != 0): NaN is true
      default: throw new Error(`tsgc codegen: cannot cast ${from} to ${to}`);
    }
  }
  switch (to) {
    case "f32": case "bf16": case "f16": return roundFloat(to, `(float)(${a})`);
    case "i32": return `(int)(${a})`;
    case "u8": return from === "i64" ? `(int)((${a}) & 255)` : `((${a}) & 255)`;
    case "i64": return `(long long)(${a})`;
    case "bool": return `((${a}) != 0 ? 1 : 0)`;
    default: throw new Error(`tsgc codegen: cannot cast ${from} to ${to}`);
  }
}

/** C statements computing each instruction of `body` into r0, r1, …; `inputs[i]` is the C value of source i. */
export function bodyCode(body: readonly FusedInstr[], types: readonly DType[], inputs: readonly string[]): string[] {
  return body.map((ins, i) => {
    const t = types[i]!;
    const r = (k: number) => `r${k}`;
    let expr: string;
    switch (ins.op) {
      case "input": expr = inputs[ins.index]!; break;
      case "constant": expr = cLiteral(ins.dtype, ins.value); break;
      case "unary": expr = unaryCode(ins.fn, t, r(ins.a)); break;
      case "binary": expr = binaryCode(ins.fn, types[ins.a]!, r(ins.a), r(ins.b)); break;
      case "compare": expr = `(${r(ins.a)} ${COMPARE_OPS[ins.fn]!} ${r(ins.b)} ? 1 : 0)`; break;
      case "ternary":
        expr = ins.fn === "where"
          ? `(${r(ins.a)} != 0 ? ${r(ins.b)} : ${r(ins.c)})`
          : isFloat(t)
            ? `tsgc_fminf(tsgc_fmaxf(${r(ins.a)}, ${r(ins.b)}), ${r(ins.c)})`
            : `tsgc_min(tsgc_max(${r(ins.a)}, ${r(ins.b)}), ${r(ins.c)})`;
        break;
      case "cast": expr = castCode(types[ins.a]!, ins.to, r(ins.a)); break;
    }
    return `const ${computeType(t)} r${i} = ${expr};`;
  });
}

// ---- the generic emitter --------------------------------------------------------------------------

/** One value an elementwise kernel reads per output element. */
export type Source =
  /** Operand `operand` of the node, read at base + Σ coord·stride. */
  | { readonly kind: "buffer"; readonly operand: number; readonly dtype: DType; readonly strides: readonly Mono[]; readonly base: Mono }
  /** The offset itself (base + Σ coord·stride) converted to `dtype`: iota. */
  | { readonly kind: "index"; readonly dtype: DType; readonly strides: readonly Mono[]; readonly base: Mono }
  /** A static table baked into the source (values already in `dtype`): literal. */
  | { readonly kind: "table"; readonly dtype: DType; readonly values: readonly number[]; readonly strides: readonly Mono[]; readonly base: Mono };

export interface ElementwiseSpec {
  /** Readable part of the kernel name, e.g. "add_bf16". */
  readonly label: string;
  /** Output shape (contiguous) and dtype. */
  readonly shape: Shape;
  readonly dtype: DType;
  readonly sources: readonly Source[];
  /** Instructions; `input i` reads sources[i]; the last instruction is the output. */
  readonly body: readonly FusedInstr[];
  /** Template family that names the kernel (default "elementwise"). */
  readonly family?: string;
  /** One-line description of the op for the kernel's header comment. */
  readonly what?: string;
}

export const ELEMENTWISE_BLOCK = 256;

/** A source's C value per element: before the vector branch, in it, and in the per-element loop (j = element index). */
interface SourceCode {
  readonly pre: string;
  readonly vecPre: string;
  readonly vecValue: string;
  readonly scalarValue: string;
}

function kernelName(family: string, label: string, context: unknown): string {
  const hash = createHash("sha256").update(JSON.stringify(context)).digest("hex").slice(0, 10);
  return `${family}_${label.replace(/[^A-Za-z0-9_]/g, "_")}_${hash}`;
}

/** Renders a template whose context names its entry point `entry`; the name hashes everything else. */
export function renderKernel(family: string, label: string, template: string, context: Record<string, unknown>): { name: string; source: string } {
  const name = kernelName(family, label, context);
  return { name, source: renderTemplate(template, { ...context, entry: name }) };
}

/**
 * A shape for a kernel's header comment, symbolic dims written `*` (they are arguments): kernels that
 * differ only in which symbols they take have identical sources and compile once.
 */
export function describeShape(shape: Shape, dtype?: DType): string {
  return `${dtype ?? ""}[${shape.map((d) => (typeof d === "number" ? String(d) : "*")).join(", ")}]`;
}

/** Elements of a shape as a launch size. */
export function elementCount(shape: Shape): SizeExpr {
  return monoSize(monoProduct(shape.map(monoOf)));
}

/** The kernel for one elementwise computation over strided sources. */
export function emitElementwise(spec: ElementwiseSpec): NodeKernels {
  const family = spec.family ?? "elementwise";
  const rank = spec.shape.length;
  for (const s of spec.sources) {
    if (s.strides.length !== rank) throw new Error(`tsgc codegen: a source of ${spec.label} has ${s.strides.length} strides for rank ${rank}`);
  }
  const types = fusedBodyTypes(spec.body, spec.sources.map((s) => s.dtype));
  if (types[types.length - 1] !== spec.dtype) throw new Error(`tsgc codegen: the body of ${spec.label} yields ${types[types.length - 1]}, not ${spec.dtype}`);
  const only = spec.body.length === 1 ? spec.body[0] : undefined;
  const copySource = only?.op === "input" ? spec.sources[only.index] : undefined;
  const copyMode = copySource?.kind === "buffer" && copySource.dtype === spec.dtype;

  const collapsed = collapseDims(spec.shape.map(monoOf), spec.sources.map((s) => s.strides));
  const k = collapsed.sizes.length;
  const innerSize = collapsed.sizes[k - 1]!;
  const innerStride = (i: number) => collapsed.strides[i]![k - 1]!;
  const vectorCandidate = (i: number) => spec.sources[i]!.kind === "buffer" && isStaticMono(innerStride(i), 1);

  // elements per thread: 16 bytes of the widest contiguous stream, within one innermost row
  let widest = dtypeBytes(spec.dtype);
  spec.sources.forEach((s, i) => vectorCandidate(i) && (widest = Math.max(widest, dtypeBytes(s.dtype))));
  let vec = Math.max(1, Math.floor(16 / widest));
  if (k > 1) vec = pow2Divisor(innerSize, vec);

  const syms = new SymbolArgs();
  const dims = collapsed.sizes.map((m) => syms.expr(m));
  const needCoords = k > 1;
  const srcCode: SourceCode[] = [];
  const pointers: string[] = [];
  const tables: { decl: string }[] = [];
  const offsets: string[] = [];
  spec.sources.forEach((s, i) => {
    const strides = collapsed.strides[i]!;
    const terms = strides.map((st, d) => (st.c === 0 ? undefined : `${needCoords ? `c${d}` : "e"}${isStaticMono(st, 1) ? "" : ` * ${syms.expr(st)}`}`)).filter((t) => t !== undefined);
    const base = s.base.c === 0 ? [] : [syms.expr(s.base)];
    offsets.push(`const u64 off${i} = ${[...base, ...terms].join(" + ") || "0ull"};`);
    const inner = innerStride(i);
    const step = inner.c === 0 ? "" : isStaticMono(inner, 1) ? " + j" : ` + j * ${syms.expr(inner)}`;
    const ld = (raw: string) => (copyMode ? raw : loadExpr(s.dtype, raw));
    if (s.kind === "buffer") {
      const st = storageType(s.dtype);
      pointers.push(`const ${st}* __restrict__ in${i}`);
      const aligned = vectorCandidate(i) && vec > 1 && monoDivisible(s.base, vec) && strides.slice(0, -1).every((m) => monoDivisible(m, vec));
      const scalar = ld(`in${i}[off${i}${step}]`);
      if (inner.c === 0) {
        srcCode.push({ pre: `const ${copyMode ? st : computeType(s.dtype)} x${i} = ${ld(`in${i}[off${i}]`)};`, vecPre: "", vecValue: `x${i}`, scalarValue: `x${i}` });
      } else if (aligned) {
        const vt = rawVectorType(vec * dtypeBytes(s.dtype));
        srcCode.push({
          pre: "",
          vecPre: `union { ${vt} raw; ${st} e[${vec}]; } v${i};\n    v${i}.raw = *reinterpret_cast<const ${vt}*>(in${i} + off${i});`,
          vecValue: ld(`v${i}.e[j]`),
          scalarValue: scalar,
        });
      } else {
        srcCode.push({ pre: "", vecPre: "", vecValue: scalar, scalarValue: scalar });
      }
    } else if (s.kind === "index") {
      const v = indexValue(s.dtype, `(off${i}${step})`);
      srcCode.push({ pre: "", vecPre: "", vecValue: v, scalarValue: v });
    } else {
      const ct = computeType(s.dtype);
      tables.push({ decl: `__device__ const ${ct} table${i}[${Math.max(s.values.length, 1)}] = {${s.values.map((v) => cLiteral(s.dtype, v)).join(", ") || "0"}};` });
      const v = `table${i}[off${i}${step}]`;
      srcCode.push({ pre: "", vecPre: "", vecValue: v, scalarValue: v });
    }
  });

  const paramTypes = spec.sources.map((s) => (copyMode ? storageType(s.dtype) : computeType(s.dtype)));
  const outStorage = storageType(spec.dtype);
  const [storeOpen, storeClose] = copyMode ? ["", ""] : wrapParts(storeExpr(spec.dtype, "@"));
  const context = {
    family,
    what: spec.what ?? spec.label,
    shapeText: describeShape(spec.shape, spec.dtype),
    sourcesText: spec.sources.map((s, i) => `${i}: ${s.kind} ${s.dtype}`).join("; ") || "none",
    dimsText: dims.join(" × "),
    block: ELEMENTWISE_BLOCK,
    vec,
    outStorage,
    outVector: rawVectorType(vec * dtypeBytes(spec.dtype)),
    resultType: copyMode ? outStorage : computeType(spec.dtype),
    storeOpen,
    storeClose,
    params: spec.sources.map((_, i) => `${paramTypes[i]} x${i}`),
    body: copyMode ? [`const ${outStorage} r0 = x0;`] : bodyCode(spec.body, types, spec.sources.map((_, i) => `x${i}`)),
    result: `r${spec.body.length - 1}`,
    pointers,
    symParams: syms.params(),
    tables,
    dims,
    needCoords,
    sources: srcCode,
    vecArgs: srcCode.map((c) => c.vecValue).join(", "),
    scalarArgs: srcCode.map((c) => c.scalarValue).join(", "),
    offsets,
  };
  const { name, source } = renderKernel(family, spec.label, "elementwise.cu.njk", context);
  const total = elementCount(spec.shape);
  const launch: KernelLaunch = {
    kernel: { name, family, source, entry: name },
    grid: linearGrid({ ...total, divisor: total.divisor * vec }, ELEMENTWISE_BLOCK),
    block: [ELEMENTWISE_BLOCK, 1, 1],
    sharedBytes: 0,
    args: [
      { kind: "output" },
      ...spec.sources.flatMap((s): ArgBinding[] => (s.kind === "buffer" ? [{ kind: "input", index: s.operand }] : [])),
      ...syms.bindings(),
    ],
  };
  return { launches: [launch], scratchBytes: [] };
}

/** Splits a one-argument expression written around "@" into what goes before and after the argument. */
export function wrapParts(expr: string): [string, string] {
  const at = expr.indexOf("@");
  return [expr.slice(0, at), expr.slice(at + 1)];
}

/** An element offset (u64) converted to `dtype` as iota's value. */
function indexValue(d: DType, off: string): string {
  switch (d) {
    case "f32": case "bf16": case "f16": return roundFloat(d, `(float)${off}`);
    case "i32": return `(int)${off}`;
    case "i64": return `(long long)${off}`;
    case "u8": return `(int)(${off} & 255ull)`;
    case "bool": return `(int)(${off} != 0ull)`;
    default: throw new Error(`tsgc codegen: iota of ${d}`);
  }
}

// ---- node emitters --------------------------------------------------------------------------------

/** Each operand of `node` as a buffer source broadcast to `shape`. */
function operandSources(inputs: readonly Node[], shape: Shape): Source[] {
  return inputs.map((x, i) => ({ kind: "buffer", operand: i, dtype: x.dtype, strides: broadcastStrides(x.shape, shape), base: ZERO }));
}

const input = (index: number): FusedInstr => ({ op: "input", index });

export function emitFusedElementwise(n: NodeOf<"fusedElementwise">): NodeKernels {
  const ops = [...new Set(n.attrs.body.filter((i) => i.op !== "input").map((i) => ("fn" in i ? i.fn : i.op)))];
  return emitElementwise({
    label: `fused${n.attrs.body.length}_${n.dtype}`,
    what: `fused elementwise (${ops.join(", ") || "copy"})`,
    shape: n.attrs.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.attrs.shape),
    body: n.attrs.body,
  });
}

export function emitUnary(n: NodeOf<"unary">): NodeKernels {
  return emitElementwise({
    label: `${n.attrs.fn}_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0), { op: "unary", fn: n.attrs.fn, a: 0 }],
  });
}

export function emitBinary(n: NodeOf<"binary">): NodeKernels {
  return emitElementwise({
    label: `${n.attrs.fn}_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0), input(1), { op: "binary", fn: n.attrs.fn, a: 0, b: 1 }],
  });
}

export function emitTernary(n: NodeOf<"ternary">): NodeKernels {
  return emitElementwise({
    label: `${n.attrs.fn}_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0), input(1), input(2), { op: "ternary", fn: n.attrs.fn, a: 0, b: 1, c: 2 }],
  });
}

export function emitCompare(n: NodeOf<"compare">): NodeKernels {
  return emitElementwise({
    label: `${n.attrs.fn}_${n.inputs[0]!.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0), input(1), { op: "compare", fn: n.attrs.fn, a: 0, b: 1 }],
  });
}

export function emitCast(n: NodeOf<"cast">): NodeKernels {
  return emitElementwise({
    label: `cast_${n.inputs[0]!.dtype}_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0), { op: "cast", to: n.attrs.to, a: 0 }],
  });
}

export function emitBroadcast(n: NodeOf<"broadcast">): NodeKernels {
  return emitElementwise({
    label: `broadcast_${n.dtype}`,
    what: `broadcast ${describeShape(n.inputs[0]!.shape)} → ${describeShape(n.shape)}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: operandSources(n.inputs, n.shape),
    body: [input(0)],
  });
}

export function emitConstant(n: NodeOf<"constant">): NodeKernels {
  return emitElementwise({
    label: `constant_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: [],
    body: [{ op: "constant", value: n.attrs.value, dtype: n.dtype }],
  });
}

export function emitIota(n: NodeOf<"iota">): NodeKernels {
  return emitElementwise({
    label: `iota_${n.dtype}`,
    what: `iota along axis ${n.attrs.axis}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: [{ kind: "index", dtype: n.dtype, strides: n.shape.map((_, k) => (k === n.attrs.axis ? ONE : ZERO)), base: ZERO }],
    body: [input(0)],
  });
}

export function emitLiteral(n: NodeOf<"literal">): NodeKernels {
  return emitElementwise({
    label: `literal_${n.dtype}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: [{ kind: "table", dtype: n.dtype, values: n.attrs.data.map((v) => roundTo(n.dtype, v)), strides: contiguousStrides(n.shape), base: ZERO }],
    body: [input(0)],
  });
}

/** The elementwise family's emitters, by op. */
export const ELEMENTWISE_EMITTERS = {
  fusedElementwise: emitFusedElementwise,
  unary: emitUnary,
  binary: emitBinary,
  ternary: emitTernary,
  compare: emitCompare,
  cast: emitCast,
  broadcast: emitBroadcast,
  constant: emitConstant,
  iota: emitIota,
  literal: emitLiteral,
} as const satisfies { readonly [K in "fusedElementwise" | "unary" | "binary" | "ternary" | "compare" | "cast" | "broadcast" | "constant" | "iota" | "literal"]: (n: NodeOf<K>) => NodeKernels };
