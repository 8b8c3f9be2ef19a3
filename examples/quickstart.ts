// A model defined with tsgc's API and run through the CPU reference interpreter.
import { defineModel, hostTensor, interpret, printGraph } from "tsgc";

// A residual block: RMSNorm → linear → SiLU → linear, written as plain math.
const block = defineModel("block", (b) => {
  const tokens = b.sym("tokens", 16);
  const norm = b.param("norm.weight", "f32", [4]);
  const up = b.param("up.weight", "f32", [8, 4]);
  const down = b.param("down.weight", "f32", [4, 8]);
  b.entry("forward", (e) => {
    const x = e.input("x", "f32", [tokens, 4]);
    const h = b.linear(b.rmsNorm(x, norm, 1e-5), up);
    e.output("y", b.add(x, b.linear(b.mul(h, b.sigmoid(h)), down)));
  });
});

const ramp = (n: number, scale: number) => Array.from({ length: n }, (_, i) => scale * Math.sin(i + 1));
const { y } = interpret(
  block,
  "forward",
  { x: hostTensor("f32", [2, 4], [1, 2, 3, 4, -1, 0, 1, 2]) },
  {
    "norm.weight": hostTensor("f32", [4], [1, 1, 1, 1]),
    "up.weight": hostTensor("f32", [8, 4], ramp(32, 0.5)),
    "down.weight": hostTensor("f32", [4, 8], ramp(32, 0.25)),
  },
);
console.log(printGraph(block).split("\n")[0]);
console.log(y!.shape, Array.from(y!.data, (v) => v.toFixed(4)).join(" "));
