"""A job's results per setting: searched vs random vs controls, with repeats and statistics (no Ray here).

The thesis reports one number per setting, the best of six runs (tables 3 and 4). With a
best alone, a searched genotype that beats a random one by luck cannot be told from one
that beats it by design, so every setting here gets, per group of genotypes (searched =
the evaluations of its searches, random, each control), n, best, mean and std of test
top-1, and searched vs random a one-sided Mann–Whitney U p-value and the difference of
means with a bootstrap 95 % interval (adf_service/stats.py). Only succeeded trials count, and
a search whose supernet did not learn (``learned`` false) is counted apart (``n_unlearned``),
never as a searched result: its genotype is the argmax of an α that did not move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from adf_service.stats import compare, summarize
from trials.config import TrialConfig
from trials.results import best_evaluation

__all__ = ["SETTING_KEYS", "best_per_setting", "group_of", "setting_summaries"]

SETTING_KEYS = ("operators", "discretization", "n_inputs", "n_cells")
_GROUPS = {"evaluation": "searched", "random": "random"}  # a control's group is its genotype's name


def group_of(row: dict[str, Any]) -> str | None:
    """The row's group in a setting: searched, random, a control's name; None for the others."""
    if row["stage"] == "controls":
        return TrialConfig.from_json(row["config"]).control
    return _GROUPS.get(row["stage"])


def setting_summaries(rows: Iterable[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """One dict per setting, in the settings' sorted order: the setting's keys; ``groups``, one
    summary per group (n, best, mean, std, min, median of test top-1); ``n_unlearned``, its
    searches whose supernet did not learn; and ``searched_vs_random``
    (adf_service.stats.Comparison.to_dict()) when both groups have a trial, else None."""
    values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    unlearned: dict[tuple, int] = defaultdict(int)
    for row in rows:
        group = group_of(row)
        if group is None or row["status"] != "succeeded" or row.get("test_top1") is None:
            continue
        setting = tuple(row[k] for k in SETTING_KEYS)
        if group == "searched" and row.get("learned") is False:  # its supernet never rose above chance
            unlearned[setting] += 1
            values.setdefault(setting, defaultdict(list))  # listed even when none of its searches learned
            continue
        values[setting][group].append(float(row["test_top1"]))
    out = []
    for setting in sorted(values, key=lambda s: tuple(str(v) for v in s)):
        groups = values[setting]
        comparison = None
        if groups.get("searched") and groups.get("random"):
            comparison = compare(groups["searched"], groups["random"], seed=seed).to_dict()
        out.append({
            **dict(zip(SETTING_KEYS, setting)),
            "groups": {name: summarize(v, where=name).to_dict() for name, v in sorted(groups.items())},
            "n_unlearned": unlearned[setting],
            "searched_vs_random": comparison,
        })
    return out


def best_per_setting(rows: Iterable[dict[str, Any]], *, by: str = "val", limit: int | None = None) -> list[dict[str, Any]]:
    """The best evaluation of each setting (:func:`trials.results.best_evaluation` ``by`` val or test:
    succeeded, of a learned search), the settings ranked by the same rule, the best first; at most
    ``limit``. What a transfer evaluation takes from a finished job (thesis §5.3.2)."""
    remaining = [r for r in rows if r["stage"] == "evaluation"]
    out: list[dict[str, Any]] = []
    while limit is None or len(out) < limit:
        best = best_evaluation(remaining, by=by)
        if best is None:
            break
        out.append(best)
        setting = tuple(best[k] for k in SETTING_KEYS)
        remaining = [r for r in remaining if tuple(r[k] for k in SETTING_KEYS) != setting]
    return out
