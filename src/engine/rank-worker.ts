// One rank of a sharded model's process group (rank-group.ts has the protocol): a child process the engine forks,
// which builds the model and its rank's graph and runs it step by step.
//
//   interpreter — a fake CPU rank: the reference interpreter over its rank graph; each collective goes to the parent,
//                 which combines every rank's operand and sends the result back (stepRun's yields)
//   plan        — GPU `rank`: compiles its rank's plan (plan and kernel caches shared by the ranks), reports the KV
//                 blocks its memory holds, joins the NCCL communicator from rank 0's unique id, loads the plan with
//                 it (the collectives run inside the step's CUDA graph), and streams its slices of the checkpoint
//                 (or makes random weights); each step runs the plan and reads the tokens and the asked logit rows
// A failure is reported to the parent (an `error` message) before the process exits with code 1; a lost parent
// (the IPC channel closes) ends the rank.

import { gptOssModel } from "../../models/gpt-oss/model.js";
import { compile } from "../compile/compile.js";
import type { Graph } from "../ir/graph.js";
import { type HostTensor, zerosTensor } from "../ir/host-tensor.js";
import { type CollectiveRequest, stepRun, type StepResult } from "../ir/interpret.js";
import { evalShape } from "../ir/shape.js";
import { loadParams } from "../loader/load-params.js";
import { randomParams } from "../loader/random-params.js";
import { sliceParams } from "../loader/slice-params.js";
import { runShardedPipeline } from "../passes/pipeline.js";
import type { RankSet, SplitOutput } from "../passes/shard.js";
import { Device, NcclComm, ncclUniqueId, PlanExecutor } from "../../runtime/index.js";
import { streamCheckpoint } from "../../runtime/load-checkpoint.js";
import { GRAPH_MAX_STEP_TOKENS, PDL_MAX_STEP_TOKENS } from "./backend.js";
import { STEP_ENTRY, STEP_NAMES } from "./contract.js";
import { deviceFill, fillPlanRandom } from "./device-random.js";
import type { ParentMessage, RankInfo, RankWorkerSpec, WorkerMessage } from "./rank-group.js";
import { rankKvCapacity } from "./rank-pools.js";

const send = (m: WorkerMessage) => process.send!(m);

/** What a rank does once started: a step, and freeing what it holds. */
interface RankRunner {
  step(id: number, inputs: Readonly<Record<string, HostTensor>>, logitRows: readonly number[]): Promise<Extract<WorkerMessage, { type: "step-done" }>>;
  dispose(): void;
}

interface Prepared {
  readonly info: RankInfo;
  /** Joins the group (GPU: the communicator) and loads; resolves to the runner. */
  start(m: Extract<ParentMessage, { type: "start" }>): Promise<RankRunner>;
  /** GPU rank 0: the communicator's unique id. */
  ncclId?(): Uint8Array;
}

/** A rank's logits output as a host tensor's rows [first, first + count). */
const rowsOf = (t: HostTensor, row: number) => t.data.slice(row * t.shape[1]!, (row + 1) * t.shape[1]!);

// ---- fake CPU ranks: the interpreter, collectives through the parent ------------------------------------------------

const collectiveWaits = new Map<string, (t: HostTensor) => void>();

function onCollectiveResult(m: Extract<ParentMessage, { type: "collective-result" }>): void {
  const key = `${m.step}:${m.seq}`;
  const resume = collectiveWaits.get(key);
  if (!resume) throw new Error(`a result of collective #${m.seq} of step ${m.step}, which this rank is not waiting for`);
  collectiveWaits.delete(key);
  resume(m.result);
}

function awaitCollective(step: number, q: CollectiveRequest): Promise<HostTensor> {
  return new Promise((resolve) => {
    collectiveWaits.set(`${step}:${q.node.attrs.seq}`, resolve);
    send({ type: "collective", step, op: q.node.op, seq: q.node.attrs.seq, ranks: q.node.attrs.ranks, dtype: q.node.dtype, operand: q.operand });
  });
}

async function prepareInterpreter(rank: number, spec: Extract<RankWorkerSpec, { kind: "interpreter" }>): Promise<Prepared> {
  const graph = gptOssModel(spec.build.config, spec.build.options, spec.build.name);
  const { rankSet } = runShardedPipeline(graph, spec.strategy);
  const mine = rankSet.ranks[rank]!;
  const params = spec.checkpoint ? await loadParams(spec.checkpoint, mine) : sliceParams(mine, randomParams(graph, spec.seed ?? 0));
  let states: Record<string, HostTensor> = {};
  for (const st of mine.states) states[st.name] = zerosTensor(st.dtype, evalShape(st.shape, { ...mine.symbols, ...spec.loadSymbols }));
  const split = splitLogits(rankSet);
  return {
    info: { rank, pid: process.pid, ...(split ? { splitLogits: split } : {}) },
    start: async () => ({
      async step(id, inputs, logitRows) {
        const run = stepRun(mine, STEP_ENTRY, inputs, params, states);
        let next = run.next();
        while (!next.done) next = run.next(await awaitCollective(id, next.value));
        const result: StepResult = next.value;
        states = { ...states, ...result.updates };
        const logits = result.outputs[STEP_NAMES.logits]!;
        return { type: "step-done", id, tokens: Int32Array.from(result.outputs[STEP_NAMES.tokens]!.data), logits: logitRows.map((row) => ({ row, data: rowsOf(logits, row) })) };
      },
      dispose: () => {
        states = {};
      },
    }),
  };
}

function splitLogits(set: RankSet): SplitOutput | undefined {
  return set.splitOutputs[STEP_ENTRY]?.[STEP_NAMES.logits];
}

// ---- GPU ranks: a compiled plan, collectives over NCCL ------------------------------------------------------------

async function preparePlan(rank: number, ranks: number, spec: Extract<RankWorkerSpec, { kind: "plan" }>): Promise<Prepared> {
  const ordinal = spec.devices?.[rank] ?? rank;
  const device = Device.open(ordinal);
  const graph = gptOssModel(spec.build.config, spec.build.options, spec.build.name);
  const t0 = performance.now();
  const { plan } = await compile(graph, {
    arch: device.info.arch,
    shard: { strategy: spec.strategy, rank },
    ...(spec.cacheDir !== undefined ? { cacheDir: spec.cacheDir } : {}),
    onEvent: (e) => {
      if (e.kind === "kernel" && e.progress.done === e.progress.total) send({ type: "progress", message: `rank ${rank}: ${e.progress.total} kernels ready` });
    },
  });
  const compileMs = performance.now() - t0;
  const split = plan.entries.find((e) => e.name === STEP_ENTRY)?.splitOutputs?.[STEP_NAMES.logits];
  const windowed = spec.windowedBlocks;
  const info: RankInfo = {
    rank,
    pid: process.pid,
    ...(split ? { splitLogits: split } : {}),
    kvCapacity: rankKvCapacity(plan, device.memoryInfo(), spec.gpuMemoryUtilization, windowed, spec.build.options.blockSize ?? 16),
    arenaBytes: plan.arena.bytes,
    compileMs,
  };
  return {
    info,
    ncclId: () => ncclUniqueId(),
    async start(m) {
      if (!m.ncclId) throw new Error(`rank ${rank}: the group started without an NCCL unique id`);
      if (!m.loadSymbols) throw new Error(`rank ${rank}: the group started without KV pool sizes`);
      const comm = NcclComm.init(device, { nranks: ranks, rank, id: m.ncclId });
      const exec = await PlanExecutor.load(plan, device, { loadSymbols: m.loadSymbols, comm, programmaticUpTo: { tokens: PDL_MAX_STEP_TOKENS }, ...(spec.cacheDir !== undefined ? { cacheDir: spec.cacheDir } : {}) });
      try {
        if (spec.checkpoint) await streamCheckpoint(exec, spec.checkpoint);
        else if (spec.build.options.dtype === "bf16") {
          // device-random weights are random per rank, not slices of one model's: for benchmarks, not for comparisons
          fillPlanRandom(await deviceFill(device), exec, { params: true, states: false });
          device.synchronize();
        } else exec.setParams(sliceParams(rankGraphOf(graph, spec, rank), randomParams(graph, spec.seed ?? 0)));
      } catch (err) {
        exec.dispose();
        comm.dispose();
        throw err;
      }
      exec.replayAsGraph(STEP_ENTRY, { tokens: GRAPH_MAX_STEP_TOKENS });
      return {
        async step(id, inputs, logitRows) {
          await exec.runAsync(STEP_ENTRY, inputs);
          const tokens = Int32Array.from(exec.readOutput(STEP_NAMES.tokens).data);
          return { type: "step-done", id, tokens, logits: logitRows.map((row) => ({ row, data: exec.readOutput(STEP_NAMES.logits, row, 1).data })) };
        },
        dispose: () => {
          exec.dispose();
          comm.dispose();
        },
      };
    },
  };
}

/** The rank graph of a plan rank (for slicing host weights): the sharded pipeline again, without compiling. */
function rankGraphOf(graph: Graph, spec: Extract<RankWorkerSpec, { kind: "plan" }>, rank: number): Graph {
  return runShardedPipeline(graph, spec.strategy).rankSet.ranks[rank]!;
}

// ---- the message loop --------------------------------------------------------------------------------------------------

function main(): void {
  if (!process.send) {
    process.stderr.write("tsgc rank worker: start me with child_process.fork (an IPC channel), as the engine's process group does\n");
    process.exit(2);
  }
  let prepared: Prepared | undefined;
  let runner: RankRunner | undefined;
  let queue: Promise<void> = Promise.resolve();
  const fail = (err: unknown) => {
    // exit once the message has left (the parent reports it, not just the exit)
    process.send!({ type: "error", message: err instanceof Error ? err.message : String(err) } satisfies WorkerMessage, () => process.exit(1));
  };
  process.on("disconnect", () => process.exit(0)); // the parent is gone
  process.on("message", (m: ParentMessage) => {
    // collective results resume a step that is running: handled at once, not queued behind it
    if (m.type === "collective-result") {
      try {
        onCollectiveResult(m);
      } catch (err) {
        fail(err);
      }
      return;
    }
    queue = queue.then(async () => {
      switch (m.type) {
        case "init":
          prepared = m.spec.kind === "interpreter" ? await prepareInterpreter(m.rank, m.spec) : await preparePlan(m.rank, m.ranks, m.spec);
          send({ type: "prepared", info: prepared.info });
          return;
        case "nccl-id":
          if (!prepared?.ncclId) throw new Error("asked for an NCCL unique id, but this rank runs no NCCL");
          send({ type: "nccl-id", id: prepared.ncclId() });
          return;
        case "start":
          if (!prepared) throw new Error("started before it was prepared");
          runner = await prepared.start(m);
          send({ type: "ready" });
          return;
        case "step":
          if (!runner) throw new Error(`step ${m.id} before the rank was started`);
          send(await runner.step(m.id, m.inputs, m.logitRows));
          return;
        case "close":
          runner?.dispose();
          process.exit(0);
      }
    }).catch(fail);
  });
}

main();
