"""Compares tsgc's output (--logits-out) with the reference's: max relative logit error and tokens.

    python3 compare.py REFERENCE.json TSGC.json TOLERANCE
Exits non-zero when the error exceeds TOLERANCE or the greedy tokens differ.
"""
import json
import sys

ref, ours, tol = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
a, b = ref["logits"], ours["logits"][0]
err = max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a)
same = ref["tokens"] == ours["tokens"][: len(ref["tokens"])]
first_diff = next((i for i, (x, y) in enumerate(zip(ref["tokens"], ours["tokens"])) if x != y), None)
print(json.dumps({"maxRelLogitError": err, "tolerance": tol, "tokensEqual": same, "firstDifferentToken": first_diff, "tokens": len(ref["tokens"])}))
sys.exit(0 if err <= tol and same else 1)
