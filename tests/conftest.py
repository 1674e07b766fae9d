"""Shared fixtures: offline Hub, explicit torch threads, the real SmolLM2 model, a trained adapter."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread unless told otherwise: on a busy 2-core CI box 2 threads can be 20x slower.
os.environ.setdefault("REVGEN_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["REVGEN_THREADS"]))

from revgen.dolly import load_pairs  # noqa: E402
from revgen.models import default_model_path, load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def base_model() -> str:
    """The embedded default model folder (converted once into the revgen cache)."""
    return str(default_model_path())


@pytest.fixture(scope="session")
def tokenizer(base_model):
    return load_tokenizer(base_model)


@pytest.fixture(scope="session")
def dolly_rows():
    return load_pairs()


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory, base_model):
    """A small real training run shared by tests that need an adapter (train, reload, generate)."""
    from revgen.train.trainer import LoraSettings, TrainConfig, train

    out = tmp_path_factory.mktemp("adapter")
    cfg = TrainConfig(
        model=base_model,
        output_dir=str(out),
        max_length=192,
        max_rows=16,
        eval_holdout=4,
        lora=LoraSettings(r=8, alpha=16, target_modules="all-linear"),
        trainer={"max_steps": 6, "learning_rate": 1e-3, "per_device_train_batch_size": 4},
    )
    info = train(cfg)
    return out, info


@pytest.fixture(scope="session")
def trained_forward(tmp_path_factory, base_model, dolly_rows):
    """A small forward (instruction -> response) run: 16 context-free Dolly pairs in two tagged sources, 4 held out."""
    import json

    from revgen.train.trainer import LoraSettings, TrainConfig, train

    out = tmp_path_factory.mktemp("forward")
    rows = [
        {"instruction": r["instruction"], "output": r["response"], "category": r["category"]}
        for r in dolly_rows
        if not r["context"] and len(r["response"]) < 300
    ][:16]
    seed, web = out.parent / "forward-seed.jsonl", out.parent / "forward-web.jsonl"  # Humpback's two tags
    seed.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    web.write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    data = [{"source": str(seed), "tag": "seed"}, {"source": str(web), "tag": "augmented"}]
    cfg = TrainConfig(
        task="forward",
        model=base_model,
        data=data,
        output_dir=str(out),
        max_length=160,
        eval_holdout=4,
        lora=LoraSettings(r=8, alpha=16, target_modules="all-linear"),
        trainer={"max_steps": 8, "learning_rate": 1e-3, "per_device_train_batch_size": 4},
    )
    info = train(cfg)
    held = {json.loads(line)["instruction"] for line in (out / "heldout.jsonl").read_text().splitlines()}
    info["_train_rows"] = [r for r in rows if r["instruction"] not in held]
    return out, info
