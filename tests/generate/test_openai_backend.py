"""The OpenAI-compatible backend against a real `vllm serve` (CPU build) on 127.0.0.1, directly and
through a local fault proxy (429 with Retry-After, 500, a dropped connection, a slow reply)."""

import importlib.util
import json
import os

import pytest

from revgen import shards
from revgen.synthesize.run import SynthConfig, synthesize
from tests.helpers import write_jsonl
from tests.servers import FaultProxy, VLLMServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

if importlib.util.find_spec("vllm") is None and not os.environ.get("REVGEN_REQUIRE_VLLM"):
    pytest.skip("vllm is not installed (CI sets REVGEN_REQUIRE_VLLM=1)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(trained_adapter, tmp_path_factory):
    """`vllm serve` on the merged demo adapter, loopback only; stopped at the end, whatever happens."""
    from revgen.models import adapter_base_model, merged_dir

    merged = merged_dir(trained_adapter[0], adapter_base_model(trained_adapter[0]))
    try:
        with VLLMServer(str(merged), "revgen-demo", tmp_path_factory.mktemp("vllm-serve")) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def run(adapter, corpus, out, base_url, **kw):
    return synthesize(SynthConfig(corpus=str(corpus), adapter=str(adapter), output_dir=str(out), backend="openai",
                                  base_url=base_url, served_model="revgen-demo", temperature=0.0, max_new_tokens=24,
                                  batch_size=4, shard_size=4, min_words=8, concurrency=4, **kw))  # fmt: skip


def test_synthesize_through_a_server_matches_in_process_and_survives_faults(server, trained_adapter, dolly_rows,
                                                                           tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-key-123")
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:312]])
    direct = run(trained_adapter[0], corpus, tmp_path / "direct", server.replace("127.0.0.1", "user:pw@127.0.0.1"))
    recs = {r["id"]: r for r in shards.iter_records(tmp_path / "direct")}
    assert direct["counts"]["records"] == len(recs) >= 6
    assert all(r["meta"]["backend"] == "openai" and r["meta"]["served_model"] == "revgen-demo" for r in recs.values())
    saved = (tmp_path / "direct" / "run.json").read_text()
    assert "user:pw" not in saved and "sk-secret" not in saved and json.loads(saved)["server"] == server
    # in-process, the same prompts token for token; the server runs the bf16-merged copy, transformers
    # merges in fp32, so greedy text may part at a near-tie
    local = synthesize(SynthConfig(corpus=str(corpus), adapter=str(trained_adapter[0]), output_dir=str(tmp_path / "local"),
                                   backend="transformers", temperature=0.0, max_new_tokens=24, min_words=8, dtype="float32",
                                   merge=True))  # fmt: skip
    local_recs = {r["id"]: r for r in shards.iter_records(tmp_path / "local")}
    assert local["counts"]["records"] >= 6
    both = recs.keys() & local_recs.keys()
    assert len(both) >= 6 and all(
        recs[k]["meta"]["prompt_tokens"] == local_recs[k]["meta"]["prompt_tokens"] for k in both
    )
    same = sum(recs[k]["instruction"] == local_recs[k]["instruction"] for k in both)
    assert same >= 0.5 * len(both), same
    proxy = FaultProxy(server)
    try:
        faulty = run(trained_adapter[0], corpus, tmp_path / "faulty", proxy.url)
    finally:
        proxy.close()
    assert proxy.seen[:4] == ["429", "500", "drop", "slow"]
    got = [r["id"] for r in shards.iter_records(tmp_path / "faulty")]
    assert len(got) == len(set(got)) and sorted(got) == sorted(recs)  # every record once
    assert faulty["counts"]["records"] == direct["counts"]["records"]


def test_an_unreachable_server_fails_clearly_and_keeps_nothing_half_written(trained_adapter, dolly_rows, tmp_path):
    from revgen.errors import UserError

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["response"]} for r in dolly_rows[300:304]])
    with pytest.raises(UserError, match=r"server http://127.0.0.1:\d+/v1 unreachable after retries"):
        run(trained_adapter[0], corpus, tmp_path / "o", f"http://127.0.0.1:{free_port()}/v1", engine={"max_retries": 1})
    assert not list(shards.iter_records(tmp_path / "o"))


def test_rubric_judge_through_the_server_matches_the_local_judge_and_survives_faults(server, trained_adapter,
                                                                                    dolly_rows, tmp_path):  # fmt: skip
    from revgen.curate import scorers
    from revgen.curate.curation import CurateConfig, ScoreSettings, curate
    from revgen.curate.rubric import ServerRubric
    from revgen.models import adapter_base_model, merged_dir

    recs = [{"id": f"r{i}", "instruction": r["instruction"], "input": "", "output": r["response"]}
            for i, r in enumerate(dolly_rows[:6])]  # fmt: skip
    judge = ServerRubric("revgen-demo", server, concurrency=3)
    remote = judge.probabilities(recs)
    assert judge.prefill is True and judge.parse_rate == 1.0  # vLLM continues the prefilled "Score:"
    too_long = {"instruction": "Summarize this.", "output": "word " * 1500}  # over the server's 1,024 tokens
    scored = judge.score([too_long, recs[0]])
    assert scored[0]["rubric"] is None and scored[1]["rubric"] is not None and judge.too_long == 1
    model, tok, _ = scorers.load_model(str(merged_dir(trained_adapter[0], adapter_base_model(trained_adapter[0]))),
                                       "float32")  # fmt: skip
    local = scorers.Rubric(model, tok).probabilities(recs)
    for a, b in zip(local, remote):  # the same prompt tokens; the server's copy is bf16
        assert sum(b) == pytest.approx(1.0)
        assert sum((i + 1) * x for i, x in enumerate(b)) == pytest.approx(
            sum((i + 1) * x for i, x in enumerate(a)), abs=0.15
        )
    proxy = FaultProxy(server)
    try:
        src = write_jsonl(tmp_path / "recs.jsonl", recs)
        score = ScoreSettings(scorers=["rubric"], rubric_backend="openai", served_model="revgen-demo",
                              base_url=proxy.url, concurrency=2, select={"score": "rubric", "top_k": 4})  # fmt: skip
        curate(CurateConfig(input=str(src), output_dir=str(tmp_path / "cur"), score=score, report=False))
    finally:
        proxy.close()
    assert proxy.seen[:4] == ["429", "500", "drop", "slow"]
    stats = json.loads((tmp_path / "cur" / "stats.json").read_text())
    assert stats["scores"]["rubric_parse_rate"] == 1.0 and stats["scores"]["rubric_backend"] == "openai"
    assert stats["scores"]["models"]["judge"].startswith("revgen-demo at http://127.0.0.1:")
    kept = (tmp_path / "cur" / "dataset.jsonl").read_text().splitlines()
    rejected = [json.loads(x) for x in (tmp_path / "cur" / "rejected.jsonl").read_text().splitlines()]
    assert len(kept) <= 4 and all("rubric" in r["meta"]["scores"] for r in rejected if "scores" in r.get("meta", {}))
