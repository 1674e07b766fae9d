"""Seeded bootstrap intervals: means, token-weighted ratios, paired differences, seeds x rows.

Every function resamples with a ``random.Random(seed)``, so reruns print the same numbers. A
*run* is one list of per-row values (one trained model); several runs of the same variant
(training seeds) are resampled too, so the interval carries the seed spread as well as the rows'.
"""

from __future__ import annotations

import random
import statistics


def _ci(draws: list[float], point: float, n: int) -> dict:
    draws = sorted(draws)
    lo, hi = draws[int(0.025 * (n - 1))], draws[int(0.975 * (n - 1))]
    return {"mean": round(point, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def mean_ci(values: list[float], n: int = 1000, seed: int = 0) -> dict:
    """Mean and percentile-bootstrap 95% interval (seeded, so reruns agree)."""
    if not values:
        return {"mean": None, "ci95": [None, None], "n": 0}
    rng = random.Random(seed)
    draws = [statistics.fmean(rng.choices(values, k=len(values))) for _ in range(n)]
    return {**_ci(draws, statistics.fmean(values), n), "n": len(values)}


def _stat(runs: list[list[float]], weights: list[float] | None, rows: list[int], picks: list[int]) -> float:
    """Mean over the picked runs of the (weighted) mean over the picked rows."""
    out = []
    for r in picks:
        if weights is None:
            out.append(statistics.fmean(runs[r][i] for i in rows))
        else:
            out.append(sum(runs[r][i] for i in rows) / max(sum(weights[i] for i in rows), 1e-12))
    return statistics.fmean(out)


def runs_ci(runs: list[list[float]], weights: list[float] | None = None, n: int = 1000, seed: int = 0) -> dict:
    """Mean over runs (seeds) of a per-row mean (``weights``: sum(values) / sum(weights), token-weighted),
    with an interval resampling rows and runs together."""
    rng, m, k = random.Random(seed), len(runs[0]), len(runs)
    point = _stat(runs, weights, list(range(m)), list(range(k)))
    draws = [_stat(runs, weights, rng.choices(range(m), k=m), rng.choices(range(k), k=k)) for _ in range(n)]
    return {**_ci(draws, point, n), "n": m, "runs": k}


def paired_ci(a: list[list[float]], b: list[list[float]], weights: list[float] | None = None, n: int = 1000,
              seed: int = 0) -> dict:  # fmt: skip
    """B - A on the same rows (paired): rows resampled once for both, each side's runs on their own."""
    rng, m = random.Random(seed), len(a[0])
    full = list(range(m))
    point = _stat(b, weights, full, list(range(len(b)))) - _stat(a, weights, full, list(range(len(a))))
    draws = []
    for _ in range(n):
        rows = rng.choices(full, k=m)
        pa, pb = rng.choices(range(len(a)), k=len(a)), rng.choices(range(len(b)), k=len(b))
        draws.append(_stat(b, weights, rows, pb) - _stat(a, weights, rows, pa))
    return {**_ci(draws, point, n), "n": m}


def ratio_ci(base: list[list[float]], test: list[list[float]], ceiling: list[list[float]], weights=None,
             n: int = 1000, seed: int = 0) -> dict:  # fmt: skip
    """(base - test) / (base - ceiling), paired over rows: the share of the ceiling's gain that
    ``test`` recovers. ``ceiling_distinct`` says whether the ceiling's gain excludes zero."""
    rng, m = random.Random(seed), len(base[0])
    full = list(range(m))

    def value(rows, picks):
        b, t, c = (_stat(x, weights, rows, p) for x, p in zip((base, test, ceiling), picks))
        return (b - t) / (b - c) if b != c else float("nan"), b - c

    point, gain = value(full, [list(range(len(x))) for x in (base, test, ceiling)])
    draws, gains = [], []
    for _ in range(n):
        rows = rng.choices(full, k=m)
        v, g = value(rows, [rng.choices(range(len(x)), k=len(x)) for x in (base, test, ceiling)])
        draws.append(v if v == v else 0.0)
        gains.append(g)
    gains.sort()
    distinct = gains[int(0.025 * (n - 1))] > 0 or gains[int(0.975 * (n - 1))] < 0
    return {**_ci(draws, point, n), "ceiling_gain": round(gain, 4), "ceiling_distinct": distinct}
