"""``revgen rewrite``: back-and-forth translation (Nguyen et al. 2024). An instruct model reads each
record's instruction and its original passage and writes the answer an assistant would give, using
only what the passage says; the rewrite becomes ``output`` and the passage stays in ``meta``.

Grounding filters, counted like curation's: a rewrite that drops the passage's content (content-word
recall of the passage below ``min_recall``), adds content the passage lacks (share of its content
words in neither passage nor instruction above ``max_novel``), was cut by the length limit, refuses,
or leaks the prompt is dropped with its reason. Output is resumable shards, as in synthesize.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from revgen import config as cfgmod
from revgen import dtypes, runinfo, shards
from revgen.curate.filters.instruction import Refusal
from revgen.errors import UserError
from revgen.redact import redact

log = logging.getLogger(__name__)
PROMPT = ("Answer the instruction below as a helpful AI assistant. Use only the information in the passage; "
          "do not mention the passage.\n\nInstruction: {instruction}\n\nPassage:\n{passage}")  # fmt: skip
STOP = set("a an the and or but of to in on at for with by from as is are was were be been it its this that these "
           "those i you he she they we his her their our your not no yes do does did have has had can will would "
           "should could may might".split())  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class RewriteConfig:
    input: str = "runs/demo/curate"  # a curate dir (dataset.jsonl), a synthesize dir or a .jsonl of records
    output_dir: str = "runs/rewrite"
    model: str = "smollm2-135m"  # the rewriter: default, local folder, Hub id
    backend: str = "transformers"
    base_url: str | None = None  # backend openai
    served_model: str | None = None
    dtype: str = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0
    batch_size: int = 16
    shard_size: int = 256
    keep_original: bool = False  # also write the un-rewritten record (meta.variant: original)
    min_recall: float | None = 0.3
    max_novel: float | None = 0.5
    engine: dict = field(default_factory=dict)
    allow_partial: bool = False  # rewrite a synthesize run that is still running or was interrupted (as curate)
    trust_remote_code: bool = False  # the rewriter's own Python code runs only when opted in (as synthesize)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP and len(w) > 2}


def prompt_text(instruction: str, passage: str) -> str:
    return PROMPT.format(instruction=instruction, passage=passage)  # one pass: braces in the text stay literal


def grounding(instruction: str, passage: str, rewrite: str, finish: str, min_recall, max_novel) -> str | None:
    """The drop reason for a rewrite, or None to keep it."""
    if finish == "length":
        return "cut_by_length"
    if not rewrite.strip():
        return "empty"
    if Refusal().hit(rewrite):
        return "refusal"
    if re.search(r"(?i)\b(?:passage:|instruction:)|do not mention the passage", rewrite):
        return "prompt_leak"
    src, out = content_words(passage), content_words(rewrite)
    if min_recall is not None and src and len(src & out) / len(src) < min_recall:
        return "drops_content"
    if max_novel is not None and out and len(out - src - content_words(instruction)) / len(out) > max_novel:
        return "adds_content"
    return None


def _input_hash(rows: list[dict]) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.get("id"), r.get("instruction"), r.get("output")], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _records(source: str) -> list[dict]:
    path = Path(source)
    if path.is_dir() and (path / "dataset.jsonl").is_file():
        path = path / "dataset.jsonl"
    if path.is_dir():
        rows = list(shards.iter_records(path))
    elif path.is_file():
        from revgen.io import iter_jsonl

        rows = []
        for n, r in iter_jsonl(path):
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("instruction"), str)
                or not isinstance(r.get("output"), str)
            ):
                raise UserError(f"{path} line {n}: expected a record with string instruction and output (the passage)")
            rows.append({"id": r.get("id", f"line-{n}"), **r})
    else:
        raise UserError(f"rewrite input {source} is neither a curate/synthesize dir nor a .jsonl file")
    if not rows:
        raise UserError(f"{source}: no records to rewrite")
    for i, r in enumerate(rows):
        r.setdefault("id", f"row-{i}")
        if not str(r.get("output", "")).strip():
            raise UserError(f"{source}: record {r['id']} has no output (the passage to rewrite from)")
    return rows


def rewrite(cfg: RewriteConfig) -> dict:
    from revgen.curate.curation import check_source
    from revgen.generate import Sampling, get_generator
    from revgen.models import resolve_model
    from revgen.synthesize.run import check_remote_code
    from revgen.synthesize.shardwork import load_or_explain

    check_remote_code(cfg.engine, cfg.trust_remote_code)  # one gate for every model load
    partial = check_source(cfg.input, cfg.allow_partial)  # the same rule curate applies to its input
    rows = _records(cfg.input)
    out = Path(cfg.output_dir)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    # the tokenizer (and chat template) always comes from a local folder or the converted default, never a
    # Hub fetch; with --backend openai the server is asked which model it serves when --served-model is not given
    model = resolve_model(cfg.model)
    info = {"command": "rewrite", "status": "running", "config": cfgmod.to_dict(cfg), "model": model, "prompt": PROMPT,
            "input_sha256": _input_hash(rows), "partial_input": partial, "versions": runinfo.versions()}  # fmt: skip
    if cfg.backend != "openai":  # a server computes in its own dtype
        info["compute"] = dtypes.choice(cfg.dtype)
    prev = out / "run.json"
    if prev.is_file():
        before = json.loads(prev.read_text())
        if before.get("config") != redact(info["config"]):  # stored redacted
            raise UserError(f"{out} holds a rewrite made with another config; use another --output-dir")
        if before.get("input_sha256", info["input_sha256"]) != info["input_sha256"]:
            raise UserError(f"{out} holds rewrites of other input: {cfg.input} changed since; use another --output-dir")
    runinfo.write_json(prev, info)
    options = {
        **cfg.engine,
        **({"base_url": cfg.base_url, "served_model": cfg.served_model} if cfg.backend == "openai" else {}),
    }
    if cfg.trust_remote_code and cfg.backend != "openai":
        options = {**options, "trust_remote_code": True} if cfg.backend == "vllm" else {
            **options, "model_kwargs": {**options.get("model_kwargs", {}), "trust_remote_code": True}}  # fmt: skip
    gen, per_unit = None, 2 if cfg.keep_original else 1
    sampling = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens)
    try:
        with shards.DirLock(out):
            for index in range(0, (len(rows) + cfg.shard_size - 1) // cfg.shard_size):
                if shards.is_done(shard_dir, index):
                    continue
                part = rows[index * cfg.shard_size : (index + 1) * cfg.shard_size]
                done = shards.recover(shard_dir, index, lambda r: r["meta"]["source_id"], per_unit)
                todo = [r for r in part if r["id"] not in done]
                for start in range(0, len(todo), cfg.batch_size):
                    batch = todo[start : start + cfg.batch_size]
                    if gen is None:
                        gen = load_or_explain(get_generator(cfg.backend, model, None, dtype=cfg.dtype, max_model_len=4096,
                                                            batch_size=cfg.batch_size, options=options), model, None)  # fmt: skip
                    kept, dropped = _rewrite_batch(gen, batch, sampling, cfg, model)
                    kept_path, dropped_path, _ = shards.shard_paths(shard_dir, index)
                    shards.append(kept_path, kept)
                    shards.append(dropped_path, dropped)
                shards.mark_done(shard_dir, index)
    finally:
        if gen is not None:
            gen.close()
    reasons = Counter(r["reason"] for r in shards.iter_records(out, dropped=True))
    records = sum(1 for _ in shards.iter_records(out))
    info.update(status="complete", counts={"input": len(rows), "records": records,
                                           **{f"dropped/{k}": v for k, v in sorted(reasons.items())}})  # fmt: skip
    runinfo.write_json(prev, info)
    return info


def _rewrite_batch(gen, batch, sampling, cfg, model):
    tok = gen.tokenizer
    prompts = []
    for r in batch:
        text = prompt_text(r["instruction"], r["output"])
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]  # fmt: skip
        else:
            ids = tok(text)["input_ids"]
        prompts.append(list(ids))
    results = gen.generate(prompts, sampling, [0] * len(prompts))
    kept, dropped = [], []
    for r, cands in zip(batch, results):
        c = cands[0]
        meta = {**(r.get("meta") or {}), "source_id": r["id"], "passage": r["output"], "rewriter": model,
                "finish_reason": c.finish_reason}  # fmt: skip
        reason = grounding(r["instruction"], r["output"], c.text, c.finish_reason, cfg.min_recall, cfg.max_novel)
        row = {"id": f"{r['id']}:rw", "instruction": r["instruction"], "input": "", "output": c.text.strip(),
               "meta": {**meta, "variant": "rewritten"}}  # fmt: skip
        if reason:
            dropped.append({**row, "reason": reason})
        else:
            kept.append(row)
        if cfg.keep_original:
            kept.append({"id": f"{r['id']}:orig", "instruction": r["instruction"], "input": "", "output": r["output"],
                         "meta": {**meta, "variant": "original"}})  # fmt: skip
    return kept, dropped
