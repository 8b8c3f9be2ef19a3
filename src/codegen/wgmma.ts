// Warpgroup MMA (sm_90a) wrappers for lib/wgmma.cuh.njk: the asm of one m64nNk16 wgmma per N, both operands from
// shared memory by descriptor, f32 accumulators (N / 2 a thread). Built here because each wrapper's operand list grows
// with N.

/** N values wgmma takes: multiples of 8 up to 256. */
export function isWgmmaN(n: number): boolean {
  return Number.isInteger(n) && n >= 8 && n <= 256 && n % 8 === 0;
}

export interface WgmmaShape {
  readonly n: number;
  /** The inline asm statement's body of wg_mma_ss_n{n}(d, a descriptor, b descriptor): text and constraints. */
  readonly asm: string;
}

/** The wrapper of each N for 16-bit operands of `mmaType`, K-major A and B (no transposes), accumulating. */
export function wgmmaShapes(ns: readonly number[], mmaType: "bf16" | "f16"): WgmmaShape[] {
  return ns.map((n) => {
    if (!isWgmmaN(n)) throw new Error(`tsgc codegen: wgmma N must be a multiple of 8 in [8, 256], got ${n}`);
    const acc = n / 2;
    const d = Array.from({ length: acc }, (_, i) => `%${i}`).join(", ");
    const outs = Array.from({ length: acc }, (_, i) => `"+f"(d[${i}])`).join(", ");
    // scale-d 1 (accumulate), A and B scales 1, neither transposed
    return { n, asm: `"wgmma.mma_async.sync.aligned.m64n${n}k16.f32.${mmaType}.${mmaType} {${d}}, %${acc}, %${acc + 1}, 1, 1, 1, 0, 0;\\n" : ${outs} : "l"(a), "l"(b)` };
  });
}
