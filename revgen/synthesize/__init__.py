"""Synthesis stage: corpus -> segments -> prompts -> generator -> resumable shards of records.

``run`` owns the run directory (identity, resume, overwrite) and picks an executor; ``core`` is
what every executor shares (config, context, one process's work); ``shardwork`` generates one
shard's records; ``parallel`` (``--data-parallel``) and ``ray_executor`` (``--engine ray``) spread
shards over processes; ``corpus`` reads documents, ``segment`` cuts them to the token budget.
"""

from revgen.exports import lazy

__all__ = ["SynthConfig", "synthesize"]
__getattr__ = lazy(__name__, {"SynthConfig": "core", "synthesize": "run"})
