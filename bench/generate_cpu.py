"""Generated tokens/s on CPU: revgen's backends vs plain scripts, same prompts, one run.

    python bench/generate_cpu.py                  # all variants, 2 interleaved repeats, medians
    python bench/generate_cpu.py --dtypes float32,bfloat16 --variants revgen-vllm,revgen-hf
    python bench/generate_cpu.py --emulate-avx2   # torch, oneDNN and vLLM kept to their AVX2 kernels
    python bench/generate_cpu.py --variant revgen-hf --json   # one measurement (used internally)

64 prompts of ~300 tokens (the seed template around Dolly responses), 64 new tokens each
(EOS ignored, so every variant generates the same number of tokens), SmolLM2-135M, in the dtype
revgen picks here (``auto``) unless ``--dtypes`` names others; plain scripts use the same dtype.
Every measurement runs in a fresh subprocess: vLLM binds threads in its calling process. ``load_s``
is the engine start (model load, vLLM's profile run), outside the tokens/s.

``--emulate-avx2`` runs each measurement as an AVX2-only CPU would (bench/avx2/sitecustomize.py:
torch, oneDNN and MKL on AVX2, vLLM's AVX2 kernel library). The clocks and caches stay this
machine's, so it shows the code paths and the dtype's cost, not a real AVX2 machine's speed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import parser

N_PROMPTS, PROMPT_TOKENS, NEW_TOKENS = 64, 300, 64
VARIANTS = ("plain-hf", "revgen-hf", "plain-vllm", "revgen-vllm")


def prompts(tokenizer) -> list[list[int]]:
    from revgen.dolly import load_pairs
    from revgen.prompts import encode_prompt, get_template

    template, rows, out = get_template("seed"), load_pairs(), []
    i = 0
    while len(out) < N_PROMPTS:
        text = ""
        while len(encode_prompt(tokenizer, template.prompt(text))) < PROMPT_TOKENS:
            text += rows[i % len(rows)]["response"] + "\n\n"
            i += 1
        ids = encode_prompt(tokenizer, template.prompt(text.strip()))
        out.append(ids[-PROMPT_TOKENS:] if len(ids) > PROMPT_TOKENS + 40 else ids)
    return out


def plain_hf(model_dir, ps, dtype):
    """The obvious script: batch 16 in corpus order, left padding, torch's default threads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    texts = [tok.decode(p) for p in ps]
    t = time.perf_counter()
    n = 0
    for i in range(0, len(texts), 16):
        enc = tok(texts[i : i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        n += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return n, time.perf_counter() - t


def plain_vllm(model_dir, ps, dtype):
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model_dir, dtype=dtype, max_model_len=1024, enforce_eager=True)
    sp = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)
    llm.generate([TokensPrompt(prompt_token_ids=ps[0])], sp, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ps], sp, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t


def revgen_backend(backend, model_dir, ps, micro_batch, dtype):
    from revgen.generate import Sampling, get_generator

    gen = get_generator(backend, model_dir, None, dtype=dtype, max_model_len=1024, batch_size=micro_batch).load()
    sampling = Sampling(temperature=0.0, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    if backend == "vllm":
        gen.generate(ps[:1], sampling, [0])  # same warm-up as the plain script
    t = time.perf_counter()
    res = gen.generate(ps, sampling, list(range(len(ps))))
    dt = time.perf_counter() - t
    gen.close()
    return sum(c.n_tokens for cands in res for c in cands), dt


AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "PYTHONPATH": str(Path(__file__).resolve().parent / "avx2"),
}


def measure(variant: str, micro_batch: int, dtype: str) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from revgen import dtypes
    from revgen.models import default_model_path, load_tokenizer
    from revgen.runinfo import set_threads

    dtype = dtypes.resolve(dtype)
    model_dir = str(default_model_path())
    ps = prompts(load_tokenizer(model_dir))
    t0 = time.perf_counter()
    if variant == "revgen-hf":
        set_threads(int(os.environ.get("REVGEN_THREADS", os.cpu_count() or 1)))
        n, dt = revgen_backend("transformers", model_dir, ps, micro_batch, dtype)
    elif variant == "revgen-vllm":
        n, dt = revgen_backend("vllm", model_dir, ps, micro_batch, dtype)
    elif variant == "plain-hf":
        n, dt = plain_hf(model_dir, ps, dtype)
    else:
        n, dt = plain_vllm(model_dir, ps, dtype)
    total = time.perf_counter() - t0
    return {
        "variant": variant,
        "dtype": dtype,
        "cpu": dtypes.cpu_info(),
        "tokens": n,
        "seconds": round(dt, 2),
        "tokens_per_s": round(n / dt, 1),
        "load_s": round(total - dt, 1),
        "prompt_tokens_mean": round(sum(map(len, ps)) / len(ps), 1),
    }


def main():
    ap = parser(__doc__)
    ap.add_argument("--variant", choices=VARIANTS)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=64)
    ap.add_argument("--dtype", default="auto", help="one measurement's dtype (internal)")
    ap.add_argument("--dtypes", default="auto", help="comma list: auto (revgen's choice here), float32, bfloat16")
    ap.add_argument("--emulate-avx2", action="store_true", help="run as an AVX2-only CPU would (see above)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.micro_batch, args.dtype)), flush=True)
        return
    env = {**os.environ, **(AVX2_ENV if args.emulate_avx2 else {})}
    keys = [(v, d) for d in args.dtypes.split(",") for v in args.variants.split(",")]
    results: dict = {f"{v}/{d}": [] for v, d in keys}
    loads: dict = {k: [] for k in results}
    cpu = None
    for r in range(args.repeats):
        for v, d in keys:
            cmd = [sys.executable, __file__, "--variant", v, "--micro-batch", str(args.micro_batch), "--dtype", d]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
            if res.returncode or not line:
                sys.exit(f"{v} {d} failed:\n{res.stderr[-3000:]}")
            got = json.loads(line[-1])
            cpu = got["cpu"]
            results[f"{v}/{d}"].append(got["tokens_per_s"])
            loads[f"{v}/{d}"].append(got["load_s"])
            print(f"repeat {r} {v} {got['dtype']}: {got['tokens_per_s']} tokens/s (load {got['load_s']} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    med = {k: statistics.median(x) for k, x in results.items()}
    table = {"cpu": cpu, "emulated_avx2": args.emulate_avx2, "medians_tokens_per_s": med,
             "medians_load_s": {k: statistics.median(x) for k, x in loads.items()}, "runs": results}  # fmt: skip
    for d in args.dtypes.split(","):
        for name in ("hf", "vllm"):
            a, b = med.get(f"revgen-{name}/{d}"), med.get(f"plain-{name}/{d}")
            if a and b:
                table[f"revgen_{name}_over_plain_{name}/{d}"] = round(a / b, 2)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
