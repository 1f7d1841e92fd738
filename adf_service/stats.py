"""The statistics every results table uses: repeats summarized, searched compared with random.

The thesis reports one number per setting, the best of six repeats (table 4), and says
random architectures were "generally" worse (§5.2.3). Here a setting's repeats are
summarized (:func:`summarize`: n, best, mean ± std, min, median) and two groups of repeats
are compared (:func:`compare`): a one-sided Mann–Whitney U test of "searched > random" and
the difference of means with a percentile-bootstrap interval. Values are plain floats (a
test top-1 in %, a loss); failed trials must be dropped by the caller, not passed as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "EXACT_LIMIT",
    "Comparison",
    "StatsError",
    "Summary",
    "bootstrap_mean_difference",
    "compare",
    "mann_whitney_greater",
    "summarize",
]

# Above this many ways to split the pooled values into the two groups, tied values are
# tested with the normal approximation instead of enumerating every split (9 vs 9: 48,620).
EXACT_LIMIT = 100_000


class StatsError(ValueError):
    """Values that cannot be summarized or compared (empty, not numbers, not finite)."""


def _values(values: Sequence[float] | np.ndarray, where: str) -> np.ndarray:
    """``values`` as a 1-D float array, or :class:`StatsError` naming ``where`` and the bad entry."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise StatsError(f"{where}: expected a sequence of numbers, got {values!r}") from None
    if array.ndim != 1:
        raise StatsError(f"{where}: expected a flat sequence of numbers, got shape {array.shape}")
    if array.size == 0:
        raise StatsError(f"{where}: no values (a group needs at least one repeat)")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        i = int(bad[0])
        raise StatsError(
            f"{where}: value [{i}] is {array[i]}; values must be finite (drop failed trials first)"
        )
    return array


@dataclass(frozen=True)
class Summary:
    """One group of repeats (e.g. the test top-1 of one setting's evaluations)."""

    n: int
    best: float  # the maximum: the thesis' number (table 4 reports the best of six runs)
    mean: float
    std: float | None  # sample standard deviation (ddof = 1); None when n < 2
    min: float
    median: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float] | np.ndarray, where: str = "values") -> Summary:
    """n, best (max), mean, sample std (ddof = 1, None for a single value), min and median.

    Raises :class:`StatsError` for an empty group or a value that is not a finite number.
    """
    array = _values(values, where)
    return Summary(
        n=int(array.size),
        best=float(array.max()),
        mean=float(array.mean()),
        std=float(array.std(ddof=1)) if array.size >= 2 else None,
        min=float(array.min()),
        median=float(np.median(array)),
    )


def _exact_tied_p(searched: np.ndarray, random: np.ndarray) -> float:
    """P(U ≥ U_observed) over every split of the pooled midranks into groups of the same sizes.

    The exact permutation distribution of U given the ties: under H0 every assignment of the
    pooled values to the two groups is equally likely.
    """
    ranks = stats.rankdata(np.concatenate([searched, random]))
    n1 = searched.size
    splits = np.array(list(combinations(range(ranks.size), n1)))
    rank_sums = ranks[splits].sum(axis=1)
    # Midranks are multiples of 0.5, so these sums are exact in floating point.
    return float(np.mean(rank_sums >= ranks[:n1].sum()))


def mann_whitney_greater(
    searched: Sequence[float] | np.ndarray, random: Sequence[float] | np.ndarray
) -> tuple[float, float, str]:
    """One-sided Mann–Whitney U test, H1: searched tends to be greater than random.

    Returns ``(U, p, method)``; U counts the (searched, random) pairs where searched is
    greater, ties counting ½ (``scipy.stats.mannwhitneyu``'s U of the first sample), so
    U ranges over 0..n_s·n_r. ``method`` says how p was computed:

    - ``exact``: no ties; scipy's exact null distribution of U.
    - ``exact-ties``: ties, at most :data:`EXACT_LIMIT` splits; every split of the pooled
      midranks enumerated (the permutation distribution, exact given the ties).
    - ``asymptotic``: ties and more splits; scipy's normal approximation with tie and
      continuity correction.

    Any group size ≥ 1 works (with 1 vs 1 the smallest possible p is 0.5); when every value
    is equal p = 1.
    """
    s, r = _values(searched, "searched"), _values(random, "random")
    if np.unique(np.concatenate([s, r])).size == s.size + r.size:
        method = "exact"
    elif math.comb(s.size + r.size, s.size) <= EXACT_LIMIT:
        method = "exact-ties"
    else:
        method = "asymptotic"
    result = stats.mannwhitneyu(
        s, r, alternative="greater", method="asymptotic" if method == "asymptotic" else "exact"
    )
    p = _exact_tied_p(s, r) if method == "exact-ties" else float(result.pvalue)
    return float(result.statistic), p, method


def _check_bootstrap(n_boot: int, confidence: float) -> None:
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise StatsError(f"n_boot={n_boot!r} must be a positive integer")
    if not 0 < confidence < 1:
        raise StatsError(f"confidence={confidence!r} must lie strictly between 0 and 1")


def bootstrap_mean_difference(
    searched: Sequence[float] | np.ndarray,
    random: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of mean(searched) − mean(random).

    Each of ``n_boot`` replicates resamples both groups with replacement, independently and
    at their own sizes, from ``numpy.random.default_rng(seed)`` (same seed → same interval);
    the interval is the (1 ± confidence)/2 quantiles of the replicates' differences. When
    both groups are constant it collapses to the observed difference.
    """
    s, r = _values(searched, "searched"), _values(random, "random")
    _check_bootstrap(n_boot, confidence)
    rng = np.random.default_rng(seed)
    s_means = s[rng.integers(0, s.size, size=(n_boot, s.size))].mean(axis=1)
    r_means = r[rng.integers(0, r.size, size=(n_boot, r.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(s_means - r_means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """Searched vs random repeats of one setting (works for any group vs a reference group)."""

    searched: Summary
    random: Summary
    mean_difference: float  # mean(searched) − mean(random)
    ci_low: float | None  # percentile-bootstrap interval of mean_difference; None if a group has n < 2
    ci_high: float | None
    u_statistic: float  # Mann–Whitney U of searched: pairs searched > random, ties ½
    p_value: float  # one-sided, H1: searched > random
    test_method: str  # exact | exact-ties | asymptotic (see mann_whitney_greater)
    confidence: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Flat, for a results row: ``searched_n``, ``searched_mean``, …, ``p_value``, …."""
        out: dict[str, Any] = {}
        for group in ("searched", "random"):
            out.update({f"{group}_{k}": v for k, v in getattr(self, group).to_dict().items()})
        out.update({k: v for k, v in asdict(self).items() if k not in ("searched", "random")})
        return out


def compare(
    searched: Sequence[float] | np.ndarray,
    random: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Summaries of both groups, the one-sided U test and the bootstrap interval of the gap.

    The interval is left out (None) when a group has a single value: resampling one value
    says nothing about its spread, so an interval would look narrower than it is. The test
    still runs (its p cannot go below 1 / C(n_s + n_r, n_s)).
    """
    s, r = _values(searched, "searched"), _values(random, "random")
    _check_bootstrap(n_boot, confidence)
    u, p, method = mann_whitney_greater(s, r)
    if s.size >= 2 and r.size >= 2:
        low, high = bootstrap_mean_difference(s, r, n_boot=n_boot, confidence=confidence, seed=seed)
    else:
        low = high = None
    return Comparison(
        searched=summarize(s, "searched"),
        random=summarize(r, "random"),
        mean_difference=float(s.mean() - r.mean()),
        ci_low=low,
        ci_high=high,
        u_statistic=u,
        p_value=p,
        test_method=method,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )
