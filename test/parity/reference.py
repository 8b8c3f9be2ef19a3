"""Runs the reference implementation (transformers) on a checkpoint: final prefill logits and a greedy
continuation, with eager attention.

    python3 reference.py CHECKPOINT_DIR PROMPT_LEN NEW_TOKENS OUT.json [--dtype float32|bfloat16] [--mxfp4]
The prompt is PROMPT_LEN seeded random token ids (written to OUT.json with the results). --mxfp4 loads an
MXFP4 checkpoint through transformers' dequantize path (Mxfp4Config(dequantize=True)), in --dtype.
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("path")
parser.add_argument("prompt_len", type=int)
parser.add_argument("new_tokens", type=int)
parser.add_argument("out")
parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
parser.add_argument("--mxfp4", action="store_true")
args = parser.parse_args()

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
device = "cuda" if torch.cuda.is_available() else "cpu"
kwargs = {"attn_implementation": "eager", "dtype": getattr(torch, args.dtype) if args.dtype else "auto"}
if args.mxfp4:
    from transformers import Mxfp4Config

    kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
started = time.time()
model = AutoModelForCausalLM.from_pretrained(args.path, **kwargs).eval()
if args.dtype == "float32":
    # The dequantize path leaves MXFP4 experts in bf16 (exact: an fp4 value times a power of two fits
    # bf16); widening them makes the whole model compute in float32.
    model = model.float()
model = model.to(device)
g = torch.Generator().manual_seed(7)
prompt = torch.randint(1, model.config.vocab_size - 1, (1, args.prompt_len), generator=g)
with torch.no_grad():
    logits = model(prompt.to(device)).logits[0, -1].float().cpu()
    generated = model.generate(prompt.to(device), max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, use_cache=True)
tokens = generated[0, args.prompt_len:].tolist()
experts = model.model.layers[0].mlp.experts
json.dump(
    {"prompt": prompt[0].tolist(), "logits": logits.tolist(), "tokens": tokens, "dtype": str(model.dtype), "expertsDtype": str(experts.gate_up_proj.dtype), "device": device, "seconds": time.time() - started},
    open(args.out, "w"),
)
print(f"{args.path}: {len(tokens)} tokens, dtype {model.dtype}, experts {experts.gate_up_proj.dtype}, on {device}")
