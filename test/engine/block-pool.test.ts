// The block pool and its prefix cache: allocation order, reference counts, hashed blocks surviving release as
// evictable cache entries, LRU eviction order, duplicate hashes, the hash chain, and a random-operation run
// against a plain reference model of the pool.
import { describe, expect, it } from "vitest";
import { BlockHashChain, BlockPool, hashBlock } from "../../src/engine/block-pool.js";
import { seededRandom } from "../../src/ir/host-tensor.js";

describe("BlockPool", () => {
  it("hands out the lowest ids first and counts used and free blocks", () => {
    const pool = new BlockPool(4);
    expect([pool.allocate(), pool.allocate(), pool.allocate()]).toEqual([0, 1, 2]);
    expect(pool.usedBlocks).toBe(3);
    expect(pool.freeBlocks).toBe(1);
    pool.release(1);
    expect(pool.refCount(1)).toBe(0);
    expect(pool.allocate()).toBe(1); // a just-freed block is reused first
    expect(pool.allocate()).toBe(3);
    expect(() => pool.allocate()).toThrow(/exhausted \(4 blocks in use\)/);
    pool.audit();
  });

  it("counts holders: a shared block is freed only when its last holder releases it", () => {
    const pool = new BlockPool(2);
    const b = pool.allocate();
    pool.setHash(b, "h");
    pool.retain(b);
    expect(pool.refCount(b)).toBe(2);
    pool.release(b);
    expect(pool.usedBlocks).toBe(1);
    pool.release(b);
    expect(pool.usedBlocks).toBe(0);
    expect(() => pool.release(b)).toThrow(/released more often than it was held/);
    const c = pool.allocate(); // the never-hashed block 1, not the cached one
    expect(c).toBe(1);
    pool.release(c);
    expect(() => pool.retain(c)).toThrow(/free and has no hash/);
    expect(() => pool.refCount(2)).toThrow(/outside the pool/);
    pool.audit();
  });

  it("keeps a released hashed block findable and counts it free; a hit takes it back out of the LRU", () => {
    const pool = new BlockPool(3);
    const b = pool.allocate();
    pool.setHash(b, "prefix");
    pool.release(b);
    expect(pool.lookup("prefix")).toBe(b);
    expect(pool.freeBlocks).toBe(3);
    expect(pool.evictableBlocks).toBe(1);
    expect(pool.cachedBlocks).toBe(1);
    pool.retain(b);
    expect(pool.refCount(b)).toBe(1);
    expect(pool.usedBlocks).toBe(1);
    expect(pool.evictableBlocks).toBe(0);
    expect(pool.lruOrder()).toEqual([]);
    pool.audit();
  });

  it("allocates never-hashed blocks before evicting, then evicts least recently released first", () => {
    const pool = new BlockPool(4);
    const [a, b, c, d] = [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()];
    pool.setHash(a!, "A");
    pool.setHash(b!, "B");
    pool.setHash(c!, "C");
    pool.release(b!);
    pool.release(a!);
    pool.release(c!);
    pool.release(d!); // unhashed: truly free
    expect(pool.lruOrder()).toEqual([b, a, c]);
    pool.retain(a!); // a hit on A, then released again: now the most recent
    pool.release(a!);
    expect(pool.lruOrder()).toEqual([b, c, a]);
    expect(pool.allocate()).toBe(d); // the free block first
    expect(pool.lookup("B")).toBe(b);
    expect(pool.allocate()).toBe(b); // then the oldest cached, which loses its hash
    expect(pool.lookup("B")).toBeUndefined();
    expect(pool.hashOf(b!)).toBeUndefined();
    expect(pool.allocate()).toBe(c);
    expect(pool.lookup("A")).toBe(a);
    expect(pool.cachedBlocks).toBe(1);
    pool.audit();
  });

  it("keeps the first block cached under a hash; a second block with the same prefix stays private", () => {
    const pool = new BlockPool(2);
    const first = pool.allocate();
    const second = pool.allocate();
    pool.setHash(first, "same");
    pool.setHash(second, "same");
    expect(pool.lookup("same")).toBe(first);
    expect(pool.hashOf(second)).toBeUndefined();
    pool.release(second);
    expect(pool.evictableBlocks).toBe(0); // freed, not cached
    pool.setHash(first, "same"); // idempotent
    expect(() => pool.setHash(first, "other")).toThrow(/already cached under another prefix/);
    expect(() => pool.setHash(second, "x")).toThrow(/not held/);
    pool.audit();
  });

  it("matches a reference model under random operations", () => {
    const rand = seededRandom(7);
    const n = 12;
    const pool = new BlockPool(n);
    const refs = new Array<number>(n).fill(0);
    const hashOf = new Map<number, string>();
    let lru: number[] = []; // least recent first
    let nextHash = 0;
    let evictions = 0;
    let hits = 0;
    for (let op = 0; op < 4000; op++) {
      const r = rand();
      const held = refs.flatMap((c, b) => (c > 0 ? [b] : []));
      if (r < 0.35 && pool.freeBlocks > 0) {
        const free = refs.flatMap((c, b) => (c === 0 && !hashOf.has(b) ? [b] : []));
        const b = pool.allocate();
        if (free.length > 0) {
          expect(free).toContain(b);
        } else {
          expect(b).toBe(lru[0]); // eviction of the least recently released
          hashOf.delete(b);
          lru = lru.slice(1);
          evictions++;
        }
        refs[b] = 1;
      } else if (r < 0.6 && held.length > 0) {
        const b = held[Math.floor(rand() * held.length)]!;
        pool.release(b);
        if (--refs[b]! === 0 && hashOf.has(b)) lru.push(b);
      } else if (r < 0.75 && held.length > 0) {
        const b = held[Math.floor(rand() * held.length)]!;
        if (!hashOf.has(b)) {
          const h = `h${nextHash++}`;
          pool.setHash(b, h);
          hashOf.set(b, h);
        }
      } else if (hashOf.size > 0) {
        const cached = [...hashOf.keys()];
        const b = cached[Math.floor(rand() * cached.length)]!;
        expect(pool.lookup(hashOf.get(b)!)).toBe(b);
        pool.retain(b);
        if (refs[b]!++ === 0) lru = lru.filter((x) => x !== b);
        hits++;
      }
      expect(pool.usedBlocks).toBe(refs.filter((c) => c > 0).length);
      expect(pool.lruOrder()).toEqual(lru);
      expect(pool.cachedBlocks).toBe(hashOf.size);
      if (op % 50 === 0) pool.audit();
    }
    expect(evictions).toBeGreaterThan(50); // the run exercised eviction and hits, not just the easy paths
    expect(hits).toBeGreaterThan(50);
  });
});

describe("block hashes", () => {
  const tokens = Array.from({ length: 64 }, (_, i) => (i * 7919) % 1000);

  it("chain: a block's hash depends on its tokens and on every block before it", () => {
    const h0 = hashBlock("", tokens, 0, 16);
    expect(hashBlock("", tokens, 0, 16)).toBe(h0);
    expect(hashBlock("", tokens, 16, 32)).not.toBe(h0);
    expect(hashBlock(h0, tokens, 16, 32)).not.toBe(hashBlock("", tokens, 16, 32));
    const other = [...tokens];
    other[3] = 999_999;
    const a = new BlockHashChain(16).extend(tokens, 4);
    const b = new BlockHashChain(16).extend(other, 4);
    for (let i = 0; i < 4; i++) expect(a[i]).not.toBe(b[i]); // one changed token changes every later hash
    other[3] = tokens[3]!;
    other[40] = 5;
    const c = new BlockHashChain(16).extend(other, 4);
    expect(c.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(c[2]).not.toBe(a[2]);
  });

  it("chain: extending step by step gives the same hashes as all at once, and only full blocks hash", () => {
    const chain = new BlockHashChain(16);
    chain.extend(tokens.slice(0, 20), 1);
    expect(chain.length).toBe(1);
    expect(chain.extend(tokens, 4)).toEqual(new BlockHashChain(16).extend(tokens, 4));
    expect(chain.at(3)).toBe(chain.extend(tokens, 4)[3]);
    expect(() => chain.at(4)).toThrow(/not hashed yet/);
    expect(() => chain.extend(tokens.slice(0, 47), 3)).toThrow(/cannot hash 3 blocks of 16 tokens: the sequence has 47/);
  });

  it("distinguishes token ids that a byte-level encoding could confuse", () => {
    expect(hashBlock("", [1, 256], 0, 2)).not.toBe(hashBlock("", [256, 1], 0, 2));
    expect(hashBlock("", [0x10000, 0], 0, 2)).not.toBe(hashBlock("", [0, 0x10000], 0, 2));
  });
});
