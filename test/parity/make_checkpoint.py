"""Writes small random-weight gpt-oss checkpoints with the reference implementation (transformers).

    python3 make_checkpoint.py OUT_DIR [WEIGHT_STD]
writes OUT_DIR/f32 and OUT_DIR/bf16: 4 layers (sliding window 8 on even layers), hidden 256, 8 heads,
2 KV heads, head_dim 32, 8 experts top-4, intermediate 256, vocab 2048. Every parameter is drawn from
a seeded normal (norm weights around 1, sinks and biases non-zero) so no check passes on zeros. Weight
matrices have std 1/sqrt(last dim) by default, or WEIGHT_STD (e.g. 0.02, transformers' initializer_range,
which gives a calmer network whose bf16 noise stays smaller).
"""
import sys

import torch
from transformers import GptOssConfig, GptOssForCausalLM

out = sys.argv[1]
weight_std = float(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "none" else None
torch.manual_seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1234)
config = GptOssConfig(
    num_hidden_layers=4,
    hidden_size=256,
    intermediate_size=256,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    num_local_experts=8,
    num_experts_per_tok=4,
    sliding_window=8,
    vocab_size=2048,
    max_position_embeddings=4096,
    layer_types=["sliding_attention", "full_attention"] * 2,
    eos_token_id=2047,
    pad_token_id=0,
    tie_word_embeddings=False,
)
model = GptOssForCausalLM(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif name.endswith("sinks"):
            p.copy_(0.5 * torch.randn_like(p))
        else:
            fan_in = p.shape[-1] if p.dim() >= 2 else 16
            std = (weight_std if weight_std is not None else 1.0 / fan_in**0.5) if p.dim() >= 2 else 0.05
            p.copy_(torch.randn_like(p) * std)
model.save_pretrained(f"{out}/f32", safe_serialization=True)
model.to(torch.bfloat16).save_pretrained(f"{out}/bf16", safe_serialization=True)
print(f"wrote {out}/f32 and {out}/bf16")
