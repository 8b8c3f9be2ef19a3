// Seeded random parameters for any graph: what runs a model with no checkpoint (tests, benchmarks,
// `tsgc run` on a built-in default). Each parameter gets its own stream seeded from (seed, name), so
// adding a parameter never changes the values of the others.

import { createHash } from "node:crypto";
import type { Graph, ParamDecl } from "../ir/graph.js";
import { type HostTensor, randomTensor, seededRandom } from "../ir/host-tensor.js";
import { evalShape, formatShape } from "../ir/shape.js";

function paramSeed(seed: number, name: string): number {
  return createHash("sha256").update(`${seed}\0${name}`).digest().readUInt32LE(0);
}

/**
 * Values that keep activations of a randomly initialized transformer in a sane range:
 * matrices ±1/√fan_in, norm weights near 1, other vectors (biases, sinks) small, MXFP4 blocks random
 * codes with scales around 2^-5 (so weights stay within ±0.2).
 */
export function randomParam(decl: ParamDecl, seed: number, symbols: Readonly<Record<string, number>>): HostTensor {
  const shape = evalShape(decl.shape, symbols);
  const rand = seededRandom(paramSeed(seed, decl.name));
  if (decl.dtype === "fp4e2m1x2") return randomTensor(decl.dtype, shape, rand, 0, 256);
  if (decl.dtype === "e8m0") return randomTensor(decl.dtype, shape, rand, 120, 124);
  if (shape.length >= 2) {
    const a = 1 / Math.sqrt(shape[shape.length - 1]!);
    return randomTensor(decl.dtype, shape, rand, -a, a);
  }
  if (/norm/.test(decl.name)) return randomTensor(decl.dtype, shape, rand, 0.9, 1.1);
  return randomTensor(decl.dtype, shape, rand, -0.1, 0.1);
}

/** Random values for every parameter of `graph`, planned at the symbols' upper bounds. */
export function randomParams(graph: Graph, seed: number): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const p of graph.params) {
    try {
      out[p.name] = randomParam(p, seed, graph.symbols);
    } catch (err) {
      throw new Error(`cannot initialize param ${p.name} ${formatShape(p.shape)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out;
}
