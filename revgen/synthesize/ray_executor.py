"""``--engine ray``: Ray Data reads and segments the corpus, an actor pool generates, the driver writes.

1. Ray Data reads the corpus, one task per file, with revgen's own reader and segmenter (so ids,
   bad-row handling and segments are those of a local run), order preserved.
2. The driver cuts the segment stream into shards exactly like a local run (same shard indices,
   seeds and batches) and skips what the shard files already hold (resume, shards.py).
3. ``map_batches`` runs revgen's generator in an actor pool (``--data-parallel`` actors, one GPU
   each on GPU clusters); Ray restarts a dead actor and retries its batch.
4. The driver, the only writer, appends each batch in order and marks shards done: the same files
   a local run writes. vLLM's own Ray Data LLM processor is not used: it renders prompts and
   sampling itself, and revgen's guarantee is token-identical prompts and per-segment seeds.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from revgen import config as cfgmod
from revgen import shards
from revgen.errors import UserError
from revgen.synthesize.corpus import Document

log = logging.getLogger(__name__)


def corpus_sources(corpus: str) -> list[str]:
    """The units Ray Data reads in parallel: the files of a local corpus, or a Hub id as one source."""
    from revgen.synthesize.corpus import _files

    path = Path(corpus).expanduser()
    return [str(f) for f in _files(path)] if path.exists() else [corpus]


class _Segment:
    """Ray Data stage: one corpus source -> one row per document with its segments and stats."""

    def __init__(self, cfg_dict: dict):
        from revgen.synthesize.core import Context, SynthConfig

        self.ctx = Context.build(cfgmod.build(SynthConfig, cfg_dict, "ray job"))

    def __call__(self, row: dict):
        from revgen.synthesize.corpus import CorpusStats, read_documents

        cfg, stats = self.ctx.cfg, CorpusStats()
        docs = read_documents(row["source"], text_field=cfg.text_field, id_field=cfg.id_field, txt_mode=cfg.txt_mode,
                              on_bad_row=cfg.on_bad_row, split=cfg.split, stats=stats,
                              html_field=cfg.html_field)  # fmt: skip
        for doc in docs:
            seg = self.ctx.segmenter()
            texts = seg(doc.text, doc.site)
            yield {"payload": json.dumps({"id": doc.id, "source": doc.source, "segments": texts,
                                          "stats": vars(seg.stats), "dropped": seg.dropped,
                                          "removed": dict(seg.removed)})}  # fmt: skip
        yield {"payload": json.dumps({"bad_rows": stats.bad_rows, "bad_row_examples": stats.bad_row_examples})}


class _Generate:
    """Ray Data stage (actor pool): one batch of one shard -> its records, as JSON."""

    def __init__(self, cfg_dict: dict):
        from revgen import runinfo
        from revgen.synthesize.core import Context, SynthConfig
        from revgen.synthesize.shardwork import load_generator

        cfg = cfgmod.build(SynthConfig, cfg_dict, "ray job")
        runinfo.set_threads(cfg.threads or 1)
        self.ctx = Context.build(cfg)
        self.generator = load_generator(self.ctx)

    def __call__(self, batch: dict) -> dict:
        from revgen.synthesize.shardwork import generate_batch

        out = {"payload": []}
        for payload in batch["payload"]:
            job = json.loads(payload)
            items = [(u, Document(d, "", s), seg, t) for u, d, s, seg, t in job["items"]]
            t = time.perf_counter()
            kept, dropped, tokens, _ = generate_batch(self.ctx, self.generator, job["index"], items)
            out["payload"].append(json.dumps({"index": job["index"], "kept": kept, "dropped": dropped, "tokens": tokens,
                                              "generate_s": time.perf_counter() - t}))  # fmt: skip
        return out


def run_ray(ctx, out: Path) -> dict:
    import ray
    import torch

    from revgen.progress import Progress
    from revgen.synthesize.core import _chunks
    from revgen.synthesize.shardwork import pending_batches

    cfg = ctx.cfg
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, configure_logging=False)
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.execution_options.preserve_order = True  # shard plan and file bytes as in a local run
    data_ctx.enable_progress_bars = False
    cfg_dict = cfgmod.to_dict(cfg)
    progress, shard_dir = Progress(cfg.corpus), out / "shards"
    from collections import Counter

    from revgen.synthesize.segment import SegmentStats
    from revgen.synthesize.select import DROPPED

    passed = {"corpus": {"documents": 0, "bad_rows": 0, "bad_row_examples": []}, "counts": {"duplicate_segments": 0},
              "segments": vars(SegmentStats()), "removed": Counter()}  # fmt: skip
    selector = ctx.selector(out / DROPPED)
    sources = ray.data.from_items([{"source": s} for s in corpus_sources(cfg.corpus)])
    segmented = sources.flat_map(_Segment, fn_constructor_kwargs={"cfg_dict": cfg_dict},
                                 compute=ray.data.ActorPoolStrategy(size=1))  # fmt: skip
    items = _items(_unwrap(segmented.iter_rows()), cfg, passed, progress, selector)
    jobs, remaining = [], {}
    for index, shard_items in enumerate(_chunks(items, cfg.shard_size)):
        batches = pending_batches(cfg, shard_dir, index, shard_items, progress)
        if batches == []:
            shards.mark_done(shard_dir, index)  # every unit was already written before a crash
        for batch in batches or []:
            remaining[index] = remaining.get(index, 0) + 1
            jobs.append({"payload": json.dumps({"index": index, "items": [(u, d.id, d.source, s, t)
                                                                          for u, d, s, t in batch]})})  # fmt: skip
    passed["tokens"], busy = 0, 0.0
    if jobs:
        gpus = 1 if torch.cuda.is_available() else 0
        generated = ray.data.from_items(jobs).map_batches(
            _Generate,
            fn_constructor_kwargs={"cfg_dict": cfg_dict},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=cfg.data_parallel),
            num_gpus=gpus,
            num_cpus=0 if gpus else (cfg.threads or 1),
        )  # fmt: skip  (Ray restarts a dead actor and retries its batch: its defaults for actor pools)
        for res in _unwrap(generated.iter_rows()):
            shards.append(shards.shard_paths(shard_dir, res["index"])[0], res["kept"])
            shards.append(shards.shard_paths(shard_dir, res["index"])[1], res["dropped"])
            remaining[res["index"]] -= 1
            if not remaining[res["index"]]:
                shards.mark_done(shard_dir, res["index"])
            progress.update(len(res["kept"]), res["tokens"])
            passed["tokens"] += res["tokens"]
            busy += res["generate_s"]
        passed["generate_s"] = round(busy / cfg.data_parallel, 2)  # actors generate side by side
    progress.close()
    if selector is not None:
        selector.close()
    passed["funnel"] = {f"boilerplate/{k}": v for k, v in sorted(passed.pop("removed").items())}
    passed["funnel"].update(sorted(selector.counts.items()) if selector is not None else {})
    return passed


def _items(rows, cfg, passed: dict, progress, selector=None):
    """Documents -> (unit, doc, segment index, text), as synthesize._items does for a local run."""
    from revgen.synthesize.shardwork import units

    seen, docs = {}, 0
    for row in rows:
        if "bad_rows" in row:
            passed["corpus"]["bad_rows"] += row["bad_rows"]
            passed["corpus"]["bad_row_examples"] = (passed["corpus"]["bad_row_examples"] + row["bad_row_examples"])[:20]
            continue
        if cfg.max_docs is not None and docs >= cfg.max_docs:
            continue
        docs += 1
        passed["corpus"]["documents"] += 1
        for k, v in row["stats"].items():
            passed["segments"][k] += v
        passed["removed"].update(row["removed"])
        progress.document()
        doc = Document(row["id"], "", row["source"])
        if selector is not None:
            selector.skipped(doc, row["dropped"])
        yield from units(doc, row["segments"], seen, passed["counts"], selector)


def _unwrap(rows):
    """Rows' JSON payloads; a UserError raised inside a Ray task comes out as itself, not a traceback."""
    try:
        for row in rows:
            yield json.loads(row["payload"])
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, UserError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if cause is not None:
            raise UserError(cause.message) from None
        raise
