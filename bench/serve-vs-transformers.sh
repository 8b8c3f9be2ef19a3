#!/usr/bin/env bash
# tsgc's serving engine against transformers' continuous batching, on one GPU host, on the same requests:
#   `tsgc bench serve MODEL --json` (the compiled plan, random MXFP4 weights made on the device), then
#   bench/transformers_generate_batch.py (transformers 5.x, random dense bf16 weights), one after the other so each has
#   the GPU to itself; both draw the workload from the same seeded generator (their workload hashes must match).
#
#   source .gpu/env.sh && bash bench/serve-vs-transformers.sh [MODEL [NUM_REQUESTS [INPUT_LEN [OUTPUT_LEN]]]]
#     defaults: gpt-oss-20b 256 1024 1024; SEED (default 0); TSGC_FLAGS and HF_FLAGS add flags to either side
#     (TSGC_FLAGS defaults to --warmup, as transformers warms up before its timed part; e.g.
#     TSGC_FLAGS="--warmup --compare-http" also measures 256 streaming HTTP clients, HF_FLAGS="--max-batch-tokens 2048")
# Writes tsgc-serve.json, transformers.json, their logs and summary.txt to $OUT (default /tmp/serve-vs-transformers);
# prints both output tok/s and tsgc / transformers. Exits non-zero when either side fails or the workloads differ.
set -uo pipefail
model=${1:-gpt-oss-20b}
num_requests=${2:-256}
input_len=${3:-1024}
output_len=${4:-1024}
seed=${SEED:-0}
out=${OUT:-/tmp/serve-vs-transformers}
mkdir -p "$out"
command -v node > /dev/null || { echo "node is not on PATH: source .gpu/env.sh first"; exit 1; }
npx tsc -p tsconfig.json || { echo "build failed"; exit 1; }
workload=(--num-requests "$num_requests" --input-len "$input_len" --output-len "$output_len" --seed "$seed")
status=0
# shellcheck disable=SC2086 # TSGC_FLAGS and HF_FLAGS are word lists
node bin/tsgc.js bench serve "$model" "${workload[@]}" --json ${TSGC_FLAGS---warmup} > "$out/tsgc-serve.json" 2> "$out/tsgc-serve.log" \
  || { echo "tsgc bench serve failed: $(tail -3 "$out/tsgc-serve.log")"; status=1; }
# shellcheck disable=SC2086
python3 bench/transformers_generate_batch.py --model "$model" "${workload[@]}" ${HF_FLAGS:-} > "$out/transformers.json" 2> "$out/transformers.log" \
  || { echo "transformers yardstick failed: $(tail -3 "$out/transformers.log")"; status=1; }
python3 - "$out" > "$out/summary.txt" <<'PY' || status=1
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
tsgc, hf = load("tsgc-serve.json"), load("transformers.json")
# with --compare-http the engine-API run is the one measured on the workload both sides share
run = tsgc.get("direct", tsgc) if tsgc else None
if run:
    print(f"tsgc bench serve: {tsgc['model']} on {tsgc['device']}, {run['outputTokensPerSecond']:.1f} output tok/s, {run['totalTokensPerSecond']:.1f} total tok/s, "
          f"{run['durationMs'] / 1000:.1f} s, TTFT p50 {run['ttftMs']['p50']:.0f} ms, TPOT p50 {run['tpotMs']['p50']:.2f} ms, workload {tsgc['workload']['hash']}")
    if "http" in tsgc:
        print(f"  through HTTP: {tsgc['http']['outputTokensPerSecond']:.1f} output tok/s ({tsgc['httpOverDirect']:.3f} of the engine API's)")
if hf:
    print(f"transformers {hf['transformers']} ({hf['api']}, {hf['attnImplementation']}): {hf['outputTokensPerSecond']:.1f} output tok/s, {hf['totalTokensPerSecond']:.1f} total tok/s, "
          f"{hf['durationS']:.1f} s ({hf['timed']}), exact lengths {hf['exactLengths']}, workload {hf['workload']['hash']}"
          + ("" if hf["fullModel"] else f", ONLY {hf['layers']} LAYERS"))
if not (run and hf):
    sys.exit(1)
if tsgc["workload"]["hash"] != hf["workload"]["hash"]:
    print(f"the workloads differ: tsgc {tsgc['workload']['hash']}, transformers {hf['workload']['hash']}")
    sys.exit(1)
print(f"tsgc / transformers output tok/s: {run['outputTokensPerSecond'] / hf['outputTokensPerSecond']:.2f}")
PY
cat "$out/summary.txt"
exit $status
