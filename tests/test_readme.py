"""Every example in the README is accepted as written: each `revgen ...` command line parses against
the real CLI (options, choices, types; only paths that do not exist here are let through), each
recipe it names loads strictly, and each YAML block builds its command's config (ranges included)."""

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from revgen import config as cfgmod
from revgen.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def commands() -> list[str]:
    out = []
    for block in blocks("bash"):
        text = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            line = line.split("&&")[-1].strip()
            if line.startswith((".venv/bin/revgen ", "revgen ")):
                out.append(re.sub(r"\s\[[^\]]*\]", "", line))  # "[--format a|b]": optional syntax, not an argument
    return out


COMMANDS = commands()
SECTIONS = {"curate": ("revgen.curate.curation", "CurateConfig"), "synthesize": ("revgen.synthesize.core", "SynthConfig"),
            "train": ("revgen.train.trainer", "TrainConfig"), "forward": ("revgen.train.trainer", "TrainConfig"),
            "rewrite": ("revgen.rewrite", "RewriteConfig"), "eval": ("revgen.evaluate.backward", "EvalConfig")}  # fmt: skip


def test_the_readme_has_examples_to_check():
    assert len(COMMANDS) >= 25 and len(blocks("yaml")) >= 2


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_parses_against_the_real_cli(line):
    args = shlex.split(line.replace("$R", "recipes/smollm2-135m-cpu.yaml"))[1:]
    ctx = cli.make_context("revgen", list(args))
    name, cmd, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    try:
        sub = cmd.make_context(name, rest, parent=ctx)
    except click.BadParameter as exc:  # a path the example names that does not exist on this machine
        assert "does not exist" in str(exc), f"{line}: {exc}"
        return
    except click.UsageError as exc:
        raise AssertionError(f"README example does not parse: {line}\n{exc}") from None
    recipe = sub.params.get("recipe") or (sub.params.get("recipe_path") if "recipe_path" in sub.params else None)
    for value in [recipe, *[a for a in rest if a.endswith(".yaml")]]:
        if value:
            assert (ROOT / value).is_file(), f"{line}: recipe {value} is not in recipes/"
            cfgmod.read_recipe(ROOT / value)


@pytest.mark.parametrize("block", blocks("yaml"), ids=lambda b: b.split("\n")[0])
def test_every_readme_yaml_block_builds_its_config(block):
    import importlib

    data = yaml.safe_load(block)
    for section, values in data.items():
        module, cls = SECTIONS[section]
        cfgmod.build(getattr(importlib.import_module(module), cls), values, f"README {section}")


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.split("\n")[0])
def test_every_readme_python_example_runs(block, tmp_path, monkeypatch):
    """As written, from a folder laid out like the checkout; only the demo recipe's 30 steps are 2 here."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    demo = yaml.safe_load((ROOT / "recipes" / "smollm2-135m-cpu.yaml").read_text())
    demo["train"]["trainer"]["max_steps"] = 2
    (recipes / "smollm2-135m-cpu.yaml").write_text(yaml.safe_dump(demo))
    (tmp_path / "revgen").symlink_to(ROOT / "revgen")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs" / "py" / "curate" / "dataset.jsonl").is_file()
