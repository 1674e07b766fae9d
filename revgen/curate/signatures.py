"""Dedup keys and MinHash signatures: one implementation for the in-process chain and the staged one.

Both paths sign text with datatrove's ``MinhashDedupSignature`` (its permutations, 32-bit xxhash
shingles, its on-disk format), shingled the way revgen always has: lower-cased, punctuation-free
words, n-grams of ``min(ngram, words)`` so a three-word instruction still has a shingle. So a
record is a duplicate in ``revgen curate`` exactly when it is one under ``--executor local``.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

_PUNCT = re.compile(r"[^\w\s]")
PRIME = (1 << 61) - 1  # datatrove's modulus; its bucket reader stops at values >= this


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_key(record: dict, fields=("instruction", "output")) -> int:
    """xxhash64 of the normalised fields, below datatrove's 61-bit bound."""
    return xxhash.xxh64_intdigest("\x00".join(normalize(record[f]) for f in fields).encode()) % PRIME


class _Words(WordTokenizer):
    """Whitespace words (the text is normalised first); no nltk/spacy models to download."""

    def word_tokenize(self, text):
        return text.split()

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


class Signer(MinhashDedupSignature):
    """MinHash of one text field: ``hashvalues`` in memory, or datatrove's signature files on disk."""

    def __init__(self, output_folder: str = "/nonexistent", ngram: int = 5, bands: int = 14, rows: int = 8,
                 seed: int = 1):  # fmt: skip
        cfg = MinhashConfig(n_grams=ngram, num_buckets=bands, hashes_per_bucket=rows, seed=seed,
                            hash_config=HashConfig(precision=32))  # fmt: skip
        super().__init__(output_folder, config=cfg, language=_Words())
        self.ngram = ngram
        self._hash_func = xxhash.xxh32_intdigest  # datatrove's xxhash32, without its wrapper call

    def get_shingles(self, text: str) -> np.ndarray:
        toks = normalize(text).split()
        n = min(self.ngram, max(len(toks), 1))
        grams = {" ".join(toks[i : i + n]) for i in range(max(len(toks) - n + 1, 1))}
        return np.fromiter((self._hash_func(g.encode()) for g in grams), dtype=np.uint64, count=len(grams)).reshape(
            (-1, 1)
        )

    def minhash(self, shingles: np.ndarray) -> np.ndarray:
        a, b = self.parameters
        return np.min(((shingles * a + b) % np.uint64(PRIME)) & np.uint64(0xFFFFFFFF), axis=0).astype(np.uint32)

    def get_signature(self, shingles):
        return self.minhash(shingles).reshape(self.config.num_buckets, -1).tolist()

    def hashvalues(self, text: str) -> np.ndarray:
        return self.minhash(self.get_shingles(text))

    def write_buckets(self, rows: np.ndarray, rank: int) -> None:
        """datatrove's per-band signature files for ``rows`` (row i: document i), sorted as its stage 1 sorts them."""
        cfg = (
            self.config
        )  # explicit shape: a file whose records all failed the filters has no rows (-1 is ambiguous at 0)
        write_bands(self, rows.reshape(len(rows), cfg.num_buckets, cfg.hashes_per_bucket), rank)


def write_bands(signer: MinhashDedupSignature, bands: np.ndarray, rank: int) -> None:
    """``bands[doc, band, :]`` into ``bucket_BBB/RANK.minhash.sig``: datatrove's record layout (the band's
    hashes, then the doc index as uint32) and sort order, built with numpy instead of one struct.pack per record."""
    cfg = signer.config
    fmt = f"<{cfg.hash_config.struct_format}"
    dtype = np.dtype(
        [(f"field{i + 1}", fmt) for i in range(cfg.hashes_per_bucket)] + [(f"field{cfg.hashes_per_bucket + 1}", "<I")]
    )
    for b in range(cfg.num_buckets):
        records = np.empty(len(bands), dtype=dtype)
        for i in range(cfg.hashes_per_bucket):
            records[f"field{i + 1}"] = bands[:, b, i]
        records[f"field{cfg.hashes_per_bucket + 1}"] = np.arange(len(bands), dtype=np.uint32)
        records.sort(order=dtype.names)
        with signer.output_folder.open(f"bucket_{b:03d}/{rank:05d}.minhash.sig", mode="wb") as fo:
            fo.write(records.tobytes())


class ExactSigner(MinhashDedupSignature):
    """Exact duplicates through the same machinery: one band of one 64-bit value, the exact key."""

    def __init__(self, output_folder: str):
        cfg = MinhashConfig(n_grams=1, num_buckets=1, hashes_per_bucket=1, hash_config=HashConfig(precision=64))
        super().__init__(output_folder, config=cfg, language=_Words())

    def write_buckets(self, keys: np.ndarray, rank: int) -> None:
        write_bands(self, np.asarray(keys, dtype=np.uint64).reshape(-1, 1, 1), rank)


def segment_key(record: dict) -> int:
    """The segment a candidate was written for (synthesize's ``meta.segment_id``), 0 when unknown.
    Candidates of one segment share their output by construction: the output check does not count
    them as each other's duplicates, so ``best_of_candidates`` still sees all of them."""
    seg = (record.get("meta") or {}).get("segment_id")
    return xxhash.xxh64_intdigest(str(seg).encode()) | 1 if seg is not None else 0


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())
