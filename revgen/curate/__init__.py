"""Curation stage: filters, deduplication and self-curation scores turn records into a dataset.

``curation`` runs the chain and writes dataset.jsonl / rejected.jsonl / stats.json; ``filters``
holds the instruction, text and language filters; ``dedup`` exact, near (MinHash) and semantic
deduplication; ``scorers`` the log-prob rubric, IFD and cycle scores and selection; ``judge`` the
generate-and-parse rubric judge.
"""

from revgen.exports import lazy

__all__ = ["CurateConfig", "curate"]
__getattr__ = lazy(__name__, dict.fromkeys(__all__, "curation"))
