"""``revgen synthesize``: backward model over a corpus -> resumable shards of Alpaca records.

corpus -> documents -> segments -> prompts (the adapter's own template) -> generator -> records.
Records carry the Alpaca fields (instruction, input "", output = the source segment) plus
provenance under ``meta``. Generations cut by the length limit or empty are not records: they go
to ``NNNNN.dropped.jsonl`` with their reason and are counted in run.json.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from revgen import config as cfgmod
from revgen import runinfo, shards
from revgen.corpus import CorpusStats, read_documents
from revgen.errors import UserError
from revgen.generate import Sampling, get_generator, resolve_backend
from revgen.models import adapter_base_model
from revgen.progress import Progress
from revgen.prompts import encode_prompt, get_template
from revgen.segment import Segmenter

log = logging.getLogger(__name__)
# Knobs that change speed or scope of work, not what a record says: a resume may change them.
RESUMABLE = {"overwrite", "threads", "batch_size", "micro_batch_size"}


@dataclass
class SynthConfig:
    corpus: str = ""
    output_dir: str = "out/synth"
    adapter: str = "runs/backward"  # dir written by `revgen train` (adapter, tokenizer, template)
    model: str | None = None  # base model; default: the one the adapter was trained on
    backend: str = "auto"  # auto: vllm when importable, else transformers
    merge: str | bool = "auto"  # auto: merge the adapter on CPU (vLLM-CPU LoRA is ~20x slower)
    dtype: str = "auto"
    text_field: str = "text"
    id_field: str | None = None
    txt_mode: str = "document"  # .txt files: one document each, or split at blank lines
    split: str = "train"
    on_bad_row: str = "error"  # error | skip (counted)
    max_docs: int | None = None
    max_input_tokens: int = 768  # segment budget
    min_words: int = 10  # shorter segments are skipped and counted
    temperature: float = 0.7  # Humpback; 0 = greedy
    top_p: float = 0.9
    max_new_tokens: int = 128
    num_candidates: int = 1
    seed: int = 0
    shard_size: int = 1000  # segments per shard
    batch_size: int = 256  # prompts per generate call; output flushed after each
    micro_batch_size: int = 64  # transformers backend: sequences per generate call
    threads: int | None = None
    overwrite: bool = False
    engine: dict = field(default_factory=dict)  # extra options for the backend (vLLM LLM kwargs)


def resume_hash(cfg: SynthConfig) -> str:
    values = {k: v for k, v in cfgmod.to_dict(cfg).items() if k not in RESUMABLE}
    return cfgmod.config_hash(values)


def segment_seed(seed: int, shard: int, unit: str) -> int:
    """Per-segment seeds far apart (vLLM's n>1 candidates use consecutive seeds)."""
    return xxhash.xxh64_intdigest(f"{seed}:{shard}:{unit}".encode()) % (2**31)


def _prepare_dir(out: Path, cfg: SynthConfig) -> dict | None:
    run_json = out / "run.json"
    if not run_json.exists():
        return None
    prev = json.loads(run_json.read_text())
    if prev.get("resume_hash") == resume_hash(cfg):
        return prev
    if not cfg.overwrite:
        raise UserError(f"{out} holds a run with a different config (run.json); pass --overwrite to replace it, "
                        "or use another --output-dir")  # fmt: skip
    log.warning("--overwrite: removing the previous run in %s", out)
    shutil.rmtree(out / "shards", ignore_errors=True)
    run_json.unlink()
    return None


def _merged_dir(adapter: Path, base: str) -> Path:
    """A merged bf16 copy of base + adapter, cached by adapter hash (made once, under a lock)."""
    from revgen.models import cache_dir, file_lock
    from revgen.train import merge_adapter

    target = cache_dir() / "merged" / runinfo.dir_hash(adapter)
    with file_lock(target.with_suffix(".lock")):
        if not (target / "config.json").exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            merge_adapter(adapter, base, tmp)
            tmp.rename(target)
    return target


def _items(cfg: SynthConfig, segmenter: Segmenter, corpus_stats: CorpusStats, counts: dict, progress):
    """(unit id, doc, segment index, text), deduplicated, in stable corpus order."""
    seen = set()
    docs = read_documents(cfg.corpus, text_field=cfg.text_field, id_field=cfg.id_field, txt_mode=cfg.txt_mode,
                          on_bad_row=cfg.on_bad_row, split=cfg.split, stats=corpus_stats)  # fmt: skip
    for doc in itertools.islice(docs, cfg.max_docs):
        progress.document()
        for i, text in enumerate(segmenter(doc.text)):
            unit = f"{doc.id}:{i}"
            if unit in seen:
                counts["duplicate_segments"] += 1
                continue
            seen.add(unit)
            yield unit, doc, i, text


def synthesize(cfg: SynthConfig) -> dict:
    """Run (or resume) synthesis into ``cfg.output_dir``; returns the final run.json dict."""
    if not cfg.corpus:
        raise UserError("no corpus given (CORPUS argument or synthesize.corpus in the recipe)")
    if cfg.num_candidates < 1 or cfg.max_new_tokens < 1:
        raise UserError("num_candidates and max_new_tokens must be at least 1")
    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter} is not an adapter directory from `revgen train` (no adapter_config.json)")
    out = Path(cfg.output_dir)
    runinfo.set_threads(cfg.threads)
    with shards.DirLock(out):
        return _run(cfg, adapter, out)


def _run(cfg: SynthConfig, adapter: Path, out: Path) -> dict:
    import torch
    from transformers import AutoTokenizer

    started = time.time()
    _prepare_dir(out, cfg)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    template = get_template(str(adapter))  # the exact template the adapter was trained with
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    backend = resolve_backend(cfg.backend)
    merge = (not torch.cuda.is_available()) if cfg.merge == "auto" else bool(cfg.merge)
    base = adapter_base_model(adapter, cfg.model)
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.num_candidates)
    info = {"command": "synthesize", "status": "running", "config": cfgmod.to_dict(cfg),
            "resume_hash": resume_hash(cfg), "base_model": base, "adapter": str(adapter),
            "adapter_sha256": runinfo.dir_hash(adapter), "backend": backend, "merged": merge,
            "template": template.text, "sampling": sampling.as_dict(), "versions": runinfo.versions(),
            "environment": runinfo.device_info()}  # fmt: skip
    runinfo.write_json(out / "run.json", info)

    segmenter = Segmenter(tokenizer, cfg.max_input_tokens, cfg.min_words)
    corpus_stats = CorpusStats()
    counts = {"duplicate_segments": 0}
    progress = Progress(cfg.corpus)
    meta = {"model": base, "adapter_sha256": info["adapter_sha256"], "backend": backend, "sampling": sampling.as_dict()}
    writer = _ShardWriter(cfg, shard_dir, template, tokenizer, sampling, (backend, base, adapter, merge), meta, progress)
    try:
        for index, items in enumerate(_chunks(_items(cfg, segmenter, corpus_stats, counts, progress), cfg.shard_size)):
            writer.shard(index, items)
    finally:
        progress.close()
        writer.close()
    info.update(status="complete", counts=_count(out, corpus_stats, segmenter, counts), wall_time_s=round(time.time() - started, 1),
                generated_tokens_this_run=progress.tokens, tokens_per_s=progress.tokens_per_s())  # fmt: skip
    runinfo.write_json(out / "run.json", info)
    log.info("synthesis complete: %s", info["counts"])
    return info


def _chunks(iterable, n: int):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _unit(row: dict) -> str:
    """The segment a shard line belongs to (records keep it under meta, dropped lines at top level)."""
    return row["meta"]["segment_id"] if "meta" in row else row["segment_id"]


class _ShardWriter:
    """Generates and appends one shard at a time; the generator loads on the first pending work."""

    def __init__(self, cfg, shard_dir, template, tokenizer, sampling, spec, meta, progress):
        self.cfg, self.shard_dir, self.template, self.tokenizer = cfg, shard_dir, template, tokenizer
        self.sampling, self.spec, self.meta, self.progress = sampling, spec, meta, progress
        self.generator = None

    def shard(self, index: int, items: list) -> None:
        if shards.is_done(self.shard_dir, index):
            self.progress.skip(len(items))
            return
        complete = shards.recover(self.shard_dir, index, _unit, self.cfg.num_candidates)
        pending = [it for it in items if it[0] not in complete]
        self.progress.skip(len(items) - len(pending))
        kept_path, dropped_path, _ = shards.shard_paths(self.shard_dir, index)
        for start in range(0, len(pending), self.cfg.batch_size):
            kept, dropped = self._batch(index, pending[start : start + self.cfg.batch_size])
            shards.append(kept_path, kept)
            shards.append(dropped_path, dropped)
        shards.mark_done(self.shard_dir, index)

    def _batch(self, index: int, batch: list) -> tuple[list, list]:
        if self.generator is None:
            self.generator = _load_generator(self.cfg, *self.spec)
        prompts = [encode_prompt(self.tokenizer, self.template.prompt(text)) for _, _, _, text in batch]
        seeds = [segment_seed(self.cfg.seed, index, unit) for unit, *_ in batch]
        results = self.generator.generate(prompts, self.sampling, seeds)
        kept, dropped = [], []
        for (unit, doc, seg, text), seed, cands in zip(batch, seeds, results):
            for k, c in enumerate(cands):
                instruction = c.text.strip()
                reason = "length" if c.finish_reason == "length" else ("empty" if not instruction else None)
                meta = {"doc_id": doc.id, "segment_id": unit, "segment": seg, "candidate": k, "source": doc.source,
                        **self.meta, "seed": seed, "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.n_tokens}  # fmt: skip
                if reason:
                    dropped.append({"id": f"{unit}:{k}", "segment_id": unit, "reason": reason,
                                    "instruction": c.text, "meta": meta})  # fmt: skip
                else:
                    kept.append({"id": f"{unit}:{k}", "instruction": instruction, "input": "", "output": text,
                                 "meta": meta})  # fmt: skip
        self.progress.update(len(kept), sum(c.n_tokens for cands in results for c in cands))
        return kept, dropped

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()


def _load_generator(cfg, backend, base, adapter, merge):
    model, lora = (str(_merged_dir(adapter, base)), None) if merge and backend == "vllm" else (base, str(adapter))
    max_len = cfg.engine.get("max_model_len") or cfg.max_input_tokens + 256 + cfg.max_new_tokens
    options = {k: v for k, v in cfg.engine.items() if k != "max_model_len"}
    gen = get_generator(backend, model, lora, merge=merge, dtype=cfg.dtype, max_model_len=max_len,
                        batch_size=cfg.micro_batch_size, options=options)  # fmt: skip
    return gen.load()


def _count(out: Path, corpus_stats: CorpusStats, segmenter: Segmenter, counts: dict) -> dict:
    from collections import Counter

    records = sum(1 for _ in shards.iter_records(out))
    reasons = Counter(r["reason"] for r in shards.iter_records(out, dropped=True))
    return {"documents": corpus_stats.documents, "bad_rows": corpus_stats.bad_rows,
            "bad_row_examples": corpus_stats.bad_row_examples, **vars(segmenter.stats), **counts,
            "records": records, **{f"dropped/{k}": v for k, v in sorted(reasons.items())},
            "shards": len(list((out / "shards").glob("*.done")))}  # fmt: skip
