// Model state (the KV cache): declared once, read by entry points, updated in place by a scatter that the
// scheduler orders after every read of the old value.
import { describe, expect, it } from "vitest";
import { compile } from "../../src/compile/compile.js";
import { defineModel } from "../../src/ir/builder.js";
import { graphFromJson, graphToJson } from "../../src/ir/json.js";
import { hostTensor } from "../../src/ir/host-tensor.js";
import { interpretStep } from "../../src/ir/interpret.js";
import { printGraph } from "../../src/ir/print.js";

/** A cache of 6 rows of 4: `step` reads rows (gather), adds them up with x, and writes x to `slots`. */
const cacheModel = (readAfterWrite = false) =>
  defineModel("cache", (b) => {
    b.sym("n", 6);
    b.sym("t", 6);
    const cache = b.state("cache", "f32", [6, 4]);
    b.entry("step", (e) => {
      const x = e.input("x", "f32", ["t", 4]);
      const rows = e.input("rows", "i32", ["n"]);
      const slots = e.input("slots", "i32", ["t"]);
      const written = b.scatter(cache, slots, x, 0);
      e.update("cache", written);
      const old = b.reduce("sum", b.gather(readAfterWrite ? written : cache, rows, 0), 0);
      e.output("y", b.add(old, b.reduce("sum", x, 0)));
    });
  });

const run = (states: Record<string, ReturnType<typeof hostTensor>>, x: number[][], rows: number[], slots: number[]) =>
  interpretStep(cacheModel(), "step", {
    x: hostTensor("f32", [x.length, 4], x.flat()),
    rows: hostTensor("i32", [rows.length], rows),
    slots: hostTensor("i32", [slots.length], slots),
  }, {}, states);

describe("model state", () => {
  it("starts zeroed, keeps updates between calls, and reads the value from before the call", () => {
    const first = run({}, [[1, 2, 3, 4]], [0], [0]);
    expect(Array.from(first.outputs["y"]!.data)).toEqual([1, 2, 3, 4]); // row 0 was still zero when read
    expect(Array.from(first.updates["cache"]!.data.slice(0, 8))).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
    // out-of-range slots write nothing; a repeated slot keeps the last update
    const second = run(first.updates, [[10, 10, 10, 10], [5, 6, 7, 8], [9, 9, 9, 9]], [0, 1], [1, -1, 1]);
    expect(Array.from(second.outputs["y"]!.data)).toEqual([1 + 24, 2 + 25, 3 + 26, 4 + 27]);
    expect(Array.from(second.updates["cache"]!.data.slice(0, 12))).toEqual([1, 2, 3, 4, 9, 9, 9, 9, 0, 0, 0, 0]);
  });

  it("prints, round-trips through JSON and refuses a mismatched or undeclared update", () => {
    const g = cacheModel();
    expect(printGraph(g)).toMatch(/state cache : f32\[6, 4\]/);
    expect(printGraph(g)).toMatch(/updates cache=%\d+/);
    expect(printGraph(graphFromJson(graphToJson(g)))).toBe(printGraph(g));
    expect(() =>
      defineModel("bad", (b) => {
        const s = b.state("s", "f32", [2]);
        b.entry("e", (e) => {
          e.update("s", b.cast(s, "bf16"));
          e.output("y", s);
        });
      }),
    ).toThrow(/update of state s is bf16\[2\], the state is f32\[2\]/);
    expect(() => defineModel("bad", (b) => b.entry("e", (e) => e.update("nope", b.constant(1, "f32", [1]))))).toThrow(/update of nope, which is not declared state/);
  });

  it("is written in place after every read of its old value, in the weights region", async () => {
    const { plan } = await compile(cacheModel(), { arch: "sm_80", cacheDir: false, nvrtc: "skip" });
    const [state] = plan.states;
    expect(state).toMatchObject({ name: "cache", bytes: 6 * 4 * 4, atLoad: false });
    expect(state!.offset).toBeLessThan(plan.arena.weightBytes);
    const step = plan.entries[0]!.buckets[0]!;
    const ops = step.launches.map((l) => l.op);
    // the gather of the old rows comes before the scatter, even though the scatter was built first
    expect(ops.indexOf("gather")).toBeLessThan(ops.indexOf("scatter"));
    // the scatter writes into the state's own bytes (one launch: few updates), and copies nothing else
    const scatters = step.launches.filter((l) => l.op === "scatter");
    expect(scatters).toHaveLength(1);
    expect(plan.kernels[scatters[0]!.kernel]!.entry).toMatch(/_write_last$/);
    expect(scatters[0]!.args[0]).toEqual({ kind: "buffer", offset: state!.offset });
  });

  it("refuses an entry that reads the state after updating it and then reads the old value too", async () => {
    // reading the updated value is fine (decode reads the rows it has just written) ...
    await expect(compile(cacheModel(true), { arch: "sm_80", cacheDir: false, nvrtc: "skip" })).resolves.toBeDefined();
    // ... but an update that is not a scatter into the state cannot be written in place
    const notScatter = defineModel("bad", (b) => {
      const s = b.state("s", "f32", [4]);
      b.entry("e", (e) => {
        const x = e.input("x", "f32", [4]);
        e.update("s", b.add(s, x));
        e.output("y", b.mul(s, x));
      });
    });
    await expect(compile(notScatter, { arch: "sm_80", cacheDir: false, nvrtc: "skip" })).rejects.toThrow(/updates state s with binary; an update must be scatter\(s, rows, values\)/);
    // a reader of the old value that depends on the update: no order satisfies both
    const cycle = defineModel("bad", (b) => {
      const s = b.state("s", "f32", [4, 2]);
      b.entry("e", (e) => {
        const x = e.input("x", "f32", [1, 2]);
        const idx = e.input("i", "i32", [1]);
        const w = b.scatter(s, idx, x, 0);
        e.update("s", w);
        e.output("y", b.add(s, b.gather(w, b.constant(0, "i32", [4]), 0)));
      });
    });
    await expect(compile(cycle, { arch: "sm_80", cacheDir: false, nvrtc: "skip" })).rejects.toThrow(/reads a state after updating it in place/);
  });
});
