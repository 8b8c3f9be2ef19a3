// The addon loads CUDA, NVRTC and NCCL only when first used. Missing or wrong libraries become JS
// errors naming the library, the paths tried and the variable to set; the process never crashes.
// Each case runs in a child process, since a library that loaded stays loaded for the process.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { addonPath } from "../../runtime/native.js";

interface Outcome {
  code?: string;
  message?: string;
  value?: unknown;
}

/** Calls `call` on the addon in a fresh node process with `env`, returning what it threw or returned. */
function callInChild(call: string, env: Record<string, string>): Outcome {
  const script = `
    const addon = require(${JSON.stringify(addonPath())});
    let outcome;
    try { outcome = { value: addon.${call} }; } catch (err) { outcome = { code: err.code, message: err.message }; }
    process.stdout.write(JSON.stringify(outcome, (k, v) => typeof v === "bigint" ? String(v) : v));
  `;
  const result = spawnSync(process.execPath, ["-e", script], { env: { ...process.env, ...env }, encoding: "utf8" });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Outcome;
}

describe("missing libraries", () => {
  it("names NVRTC, the path tried and TSGC_NVRTC_LIBRARY", () => {
    const out = callInChild("nvrtcVersion()", { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so.12" });
    expect(out.code).toBe("TSGC_LIBRARY_NOT_FOUND");
    expect(out.message).toContain("libnvrtc (NVIDIA's run-time CUDA compiler) could not be loaded");
    expect(out.message).toContain("/nonexistent/libnvrtc.so.12 (from TSGC_NVRTC_LIBRARY)");
    expect(out.message).toContain("Set TSGC_NVRTC_LIBRARY to the library's full path");
    expect(out.message).toContain("scripts/install-nvrtc");
  });

  it("names the CUDA driver library and TSGC_CUDA_LIBRARY", () => {
    const out = callInChild("deviceCount()", { TSGC_CUDA_LIBRARY: "/nonexistent/libcuda.so.1" });
    expect(out.code).toBe("TSGC_LIBRARY_NOT_FOUND");
    expect(out.message).toContain("libcuda (the NVIDIA driver API) could not be loaded");
    expect(out.message).toContain("/nonexistent/libcuda.so.1 (from TSGC_CUDA_LIBRARY)");
    expect(out.message).toContain("Set TSGC_CUDA_LIBRARY");
  });

  it("names NCCL and TSGC_NCCL_LIBRARY", () => {
    const out = callInChild("ncclGetUniqueId()", { TSGC_NCCL_LIBRARY: "/nonexistent/libnccl.so.2" });
    expect(out.code).toBe("TSGC_LIBRARY_NOT_FOUND");
    expect(out.message).toContain("libnccl (NVIDIA's collective communication library) could not be loaded");
    expect(out.message).toContain("Set TSGC_NCCL_LIBRARY");
  });

  it("names the missing symbol when the library is the wrong one", () => {
    const out = callInChild("deviceCount()", { TSGC_CUDA_LIBRARY: "libc.so.6" });
    expect(out.code).toBe("TSGC_SYMBOL_NOT_FOUND");
    expect(out.message).toBe("symbol cuInit not found in libc.so.6 (is this the right library, and recent enough?)");
  });

  it("loads the addon without touching CUDA; calls that need it throw instead of crashing", () => {
    expect(callInChild("abiVersion", { TSGC_CUDA_LIBRARY: "/nonexistent" }).value).toBe(1);
    for (const call of ["memAlloc(1024)", "launch()", "streamCreate()", "graphKernelNodes(0n)"]) {
      expect(callInChild(call, { TSGC_CUDA_LIBRARY: "/nonexistent" }).code, call).toBe("TSGC_LIBRARY_NOT_FOUND");
    }
  });
});
