"""Strict config loading: dataclass defaults < recipe YAML section < CLI overrides.

A recipe is a YAML mapping of sections (``train:``, ``synthesize:``, ...), one per command. Each
section fills that command's config dataclass; an unknown key anywhere is an error naming the
file and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path

import yaml

from revgen.errors import UserError

SECTIONS = ("train", "forward", "synthesize", "curate", "eval", "eval_forward")


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
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return out


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
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UserError(f"{source}: {name!r} must be a mapping")
            value = build(hint, value, f"{source} {name}")
        kwargs[name] = value
    return cls(**kwargs)


def load(cls, section: str, recipe: str | Path | None = None, overrides: dict | None = None):
    """Build command config ``cls`` from a recipe section and CLI overrides."""
    values = read_recipe(recipe).get(section, {}) if recipe else {}
    values = merge(values, {k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, values, f"recipe {recipe} section {section!r}" if recipe else "config")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg) -> str:
    """Stable short hash of a config dataclass (or of a plain dict of its values)."""
    values = cfg if isinstance(cfg, dict) else to_dict(cfg)
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
