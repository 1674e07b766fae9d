"""The record chain both curation paths share: reading records, the filter chain, the export row."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from revgen import shards
from revgen.curate.dedup import ExactDedup, NearDedup
from revgen.curate.filters import instruction_filters
from revgen.curate.filters.output import output_filters
from revgen.errors import UserError
from revgen.io import iter_jsonl

FORMATS = ("alpaca", "sharegpt", "messages", "prompt-completion")


def read_records(source: str, problems: dict | None = None):
    path = Path(source)
    if path.is_dir():
        if not any((path / "shards").glob("*.jsonl")) and not any(path.glob("[0-9]*.jsonl")):
            raise UserError(f"{path} holds no shards (expected the output dir of `revgen synthesize`)")
        yield from shards.iter_records(path, problems=problems if problems is not None else {})
        return
    if not path.is_file():
        raise UserError(f"curate input {source} is neither a synthesize run dir nor a .jsonl file")
    for n, r in iter_jsonl(path):
        missing = (
            [k for k in ("instruction", "output") if not isinstance(r.get(k), str)]
            if isinstance(r, dict)
            else ["object"]
        )
        if missing:
            raise UserError(f"{path} line {n}: expected string fields instruction and output (bad: {missing})")
        r.setdefault("id", f"line-{n}")
        r.setdefault("input", "")
        yield r


def export(record: dict, fmt: str) -> dict:
    """One dataset row in ``fmt``; every value is a string (datasets #7322: no type drift)."""
    instruction, inp, output = str(record["instruction"]), str(record.get("input") or ""), str(record["output"])
    prompt = f"{instruction}\n\n{inp}" if inp else instruction
    if fmt == "alpaca":
        return {"instruction": instruction, "input": inp, "output": output}
    if fmt == "sharegpt":
        return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": output}]}
    if fmt == "messages":
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]}
    return {"prompt": prompt, "completion": output}


def build_filters(cfg, dedup: bool = True) -> list:
    chain = instruction_filters(**asdict(cfg.instruction))
    chain += output_filters(cfg.gopher, cfg.language)
    d = cfg.dedup
    if not dedup:  # the staged path dedups across files from datatrove's stages
        return chain
    if d.exact:
        chain.append(ExactDedup())
    for name, on in (("instruction", d.near_instruction), ("output", d.near_output)):
        if on:
            chain.append(NearDedup(name, d.ngram, d.bands, d.rows, d.threshold))
    if d.semantic:
        from revgen.curate.dedup import SemanticDedup

        chain.append(SemanticDedup(d.semantic_field, d.semantic_threshold, d.semantic_model))
    return chain
