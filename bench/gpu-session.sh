#!/usr/bin/env bash
# One measured session on a one-GPU host, as bench/NOTES.md records it: the GPU test tier, the decode/prefill
# benchmark of the one bucketed plan, the serving benchmark (engine API and 256 streaming HTTP clients), and the
# kernel microbenchmarks. Every step runs under its own time limit and writes STEP.txt (its output and exit
# status) to $OUT, so a step that runs long costs only itself.
#
#   source .gpu/env.sh && bash bench/gpu-session.sh [STEP…]
#     steps: tier bench20b serve serve256 serve120b yardstick http b1 long moe grouped ncu-moe matmul bench120b
#     (default: tier bench20b http b1 long serve)
set -uo pipefail
out=${OUT:-/tmp/tsgc-session}
mkdir -p "$out"
command -v node > /dev/null || { echo "node is not on PATH: source .gpu/env.sh first"; exit 1; }

# step NAME SECONDS COMMAND…: runs COMMAND with a time limit, output and "exit N" into $out/NAME.txt
step() {
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "exit $rc after $((SECONDS - started)) s" >> "$out/$name.txt"
  echo "$name: exit $rc after $((SECONDS - started)) s"
}

run_step() {
  case $1 in
    # a cold NVRTC cache on a fresh host took 140 s on one H200 host and over 230 s on another (bench/NOTES.md Run 10)
    tier) step tier 400 npx vitest run --reporter=verbose ;;
    # every batch is timed with and without programmatic dependent launch (the no-PDL column)
    bench20b) step bench20b 170 node bin/tsgc.js bench gpt-oss-20b --prefill 2048 --profile 1,256 ;;
    bench120b) step bench120b 200 node bin/tsgc.js bench gpt-oss-120b --batches 1,2,4,8,16,32,64,128 --prefill 2048 ;;
    # issue 11's workload: 1000 requests of 1024 + 1024 tokens sent at once, through the engine's API
    serve) step serve 200 node bin/tsgc.js bench serve gpt-oss-20b --num-requests 1000 --input-len 1024 --output-len 1024 --warmup ;;
    # the same with 256 sequences a step (shorter steps: a shorter time per output token, less throughput)
    serve256) step serve256 200 node bin/tsgc.js bench serve gpt-oss-20b --num-requests 1000 --input-len 1024 --output-len 1024 --warmup --max-batch 256 ;;
    # the same on gpt-oss-120b (213 s on one H200, a cold compile of its plan included: bench/NOTES.md Run 13)
    serve120b) step serve120b 540 node bin/tsgc.js bench serve gpt-oss-120b --num-requests 1000 --input-len 1024 --output-len 1024 --warmup ;;
    # transformers' continuous batching beside tsgc on a smaller workload (its dense bf16 experts are slow to serve)
    # (its cache would take all free memory, leaving too little for eager attention over 1024-token prefill chunks)
    yardstick) HF_FLAGS="--max-memory-percent 0.5 --max-batch-tokens 1024" step yardstick 200 bash bench/serve-vs-transformers.sh gpt-oss-20b 64 1024 256 ;;
    # issue 12's: 256 concurrent streaming clients through HTTP against the engine's API, one engine
    http) step http 150 node bin/tsgc.js bench serve gpt-oss-20b --num-requests 256 --input-len 1024 --output-len 256 --warmup --compare-http ;;
    # one 64k-token sequence (sliding layers flat, full layers paged)
    long) step long 90 node bin/tsgc.js bench serve gpt-oss-20b --num-requests 1 --input-len 65536 --output-len 64 --max-context 65664 ;;
    # batch-1 latency through the engine (its time per output token against bench20b's batch-1 step)
    b1) step b1 60 node bin/tsgc.js bench serve gpt-oss-20b --num-requests 1 --input-len 1024 --output-len 512 --warmup ;;
    # one layer's MoE: token loop, grouped GEMMs and stream kernels (the defaults), the previous stream kernels
    moe) step moe 110 node dist/bench/moe-prefill.js 1,8,16,64,256,512,2048 5 stream/b ;;
    # the tiled grouped GEMMs' tilings beside the buckets' defaults (wgmma ones on sm_90a), decode- and prefill-sized counts
    grouped) step grouped 150 node dist/bench/moe-prefill.js 128,256,512,1024,2048 3 m64k64s3lb3z,lb2w,lb1w ;;
    # where the grouped gate_up's time goes at batch 256 (20b, 32 rows an expert) and the stream gate_up's at 120b's
    # batch 64 (2 rows an expert): stall reasons, pipe and memory throughput
    ncu-moe) step ncu-moe 240 bash -c 'S="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section InstructionStats --section LaunchStats"
      ncu $S -k regex:ggateup_mma --launch-count 2 node dist/bench/moe-prefill.js 256 1 m64k64s3lb3z
      MOE_BENCH_EXPERTS=128 ncu $S -k regex:ggateup_stream --launch-count 1 node dist/bench/moe-prefill.js 64 1 none' ;;
    matmul) step matmul 90 node dist/bench/codegen-matmul.js bucket ;;
    *) echo "unknown step $1 (tier bench20b serve serve256 serve120b yardstick http b1 long moe grouped ncu-moe matmul bench120b)"; return 1 ;;
  esac
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
for s in "${@:-tier bench20b http b1 long serve}"; do
  for one in $s; do run_step "$one"; done
done
