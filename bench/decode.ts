// gpt-oss at full size on one GPU with random weights made on the device (src/bench/gpt-oss-bench.ts):
// GPU memory, load/init, generation, decode at each batch size against the bandwidth floor, a per-launch
// profile and optionally a prefill. `tsgc bench` runs the same with flags.
//
//   npm run build && node dist/bench/decode.js [model=gpt-oss-20b] [past=1024] [replays=100] [prefillTokens=0] [batches=1,2,…,256] [context=4096]

import { formatGptOssBench, runGptOssBench } from "../src/bench/gpt-oss-bench.js";

async function main(): Promise<void> {
  const [model = "gpt-oss-20b", past = "1024", replays = "100", prefillTokens = "0", batches = "1,2,4,8,16,32,64,128,256", context = "4096"] = process.argv.slice(2);
  const result = await runGptOssBench({
    model,
    past: Number(past),
    replays: Number(replays),
    prefillTokens: Number(prefillTokens),
    batches: batches.split(",").map(Number),
    context: Number(context),
    profile: [1],
    onProgress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(formatGptOssBench(result));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/decode: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
