// Programmatic dependent launch is safe only if every kernel waits for its predecessors before it reads anything:
// renderTemplate inserts the wait as the first statement of every kernel, and the executor launches a kernel with
// the attribute only when its source has it (waitsForGridDependencies).
import { describe, expect, it } from "vitest";
import { findBuiltinModel } from "../../models/index.js";
import { compile } from "../../src/compile/compile.js";
import { GRID_DEPENDENCY_WAIT, waitsForGridDependencies, withGridDependencyWait } from "../../src/lower/kernel.js";

describe("the grid-dependency wait", () => {
  it("is inserted as the first statement of every kernel definition, past __launch_bounds__ and nested parentheses", () => {
    const src = [
      'extern "C" __global__ void __launch_bounds__(256) a(const int* x, int (*f)(int)) {',
      "  if (x[0]) return;",
      "}",
      'extern "C" __global__ void b(int n)',
      "{ int m = n; (void)m; }",
    ].join("\n");
    const out = withGridDependencyWait(src);
    expect(out).toBe(
      [
        'extern "C" __global__ void __launch_bounds__(256) a(const int* x, int (*f)(int)) {',
        `  ${GRID_DEPENDENCY_WAIT}`,
        "  if (x[0]) return;",
        "}",
        'extern "C" __global__ void b(int n)',
        `{\n  ${GRID_DEPENDENCY_WAIT} int m = n; (void)m; }`,
      ].join("\n"),
    );
    expect(waitsForGridDependencies(out)).toBe(true);
    expect(waitsForGridDependencies(src)).toBe(false);
    expect(waitsForGridDependencies(out.replace(`{\n  ${GRID_DEPENDENCY_WAIT} int m`, "{ int m"))).toBe(false); // one of two
    // kernels are defined where they are declared: a bare declaration (or a truncated source) is an error
    expect(() => withGridDependencyWait('extern "C" __global__ void c(int n);\n')).toThrow(/has no body/);
    expect(() => withGridDependencyWait('extern "C" __global__ void c(int n)')).toThrow(/has no body/);
  });

  it("starts every kernel of the gpt-oss plans (bf16 and f32, every bucket's variants)", async () => {
    for (const [name, dtype] of [["gpt-oss-20b", "bf16"], ["gpt-oss-tiny", "f32"], ["gpt-oss-tiny", "bf16"]] as const) {
      const { plan } = await compile(findBuiltinModel(name).build({ dtype }), { arch: "sm_90", cacheDir: false, nvrtc: "skip" });
      const missing = plan.kernels.filter((k) => !waitsForGridDependencies(k.source)).map((k) => k.name);
      expect(missing, `${name} ${dtype}`).toEqual([]);
      expect(plan.kernels.length).toBeGreaterThan(20);
    }
  }, 120_000);
});
