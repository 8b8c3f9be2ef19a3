// Standalone MXFP4 dequantization: geometry and source (pure); the gpt-oss-20b expert shapes compile
// (NVRTC); bit-exact against the interpreter for bf16, f16 and f32, NaN and extreme scales included (GPU).
import { beforeAll, describe, expect, it } from "vitest";
import { emitDequantMxfp4 } from "../../src/codegen/dequant.js";
import { evalSize } from "../../src/lower/kernel.js";
import type { DType } from "../../src/ir/dtype.js";
import { randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { type Shape, evalShape } from "../../src/ir/shape.js";
import { Device, compileKernels } from "../../runtime/index.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, expectClose, interpretNode, runNodeKernels } from "./harness.js";

const table = new NodeTable();
function dequant(name: string, lead: Shape, nb: number, dtype: DType): NodeOf<"dequantMxfp4"> {
  const blocks = table.make("input", { name: `${name}_blocks`, dtype: "fp4e2m1x2", shape: [...lead, nb, 16] }, []);
  const scales = table.make("input", { name: `${name}_scales`, dtype: "e8m0", shape: [...lead, nb] }, []);
  return table.make("dequantMxfp4", { dtype }, [blocks, scales]);
}

describe("dequantMxfp4 codegen (pure)", () => {
  it("one thread per half block: 8 bytes of codes in, 16 values out as 16-byte stores", () => {
    const k = emitDequantMxfp4(dequant("gu", [32, 5760], 90, "bf16"));
    const l = k.launches[0]!;
    expect(l.grid.map((g) => evalSize(g, {}))).toEqual([Math.ceil((32 * 5760 * 90 * 2) / 256), 1, 1]);
    expect(l.args).toEqual([{ kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }]);
    expect(l.kernel.source).toContain("const uint2 codes = *reinterpret_cast<const uint2*>(blocks + h * 8u);");
    expect(l.kernel.source).toContain("union { uint4 raw[2]; unsigned short e[16]; } o;");
    expect(l.kernel.source).toContain("o.e[2 * b] = f32_to_bf16(dequant_e2m1(byte & 15u) * scale);");
    const f32 = emitDequantMxfp4(dequant("gu", [32, 5760], 90, "f32")).launches[0]!.kernel.source;
    expect(f32).toContain("union { uint4 raw[4]; float e[16]; } o;");
    const sym = emitDequantMxfp4(dequant("s", ["tokens", 3], 2, "f16")).launches[0]!;
    expect(sym.grid.map((g) => evalSize(g, { tokens: 100 }))).toEqual([Math.ceil(1200 / 256), 1, 1]);
    expect(sym.args.at(-1)).toEqual({ kind: "i32", value: { dims: ["tokens"], scale: 1, divisor: 1 } });
  });
});

describeNvrtc("dequantMxfp4 kernels compile (NVRTC)", () => {
  it("gpt-oss-20b gate_up [32, 5760, 90, 16] and down [32, 2880, 90, 16] to bf16, and f32 / f16", async () => {
    const kernels = [
      dequant("gu", [32, 5760], 90, "bf16"), dequant("dn", [32, 2880], 90, "bf16"), dequant("gu", [32, 5760], 90, "f32"), dequant("dn", [32, 2880], 90, "f16"),
    ].map(emitDequantMxfp4);
    expect(await compileNodeKernels(kernels)).toBe(4);
  });
});

describeGpu("dequantMxfp4 kernels match the interpreter bit for bit (GPU)", () => {
  const cases: [string, NodeOf<"dequantMxfp4">, readonly number[]][] = [
    ["bf16 [tokens, 3, 16] × [tokens, 3]", dequant("s", ["tokens", 3], 3, "bf16"), [1, 3, 50, 783, 4096]],
    ["f32 [4, tokens, 2, 16] × [4, tokens, 2]", dequant("t", [4, "tokens"], 2, "f32"), [1, 3, 50, 783, 4096]],
    ["f16 [tokens, 5, 16] × [tokens, 5] (overflow to inf, subnormals)", dequant("h", ["tokens"], 5, "f16"), [1, 3, 50, 783, 4096]],
    ["bf16 [3, 64, 90, 16] (gpt-oss block count)", dequant("g", [3, 64], 90, "bf16"), [1]],
  ];
  beforeAll(async () => {
    await compileKernels(cases.map(([, n]) => emitDequantMxfp4(n).launches[0]!.kernel), { arch: Device.open(0).info.arch, cache: false });
  }, 120_000);
  for (const [name, node, sizes] of cases) {
    it(name, async () => {
      for (const tokens of sizes) {
        const symbols = { tokens };
        const rand = seededRandom(tokens * 7919 + name.length);
        const [b, s] = node.inputs as [NodeOf<"input">, NodeOf<"input">];
        const blocks = randomTensor("fp4e2m1x2", evalShape(b.shape, symbols), rand, 0, 256);
        // scales around 2^0 with the extremes: 0 (2^-127), 254 (2^127) and 255 (NaN)
        const scales = randomTensor("e8m0", evalShape(s.shape, symbols), rand, 100, 150);
        for (let i = 0; i < scales.data.length; i += 11) scales.data[i] = [0, 254, 255, 1, 142][(i / 11) % 5]!;
        const inputs = { [b.attrs.name]: blocks, [s.attrs.name]: scales };
        const gpu = await runNodeKernels(node, emitDequantMxfp4(node), [blocks, scales], symbols);
        expectClose(gpu, interpretNode(node, { inputs }, symbols), 0, `${name} at tokens = ${tokens}`);
      }
    });
  }
});
