#!/usr/bin/env bash
# Parity of tsgc with the reference implementation (transformers, eager attention) on small random-weight
# gpt-oss checkpoints, on a CUDA host with torch and transformers: a 300-token prompt (longer than the
# sliding window of 8), the final prefill logits and a 64-token greedy continuation.
#   f32 checkpoint,  tsgc --dtype f32:  max relative logit error ≤ 1e-4 and identical tokens
#   bf16 checkpoint, tsgc --dtype bf16: max relative logit error ≤ 2e-2
#   MXFP4 checkpoint (tsgc quantize of the bf16 one), transformers' dequantize path:
#     reference widened to float32 vs tsgc --dtype f32: ≤ 1e-4 and identical tokens; bf16 vs bf16: ≤ 2e-2
#
#   bf16 checkpoint in exact (f32) math, as a yardstick: how far transformers' bf16 and tsgc's bf16 each are
#     from it (reported, not checked)
#
#   bash test/parity/run-parity.sh WORK_DIR [DEVICE] [WEIGHT_STD] [SEED]
#     (repository root, after npm run build; DEVICE cuda|cpu; WEIGHT_STD see make_checkpoint.py; SEED of the
#     random weights, default 1234)
# Writes WORK_DIR/results.jsonl (one compare.py line per case); exits non-zero if any checked case fails.
set -uo pipefail
work=${1:-/tmp/tsgc-parity}
device=${2:-cuda}
weight_std=${3:-}
seed=${4:-1234}
here=$(dirname "$0")
mkdir -p "$work"
python3 "$here/make_checkpoint.py" "$work" ${weight_std:-none} "$seed" || exit 1
node bin/tsgc.js quantize "$work/bf16" "$work/mxfp4" > "$work/quantize.log" || exit 1
: > "$work/results.jsonl"
status=0
# name checkpoint reference-dtype tsgc-dtype tolerance [--mxfp4] [--tokens-must-match]
case_() {
  local name=$1 ckpt=$2 ref_dtype=$3 tsgc_dtype=$4 tol=$5; shift 5
  local mx=() must=()
  for f in "$@"; do [ "$f" = --mxfp4 ] && mx=(--mxfp4); [ "$f" = --tokens-must-match ] && must=(--tokens-must-match); done
  python3 "$here/reference.py" "$work/$ckpt" 300 64 "$work/reference-$name.json" --dtype "$ref_dtype" "${mx[@]}" || { status=1; return; }
  local ids
  ids=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt'])))" "$work/reference-$name.json")
  local started=$(date +%s.%N)
  node bin/tsgc.js generate --checkpoint "$work/$ckpt" --prompt-ids "$ids" --max-new-tokens 64 --dtype "$tsgc_dtype" --device "$device" --json --logits-out "$work/tsgc-$name.json" > "$work/tsgc-$name.out" || { echo "tsgc failed on $name"; status=1; return; }
  echo "tsgc $name: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(len(r['tokens']), 'tokens, generation', r['ms'], 'ms, load', r['loadMs'], 'ms,', round(float(sys.argv[3]) - float(sys.argv[2]), 1), 's in all')" "$work/tsgc-$name.out" "$started" "$(date +%s.%N)")"
  python3 "$here/compare.py" "$name" "$work/reference-$name.json" "$work/tsgc-$name.json" "$tol" "${must[@]}" | tee -a "$work/results.jsonl" || status=1
}
case_ f32 f32 float32 f32 1e-4 --tokens-must-match
case_ bf16 bf16 bfloat16 bf16 2e-2
case_ mxfp4-f32 mxfp4 float32 f32 1e-4 --mxfp4 --tokens-must-match
case_ mxfp4-bf16 mxfp4 bfloat16 bf16 2e-2 --mxfp4
# the bf16 error of each implementation: distance from exact (f32) math on the same bf16 weights
python3 "$here/reference.py" "$work/bf16" 300 64 "$work/reference-bf16-in-f32.json" --dtype float32 > /dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['logits']=[r['logits']]; json.dump(r, open(sys.argv[2], 'w'))" "$work/reference-bf16.json" "$work/transformers-bf16-as-run.json"
python3 "$here/compare.py" transformers-bf16-vs-f32-math "$work/reference-bf16-in-f32.json" "$work/transformers-bf16-as-run.json" 1 | tee -a "$work/results.jsonl"
python3 "$here/compare.py" tsgc-bf16-vs-f32-math "$work/reference-bf16-in-f32.json" "$work/tsgc-bf16.json" 1 | tee -a "$work/results.jsonl"
exit $status
