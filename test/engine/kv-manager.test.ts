// The per-sequence KV view: sliding-window release math at block boundaries (checked against the definition of
// visibility), the per-sequence block cap, pool rows, all-or-nothing allocation, and prefix matching for full and
// windowed groups (the at-most-promptLength − 1 rule, shared blocks, a windowed miss forcing a shorter match).
import { describe, expect, it } from "vitest";
import { BlockHashChain, NO_BLOCK } from "../../src/engine/block-pool.js";
import { firstLiveBlock, type KvGroupConfig, KvManager, type KvSequence, windowBlocks } from "../../src/engine/kv-manager.js";

const tokensOf = (n: number, salt = 0): number[] => Array.from({ length: n }, (_, i) => (i * 31 + salt * 1009 + 7) % 5000);

/** A sequence over `tokens` and its hash chain, advanced by allocate + commit. */
class Seq {
  readonly kv: KvSequence;
  readonly chain: BlockHashChain;
  constructor(readonly m: KvManager, readonly tokens: number[], admitPrefix = true) {
    this.kv = m.newSequence();
    this.chain = new BlockHashChain(m.blockSize);
    if (admitPrefix) m.admit(this.kv, m.matchPrefix(tokens, this.chain));
  }
  /** Computes positions up to `upTo` in one step. */
  step(upTo: number): void {
    expect(this.m.allocate(this.kv, upTo)).toBe(true);
    this.m.commit(this.kv, upTo, this.tokens, this.chain);
  }
  held(group: number): number {
    return this.kv.tables[group]!.filter((b) => b !== NO_BLOCK).length;
  }
}

describe("sliding release", () => {
  it("firstLiveBlock releases exactly the blocks no query at q ≥ computed can see", () => {
    for (const [window, B] of [[128, 16], [128, 32], [100, 16], [17, 16], [16, 16], [1, 16], [5, 4], [33, 32]] as const) {
      for (let computed = 0; computed <= 400; computed++) {
        // by definition: block b is visible to some future query iff its last key k = (b+1)·B − 1 satisfies
        // q − k < window for the earliest future query q = computed
        let expected = 0;
        while (computed - ((expected + 1) * B - 1) >= window) expected++;
        expect(firstLiveBlock(computed, window, B), `window ${window}, B ${B}, computed ${computed}`).toBe(expected);
      }
    }
  });

  it("boundaries for window 128: block 0 dies when computed reaches 143 (B 16) and 159 (B 32)", () => {
    expect(firstLiveBlock(142, 128, 16)).toBe(0);
    expect(firstLiveBlock(143, 128, 16)).toBe(1); // the query at 143 sees 16 … 143; block 0 is 0 … 15
    expect(firstLiveBlock(158, 128, 32)).toBe(0);
    expect(firstLiveBlock(159, 128, 32)).toBe(1);
    expect(windowBlocks(128, 16)).toBe(9);
    expect(windowBlocks(128, 32)).toBe(5);
    expect(windowBlocks(100, 16)).toBe(8);
    expect(windowBlocks(17, 16)).toBe(2); // positions q − 16 … q span at most two blocks of 16
    expect(windowBlocks(1, 16)).toBe(1);
  });

  for (const [window, B] of [[128, 16], [128, 32], [100, 16], [40, 16], [18, 16]] as const) {
    it(`decoding one token a step, window ${window} and B ${B}: the table holds exactly the live blocks, at most ceil(window/B)+1`, () => {
      const m = new KvManager({ blockSize: B, groups: [{ name: "full", numBlocks: 64 }, { name: "sliding", numBlocks: 12, window }], prefixCaching: true });
      const s = new Seq(m, tokensOf(900));
      let most = 0;
      for (let computed = 1; computed <= 900; computed++) {
        s.step(computed);
        const first = firstLiveBlock(computed, window, B);
        const table = s.kv.tables[1]!;
        expect(table.length).toBe(Math.ceil(computed / B));
        expect(table.slice(0, first).every((b) => b === NO_BLOCK)).toBe(true);
        expect(table.slice(first).every((b) => b !== NO_BLOCK)).toBe(true);
        most = Math.max(most, s.held(1));
        m.audit([s.kv], true);
      }
      expect(most).toBeLessThanOrEqual(Math.ceil(window / B) + 1);
      // between steps the table covers the window − 1 positions before the next query: the most that spans is
      // reached, so the test would see an overrun
      expect(most).toBe(Math.ceil((window - 2) / B) + 1);
      expect(s.held(0)).toBe(Math.ceil(900 / B));
      expect(m.pools[1]!.usedBlocks).toBe(s.held(1));
      m.free(s.kv);
      expect(m.pools[0]!.usedBlocks + m.pools[1]!.usedBlocks).toBe(0);
      m.audit([], true);
    });
  }

  it("a long prefill chunk holds all its blocks during the step and only the window's after it", () => {
    const m = new KvManager({ blockSize: 16, groups: [{ name: "sliding", numBlocks: 70, window: 128 }], prefixCaching: true });
    const s = new Seq(m, tokensOf(1000));
    expect(m.allocate(s.kv, 1000)).toBe(true);
    expect(s.held(0)).toBe(63);
    m.audit([s.kv], false);
    m.commit(s.kv, 1000, s.tokens, s.chain);
    expect(firstLiveBlock(1000, 128, 16)).toBe(54); // the next query (1000) sees 873 … 1000: blocks 54 …
    expect(s.held(0)).toBe(9); // … 62
    // the released full blocks keep their hashes: evictable, still findable
    expect(m.pools[0]!.evictableBlocks).toBe(54);
    expect(m.pools[0]!.lookup(s.chain.at(0))).toBe(0);
    expect(m.pools[0]!.lookup(s.chain.at(53))).toBe(53);
    m.audit([s.kv], true);
  });

  it("refuses a window the pool cannot hold for one sequence", () => {
    expect(() => new KvManager({ blockSize: 16, groups: [{ name: "sliding", numBlocks: 8, window: 128 }], prefixCaching: true })).toThrow(/needs up to 9 blocks of 16 tokens for its window of 128; the pool has 8/);
  });
});

describe("KvManager", () => {
  const groups: KvGroupConfig[] = [{ name: "full", numBlocks: 8 }, { name: "sliding", numBlocks: 6, window: 8 }];

  it("pool rows: table[p / B] · B + p mod B", () => {
    const m = new KvManager({ blockSize: 4, groups, prefixCaching: false });
    const a = new Seq(m, tokensOf(12));
    const b = new Seq(m, tokensOf(12, 1));
    a.step(3);
    b.step(6);
    a.step(11);
    // full: a got block 0, b blocks 1 and 2, then a blocks 3 and 4
    expect(a.kv.tables[0]).toEqual([0, 3, 4]);
    expect([0, 3, 4, 5, 8].map((p) => m.slot(a.kv, 0, p))).toEqual([0, 3, 12, 13, 16]);
    expect(m.slot(b.kv, 0, 5)).toBe(2 * 4 + 1);
    expect(() => m.slot(a.kv, 0, 12)).toThrow(/position 12 has no block in group "full"/);
    // sliding (window 8): at 11 computed the next query sees 4 … 11, so block 0 (positions 0 … 3) is dead
    expect(a.kv.tables[1]![0]).toBe(NO_BLOCK);
    expect(() => m.slot(a.kv, 1, 2)).toThrow(/no block in group "sliding"/);
    m.audit([a.kv, b.kv], true);
  });

  it("allocates all groups or none", () => {
    const m = new KvManager({ blockSize: 4, groups: [{ name: "full", numBlocks: 16 }, { name: "sliding", numBlocks: 3, window: 4 }], prefixCaching: false });
    const a = new Seq(m, tokensOf(40));
    expect(m.capacity(a.kv)).toBe(12); // the sliding pool: 3 blocks
    expect(m.allocate(a.kv, 13)).toBe(false);
    expect(m.pools[0]!.usedBlocks + m.pools[1]!.usedBlocks).toBe(0);
    expect(m.allocate(a.kv, 12)).toBe(true);
    expect(m.pools[0]!.usedBlocks).toBe(3);
    m.commit(a.kv, 12, a.tokens, a.chain); // positions 9 … 11 stay visible: blocks 0 and 1 go back
    expect(m.capacity(a.kv)).toBe((3 + 2) * 4);
    m.audit([a.kv], true);
  });

  it("shortfallAlone: a full group must hold every block of the sequence", () => {
    const m = new KvManager({ blockSize: 4, groups, prefixCaching: true });
    expect(m.shortfallAlone(32)).toBeUndefined();
    expect(m.shortfallAlone(33)).toEqual({ group: "full", need: 9, have: 8 });
  });
});

describe("prefix matching", () => {
  it("full groups: whole blocks only, at most promptLength − 1 tokens", () => {
    const m = new KvManager({ blockSize: 16, groups: [{ name: "full", numBlocks: 32 }], prefixCaching: true });
    const first = new Seq(m, tokensOf(80));
    first.step(80);
    m.free(first.kv);
    const match = (n: number): number => m.matchPrefix(tokensOf(80).slice(0, n), new BlockHashChain(16)).tokens;
    expect(match(80)).toBe(64); // 80 would leave nothing to compute
    expect(match(81 - 1)).toBe(64);
    expect(match(65)).toBe(64);
    expect(match(64)).toBe(48);
    expect(match(49)).toBe(48);
    expect(match(17)).toBe(16);
    expect(match(16)).toBe(0);
    expect(match(1)).toBe(0);
    const longer = [...tokensOf(80), 1, 2, 3];
    expect(m.matchPrefix(longer, new BlockHashChain(16)).tokens).toBe(80);
    const diverged = tokensOf(80);
    diverged[40] = 4999;
    expect(m.matchPrefix(diverged, new BlockHashChain(16)).tokens).toBe(32);
  });

  it("a matched prefix is shared: refcounts count both sequences, and the second computes only the rest", () => {
    const m = new KvManager({ blockSize: 4, groups: [{ name: "full", numBlocks: 16 }], prefixCaching: true });
    const a = new Seq(m, tokensOf(10));
    a.step(10);
    const b = new Seq(m, [...tokensOf(8), 77, 78, 79]);
    expect(b.kv.computed).toBe(8);
    expect(b.kv.tables[0]).toEqual(a.kv.tables[0]!.slice(0, 2));
    expect(m.pools[0]!.refCount(a.kv.tables[0]![0]!)).toBe(2);
    m.audit([a.kv, b.kv], true);
    b.step(11);
    expect(b.kv.tables[0]![2]).not.toBe(a.kv.tables[0]![2]);
    m.free(a.kv);
    expect(m.pools[0]!.refCount(b.kv.tables[0]![0]!)).toBe(1);
    m.free(b.kv);
    m.audit([], true);
    expect(m.pools[0]!.usedBlocks).toBe(0);
    expect(m.pools[0]!.evictableBlocks).toBe(2); // the shared blocks 0 and 1; both sequences' partial block 2 was freed
  });

  it("evicts a prompt's tail before its head when its blocks are released together", () => {
    const m = new KvManager({ blockSize: 4, groups: [{ name: "full", numBlocks: 4 }], prefixCaching: true });
    const a = new Seq(m, tokensOf(16));
    a.step(16);
    const [h0, h1, h2, h3] = [0, 1, 2, 3].map((b) => a.chain.at(b));
    m.free(a.kv);
    const b = new Seq(m, tokensOf(16, 5)); // nothing in common: allocating evicts
    b.step(4);
    expect(m.pools[0]!.lookup(h3!)).toBeUndefined();
    expect([h0, h1, h2].map((h) => m.pools[0]!.lookup(h!) !== undefined)).toEqual([true, true, true]);
    b.step(8);
    expect(m.pools[0]!.lookup(h2!)).toBeUndefined();
    expect(m.pools[0]!.lookup(h0!)).toBeDefined();
  });

  it("windowed groups need only the blocks the first computed query sees, and hold nothing before them", () => {
    const B = 16;
    const m = new KvManager({ blockSize: B, groups: [{ name: "full", numBlocks: 32 }, { name: "sliding", numBlocks: 12, window: 32 }], prefixCaching: true });
    const a = new Seq(m, tokensOf(100));
    a.step(100);
    m.free(a.kv);
    const b = new Seq(m, [...tokensOf(96), 1, 2]);
    // L = 96: the query at 96 sees 65 … 96, so sliding blocks 4 and 5 (64 … 95) are taken, 0 … 3 are not
    expect(b.kv.computed).toBe(96);
    expect(b.kv.tables[1]!.slice(0, 4)).toEqual([NO_BLOCK, NO_BLOCK, NO_BLOCK, NO_BLOCK]);
    expect(b.held(1)).toBe(2);
    expect(b.held(0)).toBe(6);
    m.audit([b.kv], true);
    b.step(98);
    m.audit([b.kv], true);
  });

  it("a windowed miss forces a shorter match, down to where the window's blocks are cached", () => {
    const B = 16;
    const m = new KvManager({ blockSize: B, groups: [{ name: "full", numBlocks: 64 }, { name: "sliding", numBlocks: 7, window: 32 }], prefixCaching: true });
    const prompt = tokensOf(97);
    const a = new Seq(m, prompt);
    a.step(97); // sliding: blocks 0 … 3 released as dead (LRU 0, 1, 2, 3), 4 … 6 held
    m.free(a.kv); // tail first: 6 is partial (freed), then 5 and 4 → LRU 0, 1, 2, 3, 5, 4
    const slidingOf = (h: number): number | undefined => m.pools[1]!.lookup(a.chain.at(h));
    const c = new Seq(m, [...prompt.slice(0, 64), 9]); // L = 64 takes sliding blocks 2 and 3 (positions 33 … 63)
    expect(c.kv.computed).toBe(64);
    m.free(c.kv); // LRU 0, 1, 5, 4, 3, 2
    const d = new Seq(m, tokensOf(64, 3), false);
    d.step(64); // four fresh sliding blocks: the free one, then evictions of 0, 1, 5 (4 stays)
    expect([0, 1, 2, 3, 4, 5].map((h) => slidingOf(h) !== undefined)).toEqual([false, false, true, true, true, false]);
    m.free(d.kv);
    // the full group has blocks 0 … 5; L = 96 needs sliding 4, 5 (5 missing), L = 80 needs 3, 4: both cached
    const e = m.matchPrefix(prompt, new BlockHashChain(B));
    expect(e.tokens).toBe(80);
    expect(e.tables[1]).toEqual([NO_BLOCK, NO_BLOCK, NO_BLOCK, slidingOf(3), slidingOf(4)]);
    expect(e.tables[0]!.length).toBe(5);
    expect(e.evictable).toEqual([5, 2]);
    // taking it leaves the sliding pool 7 − 2 blocks to allocate from: (5 held + 5 free) · 16 positions
    expect(m.capacity(m.newSequence(), e)).toBe(160);
  });

  it("nothing is matched or cached with prefix caching off", () => {
    const m = new KvManager({ blockSize: 4, groups: [{ name: "full", numBlocks: 8 }], prefixCaching: false });
    const a = new Seq(m, tokensOf(20));
    a.step(20);
    expect(m.pools[0]!.cachedBlocks).toBe(0);
    m.free(a.kv);
    expect(m.matchPrefix(tokensOf(20), new BlockHashChain(4)).tokens).toBe(0);
    expect(m.pools[0]!.evictableBlocks).toBe(0);
  });

  it("a freed sequence cannot be used again", () => {
    const m = new KvManager({ blockSize: 4, groups: [{ name: "full", numBlocks: 8 }], prefixCaching: true });
    const a = new Seq(m, tokensOf(8));
    a.step(4);
    m.free(a.kv);
    expect(() => m.allocate(a.kv, 8)).toThrow(/freed/);
    expect(() => m.free(a.kv)).toThrow(/freed/);
  });
});
