"""Training tokens/s on one GPU: the seed's QLoRA recipe vs revgen's levers, same process.

    python bench/train_throughput.py --workdir /tmp/rg7b --variants seed,liger,fast --steps 14

A Llama-2-7B-shaped model (hidden 4096, 32 layers, intermediate 11008, vocab 32000) with random
weights (speed does not depend on values) and a 32k-vocab byte-level BPE tokenizer trained on the
bundled Dolly sample are built once under --workdir. Every variant runs through revgen's own
``train()`` with the seed recipe file plus overrides; tokens/s is the median over steps after
warm-up (ThroughputCallback), peak GiB is torch's max allocated, MFU is against 989 TFLOP/s.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from harness import ROOT, emit, parser

SEED_RECIPE = ROOT / "recipes" / "seed-llama2-7b-qlora.yaml"

# name -> overrides on top of the seed recipe (one lever at a time, then combinations)
VARIANTS = {
    "seed": {},
    "seed-eager": {"attn_implementation": "eager"},
    "liger": {"trainer": {"use_liger_kernel": True}},
    "batch6": {"trainer": {"per_device_train_batch_size": 6}},
    "liger-batch6": {"trainer": {"use_liger_kernel": True, "per_device_train_batch_size": 6}},
    "liger-bf16-8": {"trainer": {"use_liger_kernel": True}, "quant_skip_layers": 8},
    "liger-bf16-12": {"trainer": {"use_liger_kernel": True}, "quant_skip_layers": 12},
    "liger-flex": {"attn_implementation": "flex_attention", "trainer": {"use_liger_kernel": True}},
    "liger-flex-nodrop": {
        "attn_implementation": "flex_attention",
        "trainer": {"use_liger_kernel": True},
        "lora": {"dropout": 0.0},
    },
    "liger-flex-bf16-6": {
        "attn_implementation": "flex_attention",
        "trainer": {"use_liger_kernel": True},
        "lora": {"dropout": 0.0},
        "quant_skip_layers": 6,
    },
    "fast": "recipe:llama2-7b-qlora-fast.yaml",
    "fp8": "recipe:llama2-7b-qlora-fp8.yaml",
    "bf16-lora": {"load_in_4bit": False},
    # (recipe, overrides): levers on top of the fast recipe
    "fast-compile": ("llama2-7b-qlora-fast.yaml", {"trainer": {"torch_compile": True}}),
    "fast-nockpt": ("llama2-7b-qlora-fast.yaml", {"gradient_checkpointing": False}),
    "fast-fp8": ("llama2-7b-qlora-fast.yaml", {"fp8": True}),
    "fast-again": ("llama2-7b-qlora-fast.yaml", {}),  # a second run of the fast recipe (e.g. under --profile)
    "fast-batch6": ("llama2-7b-qlora-fast.yaml", {"trainer": {"per_device_train_batch_size": 6}}),
    "fast-batch6-offload": (
        "llama2-7b-qlora-fast.yaml",
        {"trainer": {"per_device_train_batch_size": 6, "activation_offloading": True}},
    ),
    "fast-fp8-batch6-offload": (
        "llama2-7b-qlora-fast.yaml",
        {"fp8": True, "trainer": {"per_device_train_batch_size": 6, "activation_offloading": True}},
    ),
    "fast-fp8-batch6": ("llama2-7b-qlora-fast.yaml", {"fp8": True, "trainer": {"per_device_train_batch_size": 6}}),
}


def make_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from revgen.dolly import load_pairs

    texts = [r[k] for r in load_pairs() for k in ("instruction", "response", "context")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=32000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=4096)  # fmt: skip
    fast.save_pretrained(out)


def make_model(out: Path, layers: int, tiny: bool = False) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dims = dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=4, intermediate_size=256) if tiny else \
        dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, intermediate_size=11008)  # fmt: skip
    cfg = LlamaConfig(num_hidden_layers=layers, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                      bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False, **dims)  # fmt: skip
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    del model


def build(workdir: Path, layers: int, rows: int, tiny: bool = False) -> tuple[Path, Path]:
    import jsonlines

    from revgen.dolly import load_pairs

    model_dir = workdir / f"llama2-7b-shaped-{layers}l{'-tiny' if tiny else ''}"
    data = workdir / "dolly-repeated.jsonl"
    if not (model_dir / "config.json").exists():
        make_model(model_dir, layers, tiny)
        make_tokenizer(model_dir)
    sample = load_pairs()
    with jsonlines.open(data, "w") as w:
        w.write_all(sample[i % len(sample)] for i in range(rows))
    return model_dir, data


def profiled(first: int = 4, last: int = 6):
    """While open, trainer steps first..last run under torch.profiler; prints their wall time and where CPU and
    GPU time went (summed kernel times double-count nested events, so no busy share is derived from them)."""
    import contextlib
    import time

    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile

    original, state = transformers.Trainer.training_step, {"n": 0}

    def step(self, *a, **k):
        state["n"] += 1
        if state["n"] == first:
            torch.cuda.synchronize()
            state["prof"] = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            state["prof"].__enter__()
            state["t"] = time.perf_counter()
        out = original(self, *a, **k)
        if state["n"] == last:
            torch.cuda.synchronize()
            wall = time.perf_counter() - state["t"]
            state["prof"].__exit__(None, None, None)
            events = state["prof"].key_averages()
            print(f"PROFILE steps {first}-{last}: wall {wall:.3f} s", file=sys.stderr)
            print(events.table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
        return out

    @contextlib.contextmanager
    def ctx():
        transformers.Trainer.training_step = step
        try:
            yield
        finally:
            transformers.Trainer.training_step = original

    return ctx()


def run_variant(name: str, model_dir: Path, data: Path, workdir: Path, steps: int, profile: bool = False) -> dict:
    import torch

    from revgen import config as cfgmod
    from revgen.train.trainer import TrainConfig, train

    spec = VARIANTS[name]
    if isinstance(spec, str):
        spec = (spec.split(":", 1)[1], {})
    recipe = ROOT / "recipes" / spec[0] if isinstance(spec, tuple) else SEED_RECIPE
    overrides = json.loads(json.dumps(spec[1] if isinstance(spec, tuple) else spec))
    overrides.update(model=str(model_dir), data=str(data), output_dir=str(workdir / f"run-{name}"))
    overrides["trainer"] = {**overrides.get("trainer", {}), "max_steps": steps, "logging_steps": 1}
    cfg = cfgmod.load(TrainConfig, "train", recipe, overrides)
    try:
        if profile:
            with profiled():
                info = train(cfg)
        else:
            info = train(cfg)
        res = {"variant": name, **info["throughput"], "train_loss": round(info["train_loss"], 3),
               "trainable": info["parameters"]["trainable"], "plan": info["plan"]}  # fmt: skip
    except Exception as exc:  # one failing lever must not lose the others' numbers
        res = {"variant": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return res


def main():
    ap = parser(__doc__)
    ap.add_argument("--workdir", default="/tmp/rg7b")
    ap.add_argument("--variants", default="seed,liger,batch6,liger-batch6,fast,bf16-lora")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--profile", default="", help="variants to profile (steps 4-6): where CPU and GPU time went")
    ap.add_argument("--out", default=None, help="append each result as a JSON line here")
    ap.add_argument("--tiny", action="store_true", help="small dimensions: a CPU smoke test of the code path")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, data = build(workdir, args.layers, args.rows, args.tiny)
    results = []
    for name in args.variants.split(","):
        res = run_variant(name, model_dir, data, workdir, args.steps, name in args.profile.split(","))
        results.append(res)
        emit(res)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")
    base = next((r for r in results if r["variant"] == "seed" and "tokens_per_s_median" in r), None)
    print(f"{'variant':<16}{'tok/s':>10}{'peak GiB':>10}{'MFU':>8}{'x seed':>8}{'mem x':>8}", file=sys.stderr)
    for r in results:
        if "tokens_per_s_median" not in r:
            print(f"{r['variant']:<16} {r.get('error', 'no timing')[:120]}", file=sys.stderr)
            continue
        x = r["tokens_per_s_median"] / base["tokens_per_s_median"] if base else float("nan")
        m = r.get("peak_gib", 0) / base["peak_gib"] if base and base.get("peak_gib") else float("nan")
        print(f"{r['variant']:<16}{r['tokens_per_s_median']:>10.0f}{r.get('peak_gib', 0):>10.2f}"
              f"{r.get('mfu', 0):>8.3f}{x:>8.2f}{m:>8.2f}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
