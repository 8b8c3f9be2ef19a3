import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bf16FromBits, bf16Bits } from "../../src/ir/dtype.js";
import { INDEX_FILE, openCheckpoint, openSafetensorsFile, planShards, writeCheckpoint } from "../../src/loader/checkpoint.js";
import {
  SafetensorsWriter,
  decodeFloats,
  encodeFloats,
  encodeSafetensorsHeader,
  readSafetensorsHeader,
  writeSafetensors,
  type TensorData,
} from "../../src/loader/safetensors.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tsgc-safetensors-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCounter = 0;
/** Writes a crafted file: 8-byte length (or `declaredLength`), the header text, then `data`. */
async function craft(header: string | object, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Promise<string> {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const body = Buffer.from(text, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declaredLength ?? BigInt(body.length));
  const path = join(dir, `crafted-${fileCounter++}.safetensors`);
  await writeFile(path, Buffer.concat([prefix, body, data]));
  return path;
}

async function headerError(path: string): Promise<string> {
  try {
    await readSafetensorsHeader(path);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`expected ${path} to be rejected`);
}

describe("safetensors reader rejects malformed files before reading data", () => {
  it("a header length past the end of the file", async () => {
    const path = await craft({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4), 1000n);
    const message = await headerError(path);
    expect(message).toContain(path);
    expect(message).toMatch(/header length 1000 runs past the end of the file \(\d+ bytes/);
  });

  it("a file too short for the length prefix", async () => {
    const path = join(dir, "tiny.safetensors");
    await writeFile(path, Buffer.from([1, 2, 3]));
    expect(await headerError(path)).toBe(`${path}: file is 3 bytes, too short for the 8-byte header length`);
  });

  it("malformed header JSON", async () => {
    const path = await craft('{"a": {"dtype": "F32",');
    expect(await headerError(path)).toMatch(new RegExp(`^${path}: header is malformed JSON`));
    const notObject = await craft("[1, 2]");
    expect(await headerError(notObject)).toBe(`${notObject}: header must be a JSON object starting with '{'`);
  });

  it("an unknown dtype", async () => {
    const path = await craft({ w: { dtype: "F7", shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2));
    expect(await headerError(path)).toMatch(new RegExp(`^${path}: tensor "w": unknown dtype "F7" \\(known: BOOL, U8, `));
  });

  it("a shape that does not match the byte count", async () => {
    const path = await craft({ w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(20));
    expect(await headerError(path)).toBe(`${path}: tensor "w": shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20`);
  });

  it("overlapping offsets", async () => {
    const path = await craft(
      {
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      },
      new Uint8Array(12),
    );
    expect(await headerError(path)).toBe(`${path}: tensor "b" (bytes 4–12) overlaps tensor "a" (which ends at 8)`);
  });

  it("offsets out of range (past the data section): the file is truncated", async () => {
    const path = await craft({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(10));
    expect(await headerError(path)).toMatch(
      new RegExp(`^${path}: file is truncated: tensor "a" needs data bytes 0–16 but the data section holds 10 bytes`),
    );
  });

  it("a gap between tensors and bytes that belong to no tensor", async () => {
    const gap = await craft(
      {
        a: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
        b: { dtype: "U8", shape: [4], data_offsets: [6, 10] },
      },
      new Uint8Array(10),
    );
    expect(await headerError(gap)).toBe(`${gap}: gap of 2 bytes between tensor "a" (which ends at 4) and tensor "b" (starts at 6)`);
    const leading = await craft({ a: { dtype: "U8", shape: [4], data_offsets: [4, 8] } }, new Uint8Array(8));
    expect(await headerError(leading)).toBe(`${leading}: gap of 4 bytes between the start of the data section and tensor "a" (starts at 4)`);
    const trailing = await craft({ a: { dtype: "U8", shape: [4], data_offsets: [0, 4] } }, new Uint8Array(7));
    expect(await headerError(trailing)).toBe(`${trailing}: 3 bytes after the last tensor ("a") belong to no tensor`);
  });

  it("a duplicate tensor name", async () => {
    const entry = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}';
    const path = await craft(`{"w": ${entry}, "__metadata__": {"x": "y"}, "w": ${entry}}`, new Uint8Array(1));
    expect(await headerError(path)).toBe(`${path}: tensor "w" appears twice in the header`);
  });

  it("bad entries and metadata", async () => {
    const shape = await craft({ w: { dtype: "U8", shape: [-1], data_offsets: [0, 0] } });
    expect(await headerError(shape)).toBe(`${shape}: tensor "w": shape must be an array of non-negative integers, got [-1]`);
    const offsets = await craft({ w: { dtype: "U8", shape: [1], data_offsets: [1] } }, new Uint8Array(1));
    expect(await headerError(offsets)).toMatch(/tensor "w": data_offsets must be \[begin, end\]/);
    const reversed = await craft({ w: { dtype: "U8", shape: [0], data_offsets: [4, 0] } });
    expect(await headerError(reversed)).toMatch(/tensor "w": data_offsets \[4, 0\] end before they begin/);
    const meta = await craft({ __metadata__: { format: 3 } });
    expect(await headerError(meta)).toBe(`${meta}: __metadata__.format must be a string, got 3`);
  });

  it("a valid file truncated after it was written", async () => {
    const path = join(dir, "truncated.safetensors");
    await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [64], data: encodeFloats("F32", new Float32Array(64).fill(1)) }]);
    const { size } = await import("node:fs/promises").then((fs) => fs.stat(path));
    await truncate(path, size - 10);
    expect(await headerError(path)).toMatch(/file is truncated: tensor "w" needs data bytes 0–256 but the data section holds 246 bytes/);
  });

  it("a missing file", async () => {
    const path = join(dir, "absent.safetensors");
    expect(await headerError(path)).toBe(`${path}: file not found`);
  });
});

describe("safetensors writer ↔ reader", () => {
  const values = Float32Array.from([1.5, -2.25, 3.0e-3, 65504, -0, 7.125]);
  const tensors: TensorData[] = [
    { name: "f32", dtype: "F32", shape: [2, 3], data: encodeFloats("F32", values) },
    { name: "bf16", dtype: "BF16", shape: [6], data: encodeFloats("BF16", values) },
    { name: "f16", dtype: "F16", shape: [3, 2], data: encodeFloats("F16", values) },
    { name: "bytes", dtype: "U8", shape: [2, 2, 2], data: Uint8Array.from([0, 1, 2, 3, 250, 251, 252, 255]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
    { name: "scalar", dtype: "I64", shape: [], data: Uint8Array.from([42, 0, 0, 0, 0, 0, 0, 0]) },
  ];

  it("round-trips names, dtypes, shapes, bytes and metadata", async () => {
    const path = join(dir, "roundtrip.safetensors");
    await writeSafetensors(path, tensors, { format: "pt", note: "ünïcode" });
    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual({ format: "pt", note: "ünïcode" });
    expect(header.dataStart % 8).toBe(0);
    const file = await openSafetensorsFile(path);
    try {
      for (const t of tensors) {
        expect(file.tensor(t.name)).toMatchObject({ dtype: t.dtype, shape: t.shape, byteLength: t.data.length });
        expect(await file.read(t.name)).toEqual(t.data);
      }
      expect(Array.from(await file.readFloat32("f32"))).toEqual(Array.from(values));
      expect(Array.from(await file.readFloat32("bf16"))).toEqual(Array.from(values, (v) => bf16FromBits(bf16Bits(v))));
      expect(Array.from(await file.readFloat32("f16"))).toEqual([1.5, -2.25, 0.0030002593994140625, 65504, -0, 7.125]);
      expect(() => file.tensor("nope")).toThrow(`${path}: no tensor "nope"`);
    } finally {
      await file.close();
    }
  });

  it("reads byte ranges and streams through a caller's buffer", async () => {
    const path = join(dir, "ranges.safetensors");
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);
    await writeSafetensors(path, [{ name: "big", dtype: "U8", shape: [1000], data }]);
    const file = await openSafetensorsFile(path);
    try {
      expect(await file.readInto("big", new Uint8Array(10), 995 - 5)).toEqual(data.subarray(990, 1000));
      await expect(file.readInto("big", new Uint8Array(11), 990)).rejects.toThrow(/outside its 1000 bytes/);
      const pinned = new Uint8Array(64);
      const seen: number[] = [];
      for await (const chunk of file.chunks("big", 300, pinned)) {
        expect(chunk.buffer).toBe(pinned.buffer); // every chunk is a view of the caller's buffer
        seen.push(...chunk);
      }
      expect(Uint8Array.from(seen)).toEqual(data);
    } finally {
      await file.close();
    }
  });

  it("the writer enforces spec order and complete tensors, leaving no partial file behind", async () => {
    const path = join(dir, "strict.safetensors");
    const specs = [
      { name: "a", dtype: "U8" as const, shape: [4] },
      { name: "b", dtype: "U8" as const, shape: [2] },
    ];
    const writer = await SafetensorsWriter.create(path, specs);
    await expect(writer.write("b", new Uint8Array(2))).rejects.toThrow(`${path}: expected data for tensor "a" (spec order), got "b"`);
    await writer.write("a", new Uint8Array(3));
    await expect(writer.write("a", new Uint8Array(2))).rejects.toThrow(/tensor "a" takes 4 bytes; 5 were written/);
    await expect(writer.close()).rejects.toThrow(`${path}: closed with tensor "a" incomplete (3 of 4 bytes)`);
    expect((await readdir(dir)).filter((f) => f.startsWith("strict"))).toEqual([]);
  });

  it("headers are padded to 8 bytes and refuse duplicate names", () => {
    for (let n = 1; n < 12; n++) {
      const header = encodeSafetensorsHeader([{ name: "x".repeat(n), dtype: "U8", shape: [1] }]);
      expect(header.length % 8).toBe(0);
    }
    expect(() => encodeSafetensorsHeader([{ name: "a", dtype: "U8", shape: [1] }, { name: "a", dtype: "U8", shape: [1] }])).toThrow(
      'tensor "a" is listed twice',
    );
  });

  it("decodes and encodes floats exactly", () => {
    const bf = encodeFloats("BF16", [1, -0.5, 3.140625]);
    expect(Array.from(bf)).toEqual([0x80, 0x3f, 0x00, 0xbf, 0x49, 0x40]);
    expect(Array.from(decodeFloats("BF16", bf))).toEqual([1, -0.5, 3.140625]);
    expect(() => decodeFloats("U8", new Uint8Array(2))).toThrow("cannot decode U8 as floating point");
  });
});

describe("sharded checkpoints", () => {
  const tensors: TensorData[] = Array.from({ length: 5 }, (_, i) => ({
    name: `layer.${i}.weight`,
    dtype: "U8" as const,
    shape: [40 + i],
    data: Uint8Array.from({ length: 40 + i }, (_, j) => (i * 31 + j) & 0xff),
  }));

  it("plans shards under a byte bound with transformers' file names", () => {
    const plan = planShards(tensors, 90);
    expect(plan.shards.map((s) => [s.fileName, s.tensors.map((t) => t.name)])).toEqual([
      ["model-00001-of-00003.safetensors", ["layer.0.weight", "layer.1.weight"]],
      ["model-00002-of-00003.safetensors", ["layer.2.weight", "layer.3.weight"]],
      ["model-00003-of-00003.safetensors", ["layer.4.weight"]],
    ]);
    expect(plan.totalBytes).toBe(210);
    expect(planShards(tensors).shards.map((s) => s.fileName)).toEqual(["model.safetensors"]);
  });

  it("writes an index and reads every tensor back through it", async () => {
    const out = join(dir, "sharded");
    await writeCheckpoint(out, tensors, { maxShardBytes: 90 });
    const index = JSON.parse(await readFile(join(out, INDEX_FILE), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    expect(index.metadata.total_size).toBe(210);
    expect(index.weight_map["layer.4.weight"]).toBe("model-00003-of-00003.safetensors");
    const ckpt = await openCheckpoint(out);
    try {
      expect(ckpt.files.length).toBe(3);
      expect(ckpt.indexPath).toBe(join(out, INDEX_FILE));
      for (const t of tensors) expect(await ckpt.read(t.name)).toEqual(t.data);
      expect((await readSafetensorsHeader(join(out, "model-00001-of-00003.safetensors"))).metadata).toEqual({ format: "pt" });
    } finally {
      await ckpt.close();
    }
  });

  async function shardedCopy(name: string): Promise<string> {
    const out = join(dir, name);
    await writeCheckpoint(out, tensors, { maxShardBytes: 90 });
    return out;
  }

  async function openError(path: string): Promise<string> {
    try {
      await (await openCheckpoint(path)).close();
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error("expected openCheckpoint to fail");
  }

  it("rejects an index naming a missing shard, a tensor a shard lacks, and a tensor no entry names", async () => {
    const missingShard = await shardedCopy("missing-shard");
    await rm(join(missingShard, "model-00002-of-00003.safetensors"));
    expect(await openError(missingShard)).toBe(
      `${join(missingShard, INDEX_FILE)}: lists shard model-00002-of-00003.safetensors, which is missing from ${missingShard}`,
    );

    const extraEntry = await shardedCopy("extra-entry");
    const indexPath = join(extraEntry, INDEX_FILE);
    const index = JSON.parse(await readFile(indexPath, "utf8")) as { weight_map: Record<string, string> };
    index.weight_map["ghost.weight"] = "model-00001-of-00003.safetensors";
    await writeFile(indexPath, JSON.stringify(index));
    expect(await openError(extraEntry)).toBe(`${indexPath}: places tensor "ghost.weight" in model-00001-of-00003.safetensors, which does not hold it`);

    const unlisted = await shardedCopy("unlisted");
    const unlistedIndex = join(unlisted, INDEX_FILE);
    const idx = JSON.parse(await readFile(unlistedIndex, "utf8")) as { weight_map: Record<string, string> };
    delete idx.weight_map["layer.1.weight"];
    await writeFile(unlistedIndex, JSON.stringify(idx));
    expect(await openError(unlisted)).toBe(`${join(unlisted, "model-00001-of-00003.safetensors")}: tensor "layer.1.weight" is not listed in ${INDEX_FILE}`);

    const misplaced = await shardedCopy("misplaced");
    const misplacedIndex = join(misplaced, INDEX_FILE);
    const m = JSON.parse(await readFile(misplacedIndex, "utf8")) as { weight_map: Record<string, string> };
    m.weight_map["layer.0.weight"] = "model-00002-of-00003.safetensors";
    await writeFile(misplacedIndex, JSON.stringify(m));
    expect(await openError(misplaced)).toMatch(/places tensor "layer.0.weight" in model-00002-of-00003.safetensors, but it is in model-00001-of-00003.safetensors/);

    const malformed = await shardedCopy("malformed-index");
    await writeFile(join(malformed, INDEX_FILE), "{");
    expect(await openError(malformed)).toMatch(new RegExp(`^${join(malformed, INDEX_FILE)}: malformed JSON`));

    const escaping = await shardedCopy("escaping-index");
    await writeFile(join(escaping, INDEX_FILE), JSON.stringify({ weight_map: { w: "../elsewhere.safetensors" } }));
    expect(await openError(escaping)).toMatch(/weight_map\["w"\] must be a file name in the same directory/);
  });

  it("names what is missing in a directory without weights", async () => {
    const empty = join(dir, "empty-dir");
    await writeCheckpoint(join(empty, "sub"), []); // creates empty/sub/model.safetensors only
    expect(await openError(empty)).toBe(`${empty}: holds neither model.safetensors nor ${INDEX_FILE}`);
    expect(await openError(join(dir, "no-such-dir"))).toBe(`${join(dir, "no-such-dir")}: no such directory`);
  });
});
