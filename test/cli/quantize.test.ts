import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gptOssCheckpointTensors } from "../../models/gpt-oss/checkpoint.js";
import { GPT_OSS_TINY, MXFP4_MODULES_TO_NOT_CONVERT, parseGptOssConfig } from "../../models/gpt-oss/config.js";
import { registerInspectCommand, type InspectReport } from "../../src/cli/inspect.js";
import { captureCli } from "./capture.js";
import { parseByteSize, registerQuantizeCommand } from "../../src/cli/quantize.js";
import { INDEX_FILE, openCheckpoint } from "../../src/loader/checkpoint.js";
import { dequantizeExpertWeight } from "../../src/loader/quantize-checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";

/** A program with the two checkpoint commands, its output captured. */
const cli = () => captureCli(registerQuantizeCommand, registerInspectCommand);

let root: string;
let bf16Dir: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "tsgc-quantize-"));
  bf16Dir = join(root, "bf16");
  await writeRandomGptOssCheckpoint(bf16Dir, GPT_OSS_TINY, { seed: 42, std: 0.05 });
  await writeFile(join(bf16Dir, "tokenizer.json"), '{"version": "1.0"}');
  await writeFile(join(bf16Dir, "generation_config.json"), '{"eos_token_id": [200002, 199999]}');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("tsgc quantize", () => {
  it("turns a bf16 checkpoint into the official MXFP4 layout that inspect validates against its config", async () => {
    const outDir = join(root, "mxfp4");
    const c = cli();
    await c.run("quantize", bf16Dir, outDir);
    const progress = c.err.join("");
    expect(progress).toContain(`quantize: ${bf16Dir} → ${outDir}`);
    expect(progress).toMatch(/\[1\/\d+\] .*model\.embed_tokens\.weight/);
    expect(progress).toMatch(/wrote \d+ tensors \(4 expert weights quantized\) in 1 file/);

    // config.json: the input's, plus the official quantization_config.
    const inConfig = JSON.parse(await readFile(join(bf16Dir, "config.json"), "utf8")) as Record<string, unknown>;
    const outConfig = JSON.parse(await readFile(join(outDir, "config.json"), "utf8")) as Record<string, unknown>;
    expect(outConfig).toEqual({
      ...inConfig,
      quantization_config: {
        quant_method: "mxfp4",
        modules_to_not_convert: ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
      },
    });
    expect(parseGptOssConfig(outConfig).quantization?.modulesToNotConvert).toEqual(MXFP4_MODULES_TO_NOT_CONVERT);
    expect((await readdir(outDir)).sort()).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]);
    expect(await readFile(join(outDir, "tokenizer.json"), "utf8")).toBe('{"version": "1.0"}');

    const input = await openCheckpoint(bf16Dir);
    const output = await openCheckpoint(outDir);
    try {
      const expected = gptOssCheckpointTensors({ ...GPT_OSS_TINY, quantization: { method: "mxfp4", modulesToNotConvert: [] } });
      expect([...output.tensors.keys()]).toEqual(expected.map((t) => t.name));
      const H = GPT_OSS_TINY.hiddenSize;
      const I = GPT_OSS_TINY.intermediateSize;
      const E = GPT_OSS_TINY.numExperts;
      for (const t of expected) {
        const info = output.tensor(t.name);
        expect(info.shape).toEqual(t.shape);
        if (t.name.endsWith("_blocks") || t.name.endsWith("_scales")) {
          expect(info.dtype).toBe("U8");
        } else {
          expect(await output.read(t.name)).toEqual(await input.read(t.name)); // copied byte for byte
        }
      }
      // The blocks dequantize (output-major → transposed back) to the bf16 weights within the MXFP4 error bound.
      for (const [proj, inF, outF] of [
        ["gate_up_proj", H, 2 * I],
        ["down_proj", I, H],
      ] as const) {
        const prefix = `model.layers.1.mlp.experts.${proj}`;
        const original = await input.readFloat32(prefix);
        const back = dequantizeExpertWeight(await output.read(`${prefix}_blocks`), await output.read(`${prefix}_scales`), E, inF, outF);
        let errSq = 0;
        let sumSq = 0;
        const largest = original.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        for (let k = 0; k < original.length; k++) {
          errSq += (original[k]! - back[k]!) ** 2;
          sumSq += original[k]! ** 2;
          // MXFP4's worst case (saturation just below 8·2^X) loses less than half of the block's largest magnitude.
          expect(Math.abs(original[k]! - back[k]!)).toBeLessThan(largest / 2);
        }
        expect(Math.sqrt(errSq / sumSq)).toBeLessThan(0.2);
      }
    } finally {
      await input.close();
      await output.close();
    }

    const i = cli();
    await i.run("inspect", outDir, "--json");
    const report = JSON.parse(i.out.join("")) as InspectReport;
    expect(report.matchesConfig).toBe(true);
    expect(report.config?.expertFormat).toBe("mxfp4");
    expect(report.issues).toEqual([]);
  });

  it("writes shards with an index when the output exceeds --max-shard-size", async () => {
    const outDir = join(root, "mxfp4-sharded");
    const c = cli();
    await c.run("quantize", bf16Dir, outDir, "--max-shard-size", "40kB");
    const files = (await readdir(outDir)).filter((f) => f.endsWith(".safetensors"));
    expect(files.length).toBeGreaterThan(1);
    expect(files.every((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))).toBe(true);
    expect(await readFile(join(outDir, INDEX_FILE), "utf8")).toContain('"total_size"');
    const i = cli();
    await i.run("inspect", outDir);
    expect(i.out.join("")).toContain("matches config.json: yes");
  });

  it("quantizes an f32 checkpoint too", async () => {
    const f32Dir = join(root, "f32");
    await writeRandomGptOssCheckpoint(f32Dir, GPT_OSS_TINY, { seed: 3, dtype: "F32" });
    const outDir = join(root, "f32-mxfp4");
    await cli().run("quantize", f32Dir, outDir);
    const out = await openCheckpoint(outDir);
    expect(out.tensor("model.embed_tokens.weight").dtype).toBe("F32");
    expect(out.tensor("model.layers.0.mlp.experts.down_proj_scales").dtype).toBe("U8");
    await out.close();
  });

  it("refuses a non-empty output directory, an already-quantized input, and a mismatched input", async () => {
    const c = cli();
    await expect(c.run("quantize", bf16Dir, bf16Dir)).rejects.toThrow(`output directory must differ from the input (${bf16Dir})`);
    const busy = join(root, "busy");
    await writeRandomGptOssCheckpoint(busy, GPT_OSS_TINY);
    await expect(c.run("quantize", bf16Dir, busy)).rejects.toThrow(`${busy}: output directory is not empty`);
    await expect(c.run("quantize", join(root, "mxfp4"), join(root, "twice"))).rejects.toThrow(
      /config\.json: checkpoint is already MXFP4-quantized \(it has quantization_config\)/,
    );
    const broken = join(root, "broken");
    await writeRandomGptOssCheckpoint(broken, { ...GPT_OSS_TINY, numLayers: 1, layerTypes: ["sliding_attention"] });
    const config = JSON.parse(await readFile(join(broken, "config.json"), "utf8")) as Record<string, unknown>;
    config.num_hidden_layers = 2;
    delete config.layer_types;
    await writeFile(join(broken, "config.json"), JSON.stringify(config));
    await expect(c.run("quantize", broken, join(root, "from-broken"))).rejects.toThrow(/missing tensor "model\.layers\.1\.input_layernorm\.weight"/);
    await expect(c.run("quantize", bf16Dir, join(root, "x"), "--max-shard-size", "lots")).rejects.toThrow('invalid size "lots"');
  });
});

describe("parseByteSize", () => {
  it("reads decimal and binary units", () => {
    expect(parseByteSize("5GB")).toBe(5e9);
    expect(parseByteSize("4.8GB")).toBe(4.8e9);
    expect(parseByteSize("500MB")).toBe(5e8);
    expect(parseByteSize("2GiB")).toBe(2 ** 31);
    expect(parseByteSize("1048576")).toBe(1048576);
    expect(() => parseByteSize("0")).toThrow("size must be positive");
    expect(() => parseByteSize("5 parsecs")).toThrow('invalid size "5 parsecs"');
  });
});
