"""The staged curation's decide task: the in-process chain's duplicate decisions, replayed on the
records datatrove's bucket stage found colliding (revgen/curate/staged.py runs it).

A record is a duplicate of the earliest record kept so far that shares a band group with it and whose
estimated Jaccard is >= the threshold (any kept member for the exact key). Full signatures stay on
disk and are read by ``pread``; in memory each kept record has a 1-byte-per-hash fingerprint, with
which a record's candidates are ruled out together in one numpy expression (see ``_KeptGroups``).
Memory grows with the colliding records (~130 bytes per kept one, ~20 per band membership), not with
the corpus.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

import numpy as np

from revgen.curate.signatures import jaccard
from revgen.io import atomic_write_text

HOT = 16  # a group with this many kept members holds them in one array instead of a linked list


def near_settings(cfg) -> list[tuple[str, bool]]:
    d = cfg.dedup
    return [("exact", d.exact), ("instruction", d.near_instruction), ("output", d.near_output)]


class DecideStage:
    """One task over all colliding records, in input order; writes ``remove/F.jsonl`` per input file."""

    name = "decide"

    def __init__(self, cfg, files: list[Path], work: Path):
        self.cfg, self.n_files, self.work = cfg, len(files), str(work)

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        work = Path(self.work)
        groups = {signal: _Groups.read(work / "dups" / signal) for signal, on in near_settings(self.cfg) if on}
        rows = _RowReader(work / "full")
        width = self.cfg.dedup.bands * self.cfg.dedup.rows
        kept = {signal: (_FirstKept(g.nodes, g.n) if signal == "exact" else
                         _KeptGroups(g.nodes, g.n, signal, self.cfg.dedup.threshold, rows, width))
                for signal, g in groups.items()}  # fmt: skip
        removed = _Removals(work / "remove", self.n_files)
        nodes = np.unique(np.concatenate([g.nodes for g in groups.values()])) if groups else np.zeros(0, np.int64)
        for lo in range(0, len(nodes), CHUNK):
            chunk = nodes[lo : lo + CHUNK]
            views = []
            for signal, g in groups.items():
                at, present, starts, gids = g.view(chunk)
                kept[signal].load(at[0], at[-1] + present[-1])  # the chunk's nodes of this signal: one run of rows
                views.append((signal, kept[signal], at, present, starts, gids))
            for j, node in enumerate(chunk.tolist()):
                for signal, keeper, at, present, starts, gids in views:
                    if not present[j]:
                        continue
                    node_gids = gids[starts[j] : starts[j + 1]]
                    match = keeper.earliest_match(at[j], node_gids)
                    if match is None:
                        keeper.keep(at[j], node_gids)
                        continue
                    removed.add(node, "exact" if signal == "exact" else f"near_{signal}", match)
                    break
        rows.close()
        del groups, kept, nodes
        removed.finish(work / "records")


CHUNK = 1 << 16  # nodes whose group lists are turned into Python lists at once


class _Groups:
    """One signal's band groups from datatrove's ``.dups`` pairs, as sorted arrays (CSR): the colliding
    nodes (file << 32 | record) and, per node, the ids of the groups it is in. Numpy arrays, not a dict
    of lists: ~12 bytes per membership instead of ~250, so 10M records fit."""

    def __init__(self, nodes: np.ndarray, indptr: np.ndarray, gids: np.ndarray, n: int):
        self.nodes, self.indptr, self.gids, self.n = nodes, indptr, gids, n

    @classmethod
    def read(cls, folder: Path) -> "_Groups":
        node_parts, gid_parts, n = [], [], 0
        for path in sorted(folder.glob("*.dups")):
            pairs = np.fromfile(path, dtype="<u4")
            pairs = pairs[: len(pairs) // 4 * 4].reshape(-1, 4).astype(np.int64)
            if not len(pairs):
                continue
            a, b = (pairs[:, 0] << 32) | pairs[:, 1], (pairs[:, 2] << 32) | pairs[:, 3]
            del pairs
            start = np.ones(len(a), dtype=bool)  # consecutive pairs of one band value chain a group
            start[1:] = a[1:] != b[:-1]
            gid = n + np.cumsum(start) - 1
            n = int(gid[-1]) + 1
            node_parts += [a[start], b]
            gid_parts += [gid[start], gid]
        if not node_parts:
            return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), 0)
        nodes, gids = np.concatenate(node_parts), np.concatenate(gid_parts)
        del node_parts, gid_parts
        order = np.lexsort((gids, nodes))
        nodes, gids = nodes[order], gids[order].astype(np.int32 if n < 2**31 else np.int64)
        del order
        breaks = np.flatnonzero(nodes[1:] != nodes[:-1]) + 1
        indptr = np.concatenate([[0], breaks, [len(nodes)]]).astype(np.int64)
        return cls(nodes[indptr[:-1]], indptr, gids, n)

    def view(self, chunk: np.ndarray) -> tuple[list, list, list, list]:
        """For sorted ``chunk`` nodes: their positions in ``nodes``, present flags, start offsets into the
        group list, the group list."""
        at = np.searchsorted(self.nodes, chunk)
        clipped = np.minimum(at, len(self.nodes) - 1)
        present = (self.nodes[clipped] == chunk) if len(self.nodes) else np.zeros(len(chunk), bool)
        first = self.indptr[at[0]]
        ends = self.indptr[np.minimum(at + present, len(self.nodes))]
        starts = np.concatenate([self.indptr[at] - first, [ends[-1] - first]])
        return at.tolist(), present.tolist(), starts.tolist(), self.gids[first : ends[-1]].tolist()


class _FirstKept:
    """The exact key has one band of the whole key: every kept member of a group is the same record,
    so a group only needs its first."""

    def __init__(self, nodes: np.ndarray, n_groups: int):
        self.nodes, self.first = nodes, array("i", [-1]) * n_groups

    def load(self, lo: int, hi: int) -> None:
        pass

    def earliest_match(self, at: int, gids: list[int]) -> int | None:
        first = min((self.first[g] for g in gids if self.first[g] >= 0), default=None)
        return None if first is None else int(self.nodes[first])

    def keep(self, at: int, gids: list[int]) -> None:
        for g in gids:
            if self.first[g] < 0:
                self.first[g] = at


class _KeptGroups:
    """Per band group of one signal, the members kept past its check so far, in input order (the
    in-process LSH's buckets): a record is compared with those only.

    Every kept record sits once in one pool, at its row in the signal's sorted colliding nodes (so row
    order is input order): its segment and a fingerprint, the low byte of each MinHash value. Groups hold
    pool rows, as linked lists in flat arrays (the usual group of two) or, past ``HOT`` members, one
    array. A record's candidates from all its groups are ruled out together by their fingerprints:
    equal hashes have equal low bytes, so the fingerprint never counts fewer equal positions than the
    signature and drops only candidates that cannot reach the threshold. Only the survivors' full
    signatures are read (``pread``), earliest first."""

    def __init__(self, nodes: np.ndarray, n_groups: int, signal: str, threshold, rows, width: int):
        self.head, self.tail = array("i", [-1]) * n_groups, array("i", [-1]) * n_groups
        self.count = array("i", [0]) * n_groups
        self.row, self.next = array("i"), array("i")
        self.hot: dict[int, np.ndarray] = {}  # group -> pool rows (capacity >= count)
        self.nodes, self.signal, self.rows, self.threshold = nodes, signal, rows, threshold
        self.fp = np.empty((len(nodes), width), dtype=np.uint8)  # filled chunk by chunk (load): pages come as used
        self.seg = np.empty(len(nodes), dtype=np.uint64) if signal == "output" else None
        self.need = (
            next((k for k in range(width + 1) if k / width >= threshold), width + 1) if threshold is not None else 0
        )
        self.lo, self.sigs = 0, None  # the current chunk's full signatures (load)

    def members(self, g: int) -> list[int]:
        out, e, row, nxt = [], self.head[g], self.row, self.next
        while e >= 0:
            out.append(row[e])
            e = nxt[e]
        return out

    def load(self, lo: int, hi: int) -> None:
        """The signatures of colliding nodes ``lo:hi`` (the chunk about to be decided), read at once; their
        fingerprints and segments go into the pool (a row is only ever a candidate once it is kept)."""
        nodes = self.nodes[lo:hi]
        if not len(nodes):
            return
        self.lo, self.sigs = lo, self.rows.block(self.signal, nodes)
        self.fp[lo:hi] = self.sigs
        if self.seg is not None:
            self.seg[lo:hi] = self.rows.block("segment", nodes)[:, 0]

    def earliest_match(self, at: int, gids: list[int]) -> int | None:
        small, arrays = [], []
        for g in gids:
            if g in self.hot:
                arrays.append(self.hot[g][: self.count[g]])
            elif self.head[g] >= 0:
                small += self.members(g)
        if not small and not arrays:
            return None
        if small:
            arrays.append(np.array(small, dtype=np.int32))
        cand = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # a row may repeat: cheaper than sorting
        ok = (self.fp[cand] == self.fp[at]).sum(axis=1) >= self.need
        if self.seg is not None and self.seg[at]:  # the same segment's other candidate is not a duplicate
            ok &= self.seg[cand] != self.seg[at]
        sig = None
        for r in np.unique(cand[ok]).tolist():  # earliest first
            c = int(self.nodes[r])
            if self.threshold is None:
                return c
            if sig is None:
                sig = self.sigs[at - self.lo]
            if jaccard(sig, self.rows(self.signal, c)) >= self.threshold:
                return c
        return None

    def keep(self, at: int, gids: list[int]) -> None:
        for g in gids:
            m = self.count[g]
            self.count[g] = m + 1
            if g in self.hot:
                rows = self.hot[g]
                if m == len(rows):
                    rows = self.hot[g] = np.concatenate([rows, np.empty_like(rows)])
                rows[m] = at
                continue
            e = len(self.row)
            self.row.append(at)
            self.next.append(-1)
            if self.head[g] < 0:
                self.head[g] = e
            else:
                self.next[self.tail[g]] = e
            self.tail[g] = e
            if m + 1 == HOT:
                rows = self.hot[g] = np.empty(2 * HOT, dtype=np.int32)
                rows[:HOT] = self.members(g)


class _Removals:
    """The duplicates found, as flat arrays (file, record, reason, match), written as ``remove/F.jsonl``
    once the ids of the matched records (the ones kept in their place) are read back."""

    REASONS = ("exact", "near_instruction", "near_output")

    def __init__(self, out: Path, n_files: int):
        self.out, self.n_files = out, n_files
        self.node, self.reason, self.match = array("q"), array("b"), array("q")

    def add(self, node: int, reason: str, match: int) -> None:
        self.node.append(node)
        self.reason.append(self.REASONS.index(reason))
        self.match.append(match)

    def finish(self, records: Path) -> None:
        node, reason = np.frombuffer(self.node, np.int64), np.frombuffer(self.reason, np.int8)
        match = np.frombuffer(self.match, np.int64)
        roots = np.unique(match)
        ids: list = [None] * len(roots)
        for f in np.unique(roots >> 32).tolist():  # the ids of the records kept in place of duplicates
            lo, hi = np.searchsorted(roots, [f << 32, (f + 1) << 32])
            wanted = (roots[lo:hi] & 0xFFFFFFFF).tolist()
            with open(records / f"{f:05d}.jsonl", encoding="utf-8") as fh:
                k = 0
                for i, line in enumerate(fh):
                    if i == wanted[k]:
                        ids[lo + k] = json.loads(line)["r"].get("id")
                        k += 1
                        if k == len(wanted):
                            break
        self.out.mkdir(parents=True, exist_ok=True)
        where = np.searchsorted(roots, match)
        bounds = np.searchsorted(node, np.arange(self.n_files + 1, dtype=np.int64) << 32)  # nodes come sorted
        for f in range(self.n_files):
            lo, hi = bounds[f], bounds[f + 1]
            text = "".join(
                json.dumps([d, self.REASONS[r], ids[w]]) + "\n"
                for d, r, w in zip((node[lo:hi] & 0xFFFFFFFF).tolist(), reason[lo:hi].tolist(), where[lo:hi].tolist())
            )
            atomic_write_text(self.out / f"{f:05d}.jsonl", text)


class _RowReader:
    """One record's full signature by ``pread`` from ``full/SIGNAL/F.npy``: no mapping, so the
    signatures of a corpus never sit in this process's memory (an mmap's touched pages would)."""

    def __init__(self, folder: Path):
        self.folder, self.files = folder, {}

    def __call__(self, signal: str, node: int) -> np.ndarray:
        fd, offset, width, dtype = self._open(signal, node >> 32)
        return np.frombuffer(os.pread(fd, width, offset + (node & 0xFFFFFFFF) * width), dtype=dtype)

    def _open(self, signal: str, f: int) -> tuple:
        key = (signal, f)
        if key not in self.files:
            path = self.folder / signal / f"{f:05d}.npy"
            with open(path, "rb") as fh:
                fmt = np.lib.format
                header = fmt.read_array_header_1_0 if fmt.read_magic(fh) == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = header(fh)
                offset = fh.tell()
            self.files[key] = (os.open(path, os.O_RDONLY), offset, shape[1] * np.dtype(dtype).itemsize, dtype)
        return self.files[key]

    def block(self, signal: str, nodes: np.ndarray) -> np.ndarray:
        """The rows of sorted ``nodes`` at once: one read per file of the span they cover."""
        parts, files = [], nodes >> 32
        for f in np.unique(files).tolist():
            idx = nodes[files == f] & 0xFFFFFFFF
            lo = int(idx[0])
            fd, offset, width, dtype = self._open(signal, f)
            span = np.frombuffer(os.pread(fd, (int(idx[-1]) + 1 - lo) * width, offset + lo * width), dtype=dtype)
            parts.append(span.reshape(-1, width // span.itemsize)[idx - lo])
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def close(self):
        for fd, *_ in self.files.values():
            os.close(fd)
        self.files.clear()
