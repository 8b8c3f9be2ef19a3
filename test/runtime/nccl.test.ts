// NCCL across two GPUs, one process per GPU as in production: the test makes the unique id,
// starts a rank per GPU (compiled runtime from dist/), and checks every collective's result.
import { spawn } from "node:child_process";
import { expect, it } from "vitest";
import { ncclUniqueId } from "../../runtime/nccl.js";
import { builtModuleUrl, describeGpus, REPO_ROOT } from "../tiers.js";

const RANKS = 2;

// Rank r holds send[i] = (r + 1) * (i + 1) for i in [0, n); every result has a closed form.
const RANK_SCRIPT = (runtimeUrl: string): string => `
  import { Arena, Device, NcclComm, ncclGroup } from ${JSON.stringify(runtimeUrl)};
  const [rank, nranks, idHex] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
  const n = 1 << 16;
  const device = Device.open(rank);
  const arena = Arena.allocate(device, 16 << 20);
  let offset = 0;
  const tensor = (elements) => { const v = arena.tensor(offset, "f32", elements); offset += Math.ceil(v.bytes / 256) * 256; v.fill(0xff); return v; };
  const send = tensor(n), sum = tensor(n), gathered = tensor(n * nranks), scattered = tensor(n / nranks), broadcasted = tensor(n);
  send.copyFromHost(Float32Array.from({ length: n }, (_, i) => (rank + 1) * (i + 1)));
  const comm = NcclComm.init(device, { nranks, rank, id: Buffer.from(idHex, "hex") });
  ncclGroup(() => {
    comm.allReduce(send, sum, "sum");
    comm.allGather(send, gathered);
  });
  comm.reduceScatter(send, scattered, "sum");
  comm.broadcast(send, broadcasted, 1);
  comm.synchronize();
  const read = (v) => v.copyToHost(new Float32Array(v.elements));
  const ranksSum = (nranks * (nranks + 1)) / 2;
  const errors = [];
  const check = (what, got, want) => { for (let i = 0; i < got.length; i++) if (got[i] !== want(i)) { errors.push(what + "[" + i + "] = " + got[i] + ", want " + want(i)); return; } };
  check("allReduce", read(sum), (i) => ranksSum * (i + 1));
  check("allGather", read(gathered), (j) => (Math.floor(j / n) + 1) * ((j % n) + 1));
  check("reduceScatter", read(scattered), (i) => ranksSum * (rank * (n / nranks) + i + 1));
  check("broadcast", read(broadcasted), (i) => 2 * (i + 1));
  comm.dispose();
  arena.free();
  process.stdout.write(JSON.stringify({ rank, errors }));
`;

function runRank(script: string, rank: number, idHex: string): Promise<{ rank: number; errors: string[] }> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, String(rank), String(RANKS), idHex], {
    cwd: REPO_ROOT, env: { ...process.env, NCCL_NVLS_ENABLE: "0" },
  });
  let stdout = "", stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => {
      if (code !== 0) reject(new Error(`rank ${rank} exited ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as { rank: number; errors: string[] });
    });
  });
}

describeGpus(RANKS, "NCCL across GPUs", () => {
  it(`all-reduces, all-gathers, reduce-scatters and broadcasts across ${RANKS} GPUs, one process each`, async () => {
    const script = RANK_SCRIPT(builtModuleUrl("runtime/index.ts"));
    const idHex = Buffer.from(ncclUniqueId()).toString("hex");
    const results = await Promise.all(Array.from({ length: RANKS }, (_, rank) => runRank(script, rank, idHex)));
    expect(results).toEqual(Array.from({ length: RANKS }, (_, rank) => ({ rank, errors: [] })));
  }, 120_000);
});
