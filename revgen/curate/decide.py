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
        groups = {signal: _read_groups(work / "dups" / signal) for signal, on in near_settings(self.cfg) if on}
        rows = _RowReader(work / "full")
        budget = [CACHE_ROWS]
        kept = {signal: _KeptGroups(n, signal, self.cfg.dedup.threshold, rows, budget)
                for signal, (_, n) in groups.items()}  # fmt: skip
        removals: dict[int, list] = {}
        roots: dict[int, str | None] = {}
        nodes = sorted(set().union(*[g.keys() for g, _ in groups.values()])) if groups else []
        for node in nodes:
            for signal, (node_groups, _) in groups.items():
                gids = node_groups.get(node)
                if not gids:
                    continue
                match = kept[signal].earliest_match(node, gids)
                if match is None:
                    kept[signal].keep(node, gids)
                    continue
                reason = "exact" if signal == "exact" else f"near_{signal}"
                removals.setdefault(node >> 32, []).append((node & 0xFFFFFFFF, reason, match))
                roots[match] = None
                break
        rows.close()
        del groups, kept, nodes
        for f in sorted({r >> 32 for r in roots}):  # the ids of the records kept in place of duplicates
            wanted = {r & 0xFFFFFFFF for r in roots if r >> 32 == f}
            with open(work / "records" / f"{f:05d}.jsonl", encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i in wanted:
                        roots[f << 32 | i] = json.loads(line)["r"].get("id")
        out = work / "remove"
        out.mkdir(parents=True, exist_ok=True)
        for f in range(self.n_files):
            text = "".join(json.dumps([d, reason, roots[m]]) + "\n" for d, reason, m in sorted(removals.get(f, [])))
            atomic_write_text(out / f"{f:05d}.jsonl", text)


def _read_groups(folder: Path) -> tuple[dict[int, list[int]], int]:
    """datatrove's ``.dups`` pairs as band groups: node (file << 32 | record) -> the group ids it is in."""
    node_groups, gid = {}, -1
    for path in sorted(folder.glob("*.dups")):
        pairs = np.fromfile(path, dtype="<u4")
        pairs = pairs[: len(pairs) // 4 * 4].reshape(-1, 4).astype(np.int64)
        a_nodes = ((pairs[:, 0] << 32) | pairs[:, 1]).tolist()
        b_nodes = ((pairs[:, 2] << 32) | pairs[:, 3]).tolist()
        last_end = None
        for a, b in zip(a_nodes, b_nodes):
            if a != last_end:  # consecutive pairs of one band value chain a group
                gid += 1
                node_groups.setdefault(a, []).append(gid)
            node_groups.setdefault(b, []).append(gid)
            last_end = b
    return node_groups, gid + 1


class _KeptGroups:
    """Per band group of one signal, the members kept past its check so far, in input order (the
    in-process LSH's buckets): a record is compared with those only."""

    def __init__(self, n_groups: int, signal: str, threshold, rows, budget: list[int]):
        self.members: list[list[int]] = [[] for _ in range(n_groups)]
        self.hot: dict[int, list] = {}  # group -> [signatures, segments] arrays, rows = len(members)
        self.signal, self.rows, self.budget = signal, rows, budget
        self.verify = signal != "exact" and threshold is not None
        self.threshold = threshold
        self.current: tuple = (None, None, 0)  # (node, signature, segment) read by earliest_match, reused by keep

    def _sig(self, node: int) -> np.ndarray | None:
        return self.rows(self.signal, node) if self.verify else None

    def _seg(self, node: int) -> int:
        return int(self.rows("segment", node)[0]) if self.signal == "output" else 0

    def earliest_match(self, node: int, gids: list[int]) -> int | None:
        if self.signal == "exact":  # one band of the whole key: every kept member is the same record
            return min((self.members[g][0] for g in gids if self.members[g]), default=None)
        sig, seg = self._sig(node), self._seg(node)
        self.current = (node, sig, seg)
        best, small = None, set()
        for g in gids:
            if g not in self.hot:
                small.update(self.members[g])
                continue
            sigs, segs = self.hot[g]
            m = len(self.members[g])
            ok = (sigs[:m] == sig).mean(axis=1) >= self.threshold if self.verify else np.ones(m, dtype=bool)
            if seg:  # the same segment's other candidate is not a duplicate
                ok &= segs[:m] != seg
            hit = np.flatnonzero(ok)
            if hit.size and (best is None or self.members[g][hit[0]] < best):
                best = self.members[g][hit[0]]
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
            members = self.members[g]
            members.append(node)
            if g in self.hot:
                self._append(g, len(members) - 1, node)
            elif len(members) == HOT and self.budget[0] >= 2 * HOT:
                self.budget[0] -= 2 * HOT
                width = len(self.current[1]) if self.verify else 1
                self.hot[g] = [np.zeros((2 * HOT, width), dtype=np.uint32), np.zeros(2 * HOT, dtype=np.uint64)]
                for i, m in enumerate(members):
                    self._fill(g, i, m)

    def _append(self, g: int, i: int, node: int) -> None:
        sigs, segs = self.hot[g]
        if i == len(sigs):  # full: double, if the budget allows; else this group goes back to pread
            if self.budget[0] < len(sigs):
                self.budget[0] += len(sigs)
                del self.hot[g]
                return
            self.budget[0] -= len(sigs)
            self.hot[g] = [np.concatenate([sigs, np.zeros_like(sigs)]), np.concatenate([segs, np.zeros_like(segs)])]
        self._fill(g, i, node)

    def _fill(self, g: int, i: int, node: int) -> None:
        sigs, segs = self.hot[g]
        cur, sig, seg = self.current
        if cur != node:  # an earlier member, when a group turns hot
            sig, seg = self._sig(node), self._seg(node)
        if self.verify:
            sigs[i] = sig
        segs[i] = seg


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
