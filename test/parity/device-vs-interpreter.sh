#!/usr/bin/env bash
# tsgc's compiled plan on the GPU against its own CPU reference interpreter, on one checkpoint and dtype,
# with the prompt of a reference.py result (so the numbers line up with run-parity.sh's):
#   bash test/parity/device-vs-interpreter.sh CHECKPOINT_DIR f32|bf16 REFERENCE.json OUT_PREFIX
# Prints compare.py's line for the GPU against the interpreter (final prefill logits, greedy tokens).
set -euo pipefail
ckpt=$1 dtype=$2 ref=$3 out=$4
here=$(dirname "$0")
ids=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt'])))" "$ref")
for device in cpu cuda; do
  node bin/tsgc.js generate --checkpoint "$ckpt" --prompt-ids "$ids" --max-new-tokens 64 --dtype "$dtype" --device $device --json --logits-out "$out-$device.json" > /dev/null
done
# the interpreter's run in the reference's layout: final prefill logits as one row
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['logits']=r['logits'][0]; json.dump(r, open(sys.argv[2], 'w'))" "$out-cpu.json" "$out-cpu-as-reference.json"
python3 "$here/compare.py" "gpu-vs-interpreter-$(basename "$ckpt")-$dtype" "$out-cpu-as-reference.json" "$out-cuda.json" 1
