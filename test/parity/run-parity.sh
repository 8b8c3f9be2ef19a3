#!/usr/bin/env bash
# Parity of tsgc with the reference implementation (transformers) on small random-weight gpt-oss
# checkpoints, on a CUDA host with torch and transformers: a 300-token prompt (longer than the sliding
# window), final logits and a 64-token greedy continuation, in f32 (≤ 1e-4, identical tokens) and bf16.
#   bash test/parity/run-parity.sh OUT_DIR      (from the repository root, after npm run build)
set -euo pipefail
out=${1:-/tmp/tsgc-parity}
here=$(dirname "$0")
mkdir -p "$out"
python3 "$here/make_checkpoint.py" "$out"
status=0
for dtype in f32 bf16; do
  python3 "$here/reference.py" "$out/$dtype" 300 64 "$out/reference-$dtype.json"
  ids=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt'])))" "$out/reference-$dtype.json")
  node bin/tsgc.js generate --checkpoint "$out/$dtype" --prompt-ids "$ids" --max-new-tokens 64 --dtype "$dtype" --device cuda --json --logits-out "$out/tsgc-$dtype.json" > /dev/null
  tol=$([ "$dtype" = f32 ] && echo 1e-4 || echo 2e-2)
  echo -n "$dtype: "
  python3 "$here/compare.py" "$out/reference-$dtype.json" "$out/tsgc-$dtype.json" "$tol" || status=1
done
# how far each bf16 run is from exact (f32) math on the same bf16 weights: the bf16 error of each implementation
python3 "$here/reference.py" "$out/bf16" 300 64 "$out/reference-bf16-in-f32.json" float32
echo -n "transformers bf16 vs f32 math on the bf16 weights: "
python3 "$here/compare.py" "$out/reference-bf16-in-f32.json" <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'logits': [r['logits']], 'tokens': r['tokens']}))" "$out/reference-bf16.json") 1 || true
echo -n "tsgc bf16 vs f32 math on the bf16 weights: "
python3 "$here/compare.py" "$out/reference-bf16-in-f32.json" "$out/tsgc-bf16.json" 1 || true
exit $status
