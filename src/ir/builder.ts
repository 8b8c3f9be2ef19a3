// The model-definition API: `defineModel(name, (b) => …)` builds an IR graph from plain math.
//
// Builder methods cover every primitive op; the high-level helpers (linear, rmsNorm, softmax, rope,
// attention, swiglu, moe, embedding) expand into primitives only. Fused ops come from passes, never
// from here, so a model reads as the math it computes and the compiler finds the kernels.
// Every node records the user's call site; a shape or dtype error names the op, operands and that line.

import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { type DType, MXFP4_BLOCK } from "./dtype.js";
import { type Dim, type Shape, MAX_TENSOR_ELEMENTS, canonicalDim, evalShape, formatShape, isStaticShape, isSymbolName, normalizeAxis, numElements } from "./shape.js";
import { type BinaryFn, type CompareFn, type Op, type OpAttrs, type ReduceFn, type UnaryFn, broadcastShapes } from "./ops.js";
import { type Node, type SourceSite, IRError, NodeTable, topoOrder } from "./node.js";
import { type EntryBuckets, type EntryOutput, type EntryPoint, type Graph, type InputDecl, type ParamDecl, type QuantDesc, type StateDecl, entryResults } from "./graph.js";

/** A handle on one IR value: what builder methods take and return. */
export class Tensor {
  constructor(readonly node: Node) {}
  get dtype(): DType {
    return this.node.dtype;
  }
  get shape(): Shape {
    return this.node.shape;
  }
  get rank(): number {
    return this.node.shape.length;
  }
  /** Dim `i` (negative counts from the end). */
  dim(i: number): Dim {
    const a = normalizeAxis(i, this.rank);
    if (a === undefined) throw new IRError(`dim ${i} is out of range for ${formatShape(this.shape)}`, this.node.site);
    return this.shape[a]!;
  }
  toString(): string {
    return `${this.node.op}:${this.dtype}${formatShape(this.shape)}`;
  }
}

export type Scalar = number;
type Operand = Tensor | Scalar;

// ---- call sites -------------------------------------------------------------------------------

const IR_DIR = dirname(fileURLToPath(import.meta.url));
// Frames inside tsgc's IR code are skipped, whether the stack names the built file (dist/src/ir/x.js)
// or, through source maps, its source (src/ir/x.ts).
const PACKAGE_ROOT = IR_DIR.replace(/([\\/]dist)?[\\/]src[\\/]ir$/, "");
const INTERNAL_DIRS = [join(PACKAGE_ROOT, "src", "ir"), join(PACKAGE_ROOT, "dist", "src", "ir")];

/**
 * The user's call site, resolved lazily: capturing a stack is cheap, formatting it is not, and most
 * nodes never need their site. Resolves to the first frame outside tsgc's IR code.
 */
export function captureSite(): () => SourceSite | undefined {
  const savedLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 64;
  const holder = new Error();
  Error.stackTraceLimit = savedLimit;
  return () => siteFromStack(holder.stack ?? "");
}

function siteFromStack(stack: string): SourceSite | undefined {
  for (const raw of stack.split("\n").slice(1)) {
    const m = /(?:\(|at )((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?\s*$/.exec(raw.trim());
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith("file://")) file = fileURLToPath(file);
    if (file.startsWith("node:") || file.includes(`${sep}node_modules${sep}`) || INTERNAL_DIRS.includes(dirname(file))) continue;
    const rel = relative(process.cwd(), file);
    return { file: rel.startsWith("..") ? file : rel, line: Number(m[2]), column: Number(m[3]) };
  }
  return undefined;
}

// ---- options of the high-level helpers ----------------------------------------------------------

/** YaRN frequency scaling for RoPE (gpt-oss: factor 32, original context 4096, beta_fast 32, beta_slow 1). */
export interface YarnScaling {
  readonly factor: number;
  readonly originalContext: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  /** Round the correction range to whole dims (HF `truncate`); gpt-oss uses false. */
  readonly truncate?: boolean;
}

export interface RopeOptions {
  readonly theta: number;
  readonly yarn?: YarnScaling;
}

export interface AttentionOptions {
  /** Positions of the queries, i32 [..., T]. */
  readonly qpos: Tensor;
  /** Positions of the keys, i32 [..., S]; −1 marks an empty cache slot. */
  readonly kpos: Tensor;
  /** 0 for full causal attention; w lets a query see itself and the previous w − 1 positions. */
  readonly window?: number;
  /** Per-head learned sink logits [H]: an extra softmax column that absorbs probability mass. */
  readonly sinks?: Tensor;
  /** Score scale; default 1/sqrt(headDim). */
  readonly scale?: number;
}

/** How `pagedAttention` finds each token's cached keys (src/engine/contract.ts has the layout). */
export interface PagedAttentionOptions {
  /** Position of each token, i32 [T]. */
  readonly positions: Tensor;
  /** Each token's sequence (an index into contextLens and blockTable), i32 [T]. */
  readonly tokenSeqs: Tensor;
  /** Positions of each sequence already in the pool, i32 [S]. */
  readonly contextLens: Tensor;
  /** Physical block of each logical block, i32 [S, MB] (static MB); −1 where there is none. */
  readonly blockTable: Tensor;
  /** Pool rows per block. */
  readonly blockSize: number;
  /** 0 for full causal attention; w lets a query see itself and the previous w − 1 positions. */
  readonly window?: number;
  readonly sinks?: Tensor;
  readonly scale?: number;
}

/** An expert weight stored dense or as MXFP4 blocks and scales (rows = output features). */
export type ExpertWeight = { readonly weight: Tensor } | { readonly blocks: Tensor; readonly scales: Tensor };

export interface MoeOptions {
  readonly routerWeight: Tensor; // [E, D]
  readonly routerBias: Tensor; // [E]
  /** Dense [E, D, 2I] (input-major, used as x·W) or MXFP4 [E, 2I, D/32, 16] + [E, 2I, D/32]. */
  readonly gateUp: ExpertWeight;
  readonly gateUpBias: Tensor; // [E, 2I]
  /** Dense [E, I, D] or MXFP4 [E, D, I/32, 16] + [E, D, I/32]. */
  readonly down: ExpertWeight;
  readonly downBias: Tensor; // [E, D]
  readonly topK: number;
  /** SwiGLU clamp limit (gpt-oss: 7). */
  readonly limit: number;
  /** SwiGLU sigmoid slope (gpt-oss: 1.702). */
  readonly alpha: number;
}

/** Inverse RoPE frequencies for each of the headDim/2 rotated pairs, YaRN-scaled when asked (f64). */
export function ropeInverseFrequencies(headDim: number, opts: RopeOptions): number[] {
  const half = headDim / 2;
  const extrap = Array.from({ length: half }, (_, i) => opts.theta ** (-(2 * i) / headDim));
  const y = opts.yarn;
  if (!y) return extrap;
  const corr = (rotations: number) => (headDim * Math.log(y.originalContext / (rotations * 2 * Math.PI))) / (2 * Math.log(opts.theta));
  let low = corr(y.betaFast);
  let high = corr(y.betaSlow);
  if (y.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, headDim - 1);
  if (low === high) high += 0.001; // HF's guard against a zero-width ramp
  return extrap.map((e, i) => {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    return (e / y.factor) * ramp + e * (1 - ramp);
  });
}

/** YaRN's attention concentration: cos and sin are both scaled by 0.1·ln(factor) + 1. */
export function yarnConcentration(yarn: YarnScaling | undefined): number {
  return yarn && yarn.factor > 1 ? 0.1 * Math.log(yarn.factor) + 1 : 1; // HF's get_mscale: 1 when not stretching
}

// ---- the builder --------------------------------------------------------------------------------

export class ModelBuilder {
  readonly table = new NodeTable();
  private readonly symbolBounds: Record<string, number> = {};
  private readonly paramDecls = new Map<string, ParamDecl>();
  private readonly stateDecls = new Map<string, StateDecl>();
  private readonly entryPoints: EntryPoint[] = [];

  constructor(readonly name: string) {}

  private make<K extends Op>(op: K, attrs: OpAttrs[K], inputs: readonly Tensor[]): Tensor {
    return new Tensor(this.table.make(op, attrs, inputs.map((t) => t.node), captureSite()));
  }

  private error(message: string): never {
    const site = captureSite()();
    throw new IRError(`${message} at ${site ? `${site.file}:${site.line}:${site.column}` : "<unknown site>"}`, site);
  }

  // -- declarations --

  /** Declares a symbolic dim with an upper bound; returns it for use in shapes. */
  sym(name: string, max: number): Dim {
    if (!isSymbolName(name)) this.error(`symbol name "${name}" is not an identifier`);
    if (!Number.isInteger(max) || max < 1) this.error(`symbol ${name} needs a positive integer bound, got ${max}`);
    const prev = this.symbolBounds[name];
    if (prev !== undefined && prev !== max) this.error(`symbol ${name} was declared with bound ${prev}, now ${max}`);
    this.symbolBounds[name] = max;
    return name;
  }

  /** Declares a named parameter (weight); declaring the same name twice must agree. */
  param(name: string, dtype: DType, shape: Shape, quant?: QuantDesc): Tensor {
    const decl: ParamDecl = quant ? { name, dtype, shape: shape.map(canonicalDim), quant } : { name, dtype, shape: shape.map(canonicalDim) };
    const prev = this.paramDecls.get(name);
    if (prev && (prev.dtype !== dtype || formatShape(prev.shape) !== formatShape(decl.shape))) {
      this.error(`param ${name} was declared as ${prev.dtype}${formatShape(prev.shape)}, now ${dtype}${formatShape(decl.shape)}`);
    }
    this.checkSymbols(decl.shape, `param ${name}`);
    this.checkElementCount(`param ${name}`, decl.shape);
    this.paramDecls.set(name, prev ?? decl);
    return this.make("param", { name, dtype, shape: decl.shape }, []);
  }

  /**
   * Declares model state (the KV cache): a tensor in the arena beside the weights that starts zeroed and
   * keeps its value between entry calls. Entries read it like a param and change it with `e.update`. A dim
   * may be a symbol, fixed when the plan is loaded (a load-time symbol: no entry input may use it).
   */
  state(name: string, dtype: DType, shape: Shape): Tensor {
    const decl: StateDecl = { name, dtype, shape: shape.map(canonicalDim) };
    if (this.paramDecls.has(name)) this.error(`state ${name} has the name of a param`);
    const prev = this.stateDecls.get(name);
    if (prev && (prev.dtype !== dtype || formatShape(prev.shape) !== formatShape(decl.shape))) {
      this.error(`state ${name} was declared as ${prev.dtype}${formatShape(prev.shape)}, now ${dtype}${formatShape(decl.shape)}`);
    }
    // a symbol in a state's shape is a load-time symbol: fixed when the plan is loaded (a KV pool sized by free memory)
    for (const dim of decl.shape) {
      if (typeof dim === "string" && !isSymbolName(dim)) this.error(`state ${name} has shape ${formatShape(decl.shape)}; a state dim is a number or one symbol (fixed at load)`);
    }
    this.checkSymbols(decl.shape, `state ${name}`);
    // state sized at load is addressed with 64-bit offsets and sized by the memory the card has; the rest is bounded here
    if (decl.shape.every((d) => typeof d === "number")) this.checkElementCount(`state ${name}`, decl.shape);
    this.stateDecls.set(name, prev ?? decl);
    return this.make("state", { name, dtype, shape: decl.shape }, []);
  }

  /** @internal */
  symbolBound(name: string): number | undefined {
    return this.symbolBounds[name];
  }

  /** @internal */
  stateDecl(name: string): StateDecl | undefined {
    return this.stateDecls.get(name);
  }

  /** MXFP4 weight stored as blocks [..., N, K/32, 16] and scales [..., N, K/32], for logical weight [..., N, K]. */
  mxfp4Param(name: string, logicalShape: readonly number[]): { blocks: Tensor; scales: Tensor } {
    const k = logicalShape[logicalShape.length - 1]!;
    if (k % MXFP4_BLOCK !== 0) this.error(`MXFP4 weight ${name}: last dim ${k} is not a multiple of ${MXFP4_BLOCK}`);
    const lead = logicalShape.slice(0, -1);
    return {
      blocks: this.param(`${name}_blocks`, "fp4e2m1x2", [...lead, k / MXFP4_BLOCK, MXFP4_BLOCK / 2], { format: "mxfp4", role: "blocks", weight: name }),
      scales: this.param(`${name}_scales`, "e8m0", [...lead, k / MXFP4_BLOCK], { format: "mxfp4", role: "scales", weight: name }),
    };
  }

  /** Declares an entry point (e.g. `prefill`, `decode`); its body declares inputs and outputs. */
  entry(name: string, body: (e: EntryBuilder) => void): void {
    if (this.entryPoints.some((e) => e.name === name)) this.error(`entry point ${name} is declared twice`);
    const e = new EntryBuilder(this, name);
    body(e);
    this.entryPoints.push(e.finish());
  }

  checkSymbols(shape: Shape, what: string): void {
    for (const d of shape) {
      if (typeof d !== "string") continue;
      for (const part of d.split("+")) {
        const sym = part.replace(/^\d+\*/, "");
        if (isSymbolName(sym) && this.symbolBounds[sym] === undefined) this.error(`${what} uses undeclared symbol ${sym}; declare it with b.sym()`);
      }
    }
  }

  /**
   * Params, states and inputs are buffers that kernels index with an `int`: each must hold fewer than 2^31
   * elements at the symbols' bounds (intermediate nodes, such as the builder's per-token expert gathers,
   * are fused away before a kernel sees them, so only declarations are checked).
   */
  private checkElementCount(what: string, shape: Shape): void {
    const elements = numElements(evalShape(shape, this.symbolBounds));
    if (elements > MAX_TENSOR_ELEMENTS) {
      const atBounds = isStaticShape(shape) ? "" : " at the symbols' bounds";
      this.error(`${what} ${formatShape(shape)} holds ${elements} elements${atBounds}, more than the ${MAX_TENSOR_ELEMENTS} a kernel's int index addresses`);
    }
  }

  /** @internal */
  inputNode(name: string, dtype: DType, shape: Shape): Tensor {
    this.checkSymbols(shape, `input ${name}`);
    this.checkElementCount(`input ${name}`, shape);
    return this.make("input", { name, dtype, shape: shape.map(canonicalDim) }, []);
  }

  finish(): Graph {
    if (this.entryPoints.length === 0) this.error(`model ${this.name} declares no entry point`);
    const used = new Set<string>();
    for (const n of topoOrder(this.entryPoints.flatMap(entryResults))) {
      if (n.op === "param") used.add(n.attrs.name);
    }
    return {
      name: this.name,
      symbols: { ...this.symbolBounds },
      params: [...this.paramDecls.values()].filter((p) => used.has(p.name)),
      states: [...this.stateDecls.values()],
      entries: [...this.entryPoints],
      table: this.table,
    };
  }

  // -- leaves --

  constant(value: number, dtype: DType, shape: Shape = []): Tensor {
    return this.make("constant", { value, dtype, shape: shape.map(canonicalDim) }, []);
  }
  literal(data: readonly number[], dtype: DType, shape: readonly number[] = [data.length]): Tensor {
    return this.make("literal", { data: [...data], dtype, shape: [...shape] }, []);
  }
  iota(shape: Shape, axis: number, dtype: DType = "i32"): Tensor {
    return this.make("iota", { axis, dtype, shape: shape.map(canonicalDim) }, []);
  }

  // -- elementwise --

  unary(fn: UnaryFn, x: Tensor): Tensor {
    return this.make("unary", { fn }, [x]);
  }
  exp = (x: Tensor) => this.unary("exp", x);
  log = (x: Tensor) => this.unary("log", x);
  sqrt = (x: Tensor) => this.unary("sqrt", x);
  rsqrt = (x: Tensor) => this.unary("rsqrt", x);
  sigmoid = (x: Tensor) => this.unary("sigmoid", x);
  tanh = (x: Tensor) => this.unary("tanh", x);
  neg = (x: Tensor) => this.unary("neg", x);
  abs = (x: Tensor) => this.unary("abs", x);
  sin = (x: Tensor) => this.unary("sin", x);
  cos = (x: Tensor) => this.unary("cos", x);

  /** Binary op with numpy broadcasting; a number becomes a constant of the tensor operand's dtype. */
  binary(fn: BinaryFn, a: Operand, b: Operand): Tensor {
    const [x, y] = this.unify([a, b]);
    return this.make("binary", { fn }, [x!, y!]);
  }
  add = (a: Operand, b: Operand) => this.binary("add", a, b);
  sub = (a: Operand, b: Operand) => this.binary("sub", a, b);
  mul = (a: Operand, b: Operand) => this.binary("mul", a, b);
  div = (a: Operand, b: Operand) => this.binary("div", a, b);
  min = (a: Operand, b: Operand) => this.binary("min", a, b);
  max = (a: Operand, b: Operand) => this.binary("max", a, b);
  pow = (a: Operand, b: Operand) => this.binary("pow", a, b);

  compare(fn: CompareFn, a: Operand, b: Operand): Tensor {
    const [x, y] = this.unify([a, b]);
    return this.make("compare", { fn }, [x!, y!]);
  }
  eq = (a: Operand, b: Operand) => this.compare("eq", a, b);
  ne = (a: Operand, b: Operand) => this.compare("ne", a, b);
  lt = (a: Operand, b: Operand) => this.compare("lt", a, b);
  le = (a: Operand, b: Operand) => this.compare("le", a, b);
  gt = (a: Operand, b: Operand) => this.compare("gt", a, b);
  ge = (a: Operand, b: Operand) => this.compare("ge", a, b);

  where(cond: Tensor, a: Operand, b: Operand): Tensor {
    const like = a instanceof Tensor ? a : b instanceof Tensor ? b : undefined;
    if (!like) this.error(`where needs at least one tensor among its values`);
    const shape = this.broadcastShape([cond, a, b]);
    const [x, y] = [this.lift(a, like.dtype), this.lift(b, like.dtype)];
    return this.make("ternary", { fn: "where" }, [this.broadcast(cond, shape), this.broadcast(x, shape), this.broadcast(y, shape)]);
  }
  /** clamp(x, lo, hi) = min(max(x, lo), hi). */
  clamp(x: Tensor, lo: Operand, hi: Operand): Tensor {
    const [a, b, c] = this.unify([x, lo, hi]);
    return this.make("ternary", { fn: "clamp" }, [a!, b!, c!]);
  }
  /** Logical and of two bool tensors (as where(a, b, false)). */
  and(a: Tensor, b: Tensor): Tensor {
    return this.where(a, b, this.constant(0, "bool"));
  }
  cast(x: Tensor, to: DType): Tensor {
    return x.dtype === to ? x : this.make("cast", { to }, [x]);
  }

  // -- reductions --

  reduce(fn: ReduceFn, x: Tensor, axis: number, keepDims = false): Tensor {
    return this.make("reduce", { fn, axis: this.axis(x, axis), keepDims }, [x]);
  }
  sum = (x: Tensor, axis: number, keepDims = false) => this.reduce("sum", x, axis, keepDims);
  mean = (x: Tensor, axis: number, keepDims = false) => this.reduce("mean", x, axis, keepDims);
  reduceMax = (x: Tensor, axis: number, keepDims = false) => this.reduce("max", x, axis, keepDims);
  reduceMin = (x: Tensor, axis: number, keepDims = false) => this.reduce("min", x, axis, keepDims);

  // -- contraction and data movement --

  /** a [..., M, K] · b [..., K, N] (or b [..., N, K] with transposeB); a rank-2 b is shared across a's batch. */
  matmul(a: Tensor, b: Tensor, opts: { transposeB?: boolean } = {}): Tensor {
    return this.make("matmul", { transposeB: opts.transposeB ?? false }, [a, b]);
  }
  reshape(x: Tensor, shape: Shape): Tensor {
    return this.make("reshape", { shape: shape.map(canonicalDim) }, [x]);
  }
  transpose(x: Tensor, perm: readonly number[]): Tensor {
    return this.make("transpose", { perm: [...perm] }, [x]);
  }
  slice(x: Tensor, axis: number, start: number, end: Dim, step = 1): Tensor {
    return this.make("slice", { axis: this.axis(x, axis), start, end: canonicalDim(end), step }, [x]);
  }
  concat(xs: readonly Tensor[], axis: number): Tensor {
    if (xs.length === 0) this.error(`concat needs at least one tensor`);
    return this.make("concat", { axis: this.axis(xs[0]!, axis) }, xs);
  }
  gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
    return this.make("gather", { axis: this.axis(x, axis) }, [x, indices]);
  }
  scatter(x: Tensor, indices: Tensor, updates: Tensor, axis = 0): Tensor {
    return this.make("scatter", { axis: this.axis(x, axis) }, [x, indices, updates]);
  }
  broadcast(x: Tensor, shape: Shape): Tensor {
    const target = shape.map(canonicalDim);
    if (formatShape(x.shape) === formatShape(target)) return x;
    return this.make("broadcast", { shape: target }, [x]);
  }
  /** k largest along the last axis: values descending and their i32 indices (ties to the lower index). */
  topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
    return { values: this.make("topk", { k, result: "values" }, [x]), indices: this.make("topk", { k, result: "indices" }, [x]) };
  }
  dequantMxfp4(blocks: Tensor, scales: Tensor, dtype: DType = "bf16"): Tensor {
    return this.make("dequantMxfp4", { dtype }, [blocks, scales]);
  }

  // -- high-level helpers (expand into primitives) --

  /** x · wᵀ (+ bias), with w [out, in] as Hugging Face stores linear weights. */
  linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
    const y = this.matmul(x, weight, { transposeB: true });
    return bias ? this.add(y, this.cast(bias, y.dtype)) : y;
  }

  /** cast(w · x · rsqrt(mean(x²) + eps)) computed in f32 over the last axis. */
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const xf = this.cast(x, "f32");
    const meanSquare = this.mean(this.mul(xf, xf), -1, true);
    const normed = this.mul(xf, this.rsqrt(this.add(meanSquare, eps)));
    return this.cast(this.mul(this.cast(weight, "f32"), normed), x.dtype);
  }

  /** Softmax along `axis`, max-subtracted. */
  softmax(x: Tensor, axis = -1): Tensor {
    const shifted = this.sub(x, this.reduceMax(x, axis, true));
    const e = this.exp(shifted);
    return this.div(e, this.sum(e, axis, true));
  }

  /**
   * gpt-oss's clamped SwiGLU over interleaved [..., 2I] (gate = even columns, up = odd):
   * gate = min(gate, limit), up = clamp(up, −limit, limit), out = (up + 1) · gate · sigmoid(alpha · gate).
   */
  swiglu(gateUp: Tensor, limit: number, alpha: number): Tensor {
    const twoI = gateUp.dim(-1);
    if (typeof twoI !== "number" || twoI % 2 !== 0) this.error(`swiglu needs an even static last dim, got ${twoI}`);
    const lead = gateUp.shape.slice(0, -1);
    const pairs = this.reshape(gateUp, [...lead, twoI / 2, 2]);
    const gate = this.min(this.reshape(this.slice(pairs, -1, 0, 1), [...lead, twoI / 2]), limit);
    const up = this.clamp(this.reshape(this.slice(pairs, -1, 1, 2), [...lead, twoI / 2]), -limit, limit);
    const glu = this.mul(gate, this.sigmoid(this.mul(gate, alpha)));
    return this.mul(this.add(up, 1), glu);
  }

  /**
   * Half-split (NeoX) rotary embedding of x [..., T, H, D] at positions [..., T]: the first and
   * second halves of each head rotate as pairs; frequencies YaRN-scaled when asked.
   */
  rope(x: Tensor, positions: Tensor, opts: RopeOptions): Tensor {
    const d = x.dim(-1);
    if (typeof d !== "number" || d % 2 !== 0) this.error(`rope needs an even static head dim, got ${d}`);
    const invFreq = this.literal(ropeInverseFrequencies(d, opts), "f32", [d / 2]);
    const posShape = positions.shape;
    const angles = this.mul(
      this.reshape(this.cast(positions, "f32"), [...posShape, 1]),
      this.reshape(invFreq, [...posShape.map(() => 1), d / 2]),
    ); // [..., T, D/2]
    const scale = yarnConcentration(opts.yarn);
    const perHead = (t: Tensor) => this.cast(this.reshape(this.mul(t, scale), [...posShape, 1, d / 2]), x.dtype); // [..., T, 1, D/2]
    const cos = perHead(this.cos(angles));
    const sin = perHead(this.sin(angles));
    const first = this.slice(x, -1, 0, d / 2);
    const second = this.slice(x, -1, d / 2, d);
    return this.concat([this.sub(this.mul(first, cos), this.mul(second, sin)), this.add(this.mul(second, cos), this.mul(first, sin))], -1);
  }

  /**
   * Scaled dot-product attention with GQA, a position-based causal (optionally sliding) mask and
   * optional per-head sinks. q [..., T, H, D], k and v [..., S, KVH, D] → [..., T, H, D].
   * Scores and softmax run in f32; the result is cast back to q's dtype.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
    if (q.rank < 3 || k.rank !== q.rank || v.rank !== q.rank) this.error(`attention needs q, k, v of equal rank >= 3, got ${q}, ${k}, ${v}`);
    const batch = q.shape.slice(0, -3);
    const nb = batch.length;
    const [t, h, d] = q.shape.slice(-3) as [Dim, Dim, Dim];
    const [s, kvh] = k.shape.slice(-3) as [Dim, Dim, Dim];
    if (typeof h !== "number" || typeof kvh !== "number" || h % kvh !== 0) this.error(`query heads ${h} must be a static multiple of kv heads ${kvh}`);
    if (typeof d !== "number") this.error(`head dim must be static, got ${d}`);
    const g = h / kvh;
    const b = (...rest: readonly number[]) => [...batch.map((_, i) => i), ...rest.map((r) => r + nb)];
    const scale = opts.scale ?? 1 / Math.sqrt(d);
    // queries grouped per kv head: [..., KVH, G, T, D]
    const qf = this.transpose(this.reshape(this.cast(q, "f32"), [...batch, t, kvh, g, d]), b(1, 2, 0, 3));
    // keys and values repeated over the group: [..., KVH, G, S, D]
    const perGroup = (x: Tensor) => {
      const kt = this.transpose(this.cast(x, "f32"), b(1, 0, 2));
      return this.broadcast(this.reshape(kt, [...batch, kvh, 1, s, d]), [...batch, kvh, g, s, d]);
    };
    const scores = this.mul(this.reshape(this.matmul(qf, perGroup(k), { transposeB: true }), [...batch, h, t, s]), scale);
    // visibility from positions: kpos >= 0, kpos <= qpos, and qpos − kpos < window on sliding layers
    const full = [...batch, h, t, s];
    const qp = this.broadcast(this.reshape(this.cast(opts.qpos, "i32"), [...batch, 1, t, 1]), full);
    const kp = this.broadcast(this.reshape(this.cast(opts.kpos, "i32"), [...batch, 1, 1, s]), full);
    let visible = this.and(this.ge(kp, 0), this.le(kp, qp));
    if (opts.window) visible = this.and(visible, this.lt(this.sub(qp, kp), opts.window));
    const masked = this.where(visible, scores, -Infinity);
    let probs: Tensor;
    if (opts.sinks) {
      const sinkColumn = this.broadcast(this.reshape(this.cast(opts.sinks, "f32"), [...batch.map(() => 1), h, 1, 1]), [...batch, h, t, 1]);
      const withSink = this.softmax(this.concat([masked, sinkColumn], -1));
      probs = this.slice(withSink, -1, 0, s);
    } else {
      probs = this.softmax(masked);
    }
    const out = this.matmul(this.reshape(probs, [...batch, kvh, g, t, s]), perGroup(v)); // [..., KVH, G, T, D]
    return this.cast(this.transpose(this.reshape(out, [...batch, h, t, d]), b(1, 0, 2)), q.dtype);
  }

  /**
   * Attention of a ragged token batch over a paged KV cache: q [T, H, D] and the step's own k, v [T, KVH, D];
   * the pools kPool, vPool [P, KVH, D] hold earlier positions, block by block (opts). Token t of sequence s
   * sees s's pool positions j < contextLens[s] (row blockTable[s, j / blockSize]·blockSize + j mod blockSize)
   * followed by the step's tokens of s, under the usual position mask. Written as plain math: each token's
   * keys are gathered ([T, MB·blockSize + T, KVH, D]) and handed to `attention`; the compiler's paged-attention
   * fusion reads the pool in place instead.
   */
  pagedAttention(q: Tensor, k: Tensor, v: Tensor, kPool: Tensor, vPool: Tensor, o: PagedAttentionOptions): Tensor {
    if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) this.error(`pagedAttention needs q [T, H, D], k and v [T, KVH, D], got ${q}, ${k}, ${v}`);
    if (kPool.rank !== 3 || vPool.rank !== 3) this.error(`pagedAttention needs pools [rows, KVH, D], got ${kPool}, ${vPool}`);
    if (o.blockTable.rank !== 2) this.error(`pagedAttention needs blockTable [S, blocks], got ${o.blockTable}`);
    const [t, h, d] = q.shape as [Dim, Dim, Dim];
    const [kvh] = k.shape.slice(1) as [Dim];
    const width = o.blockTable.shape[1]!;
    if (typeof width !== "number") this.error(`pagedAttention needs a static block-table width, got ${o.blockTable}`);
    if (!Number.isInteger(o.blockSize) || o.blockSize < 1) this.error(`pagedAttention needs a positive integer blockSize, got ${o.blockSize}`);
    const bs = o.blockSize;
    const slots = width * bs;
    // pool keys: logical position j of sequence s sits at row table[s, j / B]·B + j mod B
    const j = this.iota([slots], 0);
    const logicalBlock = this.div(j, bs);
    const offset = this.sub(j, this.mul(logicalBlock, bs));
    const blocks = this.gather(this.gather(o.blockTable, o.tokenSeqs, 0), logicalBlock, 1); // [T, slots]
    const rows = this.add(this.mul(blocks, bs), offset);
    const cachedLen = this.reshape(this.gather(o.contextLens, o.tokenSeqs, 0), [t, 1]);
    const cachedPos = this.where(this.lt(j, cachedLen), j, -1); // [T, slots]
    // the step's own keys: token t' is a key of t when both belong to one sequence
    const sameSeq = this.eq(this.reshape(o.tokenSeqs, [1, t]), this.reshape(o.tokenSeqs, [t, 1]));
    const stepPos = this.where(sameSeq, this.reshape(o.positions, [1, t]), -1); // [T, T]
    const everyToken = (x: Tensor) => this.broadcast(this.reshape(x, [1, t, kvh, d]), [t, t, kvh, d]);
    const keys = this.concat([this.gather(kPool, rows, 0), everyToken(k)], 1);
    const values = this.concat([this.gather(vPool, rows, 0), everyToken(v)], 1);
    const out = this.attention(this.reshape(q, [t, 1, h, d]), keys, values, {
      qpos: this.reshape(o.positions, [t, 1]),
      kpos: this.concat([cachedPos, stepPos], 1),
      ...(o.window ? { window: o.window } : {}),
      ...(o.sinks ? { sinks: o.sinks } : {}),
      ...(o.scale !== undefined ? { scale: o.scale } : {}),
    });
    return this.reshape(out, [t, h, d]);
  }

  /** One token per row of logits [R, V] (the `sample` op: greedy at temperature ≤ 0, else top-k/top-p with the given draws). */
  sample(logits: Tensor, o: { readonly temperature: Tensor; readonly topK: Tensor; readonly topP: Tensor; readonly uniform: Tensor }): Tensor {
    return this.make("sample", {}, [logits, o.temperature, o.topK, o.topP, o.uniform]);
  }

  /** Top-k routing: the k largest logits per row and their softmax weights. */
  topkRouting(logits: Tensor, k: number): { indices: Tensor; weights: Tensor } {
    const { values, indices } = this.topk(logits, k);
    return { indices, weights: this.softmax(values) };
  }

  /** gpt-oss mixture of experts over x [T, D]: router → top-k → softmax → clamped-SwiGLU experts → weighted sum. */
  moe(x: Tensor, o: MoeOptions): Tensor {
    if (x.rank !== 2) this.error(`moe expects x [tokens, hidden], got ${x}`);
    const [t, dm] = x.shape as [Dim, Dim];
    const k = o.topK;
    const { indices, weights } = this.topkRouting(this.linear(x, o.routerWeight, o.routerBias), k); // [T, k]
    const rows = this.broadcast(this.reshape(x, [t, 1, 1, dm]), [t, k, 1, dm]);
    const expertMatmul = (input: Tensor, w: ExpertWeight): Tensor => {
      if ("weight" in w) return this.matmul(input, this.gather(w.weight, indices, 0)); // [T, k, in, out]
      const dense = this.dequantMxfp4(w.blocks, w.scales, input.dtype); // [E, out, in]
      return this.matmul(input, this.gather(dense, indices, 0), { transposeB: true });
    };
    const gateUp1 = expertMatmul(rows, o.gateUp); // [T, k, 1, 2I]
    const twoI = gateUp1.dim(-1);
    const gateUp = this.add(this.reshape(gateUp1, [t, k, twoI]), this.cast(this.gather(o.gateUpBias, indices, 0), x.dtype));
    const h = this.swiglu(gateUp, o.limit, o.alpha); // [T, k, I]
    const inter = h.dim(-1);
    const down1 = expertMatmul(this.reshape(h, [t, k, 1, inter]), o.down); // [T, k, 1, D]
    const down = this.add(this.reshape(down1, [t, k, dm]), this.cast(this.gather(o.downBias, indices, 0), x.dtype));
    const weighted = this.mul(down, this.reshape(this.cast(weights, x.dtype), [t, k, 1]));
    return this.sum(weighted, 1);
  }

  /** Rows of `table` [V, D] picked by integer ids [...] → [..., D]. */
  embedding(table: Tensor, ids: Tensor): Tensor {
    return this.gather(table, ids, 0);
  }

  // -- internals --

  private axis(x: Tensor, axis: number): number {
    const a = normalizeAxis(axis, x.rank);
    if (a === undefined) this.error(`axis ${axis} is out of range for ${x}`);
    return a;
  }

  private broadcastShape(operands: readonly Operand[]): Shape {
    const shapes = operands.filter((o): o is Tensor => o instanceof Tensor).map((t) => t.shape);
    const shape = broadcastShapes(shapes);
    if (!shape) this.error(`shapes ${shapes.map(formatShape).join(", ")} do not broadcast together`);
    return shape;
  }

  private lift(x: Operand, dtype: DType): Tensor {
    return x instanceof Tensor ? x : this.constant(x, dtype);
  }

  /** Lifts numbers to constants of the first tensor's dtype and broadcasts everything to one shape. */
  private unify(operands: readonly Operand[]): Tensor[] {
    const like = operands.find((o): o is Tensor => o instanceof Tensor);
    if (!like) this.error(`an operation needs at least one tensor operand`);
    const shape = this.broadcastShape(operands);
    return operands.map((o) => (o instanceof Tensor ? this.broadcast(o, shape) : this.constant(o, like.dtype, shape)));
  }
}

/** Builds an entry point's inputs and outputs. */
export class EntryBuilder {
  private readonly inputs: InputDecl[] = [];
  private readonly outputs: EntryOutput[] = [];
  private readonly updates: EntryOutput[] = [];
  private bucketSpec: EntryBuckets | undefined;

  constructor(
    private readonly model: ModelBuilder,
    readonly name: string,
  ) {}

  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.inputs.some((i) => i.name === name)) throw new IRError(`entry ${this.name}: input ${name} is declared twice`, captureSite()());
    const t = this.model.inputNode(name, dtype, shape);
    this.inputs.push({ name, dtype, shape: t.shape });
    return t;
  }

  output(name: string, value: Tensor): void {
    if (this.outputs.some((o) => o.name === name)) throw new IRError(`entry ${this.name}: output ${name} is declared twice`, captureSite()());
    this.outputs.push({ name, node: value.node });
  }

  /** Sets the value model state `name` holds after this entry's call (reads in the call see the old value). */
  update(name: string, value: Tensor): void {
    const decl = this.model.stateDecl(name);
    const site = captureSite()();
    if (!decl) throw new IRError(`entry ${this.name}: update of ${name}, which is not declared state (b.state)`, site);
    if (this.updates.some((u) => u.name === name)) throw new IRError(`entry ${this.name}: state ${name} is updated twice`, site);
    if (value.dtype !== decl.dtype || formatShape(value.shape) !== formatShape(decl.shape)) {
      throw new IRError(`entry ${this.name}: update of state ${name} is ${value.dtype}${formatShape(value.shape)}, the state is ${decl.dtype}${formatShape(decl.shape)}`, site);
    }
    this.updates.push({ name, node: value.node });
  }

  /**
   * Plans this entry per shape bucket of `symbol` (1, 2, 4, … up to its bound): each rung gets kernels chosen for
   * its sizes. `cobounded` symbols never exceed `symbol` in a call (e.g. a step's sequences ≤ its tokens).
   */
  bucketBy(symbol: Dim, cobounded: readonly Dim[] = []): void {
    const site = captureSite()();
    const names = [symbol, ...cobounded];
    for (const s of names) {
      if (typeof s !== "string" || !isSymbolName(s) || this.model.symbolBound(s) === undefined) throw new IRError(`entry ${this.name}: bucketBy needs declared symbols, got ${String(s)}`, site);
    }
    if (this.bucketSpec) throw new IRError(`entry ${this.name}: buckets are declared twice`, site);
    this.bucketSpec = { symbol: symbol as string, cobounded: cobounded as string[] };
  }

  finish(): EntryPoint {
    if (this.outputs.length === 0) throw new IRError(`entry ${this.name} has no outputs`);
    return { name: this.name, ...(this.bucketSpec ? { buckets: this.bucketSpec } : {}), inputs: [...this.inputs], outputs: [...this.outputs], updates: [...this.updates] };
  }
}

/** Declares a model: `defineModel("tiny", (b) => { … b.entry("decode", (e) => …) })`. */
export function defineModel(name: string, body: (b: ModelBuilder) => void): Graph {
  const b = new ModelBuilder(name);
  body(b);
  return b.finish();
}


