"""The staged curation's decide task: the in-process chain's duplicate decisions, replayed on the
records datatrove's bucket stage found colliding (revgen/curate/staged.py runs it).

A record is a duplicate of the earliest record kept so far that shares a band group with it and whose
estimated Jaccard is >= the threshold (any kept member for the exact key). Signatures stay on disk
and are read by ``pread``; a group that grows past ``HOT`` kept members (boilerplate band values
shared by many distinct records) also holds its members' signatures in one array, so a record is
checked against all of them in one numpy expression instead of one read each. Those arrays are
bounded by ``CACHE_ROWS`` rows over all groups; past it, groups stay on ``pread``.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

import numpy as np

from revgen.curate.signatures import jaccard
from revgen.io import atomic_write_text

HOT = 16
CACHE_ROWS = 262_144  # 112 MiB of 448-byte signatures


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
        budget = [CACHE_ROWS]
        kept = {signal: (_FirstKept(g.n) if signal == "exact" else
                         _KeptGroups(g.n, signal, self.cfg.dedup.threshold, rows, budget))
                for signal, g in groups.items()}  # fmt: skip
        removed = _Removals(work / "remove", self.n_files)
        nodes = np.unique(np.concatenate([g.nodes for g in groups.values()])) if groups else np.zeros(0, np.int64)
        for lo in range(0, len(nodes), CHUNK):
            chunk = nodes[lo : lo + CHUNK]
            views = [(signal, kept[signal], *g.view(chunk)) for signal, g in groups.items()]
            for j, node in enumerate(chunk.tolist()):
                for signal, keeper, present, starts, gids in views:
                    if not present[j]:
                        continue
                    node_gids = gids[starts[j] : starts[j + 1]]
                    match = keeper.earliest_match(node, node_gids)
                    if match is None:
                        keeper.keep(node, node_gids)
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

    def view(self, chunk: np.ndarray) -> tuple[list, list, list]:
        """For sorted ``chunk`` nodes: present flags, start offsets into the group list, the group list."""
        at = np.searchsorted(self.nodes, chunk)
        clipped = np.minimum(at, len(self.nodes) - 1)
        present = (self.nodes[clipped] == chunk) if len(self.nodes) else np.zeros(len(chunk), bool)
        first = self.indptr[at[0]]
        ends = self.indptr[np.minimum(at + present, len(self.nodes))]
        starts = np.concatenate([self.indptr[at] - first, [ends[-1] - first]])
        return present.tolist(), starts.tolist(), self.gids[first : ends[-1]].tolist()


class _FirstKept:
    """The exact key has one band of the whole key: every kept member of a group is the same record,
    so a group only needs its first."""

    def __init__(self, n_groups: int):
        self.first = array("q", [-1]) * n_groups

    def earliest_match(self, node: int, gids: list[int]) -> int | None:
        return min((self.first[g] for g in gids if self.first[g] >= 0), default=None)

    def keep(self, node: int, gids: list[int]) -> None:
        for g in gids:
            if self.first[g] < 0:
                self.first[g] = node


class _KeptGroups:
    """Per band group of one signal, the members kept past its check so far, in input order (the
    in-process LSH's buckets): a record is compared with those only. Members are linked lists in
    flat arrays (head/tail per group, node/next per entry): compact, and cheap to walk for the
    usual group of two."""

    def __init__(self, n_groups: int, signal: str, threshold, rows, budget: list[int]):
        self.head, self.tail = array("q", [-1]) * n_groups, array("q", [-1]) * n_groups
        self.count = array("l", [0]) * n_groups
        self.node, self.next = array("q"), array("q")
        self.hot: dict[int, list] = {}  # group -> [signatures, segments, nodes] arrays, rows >= count
        self.signal, self.rows, self.budget = signal, rows, budget
        self.verify = threshold is not None
        self.threshold = threshold
        self.current: tuple = (None, None, 0)  # (node, signature, segment) read by earliest_match, reused by keep

    def _sig(self, node: int) -> np.ndarray | None:
        return self.rows(self.signal, node) if self.verify else None

    def _seg(self, node: int) -> int:
        return int(self.rows("segment", node)[0]) if self.signal == "output" else 0

    def members(self, g: int) -> list[int]:
        out, e, node, nxt = [], self.head[g], self.node, self.next
        while e >= 0:
            out.append(node[e])
            e = nxt[e]
        return out

    def earliest_match(self, node: int, gids: list[int]) -> int | None:
        sig, seg = self._sig(node), self._seg(node)
        self.current = (node, sig, seg)
        best, small = None, set()
        for g in gids:
            if g not in self.hot:
                small.update(self.members(g))
                continue
            sigs, segs, nodes = self.hot[g]
            m = self.count[g]
            ok = (sigs[:m] == sig).mean(axis=1) >= self.threshold if self.verify else np.ones(m, dtype=bool)
            if seg:  # the same segment's other candidate is not a duplicate
                ok &= segs[:m] != seg
            hit = np.flatnonzero(ok)
            if hit.size and (best is None or int(nodes[hit[0]]) < best):
                best = int(nodes[hit[0]])
        for c in sorted(small):
            if best is not None and c >= best:
                break
            if seg and self._seg(c) == seg:
                continue
            if not self.verify or jaccard(sig, self.rows(self.signal, c)) >= self.threshold:
                return c
        return best

    def keep(self, node: int, gids: list[int]) -> None:
        for g in gids:
            e = len(self.node)
            self.node.append(node)
            self.next.append(-1)
            if self.head[g] < 0:
                self.head[g] = e
            else:
                self.next[self.tail[g]] = e
            self.tail[g] = e
            self.count[g] += 1
            m = self.count[g]
            if g in self.hot:
                self._append(g, m - 1, node)
            elif m == HOT and self.budget[0] >= 2 * HOT:
                self.budget[0] -= 2 * HOT
                width = len(self.current[1]) if self.verify else 1
                self.hot[g] = [np.zeros((2 * HOT, width), dtype=np.uint32), np.zeros(2 * HOT, dtype=np.uint64),
                               np.zeros(2 * HOT, dtype=np.int64)]  # fmt: skip
                for i, member in enumerate(self.members(g)):
                    self._fill(g, i, member)

    def _append(self, g: int, i: int, node: int) -> None:
        sigs = self.hot[g][0]
        if i == len(sigs):  # full: double, if the budget allows; else this group goes back to pread
            if self.budget[0] < len(sigs):
                self.budget[0] += len(sigs)
                del self.hot[g]
                return
            self.budget[0] -= len(sigs)
            self.hot[g] = [np.concatenate([a, np.zeros_like(a)]) for a in self.hot[g]]
        self._fill(g, i, node)

    def _fill(self, g: int, i: int, node: int) -> None:
        sigs, segs, nodes = self.hot[g]
        cur, sig, seg = self.current
        if cur != node:  # an earlier member, when a group turns hot
            sig, seg = self._sig(node), self._seg(node)
        if self.verify:
            sigs[i] = sig
        segs[i], nodes[i] = seg, node


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
            text = "".join(json.dumps([d, self.REASONS[r], ids[w]]) + "\n" for d, r, w in
                           zip((node[lo:hi] & 0xFFFFFFFF).tolist(), reason[lo:hi].tolist(), where[lo:hi].tolist()))
            atomic_write_text(self.out / f"{f:05d}.jsonl", text)


class _RowReader:
    """One record's full signature by ``pread`` from ``full/SIGNAL/F.npy``: no mapping, so the
    signatures of a corpus never sit in this process's memory (an mmap's touched pages would)."""

    def __init__(self, folder: Path):
        self.folder, self.files = folder, {}

    def __call__(self, signal: str, node: int) -> np.ndarray:
        key = (signal, node >> 32)
        if key not in self.files:
            path = self.folder / signal / f"{node >> 32:05d}.npy"
            with open(path, "rb") as fh:
                fmt = np.lib.format
                header = fmt.read_array_header_1_0 if fmt.read_magic(fh) == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = header(fh)
                offset = fh.tell()
            self.files[key] = (os.open(path, os.O_RDONLY), offset, shape[1] * np.dtype(dtype).itemsize, dtype)
        fd, offset, width, dtype = self.files[key]
        return np.frombuffer(os.pread(fd, width, offset + (node & 0xFFFFFFFF) * width), dtype=dtype)

    def close(self):
        for fd, *_ in self.files.values():
            os.close(fd)
        self.files.clear()
