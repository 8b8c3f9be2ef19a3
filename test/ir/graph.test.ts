// Interning and structural hashes, the verifier, the text printer and the JSON form.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { defineModel } from "../../src/ir/builder.js";
import { graphNodes, type Graph } from "../../src/ir/graph.js";
import { graphFromJson, graphFromJsonText, graphToJson, graphToJsonText } from "../../src/ir/json.js";
import { NodeTable, stableStringify } from "../../src/ir/node.js";
import { printGraph } from "../../src/ir/print.js";
import { verifyGraph } from "../../src/ir/verify.js";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_20B, GPT_OSS_TINY } from "../../models/gpt-oss/config.js";

function smallModel(eps = 1e-5): Graph {
  return defineModel("small", (b) => {
    const t = b.sym("tokens", 32);
    const w = b.param("norm.weight", "bf16", [8]);
    const proj = b.param("proj.weight", "bf16", [4, 8]);
    b.entry("main", (e) => {
      const x = e.input("x", "bf16", [t, 8]);
      const y = b.linear(b.rmsNorm(x, w, eps), proj);
      e.output("y", b.softmax(b.cast(y, "f32")));
      e.output("neg_inf", b.where(b.gt(y, b.constant(0, "bf16")), b.cast(y, "f32"), -Infinity));
    });
  });
}

describe("interning and structural hashes", () => {
  it("interns structurally equal nodes to one object", () => {
    const t = new NodeTable();
    const a = t.make("constant", { value: 1, dtype: "f32", shape: [2] }, []);
    const b = t.make("constant", { value: 1, dtype: "f32", shape: [2] }, []);
    expect(a).toBe(b);
    const s1 = t.make("binary", { fn: "add" }, [a, b]);
    const s2 = t.make("binary", { fn: "add" }, [a, a]);
    expect(s1).toBe(s2);
    expect(t.size).toBe(2);
  });

  it("hashes the same graph identically across builds and tables", () => {
    const h1 = graphNodes(smallModel()).map((n) => n.hash);
    const h2 = graphNodes(smallModel()).map((n) => n.hash);
    expect(h1).toEqual(h2);
  });

  it("changes a node's hash, and its users', when an attribute changes", () => {
    const a = smallModel(1e-5);
    const b = smallModel(1e-6);
    const ha = new Set(graphNodes(a).map((n) => n.hash));
    const out = b.entries[0]!.outputs[0]!.node;
    expect(ha.has(out.hash)).toBe(false);
    expect(ha.has(graphNodes(b).find((n) => n.op === "param")!.hash)).toBe(true);
  });

  it("keeps hashes independent of call sites and attribute key order", () => {
    const t = new NodeTable();
    const a = t.make("slice", { axis: 0, start: 0, end: 2, step: 1 }, [t.make("constant", { value: 1, dtype: "f32", shape: [4] }, [], { file: "a.ts", line: 1, column: 1 })]);
    const t2 = new NodeTable();
    const b = t2.make("slice", { step: 1, end: 2, start: 0, axis: 0 }, [t2.make("constant", { value: 1, dtype: "f32", shape: [4] }, [], { file: "b.ts", line: 9, column: 9 })]);
    expect(a.hash).toBe(b.hash);
  });

  it("has a pinned hash format (a change invalidates every kernel cache key)", () => {
    const t = new NodeTable();
    const c = t.make("constant", { value: 1, dtype: "f32", shape: [2, "tokens"] }, []);
    expect(c.hash).toMatch(/^[0-9a-f]{32}$/);
    // sha256 over op, dtype, shape, sorted-key attrs and input hashes, NUL-separated; first 128 bits
    const expected = createHash("sha256").update('constant\0f32\0[2,"tokens"]\0{"dtype":"f32","shape":[2,"tokens"],"value":1}').digest("hex").slice(0, 32);
    expect(c.hash).toBe(expected);
    expect(c.hash).toBe("37fb6672532cbd15b7b3ce119af34603");
  });

  it("distinguishes -0, NaN and infinities in attributes", () => {
    expect(stableStringify({ a: -0 })).not.toBe(stableStringify({ a: 0 }));
    expect(stableStringify([NaN, Infinity, -Infinity])).toBe('["NaN","Infinity","-Infinity"]');
  });

  it("freezes nodes", () => {
    const n = graphNodes(smallModel())[0]!;
    expect(Object.isFrozen(n)).toBe(true);
    expect(Object.isFrozen(n.attrs)).toBe(true);
  });
});

describe("verifier", () => {
  it("accepts built models", () => {
    expect(verifyGraph(smallModel())).toEqual([]);
    expect(verifyGraph(gptOssModel(GPT_OSS_TINY, { dtype: "bf16" }))).toEqual([]);
  });

  it("reports undeclared params, inputs and symbols", () => {
    const g = smallModel();
    const broken: Graph = { ...g, params: g.params.slice(1), symbols: {} };
    const problems = verifyGraph(broken).join("\n");
    expect(problems).toContain("param norm.weight is not declared");
    expect(problems).toContain("undeclared symbol tokens");
    const noInputs: Graph = { ...g, entries: g.entries.map((e) => ({ ...e, inputs: [] })) };
    expect(verifyGraph(noInputs).join("\n")).toContain("input x of entry main is not declared");
  });
});

describe("printer", () => {
  it("prints a stable, readable text form", () => {
    const text = printGraph(smallModel());
    expect(text).toBe(printGraph(smallModel()));
    expect(text.split("\n").slice(0, 4)).toEqual(["model small", "sym tokens <= 32", "param norm.weight : bf16[8]", "param proj.weight : bf16[4, 8]"]);
    expect(text).toContain('= input "x" : bf16[tokens, 8]');
    expect(text).toContain("reduce.mean {axis=1, keepDims=true}(");
    expect(text).toContain("matmul {transposeB}(");
    expect(text).toContain("constant -Infinity : f32[]");
    expect(text).toMatch(/entry main\(x: bf16\[tokens, 8\]\) -> y=%\d+, neg_inf=%\d+\n$/);
  });
  it("annotates call sites when asked", () => {
    expect(printGraph(smallModel(), { sites: true })).toMatch(/# test[\\/]ir[\\/]graph\.test\.ts:\d+:\d+/);
  });
});

describe("JSON form", () => {
  it("round-trips a whole model exactly", () => {
    for (const g of [smallModel(), gptOssModel(GPT_OSS_TINY, { dtype: "bf16", experts: "mxfp4" })]) {
      const json = graphToJson(g);
      const text = JSON.stringify(json);
      const back = graphFromJson(JSON.parse(text));
      expect(JSON.stringify(graphToJson(back))).toBe(text);
      expect(graphNodes(back).map((n) => n.hash)).toEqual(graphNodes(g).map((n) => n.hash));
      expect(printGraph(back, { sites: true })).toBe(printGraph(g, { sites: true }));
    }
  });

  it("round-trips the 20b graph", () => {
    const g = gptOssModel(GPT_OSS_20B, { dtype: "bf16" });
    const back = graphFromJsonText(graphToJsonText(g));
    expect(back.entries.map((e) => e.outputs.map((o) => o.node.hash))).toEqual(g.entries.map((e) => e.outputs.map((o) => o.node.hash)));
  });

  it("rejects malformed JSON with the path of the problem", () => {
    const json = graphToJson(smallModel());
    expect(() => graphFromJsonText("{")).toThrow(/not valid JSON/);
    expect(() => graphFromJson({ ...json, version: 2 })).toThrow(/\$\.version/);
    const badOp = { ...json, nodes: json.nodes.map((n, i) => (i === 0 ? { ...n, op: "conv" } : n)) };
    expect(() => graphFromJson(badOp)).toThrow(/\$\.nodes\.0\.op/);
  });

  it("rejects a node whose recorded type its operands do not give", () => {
    const json = graphToJson(smallModel());
    const idx = json.nodes.findIndex((n) => n.op === "matmul");
    const tampered = { ...json, nodes: json.nodes.map((n, i) => (i === idx ? { ...n, shape: ["tokens", 5] } : n)) };
    expect(() => graphFromJson(tampered)).toThrow(new RegExp(`node ${idx} \\(matmul\\) records bf16\\[tokens, 5\\] but its operands give bf16\\[tokens, 4\\]`));
  });

  it("rejects forward references and bad attributes", () => {
    const json = graphToJson(smallModel());
    const fwd = { ...json, nodes: json.nodes.map((n, i) => (i === 1 ? { ...n, inputs: [5] } : n)) };
    expect(() => graphFromJson(fwd)).toThrow(/refers to node 5, which is not an earlier node/);
    const idx = json.nodes.findIndex((n) => n.op === "reduce");
    const badAttr = { ...json, nodes: json.nodes.map((n, i) => (i === idx ? { ...n, attrs: { ...n.attrs, fn: "prod" } } : n)) };
    expect(() => graphFromJson(badAttr)).toThrow(/bad attributes: attrs\.fn/);
  });
});

describe("declared tensor sizes", () => {
  it("a param, state or input of 2^31 or more elements (at the symbols' bounds) is an error naming it and its site", () => {
    expect(() => defineModel("huge-param", (b) => {
      b.param("w", "f32", [65536, 65536]);
    })).toThrow(/^param w \[65536, 65536\] holds 4294967296 elements, more than the 2147483647 a kernel's int index addresses at .*graph\.test\.ts:\d+/);
    expect(() => defineModel("huge-state", (b) => {
      b.state("cache", "bf16", [1 << 24, 8, 64]);
    })).toThrow(/^state cache \[16777216, 8, 64\] holds 8589934592 elements/);
    expect(() => defineModel("huge-input", (b) => {
      const t = b.sym("tokens", 1 << 20);
      b.entry("main", (e) => {
        e.input("x", "f32", [t, 4096]);
      });
    })).toThrow(/^input x \[tokens, 4096\] holds 4294967296 elements at the symbols' bounds/);
  });

  it("gpt-oss's KV pools are sized when the plan loads (64-bit addressed), so a long context is not refused at build", () => {
    const long = { ...GPT_OSS_20B, maxPositionEmbeddings: 1 << 24 };
    const g = gptOssModel(long, { dtype: "bf16", maxContext: 1 << 24 });
    expect(g.states.find((s) => s.name === "layers.1.k_cache")!.shape).toEqual(["fullSlots", 8, 64]);
  });
});
