#!/usr/bin/env bash
# MXFP4 bf16 parity miss, on the GPU host in one call (no torch, no network): the compiled plan against the
# CPU interpreter on the parity-shaped gpt-oss with std-0.02 weights (test/parity/moe-routing.ts), for MXFP4
# and dense experts in bf16 and f32, plus per-layer routing and moeExperts checks fed with the interpreter's
# own MoE inputs, and whether a routing flip of the final row explains the plan's logits.
#   source .gpu/env.sh && bash test/parity/moe-routing-device.sh [CHECKPOINT_WORK_DIR [REFERENCE_JSON]]
# CHECKPOINT_WORK_DIR holds bf16/ and mxfp4/ (a run-parity.sh work dir, or written here by tsgc if absent;
# default /tmp/moe-routing-ckpt); REFERENCE_JSON (a reference.py result) supplies the prompt. Results:
# $OUT/summary.txt and one JSON per case under $OUT (or /tmp/moe-routing-out without $OUT).
set -uo pipefail
out=${OUT:-/tmp/moe-routing-out}
work=${1:-/tmp/moe-routing-ckpt}
ref=${2:-}
mkdir -p "$out"
npx tsc -p tsconfig.json || { echo "build failed"; exit 1; }
node dist/test/parity/moe-routing.js prepare "$work" --std 0.02 || exit 1
status=0
for experts in mxfp4 dense; do
  for dtype in bf16 f32; do
    node dist/test/parity/moe-routing.js gpu "$work" --experts $experts --dtype $dtype --json "$out/gpu-$experts-$dtype.json" ${ref:+--prompt-json "$ref"} > /dev/null 2> "$out/gpu-$experts-$dtype.log" || { echo "gpu $experts $dtype failed: $(tail -3 "$out/gpu-$experts-$dtype.log")"; status=1; }
  done
done
node dist/test/parity/moe-routing.js cpu "$work" --experts mxfp4 --json "$out/cpu-mxfp4-bf16.json" ${ref:+--prompt-json "$ref"} > /dev/null 2>> "$out/cpu.log" || status=1
python3 - "$out" > "$out/summary.txt" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in sorted(os.listdir(out)):
    if not (name.startswith("gpu-") and name.endswith(".json")): continue
    r = json.load(open(os.path.join(out, name)))
    print(f"{name[4:-5]}: plan vs interpreter, streamed weights {r['plan_stream']}, host weights {r['plan_host']}")
    print(f"  final-row 4th/5th router gap per layer (row ulps): {r['lastTokenGapUlps']}")
    for f in r["planVsForcedFlip"]:
        print(f"  forced flip of the final row at layer {f['layer']} (gap {f['gapUlps']}): plan vs flipped interpreter {f['planVsFlipped']}, flipped vs interpreter {f['flippedVsInterpreter']}")
    for l in r["layers"]:
        print(f"  layer {l['layer']} on the interpreter's MoE input: route sets differing {l['routeSetDiffers']}, order only {l['routeOrderDiffers']}, moeExperts {l['moe']}, tokens > 2 ulps {l['tokensOver2Ulps']}")
cpu = os.path.join(out, "cpu-mxfp4-bf16.json")
if os.path.exists(cpu):
    r = json.load(open(cpu))
    print(f"interpreter routing, mxfp4 bf16: {r['decisions']} decisions, exact ties {r['ties']}, gap <=1 row ulp {r['oneUlp']}, 2 row ulps {r['twoUlp']}, changed by the route kernel's f32 order {r['gpuOrderChanges']}")
PY
cat "$out/summary.txt"
exit $status
