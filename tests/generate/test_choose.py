"""`backend: auto` picks what finishes first: vLLM for corpora, transformers for a job too small to
pay vLLM's start-up; the choice and its reason are recorded."""

import importlib.util

import pytest

from revgen.errors import UserError
from revgen.generate.choose import SMALL_JOB_TOKENS, choose_backend


def test_auto_weighs_start_up_against_the_jobs_size():
    has_vllm = importlib.util.find_spec("vllm") is not None
    assert choose_backend("auto", SMALL_JOB_TOKENS)[0] == "transformers"
    assert choose_backend("auto", None)[0] == ("vllm" if has_vllm else "transformers")
    assert choose_backend("auto", SMALL_JOB_TOKENS + 1)[0] == ("vllm" if has_vllm else "transformers")
    assert choose_backend("transformers", 10**9) == ("transformers", "set explicitly")
    with pytest.raises(UserError, match="backend must be one of"):
        choose_backend("tgi")


@pytest.mark.slow
def test_a_small_synthesize_job_records_its_backend_and_compute_dtype(trained_adapter, dolly_rows, tmp_path):
    from revgen import dtypes
    from revgen.synthesize import SynthConfig, synthesize
    from tests.helpers import write_jsonl

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:304]])
    info = synthesize(SynthConfig(corpus=str(corpus), adapter=str(trained_adapter[0]), output_dir=str(tmp_path / "s"),
                                  max_docs=4, max_new_tokens=16, min_words=5, temperature=0.0))  # fmt: skip
    assert info["backend"] == "transformers" and "small job" in info["backend_why"]
    cpu = dtypes.cpu_info()
    assert info["compute"]["dtype"] == ("bfloat16" if cpu["native_bf16"] else "float32")
    assert info["compute"]["isa"] == cpu["isa"] and info["environment"]["cpu_native_bf16"] == cpu["native_bf16"]
