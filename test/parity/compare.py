"""Compares tsgc's output (--logits-out) with the reference's: final prefill logits and greedy tokens.

    python3 compare.py NAME REFERENCE.json TSGC.json TOLERANCE [--tokens-must-match]
Prints one JSON line: maxRelLogitError = max |tsgc − reference| / max |reference| over the final prefill
logits, maxAbsLogitError, whether the argmax agrees, and where the greedy continuations first differ.
Exits non-zero when the error exceeds TOLERANCE, or (with --tokens-must-match) the tokens differ. tsgc
stops at the checkpoint's EOS while the reference is forced to 64 tokens, so a tsgc continuation that
ends early at EOS counts as equal if it is a prefix of the reference's.
"""
import json
import sys

name, ref_path, ours_path, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
tokens_must_match = "--tokens-must-match" in sys.argv[5:]
ref, ours = json.load(open(ref_path)), json.load(open(ours_path))
assert ref["prompt"] == ours["prompt"], "the two runs had different prompts"
a, b = ref["logits"], ours["logits"][0]
assert len(a) == len(b), f"vocabulary sizes differ: {len(a)} vs {len(b)}"
abs_err = max(abs(x - y) for x, y in zip(a, b))
rel_err = abs_err / max(abs(x) for x in a)
rt, ot = ref["tokens"], ours["tokens"]
first_diff = next((i for i, (x, y) in enumerate(zip(rt, ot)) if x != y), None)
same = first_diff is None and (len(ot) == len(rt) or rt[: len(ot)] == ot)
result = {
    "name": name,
    "maxRelLogitError": rel_err,
    "maxAbsLogitError": abs_err,
    "tolerance": tol,
    "argmaxEqual": max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__),
    "tokensEqual": same,
    "firstDifferentToken": first_diff,
    "referenceTokens": len(rt),
    "tsgcTokens": len(ot),
    "referenceDtype": ref.get("dtype"),
    "referenceExpertsDtype": ref.get("expertsDtype"),
}
print(json.dumps(result))
ok = rel_err <= tol and (same or not tokens_must_match)
sys.exit(0 if ok else 1)
