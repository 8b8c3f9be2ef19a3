#!/usr/bin/env python3
"""The transformers yardstick for `tsgc bench serve`: transformers' continuous batching on gpt-oss with random bf16
weights, on the same requests as `tsgc bench serve` (prompts, lengths and seed drawn by the identical generator),
measured the same way (output tokens per second of wall time), printed as one JSON line on stdout.

    python3 bench/transformers_generate_batch.py --model gpt-oss-20b --num-requests 256 --input-len 1024 --output-len 1024
    python3 bench/transformers_generate_batch.py --config path/to/config.json ...   # any gpt-oss config.json
    python3 bench/transformers_generate_batch.py --print-workload ...                # the requests' lengths and hash only

Needs torch and transformers 5.x (continuous batching: ContinuousBatchingConfig, generate_batch) and one CUDA GPU;
no network: the model is built from its config (the published gpt-oss-20b/120b values are embedded below, copied from
models/gpt-oss/config.ts) with transformers' seeded random initialisation. MXFP4 kernels are not available offline,
so the experts are dense bf16: gpt-oss-20b's weights take ~42 GB; gpt-oss-120b's ~234 GB do not fit one GPU, so the
script refuses it unless --num-layers runs a shallower slice (which is then not gpt-oss-120b: the JSON says so).
Nothing stops a request before its output length: no EOS (eos_token_id -1, "disabled" in transformers' continuous
batching), greedy decoding.

The workload generator is src/bench/serve-bench.ts, line for line: mulberry32 streams seeded from --seed (lengths,
prompts), fixed lengths or log-normal ones (sharegpt-like), prompt ids uniform over the vocabulary; the JSON's
workload.hash equals `tsgc bench serve --json`'s when both served the same requests.

Timing (--api manager, the default): transformers' continuous_batching_context_manager (what generate_batch runs
inside) warms up (CUDA graphs) first; the clock runs from the first add_request to the last finished result.
--api generate_batch times one whole generate_batch call instead (its warm-up included) and needs fixed lengths.
"""
import argparse
import dataclasses
import inspect
import json
import math
import sys
import time

# ---- workload: identical to src/bench/serve-bench.ts ----------------------------------------------------------------

MASK32 = 0xFFFFFFFF
STREAMS = {"lengths": 1, "arrivals": 2, "prompts": 3}
SHAREGPT_LIKE_SIGMA = {"input": 1.0, "output": 0.75}


def imul(a, b):
    return (a * b) & MASK32


def mulberry32(seed):
    """The PRNG of serve-bench.ts: uniform in [0, 1) with 32 bits of resolution."""
    state = seed & MASK32

    def next_uniform():
        nonlocal state
        state = (state + 0x6D2B79F5) & MASK32
        t = state
        t = imul(t ^ (t >> 15), t | 1)
        t = (t ^ ((t + imul(t ^ (t >> 7), t | 61)) & MASK32)) & MASK32
        return (t ^ (t >> 14)) / 4294967296

    return next_uniform


def stream_seed(seed, stream):
    return (seed + stream * 0x9E3779B9) & MASK32


def normal(rand):
    u1 = rand()
    u2 = rand()
    return math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)


def log_normal_length(rand, mean, sigma):
    return math.floor(mean * math.exp(sigma * normal(rand) - sigma * sigma / 2) + 0.5)


def workload_lengths(num_requests, dataset, input_len, output_len, max_context, seed):
    if dataset == "fixed":
        return [input_len] * num_requests, [output_len] * num_requests
    rand = mulberry32(stream_seed(seed, STREAMS["lengths"]))
    inputs, outputs = [], []
    for _ in range(num_requests):
        n_in = min(max(log_normal_length(rand, input_len, SHAREGPT_LIKE_SIGMA["input"]), 1), max_context - 1)
        n_out = min(max(log_normal_length(rand, output_len, SHAREGPT_LIKE_SIGMA["output"]), 1), max_context - n_in)
        inputs.append(n_in)
        outputs.append(n_out)
    return inputs, outputs


def prompt_tokens(lengths, vocab_size, seed):
    rand = mulberry32(seed)
    return [[math.floor(rand() * vocab_size) for _ in range(n)] for n in lengths]


def workload_hash(prompts, output_lens):
    h = 0x811C9DC5

    def word(x):
        nonlocal h
        h = imul(h ^ x, 0x01000193)

    word(len(prompts))
    for prompt, n_out in zip(prompts, output_lens):
        word(len(prompt))
        word(n_out)
        for token in prompt:
            word(token)
    return f"{h:08x}"


def serve_context(args, max_position_embeddings):
    """The context bound tsgc bench serve picks: --max-context, else 4096 or what a fixed request needs."""
    needed = args.input_len + args.output_len if args.dataset == "fixed" else 2
    context = args.max_context or min(max_position_embeddings, max(4096, needed))
    if needed > context:
        sys.exit(f"--input-len {args.input_len} and --output-len {args.output_len} need {needed} positions, more than the context of {context}")
    return context


# ---- the model ------------------------------------------------------------------------------------------------------

# (layers, experts) of the published models; everything else they share (models/gpt-oss/config.ts, gptOssShape).
GPT_OSS_MODELS = {"gpt-oss-20b": (24, 32), "gpt-oss-120b": (36, 128)}


def published_config(layers, experts):
    """config.json as the hub publishes gpt-oss (without quantization_config: the experts are dense here)."""
    return {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": layers,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 201088,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        "sliding_window": 128,
        "rope_theta": 150000,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096},
        "swiglu_limit": 7.0,
        "num_local_experts": experts,
        "num_experts_per_tok": 4,
        "experts_per_token": 4,
        "rms_norm_eps": 1e-05,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 131072,
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "router_aux_loss_coef": 0.9,
        "output_router_logits": False,
        "eos_token_id": 200002,
        "pad_token_id": 199999,
        "use_cache": True,
    }


def config_dict(args):
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
        name = args.config
    else:
        config = published_config(*GPT_OSS_MODELS[args.model])
        name = args.model
    config.pop("quantization_config", None)  # no MXFP4 kernels offline: dense bf16 experts
    full_layers = config["num_hidden_layers"]
    if args.num_layers:
        if args.num_layers > full_layers:
            sys.exit(f"--num-layers {args.num_layers}: {name} has {full_layers} layers")
        config["num_hidden_layers"] = args.num_layers
        if "layer_types" in config:
            config["layer_types"] = config["layer_types"][: args.num_layers]
    config["eos_token_id"] = None  # nothing ends a request early
    return name, full_layers, config


def weight_bytes(c):
    """bf16 bytes of gpt-oss's parameters (embeddings, lm_head, attention with biases and sinks, router, experts)."""
    hidden, inter, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
    head_dim = c.get("head_dim") or hidden // heads
    experts = c["num_local_experts"]
    attention = hidden * heads * head_dim + heads * head_dim + 2 * (hidden * kv_heads * head_dim + kv_heads * head_dim) + heads * head_dim * hidden + hidden + heads
    moe = experts * hidden + experts + experts * (hidden * 2 * inter + 2 * inter + inter * hidden + hidden)
    per_layer = 2 * (attention + moe + 2 * hidden)
    fixed = 2 * ((1 if c.get("tie_word_embeddings") else 2) * vocab * hidden + hidden)
    return fixed + c["num_hidden_layers"] * per_layer, per_layer, fixed


def supported_kwargs(fn, kwargs):
    """The kwargs `fn` names (transformers' continuous-batching signatures differ across 5.x releases; a name it lacks
    is left out rather than sent into a **kwargs that may read it as a deprecated argument)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params and params[k].kind != inspect.Parameter.VAR_KEYWORD}


def is_finished(result):
    if callable(getattr(result, "is_finished", None)):
        return result.is_finished()
    status = getattr(result, "status", None)
    return getattr(status, "name", str(status)).upper().endswith(("FINISHED", "FAILED"))


def result_error(result):
    status = getattr(result, "status", None)
    if getattr(result, "error", None):
        return str(result.error)
    if getattr(status, "name", str(status)).upper().endswith("FAILED"):
        return "FAILED"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(GPT_OSS_MODELS), default="gpt-oss-20b", help="a published gpt-oss shape (default gpt-oss-20b)")
    parser.add_argument("--config", help="a gpt-oss config.json instead of --model (quantization_config is dropped)")
    parser.add_argument("--num-layers", type=int, help="build only the first N layers (not the named model any more: the JSON says so)")
    parser.add_argument("--num-requests", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=1024, help="prompt tokens of each request (sharegpt-like: their mean)")
    parser.add_argument("--output-len", type=int, default=1024, help="output tokens of each request (sharegpt-like: their mean)")
    parser.add_argument("--dataset", choices=["fixed", "sharegpt-like"], default="fixed")
    parser.add_argument("--max-context", type=int, help="the context sharegpt-like lengths are clipped to (default as tsgc bench serve)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload and of the random weights")
    parser.add_argument("--api", choices=["manager", "generate_batch"], default="manager", help="how requests are submitted and timed (see above)")
    parser.add_argument("--attn-implementation", default="paged|eager", help='attention for continuous batching (default "paged|eager", which has gpt-oss\'s sinks)')
    parser.add_argument("--experts-implementation", help="transformers' experts_implementation, when given (e.g. grouped_mm)")
    parser.add_argument("--no-cb-warmup", action="store_true", help="skip transformers' CUDA-graph warm-up before the timed part")
    parser.add_argument("--block-size", type=int, help="ContinuousBatchingConfig.block_size (default: transformers')")
    parser.add_argument("--num-blocks", type=int, help="ContinuousBatchingConfig.num_blocks")
    parser.add_argument("--max-batch-tokens", type=int, help="ContinuousBatchingConfig.max_batch_tokens")
    parser.add_argument("--max-memory-percent", type=float, help="ContinuousBatchingConfig.max_memory_percent")
    parser.add_argument("--max-requests-per-batch", type=int, help="ContinuousBatchingConfig.max_requests_per_batch")
    parser.add_argument("--max-weight-share", type=float, default=0.7, help="refuse weights larger than this share of free GPU memory (default 0.7)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the timed part may take")
    parser.add_argument("--print-workload", action="store_true", help="print the workload's lengths and hash as JSON and exit (no torch needed)")
    args = parser.parse_args()
    if args.seed < 0 or args.seed >= 2**32:
        sys.exit(f"--seed must be in [0, 2^32), got {args.seed}")
    for flag in ("num_requests", "input_len", "output_len"):
        if getattr(args, flag) < 1:
            sys.exit(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")

    name, full_layers, config = config_dict(args)
    max_context = serve_context(args, config["max_position_embeddings"])
    input_lens, output_lens = workload_lengths(args.num_requests, args.dataset, args.input_len, args.output_len, max_context, args.seed)
    prompts = prompt_tokens(input_lens, config["vocab_size"], stream_seed(args.seed, STREAMS["prompts"]))
    digest = workload_hash(prompts, output_lens)
    if args.print_workload:
        print(json.dumps({"inputLens": input_lens, "outputLens": output_lens, "hash": digest}))
        return
    if args.api == "generate_batch" and len(set(output_lens)) > 1:
        sys.exit("--api generate_batch takes one output length for all requests: use --dataset fixed, or --api manager")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GptOssConfig

    try:
        from transformers.generation import ContinuousBatchingConfig, GenerationConfig
    except ImportError as err:
        sys.exit(f"transformers {transformers.__version__} lacks continuous batching (ContinuousBatchingConfig: {err}); this yardstick needs transformers 5.x with generate_batch")
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this yardstick runs on one")

    need, per_layer, fixed = weight_bytes(config)
    free, total = torch.cuda.mem_get_info()
    if need > args.max_weight_share * free:
        fits = int((args.max_weight_share * free - fixed) // per_layer)
        sys.exit(
            f"{name} with {config['num_hidden_layers']} layers needs {need / 1e9:.1f} GB of bf16 weights (MXFP4 kernels are not usable offline, so the experts are dense), "
            f"more than {args.max_weight_share:.0%} of the {free / 1e9:.1f} GB free on {torch.cuda.get_device_name()}; "
            f"--num-layers {max(fits, 1)} fits ({per_layer / 1e9:.2f} GB a layer), but a slice is not the full model"
        )

    base_attn = args.attn_implementation.split("|", 1)[1] if args.attn_implementation.startswith("paged|") else args.attn_implementation
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    hf_config = GptOssConfig.from_dict(config)
    model_kwargs = {"dtype": torch.bfloat16, "attn_implementation": base_attn}
    if args.experts_implementation:
        model_kwargs["experts_implementation"] = args.experts_implementation
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(hf_config, **model_kwargs)
    model.eval()
    for attr in ("generate_batch", "continuous_batching_context_manager"):
        if not hasattr(model, attr):
            sys.exit(f"transformers {transformers.__version__} lacks {type(model).__name__}.{attr} (continuous batching); this yardstick needs transformers 5.x")
    if args.attn_implementation.startswith("paged|"):
        # set here so transformers' continuous batching keeps it instead of switching to one of its own choosing
        model.set_attn_implementation(args.attn_implementation)
    model.generation_config.eos_token_id = None
    torch.cuda.synchronize()
    build_s = time.perf_counter() - started

    given = {"block_size": args.block_size, "num_blocks": args.num_blocks, "max_batch_tokens": args.max_batch_tokens, "max_memory_percent": args.max_memory_percent, "max_requests_per_batch": args.max_requests_per_batch}
    given = {k: v for k, v in given.items() if v is not None}
    known = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)} if dataclasses.is_dataclass(ContinuousBatchingConfig) else set(given)
    unknown = sorted(set(given) - known)
    if unknown:
        sys.exit(f"transformers {transformers.__version__}'s ContinuousBatchingConfig has no {', '.join(unknown)}")
    cb_config = ContinuousBatchingConfig(**given)

    def generation_config(max_new_tokens):
        # eos_token_id None: transformers' continuous batching sets it to -1, "disabled"
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None, pad_token_id=config.get("pad_token_id"))

    warmup = not args.no_cb_warmup
    torch.cuda.reset_peak_memory_stats()
    if args.api == "generate_batch":
        call = supported_kwargs(model.generate_batch, {"inputs": prompts, "generation_config": generation_config(output_lens[0]), "continuous_batching_config": cb_config, "progress_bar": False, "warmup": warmup})
        t0 = time.perf_counter()
        outputs = list(model.generate_batch(**call).values())
        duration = time.perf_counter() - t0
        timed = "one generate_batch call" + (" (its CUDA-graph warm-up included)" if warmup else "")
    else:
        cm = {"generation_config": generation_config(max(output_lens)), "continuous_batching_config": cb_config, "block": True, "timeout": 5, "warmup": warmup}
        try:
            from transformers.generation.continuous_batching.utils import WorkloadHints

            cm["workload_hints"] = WorkloadHints(max_prompt_length=max(input_lens), max_generated_length=max(output_lens), num_requests=len(prompts))
        except ImportError:
            pass
        outputs = []
        with model.continuous_batching_context_manager(**supported_kwargs(model.continuous_batching_context_manager, cm)) as manager:
            t0 = time.perf_counter()
            for i, (prompt, n_out) in enumerate(zip(prompts, output_lens)):
                manager.add_request(input_ids=prompt, request_id=f"req_{i}", max_new_tokens=n_out)
            while len(outputs) < len(prompts):
                result = manager.get_result(timeout=1)
                if result is None:
                    if not manager.is_running():
                        sys.exit(f"transformers' generation thread stopped with {len(outputs)} of {len(prompts)} requests done")
                    if time.perf_counter() - t0 > args.timeout:
                        sys.exit(f"--timeout {args.timeout} s passed with {len(outputs)} of {len(prompts)} requests done")
                    continue
                if is_finished(result):
                    outputs.append(result)
            duration = time.perf_counter() - t0
        timed = "first add_request to last result, after transformers' warm-up" if warmup else "first add_request to last result, no warm-up"

    errors = [e for e in (result_error(o) for o in outputs) if e]
    by_id = {o.request_id: o for o in outputs}
    generated = [len(by_id[f"req_{i}"].generated_tokens) if f"req_{i}" in by_id else 0 for i in range(len(prompts))]
    output_tokens = sum(generated)
    input_tokens = sum(input_lens)
    result = {
        "yardstick": "transformers continuous batching",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(),
        "model": name,
        "layers": config["num_hidden_layers"],
        "fullModel": config["num_hidden_layers"] == full_layers,
        "weights": "random (transformers' seeded initialisation), dense bf16 experts",
        "weightGB": need / 1e9,
        "attnImplementation": getattr(model.config, "_attn_implementation", args.attn_implementation),
        "api": args.api,
        "timed": timed,
        "continuousBatchingConfig": given,
        "workload": {"dataset": args.dataset, "numRequests": args.num_requests, "inputLen": args.input_len, "outputLen": args.output_len, "seed": args.seed, "maxContext": max_context, "inputTokens": input_tokens, "outputTokens": sum(output_lens), "hash": digest},
        "requests": len(prompts),
        "completed": len(outputs) - len(errors),
        "failed": len(errors),
        "exactLengths": generated == output_lens,
        "outputTokens": output_tokens,
        "durationS": duration,
        "outputTokensPerSecond": output_tokens / duration,
        "totalTokensPerSecond": (input_tokens + output_tokens) / duration,
        "requestsPerSecond": (len(outputs) - len(errors)) / duration,
        "buildS": build_s,
        "peakMemoryGB": torch.cuda.max_memory_allocated() / 1e9,
        "totalMemoryGB": total / 1e9,
    }
    print(json.dumps(result))
    if errors:
        print(f"{len(errors)} requests failed: {errors[0]}", file=sys.stderr)
        sys.exit(1)
    if not result["exactLengths"]:
        short = sum(1 for g, e in zip(generated, output_lens) if g != e)
        print(f"warning: {short} requests did not generate exactly their output length ({output_tokens} of {sum(output_lens)} tokens)", file=sys.stderr)


if __name__ == "__main__":
    main()
