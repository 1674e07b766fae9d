"""Synthesis through an OpenAI-compatible server vs vLLM in-process: same prompts, same machine, same run.

    python bench/server_throughput.py --adapter runs/demo/backward --docs 64      # 2-core CPU, vLLM CPU build

A `vllm serve` (CPU build) on the merged adapter, loopback; then `revgen synthesize` on the same
corpus (greedy, same max new tokens, fp32 and no prefix cache on both sides): the in-process vLLM
backend; the openai backend against the server (after one warm-up pass); and the openai backend
through a fault proxy (a 429 with Retry-After, a 500, a dropped connection, a 2 s delay) to price
the retries. Then the log-prob rubric judge over the same passages: through the server's chat
endpoint vs the transformers judge in process. Reports whole-command wall time,
records/s, generated tokens/s inside the generator, and whether the records match.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from harness import ROOT, markdown_table, parser, timed, write_json


def run(corpus: Path, adapter: str, out: Path, args, **kw) -> dict:
    from revgen import shards
    from revgen.synthesize import SynthConfig, synthesize

    with timed() as t:
        info = synthesize(SynthConfig(corpus=str(corpus), adapter=adapter, output_dir=str(out), temperature=0.0,
                                      max_new_tokens=args.max_new_tokens, min_words=1, batch_size=args.docs,
                                      shard_size=args.docs, threads=args.threads, **kw))  # fmt: skip
    recs = {r["id"]: r["instruction"] for r in shards.iter_records(out)}
    tokens = info.get("generated_tokens_this_run") or 0
    return {"wall_s": round(t.s, 1), "records": len(recs), "records_per_s": round(len(recs) / t.s, 2),
            "generate_s": info.get("generate_s"), "generate_tokens_per_s": info.get("generate_tokens_per_s"),
            "tokens": tokens, "_recs": recs}  # fmt: skip


def judge_rates(url: str, merged: str, corpus: Path, args) -> dict:
    """The log-prob rubric over the same passages (paired with a fixed instruction): through the
    server's chat endpoint vs the transformers judge in this process, records/s."""
    from revgen.curate import scorers
    from revgen.curate.rubric import ServerRubric

    recs = [{"instruction": "Explain this in your own words.", "output": json.loads(x)["text"]}
            for x in corpus.read_text().splitlines()]  # fmt: skip
    server = ServerRubric("revgen-bench", url, concurrency=args.concurrency)
    with timed() as t_server:
        remote = server.score(recs)
    model, tok, _ = scorers.load_model(merged, "float32")
    with timed() as t_local:
        local = scorers.Rubric(model, tok).score(recs)
    diff = [abs(a["rubric"] - b["rubric"]) for a, b in zip(local, remote) if b["rubric"] is not None]
    return {"records": len(recs), "server_records_per_s": round(len(recs) / t_server.s, 2),
            "in_process_records_per_s": round(len(recs) / t_local.s, 2), "server_parse_rate": server.parse_rate,
            "mean_abs_score_difference": round(sum(diff) / max(len(diff), 1), 3)}  # fmt: skip


def main():
    ap = parser(__doc__, threads=True, output="runs/server_throughput.json")
    ap.add_argument("--adapter", default=str(ROOT / "runs" / "demo" / "backward"))
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    from revgen.dolly import load_pairs
    from revgen.models import adapter_base_model, merged_dir
    from tests.servers import FaultProxy, VLLMServer

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="revgen-server-bench-"))
    rows = [r for r in load_pairs() if not r["context"].strip()][: args.docs]
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": r["response"]}) + "\n" for i, r in enumerate(rows)))
    merged = str(merged_dir(Path(args.adapter), adapter_base_model(Path(args.adapter))))
    res = {"docs": len(rows), "max_new_tokens": args.max_new_tokens, "concurrency": args.concurrency}
    # Same engine settings both ways: fp32, no prefix cache (reruns of the same prompts would hit it).
    res["in_process_vllm"] = run(corpus, args.adapter, tmp / "local", args, backend="vllm", id_field="id",
                                 dtype="float32", engine={"enable_prefix_caching": False})  # fmt: skip
    started = time.perf_counter()
    with VLLMServer(merged, "revgen-bench", tmp, extra_args=("--no-enable-prefix-caching",)) as url:
        res["server_start_s"] = round(time.perf_counter() - started, 1)
        served = {
            "backend": "openai",
            "served_model": "revgen-bench",
            "concurrency": args.concurrency,
            "id_field": "id",
        }
        run(corpus, args.adapter, tmp / "warmup", args, base_url=url, **served)  # the server's first requests warm it
        res["server"] = run(corpus, args.adapter, tmp / "server", args, base_url=url, **served)
        proxy = FaultProxy(url)
        try:
            res["server_with_faults"] = run(corpus, args.adapter, tmp / "faults", args, base_url=proxy.url, **served)
        finally:
            proxy.close()
        res["faults_seen"] = proxy.seen[:4]
        res["rubric_judge"] = judge_rates(url, merged, corpus, args)
    local = res["in_process_vllm"].pop("_recs")
    for name in ("server", "server_with_faults"):
        recs = res[name].pop("_recs")
        res[name]["same_records_as_in_process"] = round(
            sum(local.get(k) == v for k, v in recs.items()) / max(len(local), 1), 3
        )
    write_json(args.output, res)
    keys = ("wall_s", "records_per_s", "generate_s", "generate_tokens_per_s", "same_records_as_in_process")
    print(markdown_table(["path", *keys], [[n, *(res[n].get(k, "-") for k in keys)]
                                           for n in ("in_process_vllm", "server", "server_with_faults")]))  # fmt: skip
    print(f"\nserver start {res['server_start_s']} s (not in the server rows); faults {res['faults_seen']}")
    print(f"rubric judge: {res['rubric_judge']}")


if __name__ == "__main__":
    main()
