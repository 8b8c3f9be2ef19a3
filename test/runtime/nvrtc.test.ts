// NVRTC tier: real kernels compile with the real library, for every architecture we target that
// this NVRTC supports; compile errors carry the log and the offending line.
import { describe, expect, it } from "vitest";
import { compile, nvrtcOptions, nvrtcSupportedArchs, nvrtcVersion, NvrtcCompileError, parseArch } from "../../runtime/nvrtc.js";
import { describeNvrtc } from "../tiers.js";
import { BF16_AXPY, MMA_BF16, SAXPY, WARP_ROW_SUM } from "./kernels.js";

const TARGET_ARCHS = ["sm_80", "sm_90"];

describe("architecture names", () => {
  it("parses sm_XX and sm_XXa", () => {
    expect(parseArch("sm_90")).toEqual({ capability: 90, specific: false });
    expect(parseArch("sm_90a")).toEqual({ capability: 90, specific: true });
  });
  it("rejects anything else with the expected form", () => {
    expect(() => parseArch("compute_90")).toThrow(/expected sm_XX/);
    expect(() => parseArch("90")).toThrow(/bad GPU architecture '90'/);
  });
  it("asks NVRTC for SASS when the output is a cubin and for PTX of the virtual arch otherwise", () => {
    expect(nvrtcOptions("sm_90", "cubin", ["-lineinfo"])).toEqual(["--gpu-architecture=sm_90", "-lineinfo"]);
    expect(nvrtcOptions("sm_80", "ptx")).toEqual(["--gpu-architecture=compute_80"]);
  });
  it("refuses an architecture option that would contradict the cache key's arch", () => {
    expect(() => nvrtcOptions("sm_90", "cubin", ["-arch=sm_80"])).toThrow(/'-arch=sm_80' conflicts with the target architecture/);
    expect(() => nvrtcOptions("sm_90", "cubin", ["--gpu-architecture", "sm_80"])).toThrow(/conflicts/);
  });
});

describeNvrtc("NVRTC", () => {
  const supported = nvrtcSupportedArchs();
  const archs = TARGET_ARCHS.filter((arch) => supported === null || supported.includes(parseArch(arch).capability));

  it("reports its version and the architectures it supports", () => {
    const version = nvrtcVersion();
    expect(version.major).toBeGreaterThanOrEqual(11);
    expect(version.text).toBe(`${version.major}.${version.minor}`);
    const unsupported = TARGET_ARCHS.filter((a) => !archs.includes(a));
    // Say plainly which target architectures this library cannot test.
    console.info(`NVRTC ${version.text} (${version.libraryPath}) supports ${supported === null ? "(unknown)" : supported.join(",")}; ` +
      `testing ${archs.join(", ")}${unsupported.length > 0 ? `; NOT testing ${unsupported.join(", ")} (unsupported)` : ""}`);
    expect(archs).toContain("sm_80");
  });

  const kernels = [
    { name: "bf16_axpy", source: BF16_AXPY, instruction: "cvt.rn.bf16.f32" },
    { name: "warp_row_sum", source: WARP_ROW_SUM, instruction: "shfl.sync.bfly" },
    { name: "mma_bf16_m16n8k16", source: MMA_BF16, instruction: "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" },
    { name: "saxpy", source: SAXPY, instruction: "fma.rn.f32" },
  ];

  for (const arch of TARGET_ARCHS) {
    for (const kernel of kernels) {
      it.skipIf(!archs.includes(arch))(`compiles ${kernel.name} for ${arch} to a cubin and to PTX`, () => {
        const cubin = compile(kernel.source, { arch, name: kernel.name });
        expect(cubin.kind).toBe("cubin");
        expect(Array.from(cubin.image.subarray(0, 4))).toEqual([0x7f, 0x45, 0x4c, 0x46]); // ELF
        const ptx = compile(kernel.source, { arch, name: kernel.name, output: "ptx" });
        const text = Buffer.from(ptx.image).toString("utf8");
        expect(text).toContain(`.target ${arch}`);
        expect(text).toContain(`.entry ${kernel.name}`);
        expect(text).toContain(kernel.instruction);
      });
    }
  }

  it("passes the caller's options through (a macro changes the code)", () => {
    const source = `extern "C" __global__ void k(int* o) { o[0] = VALUE; }`;
    const ptx = Buffer.from(compile(source, { arch: "sm_80", output: "ptx", options: ["-DVALUE=12345"] }).image).toString();
    expect(ptx).toContain("12345");
  });

  it("surfaces the log and the offending source line of a broken kernel", () => {
    const broken = [
      `extern "C" __global__ void broken(float* out) {`,
      `  float x = 1.0f;`,
      `  out[threadIdx.x] = x * undefined_scale;`,
      `}`,
    ].join("\n");
    let caught: unknown;
    try {
      compile(broken, { arch: "sm_80", name: "broken" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NvrtcCompileError);
    const err = caught as NvrtcCompileError;
    expect(err.status).toBe("NVRTC_ERROR_COMPILATION");
    expect(err.log).toContain("undefined_scale");
    expect(err.line).toBe(3);
    expect(err.sourceLine).toBe("  out[threadIdx.x] = x * undefined_scale;");
    expect(err.message).toContain("broken.cu(3): error");
    expect(err.message).toContain("    3 |   out[threadIdx.x] = x * undefined_scale;");
  });

  it("rejects an unknown option with NVRTC's own error name", () => {
    expect(() => compile(SAXPY, { arch: "sm_80", options: ["--no-such-option"] })).toThrow(/NVRTC_ERROR_INVALID_OPTION/);
  });
});
