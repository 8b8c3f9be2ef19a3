// Memory planner: invariants over random schedules (seeded), hand cases, every error, multi-entry plans,
// and a gpt-oss-20b-shaped prefill/decode schedule.
import { describe, expect, it } from "vitest";
import {
  ARENA_ALIGNMENT,
  alignUp,
  formatBytes,
  formatMemoryPlan,
  MemoryPlanError,
  offsetOf,
  planEntries,
  planMemory,
  type BufferKind,
  type BufferRequest,
  type EntrySchedule,
  type MemoryPlan,
  type Schedule,
  type Step,
} from "../../src/lower/memory-plan.js";

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** mulberry32: a small seeded PRNG, so every random case is reproducible from its seed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function buf(id: number, bytes: number, kind: BufferKind, aliasOf?: number): BufferRequest {
  return aliasOf === undefined ? { id, bytes, kind } : { id, bytes, kind, aliasOf };
}

function step(reads: number[], writes: number[]): Step {
  return { reads, writes };
}

function placementOf(plan: MemoryPlan, id: number): MemoryPlan["buffers"][number] {
  const placement = plan.buffers.find((b) => b.id === id);
  if (placement === undefined) throw new Error(`no placement for ${id}`);
  return placement;
}

function overlaps(aOffset: number, aBytes: number, bOffset: number, bBytes: number): boolean {
  return aBytes > 0 && bBytes > 0 && aOffset < bOffset + bBytes && bOffset < aOffset + aBytes;
}

// ---------------------------------------------------------------------------------------------------------
// An independent liveness oracle, phrased per step rather than as intervals.

interface OracleGroup {
  readonly root: BufferRequest;
  readonly members: readonly BufferRequest[];
  /** Steps at which the group's storage must hold its data. */
  readonly liveSteps: ReadonlySet<number>;
}

function oracleGroups(schedule: Schedule): OracleGroup[] {
  const byId = new Map(schedule.buffers.map((b) => [b.id, b]));
  const root = (b: BufferRequest): BufferRequest => (b.aliasOf === undefined ? b : root(byId.get(b.aliasOf)!));
  const lastStep = Math.max(schedule.steps.length - 1, 0);
  const membersByRoot = new Map<BufferRequest, BufferRequest[]>();
  for (const b of schedule.buffers) {
    const r = root(b);
    if (r.kind !== "param") membersByRoot.set(r, [...(membersByRoot.get(r) ?? []), b]);
  }
  const groups: OracleGroup[] = [];
  for (const [r, members] of membersByRoot) {
    const ids = new Set(members.map((m) => m.id));
    const accessSteps = schedule.steps
      .map((s, i) => ([...s.reads, ...s.writes].some((id) => ids.has(id)) ? i : -1))
      .filter((i) => i >= 0);
    const filledByCaller = members.some((m) => m.kind === "input");
    const readByCaller = members.some((m) => m.kind === "output");
    const liveSteps = new Set<number>();
    for (let t = 0; t <= lastStep; t++) {
      const holdsData = filledByCaller || accessSteps.some((s) => s <= t);
      // a call's inputs stay intact through it (a replayed graph reads them again)
      const stillNeeded = readByCaller || filledByCaller || accessSteps.some((s) => s >= t);
      if (holdsData && stillNeeded) liveSteps.add(t);
    }
    groups.push({ root: r, members, liveSteps });
  }
  return groups;
}

/** Throws (with the plan's numbers in the message) unless `condition` holds; cheaper than expect in hot loops. */
function check(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(message());
}

/** Checks every invariant of a plan against its schedule. */
function checkPlanInvariants(schedule: Schedule, plan: MemoryPlan, weights: "own" | "shared" = "own"): void {
  const byId = new Map(schedule.buffers.map((b) => [b.id, b]));
  const root = (b: BufferRequest): BufferRequest => (b.aliasOf === undefined ? b : root(byId.get(b.aliasOf)!));
  const placementById = new Map(plan.buffers.map((p) => [p.id, p]));
  const offset = (id: number): number => placementById.get(id)!.offset;

  expect(plan.buffers.map((b) => b.id)).toEqual(schedule.buffers.map((b) => b.id));
  expect(plan.arenaBytes).toBe(plan.weightBytes + plan.activationBytes);
  expect(plan.activationOffset).toBe(plan.weightBytes);
  for (const size of [plan.arenaBytes, plan.weightBytes, plan.activationBytes, plan.peakLiveBytes, plan.naiveBytes]) {
    expect(size % ARENA_ALIGNMENT).toBe(0);
  }

  // Alignment, views share their root's offset, region bounds.
  for (const placement of plan.buffers) {
    const request = byId.get(placement.id)!;
    const storage = root(request);
    const at = () => `buffer ${placement.id} at ${placement.offset}`;
    check(placement.offset % ARENA_ALIGNMENT === 0, () => `${at()} is not aligned`);
    check(placement.offset === offset(storage.id), () => `${at()} is not at its storage ${storage.id}`);
    check(placement.storageOf === (request.aliasOf === undefined ? undefined : storage.id), () => `${at()}: storageOf`);
    if (storage.kind === "param") {
      check(placement.region === "weights", () => `${at()} should be a weight`);
      check(placement.offset + storage.bytes <= plan.weightBytes, () => `${at()} leaves the weights region`);
    } else {
      check(placement.region === "activations", () => `${at()} should be an activation`);
      check(placement.offset >= plan.activationOffset, () => `${at()} is below the activations region`);
      check(placement.offset + storage.bytes <= plan.arenaBytes, () => `${at()} leaves the arena`);
    }
  }

  // Params never overlap each other (nor activations: region bounds above); with its own weights region an
  // entry packs them in declaration order.
  const paramRoots = schedule.buffers.filter((b) => b.kind === "param" && b.aliasOf === undefined);
  const byOffset = [...paramRoots].sort((x, y) => offset(x.id) - offset(y.id) || x.bytes - y.bytes);
  for (let i = 1; i < byOffset.length; i++) {
    const [previous, current] = [byOffset[i - 1]!, byOffset[i]!];
    check(!overlaps(offset(previous.id), previous.bytes, offset(current.id), current.bytes), () => `params ${previous.id} and ${current.id} overlap`);
  }
  if (weights === "own") {
    let nextParamOffset = 0;
    for (const param of paramRoots) {
      check(offset(param.id) === nextParamOffset, () => `param ${param.id} at ${offset(param.id)}, expected ${nextParamOffset}`);
      nextParamOffset += alignUp(param.bytes);
    }
    expect(plan.weightBytes).toBe(nextParamOffset);
  }

  // No two storage groups live at the same step overlap; reported lifetimes cover the required live steps.
  const groups = oracleGroups(schedule);
  const lastStep = Math.max(schedule.steps.length - 1, 0);
  let peak = 0;
  for (let t = 0; t <= lastStep; t++) {
    const live = groups.filter((g) => g.liveSteps.has(t));
    peak = Math.max(
      peak,
      live.reduce((sum, g) => sum + alignUp(g.root.bytes), 0),
    );
    const extents = live.map((g) => ({ id: g.root.id, start: offset(g.root.id), bytes: g.root.bytes }));
    for (let i = 0; i < extents.length; i++) {
      for (let j = i + 1; j < extents.length; j++) {
        const x = extents[i]!;
        const y = extents[j]!;
        if (overlaps(x.start, x.bytes, y.start, y.bytes)) {
          throw new Error(`step ${t}: buffers ${x.id} @${x.start}+${x.bytes} and ${y.id} @${y.start}+${y.bytes} overlap`);
        }
      }
    }
  }
  for (const g of groups) {
    for (const member of g.members) {
      const lifetime = placementById.get(member.id)!.lifetime;
      for (const t of g.liveSteps) {
        check(
          lifetime !== null && lifetime.firstStep <= t && t <= lifetime.lastStep,
          () => `buffer ${member.id} must be live at step ${t} but its lifetime is ${JSON.stringify(lifetime)}`,
        );
      }
    }
  }
  expect(plan.peakLiveBytes).toBe(peak);
  expect(plan.naiveBytes).toBe(groups.reduce((sum, g) => sum + alignUp(g.root.bytes), 0));
  expect(plan.activationBytes).toBeGreaterThanOrEqual(plan.peakLiveBytes);
  expect(plan.activationBytes).toBeLessThanOrEqual(plan.naiveBytes);
}

// ---------------------------------------------------------------------------------------------------------
// Random schedules

interface DraftBuffer {
  id: number;
  bytes: number;
  kind: BufferKind;
  aliasOf?: number;
}

function randomSize(rand: () => number): number {
  const r = rand();
  if (r < 0.08) return 0;
  if (r < 0.35) return 1 + Math.floor(rand() * 600);
  if (r < 0.55) return ARENA_ALIGNMENT * (1 + Math.floor(rand() * 8));
  return 1000 + Math.floor(rand() * 100_000);
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

/**
 * A random valid schedule: params, inputs, steps that read what exists and write new intermediates, scratch
 * written and read by one step, in-place rewrites, views (and views of views) that are read later, param
 * writes, unused buffers, outputs (some of them views). Ids are scattered and the declaration order is
 * shuffled (except params, whose order is the weights layout), so nothing may depend on either.
 */
function randomSchedule(rand: () => number): Schedule {
  const ids = Array.from({ length: 400 }, (_, i) => 3 * i + 7);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  let nextIdIndex = 0;
  const drafts: DraftBuffer[] = [];
  const newBuffer = (kind: BufferKind, bytes: number, aliasOf?: number): DraftBuffer => {
    const draft: DraftBuffer = { id: ids[nextIdIndex++]!, bytes, kind };
    if (aliasOf !== undefined) draft.aliasOf = aliasOf;
    drafts.push(draft);
    return draft;
  };
  const params = Array.from({ length: Math.floor(rand() * 4) }, () => newBuffer("param", randomSize(rand)));
  const inputs = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => newBuffer("input", randomSize(rand)));
  const readable: DraftBuffer[] = [...params, ...inputs];
  const written: DraftBuffer[] = [];
  const steps: Step[] = [];
  const stepCount = 1 + Math.floor(rand() * 24);
  for (let s = 0; s < stepCount; s++) {
    const reads = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(rand, readable).id);
    const writes: number[] = [];
    const writeCount = 1 + Math.floor(rand() * 2);
    for (let w = 0; w < writeCount; w++) {
      const r = rand();
      if (r < 0.12 && readable.length > 0) {
        writes.push(pick(rand, readable).id); // in place, possibly a param (a cache)
      } else {
        const out = newBuffer("intermediate", randomSize(rand));
        writes.push(out.id);
        written.push(out);
      }
    }
    if (rand() < 0.2) {
      const scratch = newBuffer("scratch", randomSize(rand));
      writes.push(scratch.id);
      reads.push(scratch.id);
    }
    steps.push({ reads, writes });
    for (const id of writes) {
      const draft = drafts.find((d) => d.id === id)!;
      if (draft.kind !== "scratch" && !readable.includes(draft)) readable.push(draft);
    }
    if (rand() < 0.25) {
      const target = pick(rand, readable);
      const view = newBuffer(
        target.kind === "param" && rand() < 0.5 ? "param" : "intermediate",
        Math.floor(target.bytes * rand()),
        target.id,
      );
      readable.push(view);
    }
  }
  for (let o = 0; o < 1 + Math.floor(rand() * 2); o++) {
    const candidates = [...written, ...readable.filter((d) => d.kind === "input")];
    const chosen = pick(rand, candidates);
    if (rand() < 0.3) newBuffer("output", chosen.bytes, chosen.id);
    else if (chosen.kind === "intermediate") chosen.kind = "output";
  }
  if (rand() < 0.2) newBuffer("intermediate", randomSize(rand)); // never touched
  const paramDrafts = drafts.filter((d) => d.kind === "param" && d.aliasOf === undefined);
  const others = drafts.filter((d) => !paramDrafts.includes(d));
  for (let i = others.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [others[i], others[j]] = [others[j]!, others[i]!];
  }
  const order = [...others];
  for (const p of paramDrafts) order.splice(Math.floor(rand() * (order.length + 1)), 0, p);
  // Keep params in their own relative order: re-sort the param slots.
  const paramSlots = order.map((d, i) => (paramDrafts.includes(d) ? i : -1)).filter((i) => i >= 0);
  paramSlots.forEach((slot, k) => (order[slot] = paramDrafts[k]!));
  return { buffers: order.map((d) => buf(d.id, d.bytes, d.kind, d.aliasOf)), steps };
}

describe("random schedules", () => {
  it("satisfy every invariant (400 seeded cases)", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const schedule = randomSchedule(seededRandom(seed));
      try {
        checkPlanInvariants(schedule, planMemory(schedule));
      } catch (error) {
        throw new Error(`seed ${seed}: ${String(error)}`, { cause: error });
      }
    }
  });

  it("exercise what they claim to (views, scratch, in-place writes, unused buffers, zero sizes)", () => {
    let views = 0;
    let viewChains = 0;
    let scratch = 0;
    let zeroBytes = 0;
    let unused = 0;
    let reuse = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const schedule = randomSchedule(seededRandom(seed));
      const plan = planMemory(schedule);
      const byId = new Map(schedule.buffers.map((b) => [b.id, b]));
      views += schedule.buffers.filter((b) => b.aliasOf !== undefined).length;
      viewChains += schedule.buffers.filter((b) => b.aliasOf !== undefined && byId.get(b.aliasOf)!.aliasOf !== undefined).length;
      scratch += schedule.buffers.filter((b) => b.kind === "scratch").length;
      zeroBytes += schedule.buffers.filter((b) => b.bytes === 0).length;
      unused += plan.buffers.filter((b) => b.region === "activations" && b.lifetime === null).length;
      if (plan.activationBytes < plan.naiveBytes) reuse++;
    }
    expect(views).toBeGreaterThan(100);
    expect(viewChains).toBeGreaterThan(10);
    expect(scratch).toBeGreaterThan(100);
    expect(zeroBytes).toBeGreaterThan(100);
    expect(unused).toBeGreaterThan(20);
    expect(reuse).toBeGreaterThan(300);
  });

  it("are planned deterministically", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const schedule = randomSchedule(seededRandom(seed));
      const copy: Schedule = JSON.parse(JSON.stringify(schedule)) as Schedule;
      expect(planMemory(copy)).toEqual(planMemory(schedule));
    }
  });

  it("plan as entries sharing their params (100 seeded pairs)", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const rand = seededRandom(10_000 + seed);
      const prefill = randomSchedule(rand);
      const own = randomSchedule(rand);
      // Decode: its own buffers (ids moved out of the prefill's way) plus the prefill's params, read by every step.
      const moved = (id: number): number => id + 100_000;
      const shared = prefill.buffers.filter((b) => b.kind === "param" && b.aliasOf === undefined);
      const decodeOwn = own.buffers.map((b) => buf(moved(b.id), b.bytes, b.kind, b.aliasOf === undefined ? undefined : moved(b.aliasOf)));
      const entries: EntrySchedule[] = [
        { name: "prefill", ...prefill },
        {
          name: "decode",
          buffers: [...decodeOwn, ...shared],
          steps: own.steps.map((s) => ({ reads: [...s.reads.map(moved), ...shared.map((p) => p.id)], writes: s.writes.map(moved) })),
        },
      ];
      const plan = planEntries(entries);
      expect(plan.entries.map((e) => e.name)).toEqual(["prefill", "decode"]);
      for (const [i, entry] of plan.entries.entries()) {
        const schedule = entries[i]!;
        expect(entry.weightBytes).toBe(plan.weightBytes);
        expect(entry.activationOffset).toBe(plan.activationOffset);
        expect(entry.arenaBytes).toBe(plan.weightBytes + entry.activationBytes);
        checkPlanInvariants(schedule, entry, "shared");
      }
      for (const p of shared) expect(offsetOf(plan.entries[1]!, p.id)).toBe(offsetOf(plan.entries[0]!, p.id));
      const isParamRoot = (b: BufferRequest): boolean => b.kind === "param" && b.aliasOf === undefined;
      const isParamView = (b: BufferRequest): boolean => b.kind === "param" && b.aliasOf !== undefined;
      const expectedWeightIds = [
        ...prefill.buffers.filter(isParamRoot),
        ...decodeOwn.filter(isParamRoot),
        ...prefill.buffers.filter(isParamView),
        ...decodeOwn.filter(isParamView),
      ].map((b) => b.id);
      expect(plan.weights.map((w) => w.id)).toEqual(expectedWeightIds);
      let nextOffset = 0;
      for (const w of plan.weights.filter((w) => w.storageOf === undefined)) {
        expect(w.offset).toBe(nextOffset);
        nextOffset += alignUp(w.bytes);
      }
      expect(plan.weightBytes).toBe(nextOffset);
      expect(plan.activationBytes).toBe(Math.max(...plan.entries.map((e) => e.activationBytes)));
      expect(plan.arenaBytes).toBe(plan.weightBytes + plan.activationBytes);
      // The decode entry alone, with its params first, plans the same activations.
      const alone = planMemory(entries[1]!);
      expect(plan.entries[1]!.activationBytes).toBe(alone.activationBytes);
      expect(plan.entries[1]!.peakLiveBytes).toBe(alone.peakLiveBytes);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Hand cases

describe("hand cases", () => {
  it("a chain a → b → c reuses a's space for c", () => {
    // (the input that feeds a stays live through the call: a call's inputs are intact after it)
    const schedule: Schedule = {
      buffers: [buf(0, 256, "input"), buf(1, 1000, "intermediate"), buf(2, 1000, "intermediate"), buf(3, 1000, "output")],
      steps: [step([0], [1]), step([1], [2]), step([2], [3])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(offsetOf(plan, 3)).toBe(offsetOf(plan, 1));
    expect(offsetOf(plan, 2)).not.toBe(offsetOf(plan, 1));
    expect(plan.activationBytes).toBe(256 + 2048);
    expect(plan.peakLiveBytes).toBe(256 + 2048);
    expect(plan.naiveBytes).toBe(256 + 3072);
    expect(placementOf(plan, 0).lifetime).toEqual({ firstStep: 0, lastStep: 2 });
    expect(placementOf(plan, 1).lifetime).toEqual({ firstStep: 0, lastStep: 1 });
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 1, lastStep: 2 });
    expect(placementOf(plan, 3).lifetime).toEqual({ firstStep: 2, lastStep: 2 });
  });

  it("a diamond keeps both branches alive until they join; the join reuses the source", () => {
    // input → x, x → a, x → b, (a, b) → y
    const schedule: Schedule = {
      buffers: [buf(9, 256, "input"), buf(10, 512, "intermediate"), buf(11, 512, "intermediate"), buf(12, 512, "intermediate"), buf(13, 512, "output")],
      steps: [step([9], [10]), step([10], [11]), step([10], [12]), step([11, 12], [13])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(new Set([offsetOf(plan, 10), offsetOf(plan, 11), offsetOf(plan, 12)]).size).toBe(3);
    expect(offsetOf(plan, 13)).toBe(offsetOf(plan, 10));
    expect(plan.activationBytes).toBe(256 + 3 * 512);
    expect(plan.peakLiveBytes).toBe(256 + 3 * 512);
    expect(plan.peakStep).toBe(2);
  });

  it("a buffer read by the last step stays live through it", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 256, "input"), buf(2, 256, "intermediate"), buf(3, 256, "intermediate"), buf(4, 256, "output")],
      steps: [step([1], [2]), step([1], [3]), step([2, 3], [4])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 0, lastStep: 2 });
    expect(offsetOf(plan, 4)).not.toBe(offsetOf(plan, 2));
    expect(offsetOf(plan, 4)).not.toBe(offsetOf(plan, 3));
  });

  it("an output stays live until the end and an input from step 0", () => {
    const schedule: Schedule = {
      buffers: [
        buf(1, 256, "input"),
        buf(2, 256, "output"), // written at step 0, never read by a step
        buf(3, 256, "intermediate"),
        buf(4, 256, "intermediate"),
        buf(5, 256, "input"), // first read at step 3
      ],
      steps: [step([1], [2]), step([1], [3]), step([3], [4]), step([4, 5], [])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 0, lastStep: 3 });
    expect(placementOf(plan, 5).lifetime).toEqual({ firstStep: 0, lastStep: 3 });
    for (const other of [1, 3, 4, 5]) expect(offsetOf(plan, other)).not.toBe(offsetOf(plan, 2));
  });

  it("a buffer written and read by one step (scratch) occupies space during that step", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 4096, "input"), buf(2, 4096, "output"), buf(3, 8192, "scratch")],
      steps: [step([1, 3], [3, 2])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(plan.activationBytes).toBe(4096 + 4096 + 8192);
    expect(placementOf(plan, 3).lifetime).toEqual({ firstStep: 0, lastStep: 0 });
  });

  it("packs the caller's inputs back to back from the region's start, in declaration order (one copy stages them)", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 300, "input"), buf(2, 50_000, "intermediate"), buf(3, 40, "input"), buf(4, 256, "output"), buf(5, 9000, "input"), buf(6, 100, "input")],
      // input 6 is read last: live from step 0 all the same
      steps: [step([1, 3], [2]), step([2, 5], [4]), step([4, 6], [4])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    const base = plan.activationOffset;
    expect([1, 3, 5, 6].map((id) => offsetOf(plan, id) - base)).toEqual([0, 512, 768, 9984]);
    // everything else goes past them: the inputs stay intact through the call, even those read at step 0 only
    expect(offsetOf(plan, 2) - base).toBe(9984 + 256);
    expect(offsetOf(plan, 4) - base).toBeGreaterThanOrEqual(9984 + 256);
    for (const id of [1, 3, 5, 6]) expect(placementOf(plan, id).lifetime).toEqual({ firstStep: 0, lastStep: 2 });
  });

  it("a scratch buffer is reused by the next step's scratch", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 256, "input"), buf(2, 256, "intermediate"), buf(3, 256, "output"), buf(4, 9000, "scratch"), buf(5, 9000, "scratch")],
      steps: [step([1, 4], [4, 2]), step([2, 5], [5, 3])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    // the input sits at the region's start, so the two scratch buffers share space without sharing an offset
    const [a, b] = [offsetOf(plan, 4), offsetOf(plan, 5)];
    expect(a < b + 9000 && b < a + 9000).toBe(true);
  });

  it("zero-byte buffers take no space and keep aligned offsets", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 0, "param"), buf(2, 0, "param"), buf(3, 0, "input"), buf(4, 0, "intermediate"), buf(5, 0, "output")],
      steps: [step([1, 3], [4]), step([2, 4], [5])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(plan.weightBytes).toBe(0);
    expect(plan.arenaBytes).toBe(0);
    expect(plan.peakLiveBytes).toBe(0);
    expect(plan.naiveBytes).toBe(0);
    for (const b of plan.buffers) expect(b.offset).toBe(0);

    const mixed: Schedule = {
      buffers: [buf(1, 300, "param"), buf(2, 0, "param"), buf(3, 256, "param"), buf(4, 100, "input"), buf(5, 0, "intermediate"), buf(6, 100, "output")],
      steps: [step([1, 4], [5]), step([2, 3, 5], [6])],
    };
    const mixedPlan = planMemory(mixed);
    checkPlanInvariants(mixed, mixedPlan);
    expect([1, 2, 3].map((id) => offsetOf(mixedPlan, id))).toEqual([0, 512, 512]);
    expect(mixedPlan.weightBytes).toBe(768);
    expect(offsetOf(mixedPlan, 5)).toBe(768);
    expect(offsetOf(mixedPlan, 6)).toBe(offsetOf(mixedPlan, 4) + 256); // the input stays intact: the output goes after it
    expect(mixedPlan.activationBytes).toBe(512);
  });

  it("packs params first, in declaration order, 256-aligned, and places activations after them", () => {
    const schedule: Schedule = {
      buffers: [buf(7, 100, "input"), buf(3, 100, "param"), buf(1, 257, "param"), buf(2, 1, "param"), buf(9, 10, "output")],
      steps: [step([7, 3, 1, 2], [9])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect([3, 1, 2].map((id) => offsetOf(plan, id))).toEqual([0, 256, 768]);
    expect(plan.weightBytes).toBe(1024);
    expect(plan.activationOffset).toBe(1024);
    expect(offsetOf(plan, 7)).toBeGreaterThanOrEqual(1024);
    expect(plan.arenaBytes).toBe(1024 + 512);
  });

  it("a view shares its target's offset and keeps it alive", () => {
    // a written at step 0; its view v read at step 3; b (written at step 1, last read at 2) may not reuse a.
    const schedule: Schedule = {
      buffers: [
        buf(20, 1024, "intermediate", 2), // a view declared before its target
        buf(1, 1024, "input"),
        buf(2, 1024, "intermediate"),
        buf(3, 1024, "intermediate"),
        buf(4, 1024, "intermediate"),
        buf(5, 1024, "output"),
      ],
      steps: [step([1], [2]), step([1], [3]), step([3], [4]), step([20, 4], [5])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(offsetOf(plan, 20)).toBe(offsetOf(plan, 2));
    expect(placementOf(plan, 20).storageOf).toBe(2);
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 0, lastStep: 3 });
    expect(placementOf(plan, 20).lifetime).toEqual({ firstStep: 0, lastStep: 3 });
    expect(offsetOf(plan, 3)).not.toBe(offsetOf(plan, 2));
    expect(offsetOf(plan, 4)).not.toBe(offsetOf(plan, 2));
    expect(plan.naiveBytes).toBe(5 * 1024); // the view takes no storage of its own
  });

  it("resolves view chains and output views; an output view keeps its target to the end", () => {
    const schedule: Schedule = {
      buffers: [
        buf(1, 512, "input"),
        buf(2, 512, "intermediate"),
        buf(3, 512, "intermediate", 2),
        buf(4, 256, "output", 3), // a view of a view, returned to the caller
        buf(5, 512, "intermediate"),
        buf(6, 512, "output"),
      ],
      steps: [step([1], [2]), step([1], [5]), step([5], [6])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(offsetOf(plan, 4)).toBe(offsetOf(plan, 2));
    expect(placementOf(plan, 4).storageOf).toBe(2);
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 0, lastStep: 2 });
  });

  it("an output may be a view of an input, with no steps at all", () => {
    const schedule: Schedule = { buffers: [buf(1, 300, "input"), buf(2, 300, "output", 1)], steps: [] };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(offsetOf(plan, 2)).toBe(offsetOf(plan, 1));
    expect(plan.activationBytes).toBe(512);
  });

  it("views of params stay in the weights region; steps may write params (a cache)", () => {
    const schedule: Schedule = {
      buffers: [
        buf(1, 1000, "param"),
        buf(2, 1000, "param", 1), // a param declared as a view of another: no extra weight bytes
        buf(3, 500, "intermediate", 1), // a reshaped weight
        buf(4, 2000, "param"), // a KV cache
        buf(5, 100, "input"),
        buf(6, 100, "output"),
      ],
      steps: [step([5, 3], [4]), step([2, 4], [6])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(plan.weightBytes).toBe(1024 + 2048);
    expect(offsetOf(plan, 2)).toBe(0);
    expect(offsetOf(plan, 3)).toBe(0);
    expect(placementOf(plan, 3).region).toBe("weights");
    expect(offsetOf(plan, 4)).toBe(1024);
  });

  it("a buffer no step touches has no lifetime and conflicts with nothing", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 256, "input"), buf(2, 5000, "intermediate"), buf(3, 256, "output")],
      steps: [step([1], [3])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(placementOf(plan, 2).lifetime).toBeNull();
    expect(offsetOf(plan, 2)).toBe(plan.activationOffset);
    expect(plan.activationBytes).toBe(alignUp(5000)); // every buffer lies inside the arena
    expect(plan.naiveBytes).toBe(512 + alignUp(5000));
  });

  it("a write after the last read extends the lifetime", () => {
    const schedule: Schedule = {
      buffers: [buf(1, 256, "input"), buf(2, 256, "intermediate"), buf(3, 256, "intermediate"), buf(4, 256, "output")],
      steps: [step([1], [2]), step([2], [3]), step([3], [2]), step([3], [4])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(placementOf(plan, 2).lifetime).toEqual({ firstStep: 0, lastStep: 2 });
  });

  it("places larger buffers first so small ones fill the holes", () => {
    // Schedule order would put the small buffer at 0 and push the big one above it; size order does not.
    const schedule: Schedule = {
      buffers: [buf(1, 256, "input"), buf(2, 256, "intermediate"), buf(3, 4096, "intermediate"), buf(4, 4096, "output")],
      steps: [step([1], [2]), step([2], [3]), step([3], [4])],
    };
    const plan = planMemory(schedule);
    checkPlanInvariants(schedule, plan);
    expect(plan.activationBytes).toBe(plan.peakLiveBytes);
    expect(plan.activationBytes).toBe(256 + 8192); // the input, live through the call, and the two large buffers
  });
});

// ---------------------------------------------------------------------------------------------------------
// Errors

describe("invalid input", () => {
  const cases: Array<[string, Schedule, RegExp]> = [
    [
      "a read of an intermediate nothing writes",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate"), buf(3, 8, "output")], steps: [step([1, 2], [3])] },
      /^step 0 reads buffer 2 \(intermediate\), which no step writes and which is not a param or input$/,
    ],
    [
      "a read before the first write",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate"), buf(3, 8, "output")], steps: [step([2], [3]), step([1], [2])] },
      /^step 0 reads buffer 2 \(intermediate\) before any step writes it \(first written by step 1\)$/,
    ],
    [
      "a read of a view whose storage nothing writes",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate"), buf(4, 8, "intermediate", 2), buf(3, 8, "output")], steps: [step([1, 4], [3])] },
      /^step 0 reads buffer 4 \(intermediate, view of 2\), which no step writes and which is not a param or input$/,
    ],
    [
      "a read of an unknown buffer",
      { buffers: [buf(1, 8, "input"), buf(3, 8, "output")], steps: [step([1, 99], [3])] },
      /^step 0 reads unknown buffer 99$/,
    ],
    [
      "a write of an unknown buffer",
      { buffers: [buf(1, 8, "input"), buf(3, 8, "output")], steps: [step([1], [3]), step([3], [42])] },
      /^step 1 writes unknown buffer 42$/,
    ],
    [
      "an output nothing writes",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate"), buf(3, 8, "output")], steps: [step([1], [2])] },
      /^buffer 3 \(output\) is never written by any step$/,
    ],
    [
      "an alias of an unknown id",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate", 77)], steps: [] },
      /^buffer 2 \(intermediate, view of 77\) aliases unknown buffer 77$/,
    ],
    [
      "an alias of itself",
      { buffers: [buf(5, 8, "intermediate", 5)], steps: [] },
      /^alias cycle: 5 → 5$/,
    ],
    [
      "an alias cycle through three buffers",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate", 3), buf(3, 8, "intermediate", 4), buf(4, 8, "intermediate", 2)], steps: [] },
      /^alias cycle: 2 → 3 → 4 → 2$/,
    ],
    [
      "a view larger than its storage",
      { buffers: [buf(1, 8, "input"), buf(2, 16, "intermediate", 1)], steps: [] },
      /^buffer 2 \(intermediate, view of 1\) is 16 bytes but its storage, buffer 1, is only 8$/,
    ],
    [
      "a param view of an activation",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "param", 1)], steps: [] },
      /^buffer 2 \(param, view of 1\) is a param but its storage, buffer 1, is an input; params live in the weights region$/,
    ],
    [
      "a negative size",
      { buffers: [buf(1, -4, "input")], steps: [] },
      /^buffer 1 \(input\) has size -4; sizes must be non-negative integers \(bytes\)$/,
    ],
    [
      "a fractional size",
      { buffers: [buf(1, 2.5, "scratch")], steps: [] },
      /^buffer 1 \(scratch\) has size 2.5; sizes must be non-negative integers \(bytes\)$/,
    ],
    [
      "a NaN size",
      { buffers: [buf(1, Number.NaN, "param")], steps: [] },
      /^buffer 1 \(param\) has size NaN; sizes must be non-negative integers \(bytes\)$/,
    ],
    [
      "an infinite size",
      { buffers: [buf(1, Number.POSITIVE_INFINITY, "intermediate")], steps: [] },
      /^buffer 1 \(intermediate\) has size Infinity; sizes must be non-negative integers \(bytes\)$/,
    ],
    [
      "duplicate ids",
      { buffers: [buf(1, 8, "input"), buf(2, 8, "intermediate"), buf(1, 8, "output")], steps: [] },
      /^duplicate buffer id 1$/,
    ],
    [
      "a non-integer id",
      { buffers: [buf(1.5, 8, "input")], steps: [] },
      /^buffer id 1.5 is not an integer$/,
    ],
    [
      "an unknown kind",
      { buffers: [{ id: 1, bytes: 8, kind: "weights" } as unknown as BufferRequest], steps: [] },
      /^buffer 1 has unknown kind "weights"$/,
    ],
  ];
  for (const [title, schedule, message] of cases) {
    it(`rejects ${title}`, () => {
      expect(() => planMemory(schedule)).toThrow(MemoryPlanError);
      expect(() => planMemory(schedule)).toThrow(message);
    });
  }

  const entryCases: Array<[string, EntrySchedule[], RegExp]> = [
    [
      "duplicate entry names",
      [
        { name: "decode", buffers: [], steps: [] },
        { name: "decode", buffers: [], steps: [] },
      ],
      /^duplicate entry point name "decode"$/,
    ],
    [
      "a shared param with two sizes",
      [
        { name: "prefill", buffers: [buf(1, 64, "param")], steps: [] },
        { name: "decode", buffers: [buf(1, 32, "param")], steps: [] },
      ],
      /^buffer 1 is a param of 64 bytes in entry "prefill" but of 32 bytes in entry "decode"; entries share params by id$/,
    ],
    [
      "a param id used for an activation in another entry (either order)",
      [
        { name: "prefill", buffers: [buf(1, 64, "intermediate")], steps: [] },
        { name: "decode", buffers: [buf(1, 64, "param")], steps: [] },
      ],
      /^buffer 1 is a param in entry "decode" but an intermediate in entry "prefill"; entries share params by id$/,
    ],
    [
      "a param view with two targets",
      [
        { name: "prefill", buffers: [buf(1, 64, "param"), buf(2, 64, "param"), buf(3, 8, "param", 1)], steps: [] },
        { name: "decode", buffers: [buf(1, 64, "param"), buf(2, 64, "param"), buf(3, 8, "param", 2)], steps: [] },
      ],
      /^buffer 3 is a param viewing 1 in entry "prefill" but viewing 2 in entry "decode"; entries share params by id$/,
    ],
    [
      "an invalid entry, naming it",
      [
        { name: "prefill", buffers: [buf(1, 8, "input"), buf(2, 8, "output")], steps: [step([1], [2])] },
        { name: "decode", buffers: [buf(1, 8, "input"), buf(2, 8, "output")], steps: [step([1, 3], [2])] },
      ],
      /^entry "decode": step 0 reads unknown buffer 3$/,
    ],
    [
      "a duplicate id inside an entry, naming it",
      [{ name: "prefill", buffers: [buf(1, 8, "input"), buf(1, 8, "output")], steps: [] }],
      /^entry "prefill": duplicate buffer id 1$/,
    ],
  ];
  for (const [title, entries, message] of entryCases) {
    it(`planEntries rejects ${title}`, () => {
      expect(() => planEntries(entries)).toThrow(MemoryPlanError);
      expect(() => planEntries(entries)).toThrow(message);
    });
  }

  it("offsetOf rejects an id the plan does not have", () => {
    const plan = planMemory({ buffers: [buf(1, 8, "input")], steps: [] });
    expect(() => offsetOf(plan, 2)).toThrow(/^the memory plan has no buffer 2$/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Multiple entry points

describe("planEntries", () => {
  const weights = [buf(100, 1000, "param"), buf(101, 3000, "param")];
  const prefill: EntrySchedule = {
    name: "prefill",
    buffers: [...weights, buf(1, 10_000, "input"), buf(2, 10_000, "intermediate"), buf(3, 10_000, "output")],
    steps: [step([1, 100], [2]), step([2, 101], [3])],
  };
  const decode: EntrySchedule = {
    name: "decode",
    buffers: [buf(101, 3000, "param"), buf(102, 500, "param"), buf(1, 100, "input"), buf(3, 100, "output")],
    steps: [step([1, 101, 102], [3])],
  };

  it("shares one weights region and sizes the arena for the largest entry", () => {
    const plan = planEntries([prefill, decode]);
    expect(plan.weights.map((w) => [w.id, w.offset])).toEqual([
      [100, 0],
      [101, 1024],
      [102, 4096],
    ]);
    expect(plan.weightBytes).toBe(4608);
    const [prefillPlan, decodePlan] = plan.entries;
    // prefill: its input is live through the call, so the output cannot take its place
    expect(prefillPlan!.activationBytes).toBe(alignUp(10_000) * 3);
    expect(decodePlan!.activationBytes).toBe(512);
    expect(plan.activationBytes).toBe(alignUp(10_000) * 3);
    expect(plan.arenaBytes).toBe(4608 + alignUp(10_000) * 3);
    expect(offsetOf(decodePlan!, 101)).toBe(offsetOf(prefillPlan!, 101));
    expect(offsetOf(decodePlan!, 1)).toBe(4608); // both entries start activations at the same offset
    expect(offsetOf(prefillPlan!, 1)).toBe(4608);
    expect(decodePlan!.arenaBytes).toBe(4608 + 512);
    checkPlanInvariants(prefill, prefillPlan!, "shared");
    checkPlanInvariants(decode, decodePlan!, "shared");
  });

  it("with one entry equals planMemory", () => {
    const plan = planEntries([prefill]);
    const { name, ...entryPlan } = plan.entries[0]!;
    expect(name).toBe("prefill");
    expect(entryPlan).toEqual(planMemory(prefill));
  });

  it("with no entries is an empty arena", () => {
    expect(planEntries([])).toMatchObject({ arenaBytes: 0, weightBytes: 0, activationBytes: 0, entries: [] });
  });
});

// ---------------------------------------------------------------------------------------------------------
// A gpt-oss-20b-shaped schedule: the launches a fused pipeline would produce, sizes at the symbols' bounds.

interface TransformerShape {
  layers: number;
  tokens: number; // bound of "tokens" for this entry
  logitRows: number; // rows that get logits: the last token of a prefill, every sequence of a decode batch
  kvCapacity: number; // cache rows per layer
  hidden: number;
  qHeads: number;
  kvHeads: number;
  headDim: number;
  experts: number;
  topK: number;
  intermediate: number;
  vocab: number;
}

const GPT_OSS_20B_SHAPE: Omit<TransformerShape, "tokens" | "logitRows"> = {
  layers: 24,
  kvCapacity: 4096,
  hidden: 2880,
  qHeads: 64,
  kvHeads: 8,
  headDim: 64,
  experts: 32,
  topK: 4,
  intermediate: 2880,
  vocab: 201088,
};

/** Params (shared by id across entries) and one entry's launches. bf16 activations, MXFP4 experts. */
function transformerEntry(name: string, s: TransformerShape): EntrySchedule {
  const buffers: BufferRequest[] = [];
  const steps: Step[] = [];
  let nextActivationId = 1_000_000;
  const param = (id: number, bytes: number): number => {
    buffers.push(buf(id, bytes, "param"));
    return id;
  };
  const activation = (bytes: number, kind: BufferKind = "intermediate", aliasOf?: number): number => {
    const id = nextActivationId++;
    buffers.push(buf(id, bytes, kind, aliasOf));
    return id;
  };
  const launch = (reads: number[], writes: number[]): void => {
    steps.push({ reads, writes });
  };
  const bf16 = 2;
  const qkvWidth = (s.qHeads + 2 * s.kvHeads) * s.headDim;
  const t = s.tokens;

  const embedding = param(1, s.vocab * s.hidden * bf16);
  const tokenIds = activation(t * 4, "input");
  const positions = activation(t * 4, "input");
  let x = activation(t * s.hidden * bf16);
  launch([tokenIds, embedding], [x]);
  for (let layer = 0; layer < s.layers; layer++) {
    const base = 100 + layer * 20;
    const norm1 = param(base, s.hidden * bf16);
    const wqkv = param(base + 1, s.hidden * qkvWidth * bf16 + qkvWidth * bf16);
    const wo = param(base + 2, s.qHeads * s.headDim * s.hidden * bf16 + s.hidden * bf16);
    const sinks = param(base + 3, s.qHeads * 4);
    const kCache = param(base + 4, s.kvCapacity * s.kvHeads * s.headDim * bf16);
    const vCache = param(base + 5, s.kvCapacity * s.kvHeads * s.headDim * bf16);
    const norm2 = param(base + 6, s.hidden * bf16);
    const router = param(base + 7, s.experts * s.hidden * bf16 + s.experts * bf16);
    // MXFP4: blocks of 32 values in 16 bytes plus one scale byte; biases bf16.
    const gateUp = param(base + 8, (s.experts * 2 * s.intermediate * s.hidden * 17) / 32 + s.experts * 2 * s.intermediate * bf16);
    const down = param(base + 9, (s.experts * s.hidden * s.intermediate * 17) / 32 + s.experts * s.hidden * bf16);

    const normed = activation(t * s.hidden * bf16);
    launch([x, norm1], [normed]);
    const qkv = activation(t * qkvWidth * bf16);
    launch([normed, wqkv, positions], [qkv, kCache, vCache]); // QKV GEMM + RoPE epilogue + cache append
    const q = activation(t * s.qHeads * s.headDim * bf16, "intermediate", qkv); // view of the q columns
    const attention = activation(t * s.qHeads * s.headDim * bf16);
    const splitKvScratch = activation(t * s.qHeads * 4 * 4 * 2, "scratch"); // per-split max and sum, 4 splits
    launch([q, kCache, vCache, sinks, positions, splitKvScratch], [splitKvScratch, attention]);
    const residual = activation(t * s.hidden * bf16);
    const normedResidual = activation(t * s.hidden * bf16);
    launch([attention, wo, x, norm2], [residual, normedResidual]); // o_proj + residual add + RMSNorm epilogue
    const routing = activation(t * s.topK * 8); // top-k expert ids and weights
    launch([normedResidual, router], [routing]);
    const expertHidden = activation(t * s.topK * s.intermediate * bf16);
    launch([normedResidual, routing, gateUp], [expertHidden]); // grouped gate/up GEMM + clamped SwiGLU
    const next = activation(t * s.hidden * bf16);
    launch([expertHidden, routing, down, residual], [next]); // grouped down GEMM + weighted sum + residual
    x = next;
  }
  const finalNorm = param(2, s.hidden * bf16);
  const lmHead = param(3, s.vocab * s.hidden * bf16);
  let normed = activation(t * s.hidden * bf16);
  launch([x, finalNorm], [normed]);
  if (s.logitRows < t) {
    const lastRows = activation(s.logitRows * s.hidden * bf16);
    launch([normed], [lastRows]);
    normed = lastRows;
  }
  const logits = activation(s.logitRows * s.vocab * 4, "output"); // f32 logits
  launch([normed, lmHead], [logits]);
  return { name, buffers, steps };
}

describe("a gpt-oss-20b-shaped schedule", () => {
  const prefill = transformerEntry("prefill", { ...GPT_OSS_20B_SHAPE, tokens: 4096, logitRows: 1 });
  const decode = transformerEntry("decode", { ...GPT_OSS_20B_SHAPE, tokens: 64, logitRows: 64 });

  it("reuses activations across layers", () => {
    const plan = planEntries([prefill, decode]);
    for (const [i, entry] of plan.entries.entries()) {
      checkPlanInvariants([prefill, decode][i]!, entry, "shared");
    }
    const [prefillPlan, decodePlan] = plan.entries;
    const hidden = 4096 * 2880 * 2; // one [tokens, hidden] bf16 activation at the prefill bound
    // Prefill peaks at the first layer's expert gate/up launch: the MoE hidden state [tokens·top-4, 2880]
    // (4 hidden-sized), the residual, its normed copy, the routing table and the two inputs (token ids and
    // positions: a call's inputs are live through it).
    expect(prefillPlan!.peakStep).toBe(6);
    expect(prefillPlan!.peakLiveBytes).toBe(6 * hidden + alignUp(4096 * 4 * 8) + 2 * alignUp(4096 * 4));
    // Greedy placement stays within 1.2× of that peak: the peak itself needs a layout that alternates
    // between layers, which placing every layer's MoE hidden state at one offset (largest first) rules out.
    expect(prefillPlan!.activationBytes / prefillPlan!.peakLiveBytes).toBeLessThan(1.2);
    expect(prefillPlan!.naiveBytes / prefillPlan!.activationBytes).toBeGreaterThan(38);
    // Decode (64 sequences) peaks at the f32 logits [64, 201088] (with the last hidden state and the two inputs) and reaches it.
    expect(decodePlan!.peakLiveBytes).toBe(alignUp(64 * 201088 * 4) + alignUp(64 * 2880 * 2) + 2 * alignUp(64 * 4));
    expect(decodePlan!.activationBytes).toBe(decodePlan!.peakLiveBytes);
    expect(plan.weightBytes).toBeGreaterThan(13e9);
    expect(plan.arenaBytes).toBe(plan.weightBytes + prefillPlan!.activationBytes);
  });

  it("plans in well under a second", () => {
    const start = performance.now();
    planEntries([prefill, decode]);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it("summarizes the plan for tsgc compile", () => {
    const text = formatMemoryPlan(planEntries([prefill, decode]));
    const lines = text.split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^arena \d+\.\d+ GiB = weights \d+\.\d+ GiB \+ activations \d+\.\d+ MiB \(largest entry; entries share the weights\)$/);
    expect(lines[1]).toMatch(/^ {2}prefill: activations .* MiB \(peak live .* MiB, naive .* GiB, reuse \d+\.\d\d×, region 1\.\d\d× peak\)$/);
    expect(lines[2]).toMatch(/^ {2}decode: {2}activations /);
  });
});

describe("formatting", () => {
  it("formats bytes in binary units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.00 KiB");
    expect(formatBytes(1536 * 1024)).toBe("1.50 MiB");
    expect(formatBytes(12.5 * 2 ** 30)).toBe("12.5 GiB");
  });

  it("formats a single-entry plan and an empty one", () => {
    const plan = planMemory({
      buffers: [buf(1, 1024, "param"), buf(2, 1024, "input"), buf(3, 1024, "intermediate"), buf(4, 1024, "output")],
      steps: [step([1, 2], [3]), step([3], [4])],
    });
    // the intermediate dies at step 1, the output takes its place; the input stays live through the call
    expect(formatMemoryPlan(plan)).toBe(
      "arena 4.00 KiB = weights 1.00 KiB + activations 3.00 KiB\n" +
        "  activations 3.00 KiB (peak live 3.00 KiB, naive 3.00 KiB, reuse 1.00×, region 1.00× peak)",
    );
    expect(formatMemoryPlan(planMemory({ buffers: [], steps: [] }))).toBe(
      "arena 0 B = weights 0 B + activations 0 B\n  activations 0 B (peak live 0 B, naive 0 B, no activations)",
    );
  });
});
