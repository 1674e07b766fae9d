from pathlib import Path

import pytest

from revgen import config as cfgmod
from revgen.errors import UserError
from revgen.train.trainer import TrainConfig

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.name for p in RECIPES}
    assert {"seed-llama2-7b-qlora.yaml", "smollm2-135m-cpu.yaml"} <= names and len(names) >= 3


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_strictly(recipe):
    from revgen.curate.curation import CurateConfig
    from revgen.evaluate.backward import EvalConfig
    from revgen.synthesize.run import SynthConfig

    sections = cfgmod.read_recipe(recipe)
    for name, cls in (("synthesize", SynthConfig), ("curate", CurateConfig), ("eval", EvalConfig)):
        if name in sections:
            assert cfgmod.to_dict(cfgmod.load(cls, name, recipe))  # every key known, nested ones too
    cfg = cfgmod.load(TrainConfig, "train", recipe)
    assert cfg.trainer == sections["train"].get("trainer", {})
    from trl import SFTConfig  # the trainer mapping is a valid SFTConfig

    SFTConfig(output_dir="/tmp/x", use_cpu=True, bf16=False, **cfg.trainer)


def test_seed_recipe_matches_the_seed():
    cfg = cfgmod.load(TrainConfig, "train", Path(__file__).parent.parent / "recipes/seed-llama2-7b-qlora.yaml")
    assert cfg.model == "meta-llama/Llama-2-7b-hf" and cfg.load_in_4bit is True
    assert cfg.lora.r == 16 and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.trainer["per_device_train_batch_size"] == 3 and cfg.trainer["learning_rate"] == 2e-4
    assert cfg.trainer["optim"] == "paged_adamw_32bit" and cfg.packing and cfg.max_length == 2048


def test_precedence_defaults_yaml_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_length: 300\n  seed: 7\n  lora:\n    r: 4\n  trainer:\n    max_steps: 5\n")
    cfg = cfgmod.load(
        TrainConfig,
        "train",
        recipe,
        cfgmod.merge({"seed": 9, "model": None}, cfgmod.parse_overrides(["trainer.logging_steps=2"])),
    )
    assert (cfg.max_length, cfg.seed, cfg.lora.r, cfg.lora.alpha) == (300, 9, 4, 16)
    assert cfg.trainer == {"max_steps": 5, "logging_steps": 2}
    assert cfg.model == TrainConfig().model


def test_a_preset_on_the_command_line_beats_the_recipe_and_set_beats_both(tmp_path, caplog):
    import logging

    from revgen.curate.curation import CurateConfig
    from revgen.synthesize.run import SynthConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("curate:\n  gopher:\n    min_words: 20\n    max_words: 900\nsynthesize:\n  select:\n"
                      "    gopher:\n      min_words: 20\n")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="revgen.config"):
        cfg = cfgmod.load(CurateConfig, "curate", recipe, {"preset": "short-answers"})
    assert cfg.gopher.min_words == 3 and cfg.gopher.min_stop_words is None and cfg.gopher.max_words == 900
    assert "preset short-answers (command line) wins over gopher.min_words: 20 -> 3" in caplog.text
    cfg = cfgmod.load(
        CurateConfig, "curate", recipe, {"preset": "short-answers", **cfgmod.parse_overrides(["gopher.min_words=5"])}
    )
    assert cfg.gopher.min_words == 5
    synth = cfgmod.load(SynthConfig, "synthesize", recipe, {"select": {"preset": "short-answers"}})
    assert synth.select.gopher.min_words == 3  # --select short-answers over the recipe's selection too
    # a preset named in the recipe itself: the recipe's own values win, and that is said
    recipe.write_text("curate:\n  preset: short-answers\n  gopher:\n    min_words: 20\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="revgen.config"):
        assert cfgmod.load(CurateConfig, "curate", recipe).gopher.min_words == 20
    assert "gopher.min_words: 3 -> 20 win over preset short-answers" in caplog.text
    assert cfgmod.load(CurateConfig, "curate", recipe, {"preset": "none"}).gopher.min_words == 20
    with pytest.raises(UserError, match=r"preset must be one of \['auto', 'none', 'openers', 'short-answers'\]"):
        cfgmod.load(CurateConfig, "curate", None, {"preset": "opener"})


@pytest.mark.parametrize(
    "text, match",
    [
        ("train:\n  max_lenght: 3\n", r"unknown key\(s\) \['max_lenght'\]"),
        ("train:\n  lora:\n    rank: 3\n", r"unknown key\(s\) \['rank'\]"),
        ("trian:\n  seed: 1\n", r"unknown section"),
        ("train:\n  trainer:\n    max_seq_length: 10\n", r"unknown SFTConfig field"),
        ("train:\n  trainer:\n    max_length: 10\n", r"top level"),
        ("train: [1, 2\n", r"line \d+ is not valid YAML"),
    ],
)
def test_bad_recipes_fail_clearly(tmp_path, text, match):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        cfgmod.load(TrainConfig, "train", recipe)
    assert "bad.yaml" in str(err.value) or "trainer" in str(err.value)


def test_parse_overrides():
    assert cfgmod.parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]", "e="]) == {
        "a": {"b": 1, "c": "x"},
        "d": [1, 2],
        "e": "",
    }
    with pytest.raises(UserError, match="KEY=VALUE"):
        cfgmod.parse_overrides(["novalue"])


def test_config_hash_changes_with_config():
    assert cfgmod.config_hash(TrainConfig()) == cfgmod.config_hash(TrainConfig())
    assert cfgmod.config_hash(TrainConfig()) != cfgmod.config_hash(TrainConfig(seed=1))


def test_trainer_values_are_typed_against_trl_before_it_sees_them():
    from revgen.train.trainer import typed_trainer

    # YAML 1.1 reads 2e-4 (no dot) as text: it is the number it spells; trl's richer types stay trl's
    assert typed_trainer({"learning_rate": "2e-4", "optim": "adamw_torch", "max_steps": 3}) == {
        "learning_rate": 2e-4,
        "optim": "adamw_torch",
        "max_steps": 3,
    }
    with pytest.raises(UserError, match="trainer: learning_rate must be float, got 'fast'"):
        typed_trainer({"learning_rate": "fast"})
