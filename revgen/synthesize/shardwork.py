"""Generating the records of one shard: pending batches, prompts, seeds, records, appends.

Shared by every executor (one process, ``--data-parallel`` workers, Ray actors): a shard's
batches are cut the same way and every segment gets the same seed whoever generates it, so
the records do not depend on how the work was spread. ``ctx`` is a ``core.Context`` (not
imported: the core imports this module, not the reverse).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import xxhash

from revgen import openers, shards, tasktypes
from revgen.generate import get_generator
from revgen.models import merged_dir
from revgen.prompts import encode_prompt


def segment_seed(seed: int, shard: int, unit: str) -> int:
    """Per-segment seeds far apart (vLLM's n>1 candidates use consecutive seeds)."""
    return xxhash.xxh64_intdigest(f"{seed}:{shard}:{unit}".encode()) % (2**31)


def units(doc, segments: list[str], seen: dict, counts: dict, selector=None):
    """(unit id, doc, segment index, text) for a document's segments; a repeated unit (same id, same
    text) is counted, not yielded; the same id with other text is an error (ids must name one text).
    A ``selector`` (select.py) leaves out the passages it drops (their ids stay unused)."""
    for i, text in enumerate(segments):
        unit = f"{doc.id}:{i}"
        digest = xxhash.xxh64_intdigest(text.encode("utf-8"))
        if unit in seen:
            first_digest, first_source = seen[unit]
            if first_digest != digest:
                from revgen.errors import UserError

                raise UserError(f"{doc.source}: document id {doc.id!r} was already used by {first_source} for a "
                                "different text; ids must be unique (fix the id field, or drop --id-field to use "
                                "content hashes)")  # fmt: skip
            counts["duplicate_segments"] += 1
            continue
        seen[unit] = (digest, doc.source)
        if selector is None or selector(unit, doc, text):
            yield unit, doc, i, text


def _unit(row: dict) -> str:
    """The segment a shard line belongs to (records keep it under meta, dropped lines at top level)."""
    return row["meta"]["segment_id"] if "meta" in row else row["segment_id"]


class ShardWriter:
    """Generates and appends one shard at a time; the generator loads on the first pending work."""

    def __init__(self, ctx, shard_dir: Path, progress):
        self.ctx, self.shard_dir, self.progress = ctx, shard_dir, progress
        self.generator = None
        self.generate_s = 0.0  # time inside the generator, model loading excluded
        self.prompt_tokens = 0  # prompt tokens of this run's generate calls (a prompt with n candidates once)

    def shard(self, index: int, items: list) -> None:
        batches = pending_batches(self.ctx.cfg, self.shard_dir, index, items, self.progress)
        for batch in batches or []:
            if self.generator is None:
                self.generator = load_generator(self.ctx)
            t = time.perf_counter()
            kept, dropped, tokens, prompts = generate_batch(self.ctx, self.generator, index, batch)
            self.prompt_tokens += prompts
            self.generate_s += time.perf_counter() - t
            write_batch(self.shard_dir, index, kept, dropped)
            self.progress.update(len(kept), tokens)
        if batches is not None:
            shards.mark_done(self.shard_dir, index)

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()


def pending_batches(cfg, shard_dir: Path, index: int, items: list, progress) -> list | None:
    """The batches shard ``index`` still needs (None: the shard is done); partial units are cut away."""
    if shards.is_done(shard_dir, index):
        progress.skip(len(items))
        return None
    complete = shards.recover(shard_dir, index, _unit, cfg.num_candidates + cfg.openers)  # lines per finished segment
    pending = [it for it in items if it[0] not in complete]
    progress.skip(len(items) - len(pending))
    return [pending[i : i + cfg.batch_size] for i in range(0, len(pending), cfg.batch_size)]


def write_batch(shard_dir: Path, index: int, kept: list, dropped: list) -> None:
    kept_path, dropped_path, _ = shards.shard_paths(shard_dir, index)
    shards.append(kept_path, kept)
    shards.append(dropped_path, dropped)


def batch_prompts(ctx, index: int, batch: list) -> dict:
    """The exact prompts a batch generates from: per segment its seed, forced type and free prompt;
    per opener candidate its (segment, slot, opener), prompt and seed. The dry run counts these."""
    cfg, template = ctx.cfg, ctx.template
    seeds = [segment_seed(cfg.seed, index, unit) for unit, *_ in batch]
    forced = [tasktypes.draw(ctx.task_mix, seed) if ctx.task_mix else None for seed in seeds]
    heads = [template.prompt(text) + (tasktypes.prefix(t) if t else "") for (_, _, _, text), t in zip(batch, forced)]
    jobs = []
    if ctx.openers:
        picks = [openers.draw(ctx.openers, cfg.openers, seed, cfg.opener_kinds) for seed in seeds]
        jobs = [(i, j, w) for i, ws in enumerate(picks) for j, w in enumerate(ws)]
    return {
        "seeds": seeds,
        "forced": forced,
        "free": [encode_prompt(ctx.tokenizer, h) for h in heads],
        "jobs": jobs,
        "openers": [encode_prompt(ctx.tokenizer, heads[i] + (" " if forced[i] else "") + w) for i, _, w in jobs],
        "opener_seeds": [segment_seed(cfg.seed, index, f"{batch[i][0]}#opener{j}") for i, j, _ in jobs],
    }


def prompt_tokens(prompts: dict) -> int:
    return sum(map(len, prompts["free"])) + sum(map(len, prompts["openers"]))


def generate_batch(ctx, generator, index: int, batch: list) -> tuple[list, list, int, int]:
    """Records and dropped lines for one batch of (unit, doc, segment, text) items, tokens generated and
    prompt tokens: ``num_candidates`` free candidates per segment, then ``openers`` candidates begun with
    a seed opener."""
    cfg, meta_base = ctx.cfg, ctx.meta
    p = batch_prompts(ctx, index, batch)
    seeds, forced, jobs = p["seeds"], p["forced"], p["jobs"]
    if getattr(generator, "shares_prefix", False) and cfg.num_candidates + cfg.openers > 1:
        rows = shared_rows(ctx, generator, p)
    else:
        results = generator.generate(p["free"], ctx.sampling, seeds)
        rows = [[(c, None) for c in cands] for cands in results]
        if jobs:
            one = dataclasses.replace(ctx.sampling, n=1)
            for (i, _, w), cands in zip(jobs, generator.generate(p["openers"], one, p["opener_seeds"])):
                rows[i].extend((c, w) for c in cands)
    kept, dropped = [], []
    for (unit, doc, seg, text), seed, cands, force in zip(batch, seeds, rows, forced):
        for k, (c, opener) in enumerate(cands):
            body = (opener + c.text) if opener else c.text
            task_type, instruction = (force, body.strip()) if force else (
                tasktypes.split(body) if ctx.task_types else (None, body.strip()))  # fmt: skip
            reason = "length" if c.finish_reason == "length" else ("empty" if not instruction else None)
            meta = {"doc_id": doc.id, "segment_id": unit, "segment": seg, "candidate": k, "source": doc.source,
                    **meta_base, "seed": seed, "finish_reason": c.finish_reason,
                    "prompt_tokens": c.prompt_tokens, "completion_tokens": c.n_tokens}  # fmt: skip
            if ctx.task_types:
                meta.update(task_type=task_type, task_type_forced=bool(force))
            if ctx.openers:
                meta["opener"] = opener  # None: a free candidate
            if c.scores:
                meta["scores"] = c.scores
            if reason:
                dropped.append({"id": f"{unit}:{k}", "segment_id": unit, "reason": reason,
                                "instruction": body, "meta": meta})  # fmt: skip
            else:
                kept.append({"id": f"{unit}:{k}", "instruction": instruction, "input": "", "output": text,
                             "meta": meta})  # fmt: skip
    return kept, dropped, sum(c.n_tokens for cands in rows for c, _ in cands), prompt_tokens(p)


def shared_rows(ctx, generator, p: dict) -> list[list[tuple]]:
    """A batch's candidates decoded per passage on one prefill (generate_shared): the free ones, then
    the openers', each with how many of its prompt's last tokens are the forced opener."""
    from revgen.generate.shared import common_prefix

    groups = [[(free, 0)] * ctx.cfg.num_candidates for free in p["free"]]
    words: list[list] = [[None] * ctx.cfg.num_candidates for _ in p["free"]]
    for (i, _, w), prompt in zip(p["jobs"], p["openers"]):
        groups[i].append((prompt, len(prompt) - common_prefix([prompt, p["free"][i] + [-1]])))
        words[i].append(w)
    cand_seeds = [[seed] * ctx.cfg.num_candidates for seed in p["seeds"]]
    for (i, _, _), seed in zip(p["jobs"], p["opener_seeds"]):
        cand_seeds[i].append(seed)
    results = generator.generate_shared(groups, ctx.sampling, p["seeds"], cand_seeds)
    if ctx.cfg.fit_score:
        from revgen.synthesize import fit

        fit.score(generator, ctx.template, [c for cands in results for c in cands])
    return [list(zip(cands, ws)) for cands, ws in zip(results, words)]


def load_generator(ctx):
    cfg, backend, base, adapter, merge = ctx.cfg, ctx.backend, ctx.base, ctx.adapter, ctx.merge
    if backend == "openai":  # the server holds the model (adapter merged or served as a LoRA); we tokenize
        options = {
            **cfg.engine,
            "base_url": cfg.base_url,
            "served_model": cfg.served_model,
            "concurrency": cfg.concurrency,
            **({"api_key_env": cfg.api_key_env} if cfg.api_key_env else {}),
        }
        return load_or_explain(get_generator("openai", base, str(adapter), options=options), base, str(adapter))
    try:
        model, lora = (
            (str(merged_dir(adapter, base, cfg.dtype)), None) if merge and backend == "vllm" else (base, str(adapter))
        )
    except LOAD_ERRORS as exc:
        raise explain(exc, f"{base} with adapter {adapter}") from None
    max_len = cfg.engine.get("max_model_len") or cfg.max_input_tokens + 256 + cfg.max_new_tokens
    options = {k: v for k, v in cfg.engine.items() if k != "max_model_len"}
    if cfg.trust_remote_code:
        key = "trust_remote_code"
        options = {**options, key: True} if backend == "vllm" else {
            **options, "model_kwargs": {**options.get("model_kwargs", {}), key: True}}  # fmt: skip
    gen = get_generator(backend, model, lora, merge=merge, dtype=cfg.dtype, max_model_len=max_len,
                        batch_size=cfg.micro_batch_size, options=options)  # fmt: skip
    return load_or_explain(gen, model, lora)


LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, ImportError, __import__("json").JSONDecodeError)


def explain(exc: Exception, what: str):
    """A broken model or adapter folder as one line instead of a traceback."""
    from revgen.errors import UserError

    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return UserError(f"could not load {what}: {first} (a missing, truncated or corrupted file?)")


def load_or_explain(gen, model: str, adapter: str | None):
    from revgen.errors import UserError

    try:
        return gen.load()
    except UserError:
        raise
    except Exception as exc:  # safetensors, peft and transformers each raise their own types for a bad file
        raise explain(exc, model + (f" with adapter {adapter}" if adapter else "")) from None
