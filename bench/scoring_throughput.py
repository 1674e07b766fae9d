"""Fit-score throughput when candidates share a passage: revgen's two-pass scorer vs one pass per row.

    python bench/scoring_throughput.py --shape llama2-7b --passages 256     # one GPU, random weights, bf16
    python bench/scoring_throughput.py --shape small --passages 32          # any machine, a quick check

The workload of pmi curation after ``synthesize --openers 3``: per passage 4 candidate instructions,
each scored as log p(instruction | passage) (the conditioned half of pmi, which dominates its cost).
``one-pass`` is the scorer revgen had before (prompt + completion in one teacher-forced pass, logits
at every position); ``two-pass`` is ``revgen.lm.Scorer`` (each distinct prompt once, completions on
its KV cache). Random weights of the named shape: the sums are compared, not their values.
"""

from __future__ import annotations

import statistics
import time

from harness import markdown_table, parser, write_json

SHAPES = {"llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                            num_attention_heads=32, num_key_value_heads=32),
          "small": dict(vocab_size=4000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=4)}  # fmt: skip


def one_pass(model, tokenizer, batch_size: int, prompts: list[str], completions: list[str]) -> list[float]:
    """revgen's scorer before 2026-12-01: each row one right-padded pass, logits at every position."""
    import torch

    from revgen.prompts import teacher_forced_ids

    seqs = [teacher_forced_ids(tokenizer, p, c) for p, c in zip(prompts, completions)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    out = [0.0] * len(seqs)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(seqs[i][0]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
        for row, i in enumerate(idx):
            s, n = seqs[i]
            ids[row, : len(s)], mask[row, : len(s)], labels[row, n : len(s)] = torch.tensor(s), 1, torch.tensor(s[n:])
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            target = labels[:, 1:].to(model.device)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none"
            )
            for row, v in zip(idx, (nll * (target != -100)).sum(1).tolist()):
                out[row] = v
    return out


def main():
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from revgen.lm import Scorer

    ap = parser(__doc__, output="runs/scoring-throughput.json")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--passages", type=int, default=32)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--passage-words", type=int, default=320, help="mean passage length (words = tokens here)")
    ap.add_argument("--instruction-words", type=int, default=20)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    cfg = SHAPES[args.shape]
    vocab = {f"w{i}": i for i in range(cfg["vocab_size"] - 2)} | {
        "<unk>": cfg["vocab_size"] - 2,
        "</s>": cfg["vocab_size"] - 1,
    }
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    rng = torch.Generator().manual_seed(0)

    def words(mean: int) -> str:
        n = int(torch.randint(mean // 2, mean * 3 // 2 + 1, (1,), generator=rng))
        return " ".join(f"w{int(i)}" for i in torch.randint(0, cfg["vocab_size"] - 2, (n,), generator=rng))

    prompts, completions = [], []
    for _ in range(args.passages):
        passage = "Response: " + words(args.passage_words) + " Instruction:"
        for _ in range(args.candidates):
            prompts.append(passage)
            completions.append(words(args.instruction_words))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**cfg, max_position_embeddings=1024)).to(dtype).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    res = {"shape": args.shape, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
           "dtype": str(dtype), "rows": len(prompts), "passages": args.passages, "candidates": args.candidates, "runs": []}  # fmt: skip
    for batch in args.batch:
        for name, run in (("one-pass", lambda b: one_pass(model, tok, b, prompts, completions)),
                          ("two-pass", lambda b: [s for s, _ in Scorer(model, tok, b).nll(prompts, completions)])):  # fmt: skip
            run(batch)  # warm-up
            times, sums = [], None
            for _ in range(args.repeats):
                sync()
                t = time.perf_counter()
                sums = run(batch)
                sync()
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            res["runs"].append({"scorer": name, "batch": batch, "median_s": round(med, 3), "records_per_s": round(len(prompts) / med, 1),
                                "sums": sums, "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None})  # fmt: skip
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
    by = {(r["scorer"], r["batch"]): r for r in res["runs"]}
    for batch in args.batch:
        a, b = by[("one-pass", batch)]["sums"], by[("two-pass", batch)]["sums"]
        by[("two-pass", batch)]["max_rel_diff"] = round(max(abs(x - y) / max(abs(x), 1.0) for x, y in zip(a, b)), 6)
        by[("two-pass", batch)]["speedup"] = round(
            by[("one-pass", batch)]["median_s"] / by[("two-pass", batch)]["median_s"], 2
        )
    for r in res["runs"]:
        r.pop("sums")
    write_json(args.output, res)
    cols = ["scorer", "batch", "median_s", "records_per_s", "peak_gib", "speedup", "max_rel_diff"]
    print(markdown_table(cols, [[r.get(c, "") for c in cols] for r in res["runs"]]))


if __name__ == "__main__":
    main()
