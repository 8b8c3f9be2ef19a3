source .gpu/env.sh >/dev/null 2>&1; export TSGC_CACHE_DIR=/tmp/tsgc-cache; cd "$(dirname "$0")/.."
timeout --signal=INT --kill-after=5 60 npx vitest run test/runtime/gpu.test.ts test/package.test.ts > $OUT/t.txt 2>&1; echo "tests exit $?" >> $OUT/t.txt
grep -E "Test Files|Tests |FAIL|exit" $OUT/t.txt
timeout --signal=INT --kill-after=5 165 node bin/tsgc.js bench gpt-oss-120b --batches 1,64,128 --prefill 2048 > $OUT/b120.txt 2>&1; echo "bench exit $?" >> $OUT/b120.txt
grep -v "^\s*$" $OUT/b120.txt | tail -20
