"""A finished job's figures (thesis figs. 10–13, search curves, BOHB), from its result rows and epochs.

Each figure is a pure function of the result rows (RESULT_SCHEMA's dicts, every stage's) and,
for the curves, the per-epoch records (one dict per trial-epoch); it returns a
:class:`JobFigure` (a file-safe name, a title, a caption giving n per group, and a
``matplotlib.figure.Figure``, no pyplot state), or None when the rows hold nothing to plot.
Groups are trials/summary.py's (:func:`~trials.summary.group_of`): searched = the evaluations of
learned searches, random, each control; only succeeded trials count, as in the tables
(trials/report.py), and fig. 11 draws report.operator_choice_table's shares.

Every figure is drawn under one style (:data:`STYLE`, via ``matplotlib.rc_context``) with one
colour per group (:data:`GROUP_COLORS`). :func:`figure_svg` gives the SVG to inline in HTML
(text stays text); :func:`save_figure` writes PNG and SVG.

BOHB's hyper-parameter importance is scikit-learn's random-forest permutation importance, not
fANOVA: fanova's last PyPI release is from 2020 and unmaintained, while scikit-learn is
maintained, installs as a wheel, and its API here is two calls
(``RandomForestRegressor``, ``sklearn.inspection.permutation_importance``). With BOHB's few
trials the importance says what the forest leans on, not a measured effect; below
:data:`MIN_BOHB_FOR_IMPORTANCE` succeeded trials there is no figure.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from adf_service.space import OPERATOR_SETS
from trials.config import BOHB_HYPERPARAMETERS
from trials.report import operator_choice_table
from trials.summary import group_of

__all__ = ["GROUP_COLORS", "MIN_BOHB_FOR_IMPORTANCE", "MAX_SEARCH_CURVES", "STYLE", "JobFigure", "bohb_budget_figure",
           "bohb_importance_figure", "bohb_incumbent_figure", "bohb_parallel_figure", "fig10_top1_vs_cells",
           "fig11_operator_choice", "fig12_top1_per_inputs", "fig13_runs_per_discretization", "figure_svg",
           "group_color", "job_figures", "save_figure", "save_figure_bytes", "search_curves_figure"]

MIN_BOHB_FOR_IMPORTANCE = 8  # fewer succeeded BOHB trials: no importance figure (a forest on 7 points says nothing)
MAX_SEARCH_CURVES = 12  # search trials drawn in the curves figure, the first by trial key
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "axes.grid.axis": "y", "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "svg.fonttype": "none",  # text stays <text>: searchable, and the HTML report's fonts apply
}
_CONTROL_OPS = tuple(dict.fromkeys(op for ops in OPERATOR_SETS.values() for op in ops if op != "zero"))
_CONTROL_PALETTE = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79")
GROUP_COLORS = {"searched": "#1f77b4", "random": "#ff7f0e", "baselines": "#7f7f7f",
                **{f"all_{op}": color for op, color in zip(_CONTROL_OPS, _CONTROL_PALETTE)}}
_AXIS_LABEL = "test top-1 (%)"


def group_color(group: str) -> str:
    """The group's colour in every figure: searched, random, baselines, each control (``all_<op>``)."""
    return GROUP_COLORS.get(group, "#000000")


@dataclass(frozen=True)
class JobFigure:
    name: str  # file-safe stem, e.g. fig10-top1-vs-cells
    title: str
    caption: str  # what is plotted, n per group
    figure: Figure


def _styled(build: Callable[..., JobFigure | None]) -> Callable[..., JobFigure | None]:
    """Build the figure under :data:`STYLE` (rc parameters are read when artists are made), titled."""
    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> JobFigure | None:
        with matplotlib.rc_context(STYLE):
            made = build(*args, **kwargs)
            if made is not None:
                made.figure.suptitle(made.title)
            return made
    return wrapper


# --- the rows each figure draws ----------------------------------------------------------------


def _runs(rows: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(group, row) of every succeeded run with a test top-1 as trials.summary counts it: an
    evaluation of a search that did not learn is no searched result, a failed trial none at all."""
    out = []
    for row in rows:
        group = group_of(row) if row["status"] == "succeeded" and row.get("test_top1") is not None else None
        if group is not None and not (group == "searched" and row.get("learned") is False):
            out.append((group, row))
    return out


def _bohb(rows: Sequence[dict[str, Any]], *, complete: bool = False) -> list[dict[str, Any]]:
    """Succeeded BOHB rows with their sampled hyper-parameters (``config.evaluation``) as ``hp``;
    ``complete``: only those with all four."""
    out = []
    for row in rows:
        if row["stage"] == "bohb" and row["status"] == "succeeded" and row.get("val_loss") is not None:
            evaluation = json.loads(row.get("config") or "{}").get("evaluation") or {}
            hp = {k: evaluation.get(k) for k in (*BOHB_HYPERPARAMETERS, "epochs")}
            if not complete or all(hp[k] is not None for k in BOHB_HYPERPARAMETERS):
                out.append(dict(row, hp=hp))
    return out


def _metric(row: dict[str, Any]) -> float:
    return row["test_top1"] if row.get("test_top1") is not None else row["val_top1"]


def _metric_label(rows: Sequence[dict[str, Any]]) -> str:
    return _AXIS_LABEL if all(r.get("test_top1") is not None for r in rows) else "top-1 (%): test, else val"


def _trial_epochs(epochs: Sequence[dict[str, Any]], stage: str) -> dict[str, list[dict[str, Any]]]:
    """Per trial key, its epochs of ``stage`` by epoch (a repeated epoch: the later record)."""
    by_trial: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in sorted((e for e in epochs if e["stage"] == stage), key=lambda e: e.get("timestamp") or 0):
        by_trial[record["trial_key"]][record["epoch"]] = record
    return {key: [found[e] for e in sorted(found)] for key, found in by_trial.items()}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _boxes(ax, samples: list[tuple[float, list[float], str, str]], width: float) -> None:
    """Box plots at x with a colour and a gid each: (x, values, colour, gid)."""
    drawn = ax.boxplot([s[1] for s in samples], positions=[s[0] for s in samples], widths=width,
                       patch_artist=True, manage_ticks=False, medianprops={"color": "black"},
                       flierprops={"markersize": 3})
    for box, (_, _, color, gid) in zip(drawn["boxes"], samples):
        box.set(facecolor=color, alpha=0.85, gid=gid)


def _legend(ax, groups: Sequence[str]) -> None:
    ax.legend(handles=[Patch(facecolor=group_color(g), label=g) for g in groups], loc="best")


def _panels(n: int, width: float = 3.4, height: float = 3.4) -> tuple[Figure, list]:
    figure = Figure(figsize=(width * n + 0.6, height), layout="constrained")
    return figure, list(figure.subplots(1, n, sharey=True, squeeze=False)[0])


# --- thesis figures 10–13 ------------------------------------------------------------------------


@_styled
def fig10_top1_vs_cells(rows: Sequence[dict[str, Any]]) -> JobFigure | None:
    """Fig. 10: test top-1 of searched evaluations against cells C, one box per C, a panel per operator set."""
    by_set: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for group, row in _runs(rows):
        if group == "searched":
            by_set[row["operators"]][row["n_cells"]].append(row["test_top1"])
    if not by_set:
        return None
    figure, axes = _panels(len(by_set))
    for ax, operators in zip(axes, sorted(by_set)):
        cells = sorted(by_set[operators])
        _boxes(ax, [(c, by_set[operators][c], group_color("searched"), f"box-{operators}-C{c}") for c in cells], 0.6)
        ax.set(title=f"operators {operators}", xlabel="cells C", xticks=cells)
    axes[0].set_ylabel(_AXIS_LABEL)
    n = "; ".join(f"{s}: {_counts({f'C={c}': len(v) for c, v in sorted(by_set[s].items())})}" for s in sorted(by_set))
    return JobFigure("fig10-top1-vs-cells", "Test top-1 against the number of cells (fig. 10)",
                     f"Test top-1 of the evaluations of learned searches per number of cells C, one panel per "
                     f"operator set, pooled over I, discretization and repeats (n per box: {n}).", figure)


@_styled
def fig11_operator_choice(rows: Sequence[dict[str, Any]]) -> JobFigure | None:
    """Fig. 11: each operator's share of the kept edges of searched genotypes (report.operator_choice_table),
    random beside it where random genotypes exist, the uniform prior as a line."""
    table = operator_choice_table(rows)
    sets = sorted({r["operators"] for r in table if r["searched_edges"]})
    if not sets:
        return None
    figure, axes = _panels(len(sets), width=3.8, height=3.8)
    for ax, operators in zip(axes, sets):
        ops = [r for r in table if r["operators"] == operators]
        groups = ["searched"] + (["random"] if ops[0]["random_edges"] else [])
        width = 0.8 / len(groups)
        for i, group in enumerate(groups):
            x = np.arange(len(ops)) + (i - (len(groups) - 1) / 2) * width
            bars = ax.bar(x, [r[f"{group}_share"] for r in ops], width, color=group_color(group), label=group)
            for bar, r in zip(bars, ops):
                bar.set_gid(f"bar-{group}-{operators}-{r['op']}")
        ax.axhline(ops[0]["prior"], color="black", linestyle="--", linewidth=1, gid=f"prior-{operators}",
                   label=f"uniform prior 1/{len(ops)}")
        ax.set_xticks(range(len(ops)), [r["op"] for r in ops], rotation=35, ha="right")
        ax.set(title=f"operators {operators}", xlabel="operator")
        ax.legend(loc="upper right")
    axes[0].set_ylabel("probability chosen")
    edges = "; ".join(f"{s}: " + _counts({g: next(r for r in table if r["operators"] == s)[f"{g}_edges"]
                                            for g in ("searched", "random")}) for s in sets)
    return JobFigure("fig11-operator-choice", "Operator choice against the uniform prior (fig. 11)",
                     f"Share of kept edges carrying each operator in the genotypes of learned searches (and of "
                     f"random genotypes), per operator set; dashed: the uniform prior (edges: {edges}).", figure)


@_styled
def fig12_top1_per_inputs(rows: Sequence[dict[str, Any]]) -> JobFigure | None:
    """Fig. 12: test top-1 per (I, discretization), searched with random beside it, a panel per operator set."""
    values: dict[str, dict[tuple[int, str], dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for group, row in _runs(rows):
        if group in ("searched", "random"):
            values[row["operators"]][row["n_inputs"], row["discretization"]][group].append(row["test_top1"])
    sets = sorted(s for s in values if any(v.get("searched") for v in values[s].values()))
    if not sets:
        return None
    has_random = any(v.get("random") for s in sets for v in values[s].values())
    figure, axes = _panels(len(sets))
    counts: dict[str, int] = defaultdict(int)
    for ax, operators in zip(axes, sets):
        keys = sorted(values[operators])
        samples = []
        for x, key in enumerate(keys):
            for group, offset in (("searched", -0.2), ("random", 0.2)) if has_random else (("searched", 0.0),):
                if values[operators][key].get(group):
                    counts[group] += len(values[operators][key][group])
                    samples.append((x + offset, values[operators][key][group], group_color(group),
                                    f"box-{group}-{operators}-I{key[0]}-{key[1]}"))
        _boxes(ax, samples, 0.35 if has_random else 0.6)
        ax.set_xticks(range(len(keys)), [f"I={i}\n{disc}" for i, disc in keys])
        ax.set(title=f"operators {operators}", xlabel="inputs I, discretization", xlim=(-0.6, len(keys) - 0.4))
    axes[0].set_ylabel(_AXIS_LABEL)
    _legend(axes[-1], ["searched", "random"] if has_random else ["searched"])
    return JobFigure("fig12-top1-per-inputs-discretization", "Test top-1 per inputs I and discretization (fig. 12)",
                     f"Test top-1 per (I, discretization), pooled over cells C and repeats, one panel per operator "
                     f"set; searched = evaluations of learned searches (n: {_counts(counts)}).", figure)


@_styled
def fig13_runs_per_discretization(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> JobFigure | None:
    """Fig. 13: every run per discretization as jittered points, a colour per group (searched, random,
    each control); the jitter comes from a numpy Generator seeded with ``seed``."""
    runs = _runs(rows)
    if not any(group == "searched" for group, _ in runs):
        return None
    discs = sorted({row["discretization"] for _, row in runs})
    groups = ["searched", "random", *sorted({g for g, _ in runs} - {"searched", "random"})]
    groups = [g for g in groups if any(group == g for group, _ in runs)]
    rng = np.random.default_rng(seed)
    slot = 0.8 / len(groups)
    figure = Figure(figsize=(max(4.0, 1.2 + 2.2 * len(discs)), 3.6), layout="constrained")
    ax = figure.add_subplot()
    counts = {}
    for i, group in enumerate(groups):
        mine = [row for g, row in runs if g == group]
        counts[group] = len(mine)
        x = np.array([discs.index(r["discretization"]) for r in mine]) + (i - (len(groups) - 1) / 2) * slot
        ax.scatter(x + rng.uniform(-0.35, 0.35, len(mine)) * slot, [r["test_top1"] for r in mine], s=14,
                   color=group_color(group), alpha=0.8, label=group, gid=f"points-{group}")
    ax.set_xticks(range(len(discs)), discs)
    ax.set(xlabel="discretization", ylabel=_AXIS_LABEL, xlim=(-0.6, len(discs) - 0.4))
    ax.legend(loc="best")
    return JobFigure("fig13-runs-per-discretization", "Every run per discretization (fig. 13)",
                     f"Test top-1 of every succeeded run per discretization, pooled over S, I, C and repeats, "
                     f"with horizontal jitter (n: {_counts(counts)}).", figure)


# --- search curves -------------------------------------------------------------------------------


@_styled
def search_curves_figure(rows: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> JobFigure | None:
    """Per search trial (the first MAX_SEARCH_CURVES by key) its val loss and α entropy per epoch,
    a star at the snapshot the search kept (its row's ``best_epoch``); dashed: a search that did not learn."""
    curves = _trial_epochs(epochs, "search")
    if not curves:
        return None
    searches = {r["trial_key"]: r for r in rows if r["stage"] == "search" and r["status"] == "succeeded"}
    keys = sorted(curves)[:MAX_SEARCH_CURVES]
    figure = Figure(figsize=(7.0, 5.2), layout="constrained")
    loss_ax, entropy_ax = figure.subplots(2, 1, sharex=True)
    colors = matplotlib.colormaps["tab20"]  # its dark ten first, then the light ones
    for i, key in enumerate(keys):
        records, row = curves[key], searches.get(key)
        style = {"color": colors((2 * i) % 20 + (2 * i) // 20 % 2), "linestyle": "--" if row and row.get("learned") is False else "-"}
        x = [e["epoch"] for e in records]
        loss_ax.plot(x, [e["val_loss"] for e in records], label=key, gid=f"val-loss-{key}", **style)
        entropy = [(e["epoch"], e["alpha_entropy"]) for e in records if e.get("alpha_entropy") is not None]
        if entropy:
            entropy_ax.plot(*zip(*entropy), gid=f"alpha-entropy-{key}", **style)
        best = row.get("best_epoch") if row else None
        if best is not None:
            at = next((e for e in records if e["epoch"] == best), None)
            loss = at["val_loss"] if at and at.get("val_loss") is not None else row.get("val_loss")
            loss_ax.plot([best], [loss], marker="*", markersize=11, linestyle="", color=style["color"],
                         markeredgecolor="black", gid=f"snapshot-{key}")
            if at and at.get("alpha_entropy") is not None:
                entropy_ax.plot([best], [at["alpha_entropy"]], marker="*", markersize=11, linestyle="",
                                color=style["color"], markeredgecolor="black", gid=f"snapshot-entropy-{key}")
    loss_ax.set(ylabel="val loss")
    entropy_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    entropy_ax.set(xlabel="search epoch", ylabel="α entropy")
    loss_ax.legend(fontsize=6, ncols=2, loc="upper right")
    shown = f"{len(keys)} of {len(curves)}" if len(keys) < len(curves) else f"all {len(keys)}"
    return JobFigure("search-curves", "Search curves: val loss and α entropy per epoch",
                     f"Supernet val loss and mean α entropy per search epoch for {shown} search trials; a star "
                     f"marks the snapshot each search kept (its best-val-loss epoch); dashed: did not learn.", figure)


# --- BOHB ----------------------------------------------------------------------------------------


@_styled
def bohb_budget_figure(rows: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> JobFigure | None:
    """BOHB (a): each trial's top-1 against its budget, the epochs it trained (its last epoch in
    ``epochs``; else ``config.evaluation.epochs``, the budget it was given)."""
    bohb = _bohb(rows)
    trained = {key: records[-1]["epoch"] for key, records in _trial_epochs(epochs, "bohb").items()}
    points = [(b, r) for r in bohb if (b := trained.get(r["trial_key"], r["hp"]["epochs"])) is not None]
    if not points:
        return None
    budgets, bohb = [b for b, _ in points], [r for _, r in points]
    figure = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = figure.add_subplot()
    ax.scatter(budgets, [_metric(r) for r in bohb], s=18, color=group_color("searched"), gid="bohb-trials")
    ax.set(xlabel="budget (epochs)", ylabel=_metric_label(bohb))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    per = _counts({f"{b} epochs": budgets.count(b) for b in sorted(set(budgets))})
    return JobFigure("bohb-top1-vs-budget", "BOHB: top-1 against budget",
                     f"Top-1 of each succeeded BOHB trial against the epochs it trained (n: {per}); one colour: "
                     f"HyperBand's brackets are not recorded in the rows.", figure)


@_styled
def bohb_incumbent_figure(rows: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]]) -> JobFigure | None:
    """BOHB (b): the best val loss so far against trials in the order they finished (the time of each
    trial's last epoch; row order when a trial has no epochs)."""
    bohb = _bohb(rows)
    if not bohb:
        return None
    last = {key: records[-1].get("timestamp") for key, records in _trial_epochs(epochs, "bohb").items()}
    timed = all(last.get(r["trial_key"]) is not None for r in bohb)
    if timed:
        bohb = sorted(bohb, key=lambda r: last[r["trial_key"]])
    losses = [r["val_loss"] for r in bohb]
    x = np.arange(1, len(bohb) + 1)
    figure = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = figure.add_subplot()
    ax.scatter(x, losses, s=14, color=group_color("baselines"), alpha=0.6, label="trial", gid="bohb-val-loss")
    ax.plot(x, np.minimum.accumulate(losses), drawstyle="steps-post", color=group_color("searched"),
            label="incumbent", gid="incumbent")
    ax.set(xlabel="BOHB trials finished", ylabel="best val loss so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right")
    order = "the time of its last epoch" if timed else "row order (no epoch timestamps)"
    return JobFigure("bohb-incumbent", "BOHB: the incumbent over time",
                     f"Lowest val loss so far over {len(bohb)} succeeded BOHB trials, ordered by {order}; "
                     f"points: each trial's val loss.", figure)


def _coordinate(values: list[Any], log: bool) -> tuple[list[float], list[tuple[float, str]]]:
    """Values on [0, 1] and the ticks (position, real value) of one parallel-coordinates axis."""
    if any(isinstance(v, str) for v in values):  # categorical: evenly spaced, sorted
        names = sorted(set(map(str, values)))
        pos = {n: (i / (len(names) - 1) if len(names) > 1 else 0.5) for i, n in enumerate(names)}
        return [pos[str(v)] for v in values], [(pos[n], n) for n in names]
    log = log and all(v > 0 for v in values)
    raw = [math.log10(v) if log else float(v) for v in values]
    lo, hi = min(raw), max(raw)
    scale = (lambda r: (r - lo) / (hi - lo)) if hi > lo else (lambda r: 0.5)
    marks = sorted(set(raw)) if len(set(raw)) <= 5 else (lo, (lo + hi) / 2, hi)  # few values: each one
    ticks = sorted({scale(r): r for r in marks}.items())
    return [scale(r) for r in raw], [(p, f"{10 ** r if log else r:.3g}") for p, r in ticks]


@_styled
def bohb_parallel_figure(rows: Sequence[dict[str, Any]]) -> JobFigure | None:
    """BOHB (c): parallel coordinates of batch size, lr (log), optimizer, weight decay (log) and the
    metric (test top-1) as the last axis, one line per succeeded trial coloured by the metric."""
    bohb = _bohb(rows, complete=True)
    if not bohb:
        return None
    metric = [_metric(r) for r in bohb]
    axes = [("batch size", [r["hp"]["batch_size"] for r in bohb], True),
            ("lr", [r["hp"]["lr"] for r in bohb], True),
            ("optimizer", [r["hp"]["optimizer"] for r in bohb], False),
            ("weight decay", [r["hp"]["weight_decay"] for r in bohb], True),
            (_metric_label(bohb), metric, False)]
    columns = [_coordinate(values, log) for _, values, log in axes]
    norm, cmap = Normalize(min(metric), max(metric) if max(metric) > min(metric) else min(metric) + 1), "viridis"
    figure = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = figure.add_subplot()
    for i, (row, value) in enumerate(zip(bohb, metric)):
        ax.plot(range(len(axes)), [c[0][i] for c in columns], color=matplotlib.colormaps[cmap](norm(value)),
                alpha=0.8, linewidth=1.2, gid=f"trial-{row['trial_key']}")
    for x, (_, ticks) in enumerate(columns):
        ax.axvline(x, color="black", linewidth=0.8, gid=f"axis-{x}")
        for y, label in ticks:
            ax.text(x + 0.04, y, label, fontsize=7, va="center")
    ax.set_xticks(range(len(axes)), [name for name, _, _ in axes])
    ax.set(yticks=[], ylim=(-0.05, 1.05), xlim=(-0.2, len(axes) - 0.5))
    ax.grid(False)
    ax.spines["left"].set_visible(False)
    figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=axes[-1][0])
    return JobFigure("bohb-parallel-coordinates", "BOHB: hyper-parameters and top-1 (parallel coordinates)",
                     f"Each of {len(bohb)} succeeded BOHB trials as a line through its batch size, lr (log), "
                     f"optimizer, weight decay (log) and top-1, coloured by top-1.", figure)


@_styled
def bohb_importance_figure(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> JobFigure | None:
    """BOHB (d): permutation importance of the four hyper-parameters for a random forest predicting
    val loss (optimizer ordinal); None below MIN_BOHB_FOR_IMPORTANCE succeeded trials."""
    bohb = _bohb(rows, complete=True)
    if len(bohb) < MIN_BOHB_FOR_IMPORTANCE:
        return None
    from sklearn.ensemble import RandomForestRegressor  # only here: scikit-learn is slow to import
    from sklearn.inspection import permutation_importance

    optimizers = sorted({r["hp"]["optimizer"] for r in bohb})
    features = np.array([[r["hp"]["batch_size"], math.log10(r["hp"]["lr"]), optimizers.index(r["hp"]["optimizer"]),
                          math.log10(r["hp"]["weight_decay"]) if r["hp"]["weight_decay"] > 0 else 0.0]
                         for r in bohb], dtype=float)
    target = np.array([r["val_loss"] for r in bohb])
    forest = RandomForestRegressor(n_estimators=200, random_state=seed).fit(features, target)
    result = permutation_importance(forest, features, target, n_repeats=20, random_state=seed)
    names = ["batch size", "lr (log)", "optimizer", "weight decay (log)"]
    figure = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = figure.add_subplot()
    bars = ax.bar(names, result.importances_mean, yerr=result.importances_std, capsize=3,
                  color=group_color("searched"))
    for bar, name in zip(bars, BOHB_HYPERPARAMETERS):
        bar.set_gid(f"importance-{name}")
    ax.set(xlabel="hyper-parameter", ylabel="permutation importance (val loss)")
    return JobFigure("bohb-importance", "BOHB: hyper-parameter importance",
                     f"Mean increase in the squared error of a random forest predicting val loss when one "
                     f"hyper-parameter is shuffled (±std over 20 shuffles), from {len(bohb)} succeeded BOHB "
                     f"trials; indicative only with so few trials.", figure)


# --- a job's figures, and writing them ----------------------------------------------------------


def job_figures(rows: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]] = ()) -> list[JobFigure]:
    """Every figure the rows (and epochs) have data for, in this order: figs. 10–13, search curves, BOHB."""
    made = [fig10_top1_vs_cells(rows), fig11_operator_choice(rows), fig12_top1_per_inputs(rows),
            fig13_runs_per_discretization(rows), search_curves_figure(rows, epochs),
            bohb_budget_figure(rows, epochs), bohb_incumbent_figure(rows, epochs), bohb_parallel_figure(rows),
            bohb_importance_figure(rows)]
    return [f for f in made if f is not None]


def _encoded(figure: Figure, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):  # svg.fonttype and savefig.bbox are read when saving
        figure.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None, **kwargs)
    return buffer.getvalue()


def figure_svg(fig: Figure) -> str:
    """The figure as SVG text without its XML prolog and doctype, to inline in HTML. Its element ids
    stay matplotlib's salted hashes (``svg.hashsalt`` unset), so several figures inlined in one page
    do not share an id."""
    text = _encoded(fig, "svg").decode("utf-8")
    return text[text.index("<svg"):]


def save_figure_bytes(job_figure: JobFigure) -> dict[str, bytes]:
    """The figure as files' contents by suffix: ``png`` (120 dpi) and ``svg`` (a whole SVG file), for
    storage that is not a local directory."""
    return {"png": _encoded(job_figure.figure, "png", dpi=120), "svg": _encoded(job_figure.figure, "svg")}


def save_figure(job_figure: JobFigure, out_dir: Path) -> list[Path]:
    """Write ``<name>.png`` (120 dpi) and ``<name>.svg`` into ``out_dir``; the two paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, data in save_figure_bytes(job_figure).items():
        written.append(out_dir / f"{job_figure.name}.{suffix}")
        written[-1].write_bytes(data)
    return written
