// The per-sequence view of the paged KV cache: one block table per KV group (contract.ts `KvGroup`), over one
// BlockPool per group. Logical block j of a sequence covers positions j·B … j·B + B − 1 (B = blockSize); the pool
// row of position p in a group is table[⌊p / B⌋]·B + p mod B (the `kv_slots.G` value of a token written at p).
//
// Full groups grow block by block. A windowed (sliding) group drops, after every step, the blocks no future query
// of the sequence can see: a query at q sees keys j with q − j < window and future queries have q ≥ computed (the
// positions whose keys are in the pool), so block b is dead once (b + 1)·B ≤ computed − window + 1. Its table
// entry becomes NO_BLOCK. Between steps a sliding table therefore holds the blocks covering the window − 1
// positions [computed − window + 1, computed), at most ceil((window − 2) / B) + 1 ≤ ceil(window / B) + 1 of them;
// during a step it also holds the blocks of the step's own new tokens, all of which are written. A long prefill
// chunk thus briefly holds chunk / B more (size a sliding pool for maxSeqs windows plus maxTokensPerStep / B):
// writing them all is what lets the prefix cache serve a prompt prefix of any length on sliding layers.
//
// Prefix cache (BlockPool): blocks become shareable when full and computed (hashed at `commit`, before a
// windowed group releases them, so released sliding blocks stay cached too); a released hashed block stays
// findable until evicted. `matchPrefix` finds the longest whole-block prompt prefix, at most
// promptLength − 1 tokens (one token must be computed to get logits), such that every full group has all its
// blocks cached and every windowed group has the blocks its first computed query at L can see, [L − window + 1,
// L). Blocks a windowed group would hold only to release them at once are not taken.
//
// Costs: allocate, commit and free are O(blocks they touch) per group; matchPrefix is O(prompt blocks) hash
// lookups (plus O(window / B) per retry when a windowed group forces a shorter match). Nothing walks a whole
// context per step.

import { BlockHashChain, BlockPool, NO_BLOCK } from "./block-pool.js";

/** One KV group of the pool: its name, its size in blocks, and its attention window (undefined: full). */
export interface KvGroupConfig {
  readonly name: string;
  readonly numBlocks: number;
  readonly window?: number;
}

export interface KvManagerConfig {
  readonly blockSize: number;
  readonly groups: readonly KvGroupConfig[];
  /** Share full prompt blocks between sequences through hash-chained block ids. */
  readonly prefixCaching: boolean;
}

/**
 * One sequence's blocks in every group. Created by KvManager.newSequence, dead after KvManager.free; the manager
 * owns its fields, everyone else only reads them.
 */
export class KvSequence {
  /** Per group (config order): the physical block of each logical block, NO_BLOCK where released or not held. */
  readonly tables: number[][];
  /** Per group: logical blocks below this one are released (always 0 on full groups). */
  readonly firstHeld: number[];
  /** Positions 0 … computed − 1 have their keys and values in the pool. */
  computed = 0;
  /** Logical blocks 0 … hashed − 1 are registered in the prefix cache or were taken from it. */
  hashed = 0;
  freed = false;

  constructor(numGroups: number) {
    this.tables = Array.from({ length: numGroups }, () => []);
    this.firstHeld = new Array<number>(numGroups).fill(0);
  }
}

/** A prompt prefix found in the cache; taking it (`admit`) shares its blocks with the new sequence. */
export interface PrefixMatch {
  /** Tokens whose keys and values are reused: a multiple of the block size, at most promptLength − 1. */
  readonly tokens: number;
  /** Per group: the physical blocks of logical blocks 0 … tokens / B − 1 (NO_BLOCK before a window). */
  readonly tables: readonly (readonly number[])[];
  /** Per group: how many of those blocks are evictable now (taking them lowers the pool's free count). */
  readonly evictable: readonly number[];
}

/** Occupancy of one group's pool. */
export interface BlockCounts {
  readonly used: number;
  /** Blocks an allocation can take, cached-but-unreferenced ones included. */
  readonly free: number;
  readonly total: number;
  /** Blocks carrying a prefix hash (held or evictable). */
  readonly cached: number;
}

/** First logical block a windowed group still needs once `computed` positions are in the pool. */
export function firstLiveBlock(computed: number, window: number, blockSize: number): number {
  const firstVisible = computed - window + 1;
  return firstVisible <= 0 ? 0 : Math.floor(firstVisible / blockSize);
}

/**
 * The most blocks a windowed group holds for one sequence while a single token is computed: the window's
 * `window` positions (the query's own included) starting anywhere in a block.
 */
export function windowBlocks(window: number, blockSize: number): number {
  return Math.ceil((window - 1) / blockSize) + 1;
}

export class KvManager {
  readonly blockSize: number;
  readonly groups: readonly KvGroupConfig[];
  readonly prefixCaching: boolean;
  readonly pools: readonly BlockPool[];

  constructor(config: KvManagerConfig) {
    const B = config.blockSize;
    if (!Number.isInteger(B) || B < 1) throw new Error(`blockSize must be a positive whole number, got ${B}`);
    if (config.groups.length === 0) throw new Error("the KV cache needs at least one group");
    const names = new Set<string>();
    for (const g of config.groups) {
      if (names.has(g.name)) throw new Error(`KV group "${g.name}" appears twice`);
      names.add(g.name);
      if (g.window !== undefined) {
        if (!Number.isInteger(g.window) || g.window < 1) throw new Error(`KV group "${g.name}": window must be a positive whole number, got ${g.window}`);
        const need = windowBlocks(g.window, B);
        if (g.numBlocks < need) throw new Error(`KV group "${g.name}": one sequence needs up to ${need} blocks of ${B} tokens for its window of ${g.window}; the pool has ${g.numBlocks}`);
      }
    }
    this.blockSize = B;
    this.groups = config.groups;
    this.prefixCaching = config.prefixCaching;
    this.pools = config.groups.map((g) => new BlockPool(g.numBlocks));
  }

  newSequence(): KvSequence {
    return new KvSequence(this.groups.length);
  }

  /**
   * Why a sequence of `tokens` tokens could not compute all of them even with the whole pool to itself (one token
   * a step at worst), or undefined when it could: a full group must hold all its blocks; a windowed group needs at
   * most windowBlocks, which the constructor checked every windowed pool holds.
   */
  shortfallAlone(tokens: number): { readonly group: string; readonly need: number; readonly have: number } | undefined {
    const need = Math.ceil(tokens / this.blockSize);
    for (let g = 0; g < this.groups.length; g++) {
      const group = this.groups[g]!;
      if (group.window === undefined && need > group.numBlocks) return { group: group.name, need, have: group.numBlocks };
    }
    return undefined;
  }

  /** The longest cached prefix of `tokens` usable by a new sequence (see the header); no pool state changes. */
  matchPrefix(tokens: readonly number[], chain: BlockHashChain): PrefixMatch {
    const B = this.blockSize;
    const none: PrefixMatch = { tokens: 0, tables: this.groups.map(() => []), evictable: this.groups.map(() => 0) };
    if (!this.prefixCaching || tokens.length < B + 1) return none;
    const hashes = chain.extend(tokens, Math.floor((tokens.length - 1) / B));
    // full groups: the longest run of cached blocks from block 0
    let n = hashes.length;
    for (let g = 0; g < this.groups.length; g++) {
      if (this.groups[g]!.window !== undefined) continue;
      const pool = this.pools[g]!;
      let j = 0;
      while (j < n && pool.lookup(hashes[j]!) !== undefined) j++;
      n = j;
    }
    // windowed groups: the blocks a query at L = n·B sees; a miss at block j forces L ≤ j·B, so retry there
    retry: while (n > 0) {
      for (let g = 0; g < this.groups.length; g++) {
        const window = this.groups[g]!.window;
        if (window === undefined) continue;
        const pool = this.pools[g]!;
        for (let j = n - 1; j >= firstLiveBlock(n * B, window, B); j--) {
          if (pool.lookup(hashes[j]!) === undefined) {
            n = j;
            continue retry;
          }
        }
      }
      break;
    }
    if (n === 0) return none;
    const tables: number[][] = [];
    const evictable: number[] = [];
    for (let g = 0; g < this.groups.length; g++) {
      const window = this.groups[g]!.window;
      const pool = this.pools[g]!;
      const first = window === undefined ? 0 : firstLiveBlock(n * B, window, B);
      const table = new Array<number>(n).fill(NO_BLOCK);
      let free = 0;
      for (let j = first; j < n; j++) {
        const block = pool.lookup(hashes[j]!)!;
        table[j] = block;
        if (pool.refCount(block) === 0) free++;
      }
      tables.push(table);
      evictable.push(free);
    }
    return { tokens: n * B, tables, evictable };
  }

  /**
   * The most positions a sequence could have computed after this step if it took `match` (or, without one, kept
   * what it holds) and then allocated from what is free now: min over groups of (blocks it has + free) · B.
   */
  capacity(seq: KvSequence, match?: PrefixMatch): number {
    let most = Infinity;
    for (let g = 0; g < this.groups.length; g++) {
      const has = match === undefined ? seq.tables[g]!.length : match.tables[g]!.length;
      const free = this.pools[g]!.freeBlocks - (match === undefined ? 0 : match.evictable[g]!);
      most = Math.min(most, (has + free) * this.blockSize);
    }
    return most;
  }

  /** Gives a new sequence the prefix `match` found: its blocks are shared (refcounts up), its tokens computed. */
  admit(seq: KvSequence, match: PrefixMatch): void {
    this.checkLive(seq);
    if (seq.computed !== 0 || seq.tables.some((t) => t.length > 0)) throw new Error("a prefix can only be given to a new sequence");
    const B = this.blockSize;
    for (let g = 0; g < this.groups.length; g++) {
      const window = this.groups[g]!.window;
      const table = seq.tables[g]!;
      for (const block of match.tables[g]!) {
        if (block !== NO_BLOCK) this.pools[g]!.retain(block);
        table.push(block);
      }
      seq.firstHeld[g] = window === undefined ? 0 : firstLiveBlock(match.tokens, window, B);
    }
    seq.computed = match.tokens;
    seq.hashed = match.tokens / B;
  }

  /**
   * Makes every group hold blocks for all logical blocks touched by positions < upToTokens. Returns false, with
   * nothing allocated, when some group's pool cannot.
   */
  allocate(seq: KvSequence, upToTokens: number): boolean {
    this.checkLive(seq);
    const blocks = Math.ceil(upToTokens / this.blockSize);
    for (let g = 0; g < this.groups.length; g++) {
      if (blocks - seq.tables[g]!.length > this.pools[g]!.freeBlocks) return false;
    }
    for (let g = 0; g < this.groups.length; g++) {
      const table = seq.tables[g]!;
      const pool = this.pools[g]!;
      while (table.length < blocks) table.push(pool.allocate());
    }
    return true;
  }

  /**
   * Records that positions < computed now have their keys and values in the pool: newly completed blocks are
   * hashed into the prefix cache (first, so that a block released next stays cached), then windowed groups
   * release the blocks no future query can see. `tokens` are the sequence's tokens, `chain` their hash chain.
   */
  commit(seq: KvSequence, computed: number, tokens: readonly number[], chain: BlockHashChain): void {
    this.checkLive(seq);
    const B = this.blockSize;
    if (computed < seq.computed || computed > tokens.length) throw new Error(`cannot mark ${computed} positions computed: ${seq.computed} already are and the sequence has ${tokens.length} tokens`);
    if (Math.ceil(computed / B) > seq.tables[0]!.length) throw new Error(`positions up to ${computed} were computed without blocks allocated for them`);
    seq.computed = computed;
    const full = Math.floor(computed / B);
    if (this.prefixCaching && full > seq.hashed) {
      const hashes = chain.extend(tokens, full);
      for (let b = seq.hashed; b < full; b++) {
        for (let g = 0; g < this.groups.length; g++) {
          const block = seq.tables[g]![b]!;
          if (block !== NO_BLOCK) this.pools[g]!.setHash(block, hashes[b]!);
        }
      }
    }
    seq.hashed = Math.max(seq.hashed, full);
    for (let g = 0; g < this.groups.length; g++) {
      const window = this.groups[g]!.window;
      if (window === undefined) continue;
      const table = seq.tables[g]!;
      const live = firstLiveBlock(computed, window, B);
      for (let b = seq.firstHeld[g]!; b < live; b++) {
        this.pools[g]!.release(table[b]!);
        table[b] = NO_BLOCK;
      }
      seq.firstHeld[g] = Math.max(seq.firstHeld[g]!, live);
    }
  }

  /**
   * Lets go of every block of a sequence (finish, abort, preemption). The tail is released first so that, among
   * equally old cached blocks, a prompt's later blocks are evicted before the earlier ones other prompts share.
   * The tables keep their contents (a step plan built from them stays readable); the sequence is dead.
   */
  free(seq: KvSequence): void {
    this.checkLive(seq);
    for (let g = 0; g < this.groups.length; g++) {
      const table = seq.tables[g]!;
      for (let b = table.length - 1; b >= seq.firstHeld[g]!; b--) {
        if (table[b] !== NO_BLOCK) this.pools[g]!.release(table[b]!);
      }
    }
    seq.freed = true;
  }

  /** The pool row of position p of `seq` in group g: where the token at p has (or gets) its keys and values. */
  slot(seq: KvSequence, group: number, position: number): number {
    const block = seq.tables[group]![Math.floor(position / this.blockSize)];
    if (block === undefined || block === NO_BLOCK) throw new Error(`position ${position} has no block in group "${this.groups[group]!.name}"`);
    return block * this.blockSize + (position % this.blockSize);
  }

  counts(): Record<string, BlockCounts> {
    const out: Record<string, BlockCounts> = {};
    this.groups.forEach((g, i) => {
      const pool = this.pools[i]!;
      out[g.name] = { used: pool.usedBlocks, free: pool.freeBlocks, total: pool.numBlocks, cached: pool.cachedBlocks };
    });
    return out;
  }

  /**
   * Checks the accounting against the live sequences and throws on the first violation: every block's refcount
   * is the number of tables holding it, a block held twice is a cached (hashed) one, no table holds a block twice,
   * windowed tables hold exactly the blocks covering [computed − window + 1, computed) plus, during a step
   * (`betweenSteps` false), the step's new blocks. O(all held blocks): for tests and debugging.
   */
  audit(seqs: Iterable<KvSequence>, betweenSteps: boolean): void {
    const B = this.blockSize;
    const holders = this.pools.map((p) => new Int32Array(p.numBlocks));
    for (const seq of seqs) {
      if (seq.freed) throw new Error("a freed sequence is still live");
      for (let g = 0; g < this.groups.length; g++) {
        const name = this.groups[g]!.name;
        const window = this.groups[g]!.window;
        const table = seq.tables[g]!;
        const seen = new Set<number>();
        if (table.length < Math.ceil(seq.computed / B)) throw new Error(`group ${name}: ${seq.computed} computed positions but only ${table.length} logical blocks`);
        if (betweenSteps && table.length !== Math.ceil(seq.computed / B)) throw new Error(`group ${name}: ${table.length} logical blocks for ${seq.computed} computed positions between steps`);
        const first = window === undefined ? 0 : firstLiveBlock(seq.computed, window, B);
        if (seq.firstHeld[g] !== first) throw new Error(`group ${name}: blocks below ${first} are dead but the table holds from ${seq.firstHeld[g]}`);
        for (let b = 0; b < table.length; b++) {
          const block = table[b]!;
          if (b < first) {
            if (block !== NO_BLOCK) throw new Error(`group ${name}: dead logical block ${b} still holds block ${block}`);
            continue;
          }
          if (block === NO_BLOCK) throw new Error(`group ${name}: logical block ${b} (live) has no block`);
          if (seen.has(block)) throw new Error(`group ${name}: block ${block} appears twice in one table`);
          seen.add(block);
          holders[g]![block]!++;
        }
        if (window !== undefined && betweenSteps && seen.size > Math.ceil(window / B) + 1) throw new Error(`group ${name}: ${seen.size} blocks held for a window of ${window}`);
      }
    }
    this.pools.forEach((pool, g) => {
      let used = 0;
      for (let b = 0; b < pool.numBlocks; b++) {
        const refs = pool.refCount(b);
        if (refs !== holders[g]![b]) throw new Error(`group ${this.groups[g]!.name}: block ${b} has refcount ${refs} but ${holders[g]![b]} tables hold it`);
        if (refs > 1 && pool.hashOf(b) === undefined) throw new Error(`group ${this.groups[g]!.name}: block ${b} is shared by ${refs} tables without being cached`);
        if (refs > 0) used++;
      }
      if (used !== pool.usedBlocks) throw new Error(`group ${this.groups[g]!.name}: ${used} blocks held but the pool counts ${pool.usedBlocks}`);
      pool.audit();
    });
  }

  private checkLive(seq: KvSequence): void {
    if (seq.freed) throw new Error("the sequence's blocks were freed; it must be admitted again as a new sequence");
  }
}
