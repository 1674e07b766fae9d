"""Strict config loading: dataclass defaults < recipe YAML section < CLI overrides.

A recipe is a YAML mapping of sections (``train:``, ``synthesize:``, ...), one per command. Each
section fills that command's config dataclass; an unknown key anywhere is an error naming the
file and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import typing
from pathlib import Path

import yaml

from revgen.dtypes import DTYPES
from revgen.errors import UserError

log = logging.getLogger(__name__)


class _Null:
    """``--set key=null``: an explicit null, kept apart from a CLI flag that was not given (None)."""

    def __repr__(self):
        return "null"


NULL = _Null()

# Ranges checked for every config that has the key: (test, what is allowed).
POSITIVE = (lambda v: v >= 1, "an integer >= 1")
RULES = {
    **{k: POSITIVE for k in ("batch_size", "micro_batch_size", "shard_size", "max_docs", "max_input_tokens",
                             "max_new_tokens", "num_candidates", "max_rows", "max_length", "r", "alpha", "bands",
                             "rows", "ngram", "bootstrap", "data_parallel", "copy_ngram", "k",
                             "concurrency")},
    **{k: (lambda v: v >= 0, "a number >= 0") for k in ("temperature", "min_words", "generate_rows", "max_restarts",
                                                        "max_words", "eval_holdout", "quant_skip_layers")},
    **{k: (lambda v: 0 <= v <= 1, "a number in [0, 1]") for k in ("threshold", "max_copy_overlap", "min_confidence",
                                                                   "dropout", "min_alpha_ratio",
                                                                   "max_duplicate_line_ratio", "max_top_2gram_ratio")},
    "top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "semantic_threshold": (lambda v: -1 <= v <= 1, "a cosine in [-1, 1]"),
    # a key whose range belongs to its place ("Class.key") overrides the key's rule; None: the class
    # checks it itself (a selection threshold is on its score's scale: curate/scorers.py Selection)
    "Selection.threshold": None,
    "EngineSettings.tasks": (lambda v: v >= 0, "an integer >= 0 (0: one task per input file)"),
    "EngineSettings.workers": (lambda v: v == -1 or v >= 1, "-1 (all) or an integer >= 1"),
    "openers": (lambda v: v >= 0, "an integer >= 0"),
}  # fmt: skip

# Keys whose value is one of a few names, checked for every config that has the key.
CHOICES = {"dtype": DTYPES}

SECTIONS = ("train", "forward", "synthesize", "curate", "eval", "eval_forward", "rewrite", "run")


def read_recipe(path: str | Path) -> dict:
    """Parse a recipe file into its sections (``{}`` for a missing section)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path}{line} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a mapping of sections {SECTIONS}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise UserError(f"recipe {path}: unknown section(s) {unknown}; expected some of {SECTIONS}")
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise UserError(f"recipe {path}: section {name!r} must be a mapping")
    return {k: v or {} for k, v in data.items()}


def parse_overrides(pairs: typing.Iterable[str]) -> dict:
    """``["lora.r=8", "trainer.max_steps=2"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        value = yaml.safe_load(raw) if raw else ""
        node[leaf] = NULL if value is None else value
    return out


def parse_weights(spec: str | dict, key: str, expected: str) -> dict[str, float]:
    """``"a=3,b=1"`` or a mapping -> ``{name: weight}``: non-negative numbers with a positive sum, or
    one UserError naming ``key``, what was ``expected`` and the offending part."""
    if isinstance(spec, dict):
        weights = dict(spec)
    else:
        weights = {}
        for part in str(spec).split(","):
            name, eq, value = part.partition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = None
            if not eq or not name.strip() or weight is None:
                raise UserError(f"{key}: expected {expected}; got {part.strip()!r}")
            weights[name.strip()] = weight
    bad = {n: w for n, w in weights.items()
           if not str(n).strip() or isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf}  # fmt: skip
    if bad or sum(weights.values()) <= 0:
        raise UserError(f"{key}: weights must be non-negative numbers with a positive sum, got {bad or weights}")
    return weights


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build(cls, values: dict, source: str = "config"):
    """Instantiate dataclass ``cls`` from ``values``; nested dataclass fields recurse strictly.

    Fields typed ``dict`` are passed through as-is (validated by the consumer, e.g. SFTConfig).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    presets = getattr(cls, "PRESETS", None)
    words = getattr(cls, "PRESET_WORDS", ())  # values resolved later ("auto") or meaning no preset ("none")
    if presets and values.get("preset") not in (None, NULL, *words):  # defaults < preset < recipe < CLI
        if values["preset"] not in presets:
            raise UserError(f"{source}: preset must be one of {[*words, *sorted(presets)]}, got {values['preset']!r}")
        beaten = _differs(values, presets[values["preset"]])
        if beaten:  # the preset was named beside these values: they win, and say so
            log.info("%s: %s win over preset %s", source, ", ".join(beaten), values["preset"])
        values = merge(presets[values["preset"]], values)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        value = None if value is NULL else value
        if dataclasses.is_dataclass(hint):
            if value is None and "enabled" in {f.name for f in dataclasses.fields(hint)}:
                value = {"enabled": False}  # `gopher: null` turns the step off
            if not isinstance(value, dict):
                raise UserError(f"{source}: {name!r} must be a mapping, got {value!r}")
            value = build(hint, value, f"{source} {name}")
        else:
            value = _denull(value)
            check_value(name, value, hint, source, cls.__name__)
        kwargs[name] = value
    return cls(**kwargs)


def _denull(value):
    if isinstance(value, dict):
        return {k: _denull(v) for k, v in value.items()}
    return None if value is NULL else value


def _allowed(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_allowed(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _name(hint) -> str:
    args = typing.get_args(hint)
    return (
        " or ".join(_name(a) for a in args)
        if args and typing.get_origin(hint) is not list
        else ("null" if hint is type(None) else getattr(typing.get_origin(hint) or hint, "__name__", str(hint)))
    )


def check_value(name: str, value, hint, source: str, owner: str = "") -> None:
    """Type and range of one config value; a mismatch is one error naming the key and what is allowed."""
    if not _allowed(value, hint):
        raise UserError(f"{source}: {name} must be {_name(hint)}, got {value!r}")
    if name in CHOICES and value is not None and value not in CHOICES[name]:
        raise UserError(f"{source}: {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
    rule = RULES[f"{owner}.{name}"] if f"{owner}.{name}" in RULES else RULES.get(name)
    if rule and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
        raise UserError(f"{source}: {name} must be {rule[1]}, got {value!r}")


def load(
    cls, section: str, recipe: str | Path | None = None, overrides: dict | None = None, values: dict | None = None
):
    """Build command config ``cls`` from a recipe section (or ``values`` made from it) and CLI overrides.

    Precedence: defaults < a preset named in the recipe < the recipe < a preset named on the command
    line (``--preset``, ``--select``) < the other flags and ``--set``. What a preset changes in the
    recipe, or the recipe in its own preset, is logged."""
    source = f"recipe {recipe} section {section!r}" if recipe else "config"
    if values is None:
        values = read_recipe(recipe).get(section, {}) if recipe else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}  # None: flag not given
    values = _cli_presets(cls, values, overrides, source)
    return build(cls, merge(values, overrides), source)


def _cli_presets(cls, values: dict, overrides: dict, source: str) -> dict:
    """``values`` with the presets named in ``overrides`` laid over them, at every nested level."""
    presets = getattr(cls, "PRESETS", None) or {}
    name = overrides.get("preset")
    if name in presets and values:
        beaten = _differs(presets[name], values)
        if beaten:
            log.info("%s: preset %s (command line) wins over %s", source, name, ", ".join(beaten))
        values = merge({k: v for k, v in values.items() if k != "preset"}, presets[name])
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        sub, over = values.get(f.name), overrides.get(f.name)
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(sub, dict) and isinstance(over, dict):
            values = {**values, f.name: _cli_presets(hints[f.name], sub, over, f"{source} {f.name}")}
    return values


def _differs(winner: dict, loser: dict, prefix: str = "") -> list[str]:
    """``key: loser -> winner`` for every key both set to different values (nested keys dotted)."""
    out = []
    for k, v in winner.items():
        if k == "preset" or k not in loser:
            continue
        if isinstance(v, dict) and isinstance(loser[k], dict):
            out += _differs(v, loser[k], f"{prefix}{k}.")
        elif v != loser[k]:
            out.append(f"{prefix}{k}: {loser[k]!r} -> {v!r}")
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg) -> str:
    """Stable short hash of a config dataclass (or of a plain dict of its values)."""
    values = cfg if isinstance(cfg, dict) else to_dict(cfg)
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
