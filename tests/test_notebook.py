"""recipes/quickstart.ipynb runs top to bottom on a real kernel, offline, and publishes to a Hub on 127.0.0.1."""

import json

import pytest

from tests.conftest import ROOT
from tests.publish.fakehub import FakeHub

pytestmark = pytest.mark.slow


def test_quickstart_notebook_runs_and_pushes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "recipes" / "quickstart.ipynb", as_version=4)
    work = tmp_path / "work"
    with FakeHub() as hub:
        for key, value in {
            "REVGEN_NB_WORK": str(work),
            "REVGEN_NB_STEPS": "2",
            "REVGEN_NB_DOCS": "6",
            "HF_TOKEN": "hf_test",
            "HF_ENDPOINT": hub.url,
            "REVGEN_NB_REPO": "me/nb",
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf_home"),
        }.items():  # the Hub is this fake one
            monkeypatch.setenv(key, value)
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "recipes")}}).execute()  # fmt: skip
        pushed = hub.repos.get("me/nb", {}).get("files", {})
    outputs = ["".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in c.outputs)
               for c in nb.cells if c.cell_type == "code"]  # fmt: skip
    assert "'steps': 2" in outputs[1]  # the train cell's summary
    assert "'real':" in outputs[2] and "'generated':" in outputs[2]  # held-out instructions side by side
    kept = [json.loads(line) for line in (work / "kept.jsonl").read_text().splitlines()]
    dataset = [json.loads(line) for line in (work / "curate" / "dataset.jsonl").read_text().splitlines()]
    assert kept and [r["instruction"] for r in kept] == [r["instruction"] for r in dataset]
    assert json.loads((work / "synthesize" / "run.json").read_text())["config"]["openers"] == 3  # the default method
    assert any(name.endswith(".jsonl") for name in pushed) and "README.md" in pushed  # data and its card
