"""GPU generation tokens/s: seed-style inference vs revgen's transformers backend, same prompts.

    python bench/generate_throughput.py --workdir /tmp/rg7b --variants seed,plain-bf16,revgen,revgen-static

Llama-2-7B-shaped random-weight model (built by bench/train_throughput.py's helpers) plus a
random LoRA adapter (r=16, q/v). Prompts: fixed 256 random token ids; 128 new tokens, EOS
ignored, so every variant generates the same number of tokens.
- seed: 4-bit nf4 base + unmerged adapter (PeftModel), HF generate, batch --seed-batch
- plain-bf16: merged bf16 model, plain HF generate, batch 128
- revgen*: revgen's HFGenerator on the merged bf16 model (length-bucketed batches of --batch)
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

from harness import emit, parser

PROMPT, NEW = 256, 128


def _dev():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _reset_peak():
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def make_adapter(model_dir: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": _dev()})
    model = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    model.save_pretrained(out)
    del model, base


def timed(fn, n_tokens):
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    dt = time.perf_counter() - t
    return {"tokens": n_tokens, "seconds": round(dt, 2), "tokens_per_s": round(n_tokens / dt, 1), "peak_gib": _peak()}


def hf_loop(model, prompts, batch, **kw):
    import torch

    def go():
        for i in range(0, len(prompts), batch):
            ids = torch.tensor(prompts[i : i + batch], device=_dev())
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                               min_new_tokens=NEW, do_sample=False, pad_token_id=3, **kw)  # fmt: skip

    return go


def padded_loop(model, prompts, batch, **kw):
    """Seed-style inference on prompts of real lengths: corpus order, batches of ``batch``, left padding."""
    import torch

    def go():
        for i in range(0, len(prompts), batch):
            chunk = prompts[i : i + batch]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), 3, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, p in enumerate(chunk):
                ids[r, width - len(p) :], mask[r, width - len(p) :] = torch.tensor(p), 1
            with torch.inference_mode():
                model.generate(input_ids=ids.to(_dev()), attention_mask=mask.to(_dev()), max_new_tokens=NEW,
                               min_new_tokens=NEW, do_sample=False, pad_token_id=3, **kw)  # fmt: skip

    return go


def variant(name, model_dir, adapter, merged, prompts, args):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _reset_peak()
    if name == "seed":
        from peft import PeftModel

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)  # fmt: skip
        base = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, device_map={"": _dev()})
        model = PeftModel.from_pretrained(base, str(adapter)).eval()
        ps = prompts[: args.seed_prompts]
        loop = padded_loop if args.real_lengths else hf_loop
        loop(model, ps[: args.seed_batch], args.seed_batch)()  # warm-up
        _reset_peak()
        return timed(loop(model, ps, args.seed_batch), len(ps) * NEW) | {"batch": args.seed_batch}
    if name == "plain-bf16":
        model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.bfloat16, device_map={"": _dev()}).eval()
        hf_loop(model, prompts[:8], 8)()
        return timed(hf_loop(model, prompts, 128), len(prompts) * NEW) | {"batch": 128}
    from revgen.generate import Sampling, get_generator

    static = {"generate_kwargs": {"cache_implementation": "static"}}
    eager = {"generate_kwargs": {"cache_implementation": "static", "disable_compile": True}}  # no graph compile
    opts = {"revgen": {}, "revgen-static": static, "revgen-sdpa": {"attn_implementation": "sdpa"},
            "revgen-static-sdpa": {**static, "attn_implementation": "sdpa"}, "revgen-static-eager": eager,
            "revgen-static-eager-sdpa": {**eager, "attn_implementation": "sdpa"},
            "revgen-graphs": {"decode": "graphs"}}[name.removesuffix("-oneshot")]  # fmt: skip
    if args.max_memory_gib:
        opts = {**opts, "max_memory_gib": args.max_memory_gib}
    gen = get_generator("transformers", str(merged), None, dtype="bfloat16", batch_size=args.batch, options=opts).load()
    sampling = Sampling(temperature=0.0, max_new_tokens=NEW, ignore_eos=True)
    if not name.endswith("-oneshot"):  # -oneshot: compilation inside the timed pass, as a real one-shot run pays it
        gen.generate(prompts[: args.batch], sampling, [0] * args.batch)  # warm-up (and compile, if any)
    if args.calls > 1:  # shards: the same generator called once per shard, each call timed on its own
        size = len(prompts) // args.calls
        calls = []
        for c in range(args.calls):
            budget = gen.token_budget()  # what the planner sees before this call
            _reset_peak()
            part = prompts[c * size : (c + 1) * size]
            calls.append(timed(lambda: gen.generate(part, sampling, [0] * len(part)), len(part) * NEW)
                         | {"budget_tokens": budget})  # fmt: skip
        total_s = sum(x["seconds"] for x in calls)
        return {"calls": calls, "tokens_per_s": round(args.calls * size * NEW / total_s, 1), "batch": args.batch,
                "last_over_first": round(calls[-1]["tokens_per_s"] / calls[0]["tokens_per_s"], 3)}  # fmt: skip
    _reset_peak()
    res = timed(
        lambda: OUTPUTS.__setitem__(name, gen.generate(prompts, sampling, [0] * len(prompts))), len(prompts) * NEW
    )
    return res | {"batch": args.batch, "budget_tokens": gen.token_budget()}


OUTPUTS: dict = {}  # single-call revgen variants' completions: how many the graphs loop reproduces


def agreement() -> dict:
    graphs = [n for n in OUTPUTS if n.startswith("revgen-graphs")]
    others = [n for n in OUTPUTS if n not in graphs]
    if not graphs or not others:
        return {}
    a, b = OUTPUTS[graphs[0]], OUTPUTS[others[0]]
    same = sum(x[0].text == y[0].text for x, y in zip(a, b))
    return {"agreement": {"variants": [graphs[0], others[0]], "same_completion": round(same / len(a), 4), "of": len(a)}}


def main():
    import torch
    from train_throughput import build

    ap = parser(__doc__)
    ap.add_argument("--workdir", default="/tmp/rg7b")
    ap.add_argument("--variants", default="seed,plain-bf16,revgen,revgen-static")
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed-batch", type=int, default=16)
    ap.add_argument("--seed-prompts", type=int, default=64)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="small dimensions: a smoke test of the code path")
    ap.add_argument(
        "--real-lengths",
        action="store_true",
        help="prompt lengths of real text (bench/real_lengths.json: median 136, p90 350, max 1536) instead of 256",
    )
    ap.add_argument("--max-memory-gib", type=float, help="cap this process's GPU memory (e.g. 24: a 24 GB card)")
    ap.add_argument(
        "--calls", type=int, default=1, help="split the prompts into this many shards, one generate call each"
    )
    args = ap.parse_args()
    if args.max_memory_gib and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(
            args.max_memory_gib * 2**30 / torch.cuda.get_device_properties(0).total_memory
        )
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, _ = build(workdir, args.layers, rows=10, tiny=args.tiny)
    adapter, merged = workdir / f"random-adapter-{model_dir.name}", workdir / f"merged-bf16-{model_dir.name}"
    if not (adapter / "adapter_config.json").exists():
        make_adapter(model_dir, adapter)
    if not (merged / "config.json").exists():
        from revgen.train.trainer import merge_adapter

        merge_adapter(adapter, str(model_dir), merged)
    g = torch.Generator().manual_seed(0)
    if args.real_lengths:
        lengths = json.loads((Path(__file__).parent / "real_lengths.json").read_text())["lengths"]
        lengths = [lengths[i % len(lengths)] for i in range(args.prompts)]
        prompts = [torch.randint(10, 32000, (n,), generator=g).tolist() for n in lengths]
    else:
        prompts = torch.randint(10, 32000, (args.prompts, PROMPT), generator=g).tolist()
    results = {}
    for name in args.variants.split(","):
        try:
            results[name] = variant(name, model_dir, adapter, merged, prompts, args)
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        emit({name: results[name]})
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if agreement():
        emit(agreement())
    seed = results.get("seed", {}).get("tokens_per_s")
    for name, r in results.items():
        x = f"{r['tokens_per_s'] / seed:.1f}x seed" if seed and "tokens_per_s" in r else ""
        print(f"{name:<16}{r.get('tokens_per_s', r.get('error'))!s:>12} tok/s  batch {r.get('batch')}  "
              f"peak {r.get('peak_gib')} GiB  {x}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
