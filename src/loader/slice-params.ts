// A rank's parameters from whole ones: every parameter of a rank's graph that holds a slice of a tensor
// (ParamDecl.slice, made by the sharding pass) cut from the whole tensor; the others as they are. For weights that
// live on the host whole anyway (seeded random weights, the CPU reference); checkpoints are read slice by slice
// (load-params.ts).

import type { Graph } from "../ir/graph.js";
import { type HostTensor, sliceTensor } from "../ir/host-tensor.js";
import { formatShape } from "../ir/shape.js";

export function sliceParams(rank: Graph, whole: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const p of rank.params) {
    const t = whole[p.name];
    if (!t) throw new Error(`parameter ${p.name} was not provided`);
    if (!p.slice) {
      out[p.name] = t;
      continue;
    }
    if (formatShape(t.shape) !== formatShape(p.slice.full)) throw new Error(`parameter ${p.name} is ${formatShape(t.shape)}, but rank slices are of ${formatShape(p.slice.full)}`);
    out[p.name] = sliceTensor(t, p.slice.axes);
  }
  return out;
}
