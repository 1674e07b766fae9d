"""``revgen train``: fine-tune the backward model p(instruction | response), or with ``task: forward``
a forward model p(response | instruction), with trl + peft LoRA.

On CUDA with bitsandbytes the base is loaded in 4-bit nf4 with double quantisation and bf16
compute (QLoRA); elsewhere plain LoRA, said in the log. Trainer fields in the recipe's
``trainer:`` mapping pass straight through to trl's ``SFTConfig``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, openers, runinfo, tasktypes
from revgen.dolly import BUNDLED, data_hash, load_pairs
from revgen.errors import UserError
from revgen.models import DEFAULT_MODEL, load_tokenizer, merge_adapter, resolve_model  # noqa: F401 (merge_adapter: public here too)
from revgen.prompts import get_template
from revgen.train import fused_head
from revgen.train.forward_data import sources, tag_text
from revgen.train.pairs import build_pairs
from revgen.train.throughput import ThroughputCallback

log = logging.getLogger(__name__)

# Fields revgen sets itself; putting them under `trainer:` would be ambiguous.
OWNED = {"output_dir", "max_length", "packing", "gradient_checkpointing", "seed"}
HELDOUT_FILE = "heldout.jsonl"
TASKS = ("backward", "forward")


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list | str = field(default_factory=lambda: ["q_proj", "v_proj"])
    # train only these decoder layers (a list, or an int N: the last N); backprop stops below them
    layers: list | int | None = None


@dataclass
class TrainConfig:
    task: str = "backward"  # backward: response -> instruction; forward: instruction -> response
    model: str = DEFAULT_MODEL  # the embedded default, a local HF folder, or a Hub id
    # bundled Dolly sample, a .jsonl/.json/.parquet file, a curate dir or a Hub id; forward: a list
    # of them, each a string or {source, max_rows, tag} (tag: seed | augmented | its own text)
    data: str | list = BUNDLED
    inference_tag: str | None = None  # forward, tagged data: the tag the model reads at inference (default: data[0]'s)
    output_dir: str = ""  # default: runs/backward or runs/forward
    template: str = "auto"  # auto: seed (backward) / alpaca (forward); a built-in name or a template file
    context: str = (
        "auto"  # Dolly's context: ignore | append | drop; auto: ignore (backward, the seed's), append (forward)
    )
    categories: list | None = None  # keep only these Dolly categories
    task_types: bool = False  # backward: learn "[category] instruction" (revgen/tasktypes.py), steerable at synthesis
    max_length: int = 1024  # tokens of prompt + instruction + EOS
    overlong: str = "truncate"  # truncate the input text | drop the row
    max_rows: int | None = None  # use only the first N rows (after filtering)
    eval_holdout: float = 0  # rows (>= 1) or fraction (< 1) held out, seeded, for eval loss
    load_in_4bit: str | bool = "auto"  # auto: 4-bit on CUDA only; true: require it; false
    quant_skip_layers: int = 0  # with 4-bit: keep the first N decoder layers bf16 (speed for memory)
    fp8: bool = False  # the frozen base weights' matmuls in FP8 (revgen/train/fp8.py; GPUs of capability 8.9+)
    attn_implementation: str = (
        "auto"  # auto: flash_attention_2 if usable, flex_attention for packing on CUDA, else sdpa
    )
    dtype: str = "auto"  # auto: bf16 on GPUs that support it, fp32 on CPU
    lora: LoraSettings = field(default_factory=LoraSettings)
    packing: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    merge: bool = False  # also write a merged bf16 model to OUTPUT_DIR/merged
    threads: int | None = None  # torch CPU threads; None: $REVGEN_THREADS or torch's default
    overwrite: bool = False  # replace a finished adapter in output_dir
    exclude: str | None = None  # forward: leave out rows found in this file (e.g. another run's heldout.jsonl)
    trainer: dict = field(default_factory=dict)  # passed through to trl.SFTConfig

    def __post_init__(self):
        if self.task not in TASKS:
            raise UserError(f"task must be one of {TASKS}, got {self.task!r}")
        self.output_dir = self.output_dir or f"runs/{self.task}"
        if self.load_in_4bit not in ("auto", True, False):
            raise UserError(f"load_in_4bit must be auto, true or false, got {self.load_in_4bit!r}")
        if not isinstance(self.fp8, bool):
            raise UserError(f"fp8 must be true or false, got {self.fp8!r}")
        validate_trainer_keys(self.trainer)
        if self.task_types and self.task != "backward":
            raise UserError("task_types conditions the backward model; a forward model has no use for it")
        if self.task == "forward":
            _inference_tag(self)  # a malformed source or an inference tag the data lacks: before any model loads
        elif self.inference_tag is not None or any(tag for _, _, tag in sources(self.data)):
            raise UserError(
                "data tags and inference_tag are for forward training (--task forward), not the backward model"
            )


def validate_trainer_keys(trainer: dict) -> None:
    from trl import SFTConfig

    known = {f.name for f in dataclasses.fields(SFTConfig)}
    unknown = sorted(set(trainer) - known)
    if unknown:
        raise UserError(f"trainer: unknown SFTConfig field(s) {unknown} (trl renamed or typo?)")
    owned = sorted(set(trainer) & OWNED)
    if owned:
        raise UserError(f"trainer: set {owned} at the top level of the train section, not under trainer")


@dataclass
class Plan:
    """How this machine will run the config (decided once, logged, stored in run.json)."""

    device: str
    load_in_4bit: bool
    dtype: str
    attn_implementation: str
    quant_skip_layers: int = 0
    fp8: bool = False


def plan(cfg: TrainConfig) -> Plan:
    import torch

    cuda = torch.cuda.is_available()
    if cfg.load_in_4bit is True and not runinfo.bnb_4bit_available():
        raise UserError("the recipe asks for 4-bit (load_in_4bit: true) but bitsandbytes is not importable here")
    four = cfg.load_in_4bit is True or (cfg.load_in_4bit == "auto" and cuda and runinfo.bnb_4bit_available())
    dtype = dtypes.resolve(cfg.dtype, stage="train")
    attn = cfg.attn_implementation
    if attn == "auto":
        # Padding-free packing under SDPA attends over a block-diagonal mask of the whole flattened
        # batch (quadratic across documents); FlexAttention skips the masked blocks: 1.54x tokens/s
        # on an H200 with Liger (bench/RESULTS.md). flash-attn's varlen kernel does the same.
        if runinfo.flash_attn_available() and dtype in ("bfloat16", "float16"):
            attn = "flash_attention_2"
        elif cuda and cfg.packing:
            attn = "flex_attention"
        else:
            attn = "sdpa"
    elif attn == "flash_attention_2" and not runinfo.flash_attn_available():
        raise UserError("attn_implementation flash_attention_2 needs flash-attn and an Ampere+ GPU")
    if cfg.fp8:
        from revgen.train import fp8  # imports torch

        fp8.check_device("cuda" if cuda else "cpu")
    return Plan("cuda" if cuda else "cpu", four, dtype, attn, cfg.quant_skip_layers if four else 0, cfg.fp8)


def load_model(model_ref: str, p: Plan):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": getattr(torch, p.dtype), "attn_implementation": p.attn_implementation}
    if p.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            # anchored patterns: layer 1 must not also match layers 10-19
            llm_int8_skip_modules=["lm_head"] + [rf"model\.layers\.{i}\." for i in range(p.quant_skip_layers)],
        )  # fmt: skip
        kwargs["device_map"] = {"": 0} if p.device == "cuda" else "cpu"
    return AutoModelForCausalLM.from_pretrained(model_ref, **kwargs)


def split_holdout(pairs: list[dict], holdout: float, seed: int):
    if not holdout:
        return pairs, []
    n = int(holdout) if holdout >= 1 else max(1, round(len(pairs) * holdout))
    if n >= len(pairs):
        raise UserError(f"eval_holdout={holdout} leaves no training rows (of {len(pairs)})")
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    held = set(idx[:n])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def sft_config(cfg: TrainConfig, p: Plan, has_eval: bool, output_dir: str | None = None):
    from trl import SFTConfig

    # checkpoints by default (a killed run resumes from the last one, not from step 0), two kept
    args = {"report_to": "none", "logging_steps": 1, "save_strategy": "steps", "save_steps": 25,
            "save_total_limit": 2, "learning_rate": 2e-4, "include_num_input_tokens_seen": "non_padding",
            "per_device_train_batch_size": 4, "num_train_epochs": 1, "lr_scheduler_type": "constant"}  # fmt: skip
    if has_eval:
        args.update(eval_strategy="epoch", per_device_eval_batch_size=8)
    for key, value in cfg.trainer.items():  # trl takes 0 here and fails deep inside the data loader
        if (key.endswith("batch_size") or key == "gradient_accumulation_steps") and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise UserError(f"trainer.{key} must be an integer >= 1, got {value!r}")
    args.update(typed_trainer(cfg.trainer))
    args.update(output_dir=output_dir or cfg.output_dir, max_length=cfg.max_length, packing=cfg.packing,
                gradient_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed,
                bf16=p.dtype == "bfloat16" or p.load_in_4bit, fp16=p.dtype == "float16",
                use_cpu=p.device == "cpu")  # fmt: skip
    try:
        return SFTConfig(**args)
    except (TypeError, ValueError) as exc:  # an unknown or inconsistent trl option
        raise UserError(f"trainer: {str(exc).strip().splitlines()[0][:300]}") from None


def typed_trainer(options: dict) -> dict:
    """Each ``trainer:`` value of a plain type (numbers, flags, text, or none of them) has that type before
    trl sees it: ``learning_rate: fast`` is one error naming the key, not a TypeError inside AdamW. A number
    YAML read as text (``2e-4``: YAML 1.1 wants a dot) is read as the number it spells."""
    import types
    import typing

    from trl import SFTConfig

    from revgen.config import check_value

    try:
        hints = typing.get_type_hints(SFTConfig)
    except Exception:  # an annotation this Python cannot resolve: fall back to the resolved ones
        hints = {f.name: f.type for f in dataclasses.fields(SFTConfig) if not isinstance(f.type, str)}
    plain, out = {int, float, bool, str, type(None)}, dict(options)
    for key, value in options.items():
        hint = hints.get(key)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = set(typing.get_args(hint)) if union else {hint}
        if hint is None or not args <= plain or (str in args and len(args - {type(None)}) > 1):
            continue  # trl's own richer types (enums, dicts, lists, unions with text) stay trl's to check
        if float in args and isinstance(value, str):
            try:
                out[key] = value = float(value)
            except ValueError:
                pass
        check_value(key, value, hint, "trainer")
    return out


@contextlib.contextmanager
def _saving(out: Path):
    """A full disk or a file-size limit while a checkpoint or the trained model is written: one error, and the
    model is not taken as finished (run.json comes after), so the same command trains again or resumes from the
    last whole checkpoint."""
    try:
        yield
    except Exception as exc:  # OSError from Python's writes, SafetensorError from the adapter's
        text = str(exc)
        errno_ = getattr(exc, "errno", None)
        if errno_ not in (27, 28, 122) and not any(s in text for s in ("File too large", "No space left", "quota")):
            raise
        for torn in out.glob("checkpoint-*"):  # the one being written: transformers writes trainer_state.json last
            if not (torn / "trainer_state.json").is_file():
                shutil.rmtree(torn, ignore_errors=True)
        kept = sorted((p.name for p in out.glob("checkpoint-*")), key=lambda n: int(n.rsplit("-", 1)[1]))
        then = f"rerun the same command: it resumes from {kept[-1]}" if kept else "rerun the same command"
        first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
        raise UserError(
            f"could not write the model or a checkpoint into {out}: {first} (a full disk or a file-size limit); "
            f"make room, then {then}"
        ) from None


def train(cfg: TrainConfig) -> dict:
    """Train, save adapter + tokenizer + template + run.json into ``cfg.output_dir``."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTTrainer

    started = time.time()
    runinfo.set_threads(cfg.threads)
    final = Path(cfg.output_dir)
    p = plan(cfg)
    sft_config(cfg, p, bool(cfg.eval_holdout))  # a bad trainer value fails before anything is written
    out = _work_dir(final, cfg)  # a finished model is replaced only once its successor is complete
    resume_step = _prepare_output(out, cfg)
    log.info("plan: %s", p)
    if not p.load_in_4bit:
        log.info("training plain LoRA (no 4-bit): %s", "no CUDA" if p.device == "cpu" else "load_in_4bit false")
    model_ref = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_ref)
    pairs, stats, template = _pairs(cfg, tokenizer)
    train_pairs, held = split_holdout(pairs, cfg.eval_holdout, cfg.seed)
    log.info("data (%s): %d rows -> %d pairs (%d truncated, %d dropped as over-long), %d held out", cfg.task,
             stats["rows"], len(pairs), stats["truncated"], stats["dropped_overlong"], len(held))  # fmt: skip
    if held:
        _write_heldout(out / HELDOUT_FILE, held, cfg.task, cfg.task_types)

    def as_dataset(ps):
        return Dataset.from_list([{"prompt": x["prompt"], "completion": x["completion"]} for x in ps])

    model = load_model(model_ref, p)
    timer = ThroughputCallback()
    layers = cfg.lora.layers
    if layers is not None and isinstance(cfg.lora.target_modules, str):
        raise UserError(
            "lora.layers needs lora.target_modules as a list of module names (not a string like all-linear)"
        )
    if isinstance(layers, int):
        n_layers = model.config.num_hidden_layers
        layers = list(range(max(0, n_layers - layers), n_layers))
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, layers_to_transform=layers, task_type="CAUSAL_LM")  # fmt: skip
    trainer = SFTTrainer(model=model, args=sft_config(cfg, p, bool(held), str(out)), processing_class=tokenizer,
                         train_dataset=as_dataset(train_pairs), eval_dataset=as_dataset(held) if held else None,
                         peft_config=lora, callbacks=[timer])  # fmt: skip
    if p.fp8:
        from revgen.train import fp8

        fp8.patch(trainer.model)
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("LoRA trainable parameters: %d of %d (%.3f%%)", trainable, total, 100 * trainable / total)
    if resume_step is not None:
        log.info("resuming from %s/checkpoint-%d (step %d)", out, resume_step, resume_step)
    # transformers prints its log dicts to stdout
    with (
        _saving(out),
        contextlib.redirect_stdout(sys.stderr),
        fused_head.labelled_positions_only(p.device) as head_positions,
    ):
        result = trainer.train(resume_from_checkpoint=True if resume_step is not None else None)

    with _saving(out):
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        template.save(out)
        types = dict(Counter(x["category"] for x in train_pairs)) if cfg.task_types else None
        if types:
            tasktypes.save(out, types)
        if cfg.task == "backward":  # the seed's first words, for `synthesize --openers` (revgen/openers.py)
            openers.save(out, openers.learn(tasktypes.split(x["completion"])[1] for x in train_pairs))
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    n_tokens = max([h.get("num_tokens", 0) for h in history] or [0])
    info = {
        "command": "train",
        "config": cfgmod.to_dict(cfg),
        "config_hash": cfgmod.config_hash(cfg),
        "plan": dataclasses.asdict(p),
        "lm_head_positions": head_positions,
        "compute": dtypes.choice(cfg.dtype, stage="train"),
        "base_model": model_ref,
        "task": cfg.task,
        "template": template.text if cfg.task == "backward" else dataclasses.asdict(template),
        "task_types": types,
        "data": {
            "source": cfg.data,
            "sha256": _data_hash(cfg.data),
            **stats,
            "train_rows": len(train_pairs),
            "heldout_rows": len(held),
            "heldout_file": HELDOUT_FILE if held else None,
        },  # fmt: skip
        "parameters": {"trainable": trainable, "total": total},
        "losses": losses,
        "eval_losses": eval_losses,
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "resumed_from_step": resume_step,
        "tokens": n_tokens,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "tokens_per_s": n_tokens / result.metrics["train_runtime"] if result.metrics.get("train_runtime") else None,
        "throughput": timer.summary(
            trainer.model,
            cfg.gradient_checkpointing,
            cfg.max_length if cfg.packing else _mean_len(trainer.train_dataset),
        ),
        "adapter_sha256": runinfo.dir_hash(out),
        "versions": runinfo.versions(),
        "environment": runinfo.device_info(),
    }
    if cfg.merge:
        merge_adapter(out, model_ref, out / "merged")
        info["merged_dir"] = str(final / "merged")
    info["wall_time_s"] = round(time.time() - started, 1)
    runinfo.write_json(out / "run.json", info)
    if out != final:
        _replace(out, final)
    log.info("saved adapter to %s (train loss %.3f, %d steps)", final, result.training_loss, info["steps"])
    return info


def _work_dir(final: Path, cfg: TrainConfig) -> Path:
    """Where this run trains: ``final`` itself, or beside it when it holds a finished model that
    --overwrite replaces (the old model stays whole until the new one has written its run.json; a
    failed or killed overwrite leaves it untouched and resumes from the staging dir's checkpoints)."""
    import shutil

    old = final.with_name(final.name + ".replaced")
    if not final.exists() and (old / "run.json").is_file():  # killed between the two renames of _replace
        os.replace(old, final)
    if final.exists() and not final.is_dir():
        raise UserError(f"output dir {final} is a file, not a folder")
    if not (final / "run.json").is_file():
        return final
    if not cfg.overwrite:
        raise UserError(f"{final} already holds a trained model (run.json); pass --overwrite to replace it, "
                        "or choose another --output-dir")  # fmt: skip
    staging = final.with_name(final.name + ".overwrite")
    shutil.rmtree(old, ignore_errors=True)
    log.warning("--overwrite: training into %s; %s is replaced when the new model is complete", staging, final)
    return staging


def _replace(staging: Path, final: Path) -> None:
    import shutil

    old = final.with_name(final.name + ".replaced")
    os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


STARTED_FILE = "train-config.json"  # the config a run in progress was started with
NOT_IDENTITY = {"threads", "overwrite"}


def _prepare_output(out: Path, cfg: TrainConfig) -> int | None:
    """Refuse to replace a finished adapter unless asked; resume a killed run only with the same config.
    Returns the step of the checkpoint the run resumes from (None: starts at step 0)."""
    import json
    import shutil

    if out.exists() and not out.is_dir():
        raise UserError(f"output dir {out} is a file, not a folder")
    values = {k: v for k, v in cfgmod.to_dict(cfg).items() if k not in NOT_IDENTITY}
    (out / "run.json").unlink(missing_ok=True)  # only a staging dir killed right before its swap has one
    steps = sorted(int(c.name.split("-")[1]) for c in out.glob("checkpoint-*") if c.name.split("-")[1].isdigit())
    started = out / STARTED_FILE
    if steps and started.is_file():
        before = json.loads(started.read_text())
        diff = sorted(k for k in set(before) | set(values) if before.get(k) != values.get(k))
        if diff and cfg.overwrite:
            log.warning("--overwrite: dropping checkpoints made with other settings (%s)", ", ".join(diff))
            for ckpt in out.glob("checkpoint-*"):
                shutil.rmtree(ckpt)
            steps = []
        elif diff:
            raise UserError(f"{out} holds checkpoints of a run started with other settings ({', '.join(diff)}); "
                            "rerun with those settings to resume, or pass --overwrite to start over")  # fmt: skip
    elif steps and not cfg.overwrite:
        raise UserError(f"{out} holds checkpoints but no {STARTED_FILE}: their settings are unknown; "
                        "pass --overwrite to start over")  # fmt: skip
    elif steps:
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt)
        steps = []
    out.mkdir(parents=True, exist_ok=True)
    runinfo.write_json(started, values)
    return steps[-1] if steps else None


def _pairs(cfg: TrainConfig, tokenizer):
    """Training pairs for the task, counts of what was cut or dropped, and the template used."""
    from revgen.prompts import get_forward_template
    from revgen.train.forward_data import build_forward_pairs, load_forward_rows

    context = cfg.context if cfg.context != "auto" else ("append" if cfg.task == "forward" else "ignore")
    if cfg.task == "forward":
        template = get_forward_template(cfg.template)
        rows, fstats = load_forward_rows(cfg.data, context)
        rows = [r for r in rows if not cfg.categories or r["category"] in cfg.categories]
        if cfg.exclude:
            held = {(r["instruction"], r["output"]) for r in load_forward_rows(cfg.exclude)[0]}
            before = len(rows)
            rows = [r for r in rows if (r["instruction"], r["output"]) not in held]
            fstats.per_source["excluded"] = before - len(rows)
            log.info("left out %d rows found in %s", before - len(rows), cfg.exclude)
        template = dataclasses.replace(template, tag=_inference_tag(cfg))
        pairs, cut = build_forward_pairs(rows[: cfg.max_rows], template, tokenizer, cfg.max_length, cfg.overlong)
        stats = {**fstats.as_dict(), **cut}
    else:
        template = get_template("seed" if cfg.template == "auto" else cfg.template)
        rows = []
        for source, cap, _ in sources(cfg.data):
            part = load_pairs(source)[:cap]
            if cfg.task_types:  # row numbers as in the source, before any category filter
                tasktypes.check_names(
                    part, source, keep=lambda r: not cfg.categories or r["category"] in cfg.categories
                )
            rows += part
        if cfg.task_types:  # build_pairs drops (and counts) the categories left out, tagged or not
            rows = [{**r, "instruction": tasktypes.tag(r["category"].strip(), r["instruction"].strip())
                     if r["instruction"].strip() else ""} for r in rows]  # fmt: skip
        pairs, pstats = build_pairs(rows, template, tokenizer, context=context, categories=cfg.categories,
                                    max_length=cfg.max_length, overlong=cfg.overlong)  # fmt: skip
        pairs, stats = pairs[: cfg.max_rows], pstats.as_dict()
    if not pairs:
        raise UserError(f"no training rows left from {cfg.data} after filtering: {stats}")
    return pairs, stats, template


def _inference_tag(cfg: TrainConfig) -> str:
    """The tag a tagged forward model reads at inference: ``inference_tag``, else the first source's."""
    tags = [tag for _, _, tag in sources(cfg.data)]
    if cfg.inference_tag is None:
        return tags[0]
    tag = tag_text(cfg.inference_tag)
    if tag not in tags:
        known = sorted({t or "(none)" for t in tags})
        raise UserError(f"inference_tag {cfg.inference_tag!r} is none of the data's tags {known}: a model reads at "
                        "inference a tag it was trained with")  # fmt: skip
    return tag


def _write_heldout(path: Path, held: list[dict], task: str, typed: bool = False) -> None:
    """Held-out rows in the format `revgen eval` reads: Dolly (backward) or Alpaca + category (forward)."""
    import jsonlines

    with jsonlines.open(path, "w") as w:
        if task == "forward":
            w.write_all({k: h["row"][k] for k in ("instruction", "input", "output", "category")} for h in held)
        else:
            w.write_all({"instruction": tasktypes.split(h["completion"])[1] if typed else h["completion"], "context": "", "response": h["text"],
                         "category": h["category"]} for h in held)  # fmt: skip


def _data_hash(data) -> str:
    return data_hash(data) if isinstance(data, str) else ",".join(data_hash(s)[:16] for s, _, _ in sources(data))


def _mean_len(dataset) -> int:
    lengths = [len(x) for x in dataset["input_ids"]]
    return round(sum(lengths) / max(len(lengths), 1))
