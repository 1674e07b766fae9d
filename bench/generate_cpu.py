"""Generated tokens/s on CPU: revgen's backends vs plain scripts, same prompts, one run.

    python bench/generate_cpu.py                  # all variants, 2 interleaved repeats, medians
    python bench/generate_cpu.py --variant revgen-hf --json   # one measurement (used internally)

64 prompts of ~300 tokens (the seed template around Dolly responses), 64 new tokens each
(EOS ignored, so every variant generates the same number of tokens), bf16, SmolLM2-135M.
Every measurement runs in a fresh subprocess: vLLM binds threads in its calling process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

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


def plain_hf(model_dir, ps):
    """The obvious script: batch 16 in corpus order, left padding, bf16, torch's default threads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    texts = [tok.decode(p) for p in ps]
    t = time.perf_counter()
    n = 0
    for i in range(0, len(texts), 16):
        enc = tok(texts[i : i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        n += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return n, time.perf_counter() - t


def plain_vllm(model_dir, ps):
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model_dir, dtype="bfloat16", max_model_len=1024, enforce_eager=True)
    sp = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)
    llm.generate([TokensPrompt(prompt_token_ids=ps[0])], sp, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ps], sp, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t


def revgen_backend(backend, model_dir, ps, micro_batch):
    from revgen.generate import Sampling, get_generator

    gen = get_generator(backend, model_dir, None, dtype="bfloat16", max_model_len=1024, batch_size=micro_batch).load()
    sampling = Sampling(temperature=0.0, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    if backend == "vllm":
        gen.generate(ps[:1], sampling, [0])  # same warm-up as the plain script
    t = time.perf_counter()
    res = gen.generate(ps, sampling, list(range(len(ps))))
    dt = time.perf_counter() - t
    gen.close()
    return sum(c.n_tokens for cands in res for c in cands), dt


def measure(variant: str, micro_batch: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from revgen.models import default_model_path, load_tokenizer
    from revgen.runinfo import set_threads

    model_dir = str(default_model_path())
    ps = prompts(load_tokenizer(model_dir))
    if variant == "revgen-hf":
        set_threads(int(os.environ.get("REVGEN_THREADS", os.cpu_count() or 1)))
        n, dt = revgen_backend("transformers", model_dir, ps, micro_batch)
    elif variant == "revgen-vllm":
        n, dt = revgen_backend("vllm", model_dir, ps, micro_batch)
    elif variant == "plain-hf":
        n, dt = plain_hf(model_dir, ps)
    else:
        n, dt = plain_vllm(model_dir, ps)
    return {"variant": variant, "tokens": n, "seconds": round(dt, 2), "tokens_per_s": round(n / dt, 1),
            "prompt_tokens_mean": round(sum(map(len, ps)) / len(ps), 1)}


def main():
    ap = parser(__doc__)
    ap.add_argument("--variant", choices=VARIANTS)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.micro_batch)), flush=True)
        return
    results = {v: [] for v in args.variants.split(",")}
    for r in range(args.repeats):
        for v in results:
            cmd = [sys.executable, __file__, "--variant", v, "--micro-batch", str(args.micro_batch)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
            if res.returncode or not line:
                sys.exit(f"{v} failed:\n{res.stderr[-3000:]}")
            results[v].append(json.loads(line[-1])["tokens_per_s"])
            print(f"repeat {r} {v}: {results[v][-1]} tokens/s", file=sys.stderr, flush=True)
    med = {v: statistics.median(x) for v, x in results.items()}
    table = {"medians_tokens_per_s": med, "runs": results}
    if "plain-hf" in med and "revgen-hf" in med:
        table["revgen_hf_over_plain_hf"] = round(med["revgen-hf"] / med["plain-hf"], 2)
    if "plain-vllm" in med and "revgen-vllm" in med:
        table["revgen_vllm_over_plain_vllm"] = round(med["revgen-vllm"] / med["plain-vllm"], 2)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
