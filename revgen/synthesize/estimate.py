"""``revgen synthesize --dry-run``: what a run would do and cost, before it spends the GPU's time.

One pass over the corpus exactly as the run makes it (extraction, the boilerplate pass, segments,
selection), the exact prompt tokens of every generate call (the same prompts, seeds and opener draws
as the run), then a short measured probe: the model loads and generates for ``probe`` selected
passages drawn evenly at random from the whole corpus (a reservoir sample with a fixed seed). Generated tokens and wall time are extrapolated from the probe; nothing is
written to the output dir.
"""

from __future__ import annotations

import random
import time

from revgen.progress import Progress
from revgen.synthesize.core import Context, SynthConfig, _chunks, _items, funnel
from revgen.synthesize.corpus import CorpusStats
from revgen.synthesize.shardwork import batch_prompts, generate_batch, load_generator, prompt_tokens


def estimate(cfg: SynthConfig, probe: int = 64) -> dict:
    """The run's funnel and its prompt tokens (exact), generated tokens and wall time (from the probe)."""
    if probe < 1:
        from revgen.errors import UserError

        raise UserError(f"--probe must be at least 1, got {probe}")
    started = time.perf_counter()
    ctx = Context.build(cfg)
    segmenter, stats, counts = ctx.segmenter(), CorpusStats(), {"duplicate_segments": 0}
    selector, progress = ctx.selector(None), Progress(cfg.corpus, disable=True)
    first, segments, prompts, rng = [], 0, 0, random.Random(cfg.seed)
    for index, chunk in enumerate(_chunks(_items(cfg, segmenter, stats, counts, progress, selector), cfg.shard_size)):
        for item in chunk:  # reservoir sampling: every passage equally likely to be probed
            segments += 1
            if len(first) < probe:
                first.append(item)
            elif (j := rng.randrange(segments)) < probe:
                first[j] = item
        for i in range(0, len(chunk), cfg.batch_size):
            prompts += prompt_tokens(batch_prompts(ctx, index, chunk[i : i + cfg.batch_size]))
    passed_s = time.perf_counter() - started
    candidates = cfg.num_candidates + cfg.openers
    out = {"documents": stats.documents, "bad_rows": stats.bad_rows, "extracted": stats.extracted,
           **{f"extract/{k}": v for k, v in stats.extract_skipped.items()}, **vars(segmenter.stats),
           **funnel(segmenter, selector), "duplicate_segments": counts["duplicate_segments"],
           "generations": segments * candidates, "prompt_tokens": prompts, "corpus_pass_s": round(passed_s, 1),
           "backend": ctx.backend}  # fmt: skip
    if not first:
        return {**out, "generated_tokens_estimate": 0, "wall_s_estimate": round(passed_s, 1), "probe": 0}
    t = time.perf_counter()
    generator = load_generator(ctx)
    load_s = time.perf_counter() - t
    try:
        t = time.perf_counter()
        _, _, tokens, _ = generate_batch(ctx, generator, 0, first)
        probe_s = time.perf_counter() - t
    finally:
        generator.close()
    per_generation = tokens / (len(first) * candidates)
    gen_s = probe_s * segments / len(first)
    return {**out, "probe": len(first), "probe_s": round(probe_s, 2), "load_s": round(load_s, 1),
            "new_tokens_per_generation": round(per_generation, 1),
            "generated_tokens_estimate": round(per_generation * segments * candidates),
            "generate_s_estimate": round(gen_s, 1), "wall_s_estimate": round(passed_s + load_s + gen_s, 1)}  # fmt: skip
