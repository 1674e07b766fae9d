import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from revgen import __version__
from revgen.cli import cli
from tests.helpers import write_jsonl


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version_and_module_entry_point():
    assert run("--version").output.strip() == f"revgen, version {__version__}"
    res = subprocess.run([sys.executable, "-m", "revgen", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout


def test_env_reports_device_and_capabilities():
    info = json.loads(run("env", "--json").output)
    assert info["device"] == "cpu" and info["torch"].startswith("2.")
    assert {"bf16", "bnb_4bit", "flash_attn", "fp8_train", "transformers", "trl"} <= set(info)
    assert info["fp8_train"] is False  # no CUDA here


@pytest.mark.slow
def test_train_through_the_cli(tmp_path, base_model):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_length: 128\n  lora:\n    r: 4\n    target_modules: [q_proj]\n")
    res = run(
        "train",
        "--recipe",
        str(recipe),
        "--model",
        base_model,
        "-o",
        str(tmp_path / "out"),
        "--max-rows",
        "4",
        "--max-steps",
        "1",
        "--set",
        "trainer.per_device_train_batch_size=2",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["steps"] == 1
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["config"]["lora"]["r"] == 4 and saved["config"]["max_rows"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{bad}"], r"bad.jsonl line 2: missing key 'response'"),
        (["--recipe", "{recipe}"], r"unknown key\(s\) \['learning_rate'\]"),
        (["--set", "lora.rank=2"], r"unknown key\(s\) \['rank'\]"),
        (["--set", "trainer.max_seq_length=9"], r"unknown SFTConfig field"),
        (["--data", "{missing}"], r"is not a .jsonl/.json/.parquet file"),
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_line(tmp_path, args, message):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a", "response": "b"}, {"instruction": "c"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 0.1\n")
    args = [a.format(bad=bad, recipe=recipe, missing=tmp_path / "missing.jsonl") for a in args]
    res = CliRunner().invoke(cli, ["train", "-o", str(tmp_path / "o"), *args])
    assert res.exit_code == 1 and "Traceback" not in res.output
    import re

    assert re.search(message, res.output), res.output
    assert not (tmp_path / "o" / "run.json").exists()


def test_an_empty_data_tag_on_the_command_line_is_refused_as_in_a_recipe(tmp_path):
    rows = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Name a river.", "response": "The Nile."}])
    res = run("train", "--task", "forward", "--data", str(rows), "--data-tag", "", "-o", str(tmp_path / "m"))
    assert res.exit_code != 0 and "data[0].tag must be seed, augmented or the tag's own text" in res.output
    assert not (tmp_path / "m").exists()


def test_every_command_help_ends_with_an_example_that_uses_its_own_options():
    from click.testing import CliRunner

    from revgen.cli import cli

    for name, cmd in cli.commands.items():
        text = CliRunner().invoke(cli, [name, "--help"]).output.rstrip()
        example = text.rsplit("Example:", 1)
        assert len(example) == 2, f"revgen {name} --help has no example"
        known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        for line in example[1].strip().splitlines():
            words = line.split()
            assert words[words.index("revgen") + 1] == name, line
            assert {w for w in words if w.startswith("-")} <= known, f"revgen {name}: {line}"
