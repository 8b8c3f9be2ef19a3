"""Runs the reference implementation on a checkpoint: final prefill logits and a greedy continuation.

    python3 reference.py CHECKPOINT_DIR PROMPT_LEN NEW_TOKENS OUT.json [float32]
The prompt is PROMPT_LEN seeded random token ids (written to OUT.json with the results). With "float32"
the checkpoint's weights are upcast and everything runs in f32: exact math on the same (e.g. bf16) weights.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

path, prompt_len, new_tokens, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
dtype = sys.argv[5] if len(sys.argv) > 5 else "auto"
model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", torch_dtype=dtype).to("cuda").eval()
g = torch.Generator().manual_seed(7)
prompt = torch.randint(1, model.config.vocab_size - 1, (1, prompt_len), generator=g)
with torch.no_grad():
    logits = model(prompt.to("cuda")).logits[0, -1].float().cpu()
    generated = model.generate(prompt.to("cuda"), max_new_tokens=new_tokens, do_sample=False, use_cache=True)
tokens = generated[0, prompt_len:].tolist()
json.dump({"prompt": prompt[0].tolist(), "logits": logits.tolist(), "tokens": tokens, "dtype": str(model.dtype)}, open(out, "w"))
print(f"{path}: {len(tokens)} tokens, dtype {model.dtype}")
