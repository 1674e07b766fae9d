"""The synthesis core every executor shares: the config, the run context and one process's work.

``run.py`` manages the run directory and picks an executor (this process, ``--data-parallel``
workers in parallel.py, Ray in ray_executor.py); the executors import this module, never the other way
round, so the dependencies point one way.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

from revgen import openers, runinfo, tasktypes
from revgen.errors import UserError
from revgen.generate import Sampling
from revgen.generate.choose import choose_backend
from revgen.models import adapter_base_model
from revgen.progress import Progress
from revgen.prompts import get_template
from revgen.synthesize.boilerplate import Boilerplate
from revgen.synthesize.corpus import CorpusStats, read_documents
from revgen.synthesize.segment import LABELS, Segmenter
from revgen.synthesize.select import DROPPED, Selector, SelectSettings
from revgen.synthesize.shardwork import ShardWriter, units

LEARN_DOCS = 5000  # documents read first to find each site's repeated lines (boilerplate.py)


@dataclass
class SynthConfig:
    corpus: str = ""
    output_dir: str = "out/synth"
    adapter: str = "runs/backward"  # dir written by `revgen train` (adapter, tokenizer, template)
    model: str | None = None  # base model; default: the one the adapter was trained on
    backend: str = "auto"  # auto: vllm when importable, transformers for a small job (generate/choose.py)
    merge: str | bool = "auto"  # auto: merge the adapter on CPU (vLLM-CPU LoRA is ~20x slower)
    dtype: str = "auto"
    text_field: str = "text"
    html_field: str | None = None  # jsonl/parquet/Hub rows whose HTML is in this field (extracted with trafilatura)
    id_field: str | None = None
    txt_mode: str = "document"  # .txt files: one document each, or split at blank lines
    split: str = "train"
    on_bad_row: str = "error"  # error | skip (counted)
    max_docs: int | None = None
    max_input_tokens: int = 768  # segment budget
    min_words: int = 10  # shorter segments are skipped and counted
    # passages judged before any prompt is built: page chrome, tables/listings, curate's output-only
    # checks (Gopher, language, duplicates); see revgen/synthesize/select.py
    select: SelectSettings = field(default_factory=SelectSettings)
    temperature: float = 0.7  # Humpback; 0 = greedy
    top_p: float = 0.9
    max_new_tokens: int = 128
    num_candidates: int = 1
    # per segment, N more candidates whose decoding begins with an opener drawn from the seed data's
    # first words (revgen/openers.py: "List", "Summarize", "Given", ...); curation picks what fits
    # (None: 3 when the adapter has its openers.json, 0 without; 0: one free instruction per passage)
    openers: int | None = None
    # the pmi fit of every candidate scored where it is generated (vLLM and transformers), into
    # meta["scores"]; curate reads it instead of loading the backward model again (synthesize/fit.py)
    fit_score: bool = True
    opener_kinds: str = "both"  # both (half requests, half questions) | requests (no question openers) | any
    task_mix: str | dict | None = None  # typed backward model: auto (it names the type), seed, or TYPE=W,TYPE=W
    seed: int = 0
    shard_size: int = 1000  # segments per shard
    batch_size: int = 256  # prompts per generate call; output flushed after each
    micro_batch_size: int = 64  # transformers backend: sequences per generate call
    threads: int | None = None
    overwrite: bool = False
    engine: dict = field(default_factory=dict)  # extra options for the backend (vLLM LLM kwargs)
    data_parallel: int = 1  # engine processes on this machine, one per GPU (shard i -> process i % N)
    executor: str = "local"  # local | ray (Ray Data reads the corpus, an actor pool generates)
    ray_address: str | None = None  # an existing Ray cluster; default: start a local one
    max_restarts: int = 2  # a dead data-parallel worker is restarted this often, then the run stops
    trust_remote_code: bool = False  # let the model's own Python code run (opt-in, recorded)
    base_url: str | None = None  # backend openai: the server, e.g. http://127.0.0.1:8000/v1
    served_model: str | None = None  # backend openai: the model name the server serves (the adapter, merged or not)
    api_key_env: str | None = None  # backend openai: the variable holding the key (default OPENAI_API_KEY)
    concurrency: int = 16  # backend openai: requests in flight


@dataclass
class Context:
    """What every process of a run shares: the adapter's template and tokenizer, backend, sampling."""

    cfg: SynthConfig
    adapter: Path
    template: object
    tokenizer: object
    backend: str
    merge: bool
    base: str
    sampling: Sampling
    adapter_sha256: str
    task_types: dict | None = None  # seed counts per type of a typed backward model (tasktypes.py)
    task_mix: dict | None = None  # forced types are drawn from this mix; None: the model names them
    openers: dict | None = None  # the adapter's seed openers with counts (when cfg.openers > 0)
    backend_why: str = ""  # why this backend (auto: vLLM, or transformers for a small job)
    boilerplate: Boilerplate | None = None  # the line pass, each site's repeated lines learned (on first use)

    @classmethod
    def build(cls, cfg: SynthConfig) -> "Context":
        import torch
        from transformers import AutoTokenizer

        adapter = Path(cfg.adapter)
        if cfg.openers is None:  # run.resolve fills it in (and says why); built directly, the same default
            cfg = dataclasses.replace(cfg, openers=openers.default_count(adapter, cfg.opener_kinds)[0])
        merge = (not torch.cuda.is_available()) if cfg.merge == "auto" else bool(cfg.merge)
        sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.num_candidates)
        types = tasktypes.load(adapter)
        # a job bounded by max_docs is small enough to know: segments ~ documents (a long one splits)
        job = cfg.max_docs * (cfg.num_candidates + cfg.openers) * cfg.max_new_tokens if cfg.max_docs else None
        backend, why = choose_backend(cfg.backend, job)
        return cls(cfg, adapter, get_template(str(adapter)), AutoTokenizer.from_pretrained(str(adapter)),
                   backend, merge, adapter_base_model(adapter, cfg.model), sampling,
                   runinfo.dir_hash(adapter), types, tasktypes.parse_mix(cfg.task_mix, types, str(adapter)),
                   _openers(adapter, cfg.openers, cfg.opener_kinds), why)  # fmt: skip

    @property
    def meta(self) -> dict:
        meta = {"model": self.base, "adapter_sha256": self.adapter_sha256, "backend": self.backend,
                "sampling": self.sampling.as_dict()}  # fmt: skip
        if self.backend == "openai":
            from revgen.generate.openai_server import public_url

            meta.update(server=public_url(self.cfg.base_url or ""), served_model=self.cfg.served_model)
        return meta

    def segmenter(self) -> Segmenter:
        """The corpus pass's segmenter (the first call reads the corpus once for the line pass)."""
        sel = self.cfg.select
        if self.boilerplate is None and sel.enabled and sel.boilerplate:
            self.boilerplate = learn_boilerplate(self.cfg)
        keep = sel.keep_blocks if sel.enabled else LABELS  # no selection: every block is a passage
        return Segmenter(self.tokenizer, self.cfg.max_input_tokens, self.cfg.min_words, keep, self.boilerplate)

    def selector(self, sink: Path | None = None) -> Selector | None:
        return Selector(self.cfg.select, sink) if self.cfg.select.enabled else None


def documents(cfg: SynthConfig, stats: CorpusStats | None = None, extract: bool = True):
    return read_documents(cfg.corpus, text_field=cfg.text_field, id_field=cfg.id_field, txt_mode=cfg.txt_mode,
                          on_bad_row=cfg.on_bad_row, split=cfg.split, stats=stats, html_field=cfg.html_field,
                          extract=extract)  # fmt: skip


def learn_boilerplate(cfg: SynthConfig) -> Boilerplate | None:
    """The line pass, having read the first LEARN_DOCS text documents for each site's repeated lines
    (HTML is left out: the extractor already dropped its page furniture)."""
    if not (cfg.select.enabled and cfg.select.boilerplate):
        return None
    found = Boilerplate()
    for doc in itertools.islice(documents(cfg, extract=False), min(cfg.max_docs or LEARN_DOCS, LEARN_DOCS)):
        found.learn(doc.text, doc.site)
    return found


def _items(cfg: SynthConfig, segmenter: Segmenter, corpus_stats: CorpusStats, counts: dict, progress,
           selector: Selector | None = None):  # fmt: skip
    """(unit id, doc, segment index, text), deduplicated and selected, in stable corpus order."""
    seen = {}
    for doc in itertools.islice(documents(cfg, corpus_stats), cfg.max_docs):
        progress.document()
        segments = segmenter(doc.text, doc.site)
        if selector is not None:
            selector.skipped(doc, segmenter.dropped)
        yield from units(doc, segments, seen, counts, selector)


def work(ctx: Context, out: Path, rank: int = 0, world: int = 1, progress: Progress | None = None) -> dict:
    """Generate this process's shards (index % world == rank); returns what the corpus pass counted.
    Every process makes the same corpus pass; rank 0 writes the passages left out."""
    cfg, segmenter, corpus_stats, counts = ctx.cfg, ctx.segmenter(), CorpusStats(), {"duplicate_segments": 0}
    selector = ctx.selector(out / DROPPED if rank == 0 else None)
    progress = progress or Progress(cfg.corpus)
    writer = ShardWriter(ctx, out / "shards", progress)
    try:
        items = _items(cfg, segmenter, corpus_stats, counts, progress, selector)
        for index, chunk in enumerate(_chunks(items, cfg.shard_size)):
            if index % world == rank:
                writer.shard(index, chunk)
            else:
                progress.skip(len(chunk))
    finally:
        progress.close()
        writer.close()
        if selector is not None:
            selector.close()
    return {"corpus": asdict(corpus_stats), "segments": vars(segmenter.stats), "counts": counts,
            "funnel": funnel(segmenter, selector), "tokens": progress.tokens, "prompt_tokens": writer.prompt_tokens,
            "generate_s": round(writer.generate_s, 2)}  # fmt: skip


def funnel(segmenter: Segmenter, selector: Selector | None) -> dict:
    """Lines the boilerplate pass removed and passages selection dropped, by reason."""
    out = {f"boilerplate/{k}": v for k, v in sorted(segmenter.removed.items())}
    if selector is not None:
        out.update(sorted(selector.counts.items()))
    return out


def _chunks(iterable, n: int):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _openers(adapter: Path, n: int, kinds: str) -> dict | None:
    if n < 1:
        return None
    found = openers.load(adapter)
    if not found:
        raise UserError(f"--openers needs {adapter}/{openers.FILE} (written by `revgen train` since 2026-11-30): "
                        "retrain the backward model, or run without --openers")  # fmt: skip
    found = openers.restrict(found, kinds)
    if not found:
        raise UserError(f"{adapter}/{openers.FILE} has no openers of kind {kinds!r}")
    where = f"{adapter}/{openers.FILE}"
    if kinds == "both":
        missing = [name for name, q in (("requests", False), ("questions", True))
                   if not any(openers.opens_question(w.lower()) == q for w in found)]  # fmt: skip
        if missing:
            raise UserError(f"--opener-kinds both: {where} has no {missing[0]} among its openers; "
                            "pass --opener-kinds any (or requests) to draw from what it has")  # fmt: skip
    most = openers.capacity(found, kinds)
    if n > most:
        raise UserError(f"--openers {n}: {where} gives at most {most} distinct openers of kind {kinds!r} per "
                        f"segment; pass --openers {most} or fewer")  # fmt: skip
    return found
