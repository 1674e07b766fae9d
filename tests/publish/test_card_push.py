"""Dataset cards from a real small run, and `revgen push` end to end against a local fake Hub."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from revgen.cli import cli
from revgen.curate.curation import CurateConfig, curate
from revgen.errors import UserError
from revgen.publish import card
from revgen.synthesize.run import SynthConfig, synthesize
from tests.helpers import write_jsonl
from tests.publish.fakehub import FakeHub

pytestmark = pytest.mark.slow
TOKEN = "hf_revgenTestToken0123456789abcdef"


@pytest.fixture(scope="module")
def run_dirs(trained_adapter, dolly_rows, tmp_path_factory):
    """A real synthesize run (SmolLM2 + trained adapter) over a corpus whose card says cc-by-sa-3.0, then curate."""
    root = tmp_path_factory.mktemp("cardrun")
    (root / "corpus").mkdir()
    write_jsonl(root / "corpus" / "docs.jsonl", [{"text": r["response"]} for r in dolly_rows[220:236]])
    (root / "corpus" / "README.md").write_text("---\nlicense: cc-by-sa-3.0\nlanguage:\n- en\n---\n# corpus\n")
    synth = root / "synth"
    synthesize(SynthConfig(corpus=str(root / "corpus" / "docs.jsonl"), adapter=str(trained_adapter[0]),
                           output_dir=str(synth), backend="transformers", temperature=0.0, max_new_tokens=24,
                           batch_size=8, micro_batch_size=8, shard_size=8, min_words=8, openers=0))  # fmt: skip
    curate(CurateConfig(input=str(synth), output_dir=str(root / "dataset")))
    return synth, root / "dataset"


@pytest.fixture
def dataset(run_dirs, tmp_path):
    """A private copy of the curated dir (push writes its README.md)."""
    return Path(shutil.copytree(run_dirs[1], tmp_path / "dataset"))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored login leaks in
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def test_card_carries_the_real_counts_of_the_run(run_dirs):
    synth_dir, ds = run_dirs
    stats = json.loads((ds / "stats.json").read_text())
    synth = json.loads((synth_dir / "run.json").read_text())
    train = json.loads((Path(synth["adapter"]) / "run.json").read_text())
    path = card.write(ds)
    loaded = card_data = None
    from huggingface_hub import DatasetCard

    loaded = DatasetCard.load(path)
    card_data = loaded.data.to_dict()
    assert card_data["license"] == "cc-by-sa-3.0" and card_data["language"] == ["en"]  # from the corpus card
    assert card_data["size_categories"] == ["n<1K"] and "reverse-instruction" in card_data["tags"]
    assert card_data["source_datasets"] == [
        "databricks/databricks-dolly-15k"
    ]  # the adapter trained on the Dolly sample
    text = loaded.text
    for key, value in stats["counts"].items():
        assert f"| {key} | {value} |" in text
    assert f"| records | {synth['counts']['records']} |" in text
    assert synth["adapter_sha256"] in text and train["config_hash"] in text
    assert f"final train loss {round(train['train_loss'], 4)}" in text
    assert '"min_words": 3, "max_words": 150' in text  # the length filter's thresholds
    first = json.loads((ds / "dataset.jsonl").read_text().splitlines()[0])
    assert json.dumps(first["instruction"], ensure_ascii=False)[:60] in text
    assert "inherited from the corpus card" in text
    mix = stats["instruction_mix"]  # the kept instructions' kinds and first words, against the seed's
    assert (
        mix["n"] == stats["counts"]["kept"] and mix["seed_leading_words"] and 0 <= mix["tv_leading_word_vs_seed"] <= 1
    )
    assert f"Of the {mix['n']} kept instructions" in text and "The seed data's first words:" in text


def test_license_is_declared_or_inherited_never_guessed(run_dirs, tmp_path):
    synth_dir, _ = run_dirs
    run = shutil.copytree(synth_dir, tmp_path / "synth")
    info = json.loads((run / "run.json").read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(Path(info["config"]["corpus"]), bare / "docs.jsonl")  # same rows, no card beside them
    info["config"]["corpus"] = str(bare / "docs.jsonl")
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="license is unknown.*--license"):
        card.render(run)
    text = str(card.render(run, license="mit"))
    assert "license: mit" in text and "declared by the user" in text and "**uncurated**" in text
    assert f"\n{info['counts']['records']} instruction/response pairs" in text  # records only, not dropped lines


def test_push_uploads_data_then_card_and_the_token_goes_nowhere_else(dataset, hub, caplog, run_dirs, tmp_path):
    caplog.set_level(logging.DEBUG)
    res = CliRunner().invoke(cli, ["-v", "push", str(dataset), "--repo-id", "me/backtranslated", "--private"])
    assert res.exit_code == 0, res.output
    repo = hub.repos["me/backtranslated"]
    assert repo["private"] is True
    plots = [f"report/{n}.png" for n in ("funnel", "lengths", "mix")]
    assert [sorted(c["files"]) for c in repo["commits"]] == [
        sorted(["data/train.jsonl", "revgen/stats.json", "report.html", *plots]), ["README.md"]]  # fmt: skip
    assert b"![Curation funnel](report/funnel.png)" in repo["files"]["README.md"]
    assert repo["files"]["data/train.jsonl"] == (dataset / "dataset.jsonl").read_bytes()
    assert repo["files"]["README.md"] == (dataset / "README.md").read_bytes()  # no card on the Hub before: ours as is
    assert hub.validated and all(errors == [] for errors, _ in hub.validated)  # the Hub's metadata checks passed
    # every request carried the token in its header, nowhere else
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert not any(TOKEN.encode() in r["body"] or TOKEN in r["path"] for r in hub.requests)
    logs = caplog.text + res.output
    assert "pushed" in logs and TOKEN not in logs
    assert not [p for p in dataset.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    # the run was made with absolute paths: none of this machine's paths is in anything uploaded
    from revgen.models import cache_dir

    machine = [str(run_dirs[0].parent), str(dataset.parent), str(cache_dir()), str(Path.home()) + "/"]
    leaks = {name: m for name, data in repo["files"].items() for m in machine if m.encode() in data}
    assert not leaks and b"SmolLM2-135M-Instruct" in repo["files"]["README.md"]
    # what arrived loads with `datasets` through the card's own `configs` metadata
    from datasets import load_dataset

    mirror = tmp_path / "mirror"
    for name, data in repo["files"].items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    rows = load_dataset(str(mirror), split="train", cache_dir=str(tmp_path / "hf-cache"))  # not an earlier run's cache
    expected = [json.loads(line) for line in (dataset / "dataset.jsonl").read_text().splitlines()]
    assert rows.to_list() == expected


def test_push_merges_into_an_existing_card(dataset, hub):
    hub.repos["me/ds"] = {"private": False, "commits": [], "files": {
        "README.md": b"---\nlicense: other\ntags:\n- mine\n---\n# My dataset\n\nOur own notes.\n"}}  # fmt: skip
    for _ in range(2):  # the second push replaces revgen's section instead of adding another
        res = CliRunner().invoke(cli, ["push", str(dataset), "--repo-id", "me/ds"])
        assert res.exit_code == 0, res.output
    from huggingface_hub import DatasetCard

    merged = DatasetCard(hub.repos["me/ds"]["files"]["README.md"].decode())
    meta = merged.data.to_dict()
    assert meta["license"] == "other"  # the owner's metadata wins
    assert meta["tags"][0] == "mine" and "synthetic" in meta["tags"] and meta["configs"]  # ours added
    assert "Our own notes." in merged.text and merged.text.count("<!-- revgen:begin") == 1


def test_push_failures_say_what_was_published(dataset, hub, monkeypatch):
    def run(*args):
        return CliRunner().invoke(cli, ["push", str(dataset), *args])

    res = run("--repo-id", "not a/valid id")
    assert res.exit_code != 0 and "bad --repo-id" in res.output and not hub.requests
    hub.fail = lambda req: 500 if req["path"].endswith("/commit/main") and b"README.md" in req["body"] else None
    res = run("--repo-id", "me/half")
    assert res.exit_code != 0 and "could not upload the card" in res.output
    assert "Published so far: data (6 files)" in res.output and "without its card" in res.output
    assert TOKEN not in res.output and "README.md" not in hub.repos["me/half"]["files"]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    readme = dataset / "README.md"
    kept = readme.read_bytes() if readme.exists() else None
    readme.write_text("# My own notes on this data\n\nHand-written.\n")
    res = run("--repo-id", "me/offline")
    assert res.exit_code != 0 and "could not create the dataset repo" in res.output
    assert "Published so far: nothing" in res.output
    assert readme.read_text() == "# My own notes on this data\n\nHand-written.\n"  # a failed push touches no local file
    merged = card.write(dataset, license="cc-by-sa-3.0").read_text()  # the owner's README gains revgen's section
    assert "Hand-written." in merged and "<!-- revgen:begin" in merged
    readme.write_bytes(kept) if kept is not None else readme.unlink()
    monkeypatch.delenv("HF_TOKEN")
    res = run("--repo-id", "me/notoken")
    assert res.exit_code != 0 and "no Hugging Face token" in res.output


def test_a_card_template_with_broken_yaml_fails_instead_of_writing_empty_metadata(run_dirs, tmp_path):
    bad = tmp_path / "t.md"
    bad.write_text("---\nlicense: [unclosed\n---\n# {{ pretty_name }}\n")
    with pytest.raises(UserError, match="card template .*t.md"):
        card.write(run_dirs[1], license="cc-by-sa-3.0", template=str(bad))
    headless = tmp_path / "h.md"
    headless.write_text("# {{ pretty_name }}\n")  # no metadata header at all
    with pytest.raises(UserError, match="no YAML metadata header"):
        card.write(run_dirs[1], license="cc-by-sa-3.0", template=str(headless))
    for n, body in enumerate(
        ("---\n{{ card_data }}\n---\n# {{ pretty_name }\n", "---\n{{ card_data }}\n---\n{% for x in %}\n")
    ):
        broken = tmp_path / f"j{n}.md"
        broken.write_text(body)  # a Jinja syntax error: one line naming the file and line, no card written
        with pytest.raises(UserError, match=rf"card template .*j{n}.md line 4: not a valid Jinja template"):
            card.write(run_dirs[1], license="cc-by-sa-3.0", template=str(broken))


def test_card_of_rewritten_data_says_so_with_model_prompt_and_counts(run_dirs, base_model, tmp_path):
    from revgen.rewrite import PROMPT, RewriteConfig, rewrite

    synth_dir, ds = run_dirs
    info = rewrite(RewriteConfig(input=str(ds), output_dir=str(tmp_path / "rw"), model=base_model, max_new_tokens=24,
                                 batch_size=8, dtype="float32", min_recall=None, max_novel=None))  # fmt: skip
    text = card.write(tmp_path / "rw", license="cc-by-sa-3.0").read_text()
    run = card.collect(tmp_path / "rw")
    assert run.kind == "rewritten" and run.stats and run.synth and run.train  # the trail back to the adapter
    assert run.n_rows == info["counts"]["records"]
    assert "rewrote from the corpus passage" in text and "### Rewriting (back-and-forth translation)" in text
    assert card.DEFAULT_PUBLIC in text.split("### Rewriting")[1]
    assert PROMPT.splitlines()[0] in text and "nguyen2024backandforth" in text
    for k, v in info["counts"].items():
        assert f"| {k} | {v} |" in text
    assert not any(p in text for p in card.machine_paths(run) if p.startswith("/") and len(p) > 1)
    plain = str(card.render(ds, license="cc-by-sa-3.0"))  # the un-rewritten data says nothing of rewriting
    assert "Rewriting" not in plain and "corpus text\nitself" in plain
