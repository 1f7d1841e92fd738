"""Jobs side by side (issue 13 item 5): per setting and group of genotypes, each job's test top-1.

``adf-service compare JOB_DIR …`` and ``GET /v1/compare?jobs=…`` answer "did this change (a
data set, a seed, an operator set, a code version) move the results?": one row per setting and
group (searched, random, each control; each baseline combo), one column group per job with n,
mean ± std and best, and an HTML page whose figure overlays every run of every job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from adf_service.stats import summarize
from trials.report import Column, Section
from trials.report_html import Graphic, render_html
from trials.summary import SETTING_KEYS, group_of

__all__ = ["MAX_JOBS", "compare_figure", "compare_html", "compare_rows", "compare_section"]

MAX_JOBS = 8  # columns of a readable table


def _values(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """(setting, group) → the test top-1 of every succeeded run; baselines are (``baselines``, combo)."""
    out: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["status"] != "succeeded" or row.get("test_top1") is None:
            continue
        if row["stage"] == "baselines":
            key = ("baselines", row.get("modalities") or "all")
        else:
            group = group_of(row)
            if group is None or (group == "searched" and row.get("learned") is False):
                continue  # an unlearned search is no searched result (trials/summary.py)
            key = ("-".join(str(row[k]) for k in SETTING_KEYS), group)
        out.setdefault(key, []).append(float(row["test_top1"]))
    return out


def _order(key: tuple[str, str]) -> tuple:
    setting, group = key
    rank = {"searched": 0, "random": 1}.get(group, 2)
    return (setting == "baselines", setting, rank, group)


def compare_rows(jobs: Mapping[str, Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One dict per (setting, group) any job has: ``setting``, ``group`` and, per job i (in the
    order given), ``n_i``, ``mean_i``, ``std_i``, ``best_i`` (None where that job has no such run)."""
    per_job = [_values(rows) for rows in jobs.values()]
    keys = sorted({k for values in per_job for k in values}, key=_order)
    out = []
    for setting, group in keys:
        row: dict[str, Any] = {"setting": setting, "group": group}
        for i, values in enumerate(per_job):
            found = values.get((setting, group))
            s = summarize(found, where=group).to_dict() if found else {}
            row.update({f"n_{i}": s.get("n"), f"mean_{i}": s.get("mean"), f"std_{i}": s.get("std"),
                        f"best_{i}": s.get("best")})
        out.append(row)
    return out


def compare_section(jobs: Mapping[str, Sequence[dict[str, Any]]]) -> Section:
    """The comparison as a report :class:`Section` (Markdown, CSV and HTML renderers as for one job)."""
    columns = [Column("setting", ("setting",)), Column("genotypes", ("group",))]
    for i, job in enumerate(jobs):
        columns += [Column(f"{job} mean ± std", (f"mean_{i}", f"std_{i}"), "top1", "{} ± {}"),
                    Column(f"{job} n", (f"n_{i}",), "int"), Column(f"{job} best", (f"best_{i}",), "top1")]
    return Section("compare", f"Test top-1 (%) of {len(jobs)} jobs side by side", tuple(columns),
                   compare_rows(jobs),
                   ("Per setting (S-disc-I-C) and group of genotypes; baselines per modality combo. Only "
                    "succeeded trials; unlearned searches are not counted as searched.",),
                   "None of these jobs has a succeeded evaluation, random, control or baseline trial.")


def compare_figure(jobs: Mapping[str, Sequence[dict[str, Any]]]) -> Figure:
    """Every run of every job as a point per (setting, group), the jobs side by side in each, with
    each job's mean as a bar: the figures of the jobs overlaid on one axis."""
    per_job = [_values(rows) for rows in jobs.values()]
    keys = sorted({k for values in per_job for k in values}, key=_order)
    fig = Figure(figsize=(max(6.0, 0.9 * len(keys) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    width = 0.8 / max(len(per_job), 1)
    colours = [f"C{i}" for i in range(len(per_job))]
    for i, (job, values) in enumerate(zip(jobs, per_job)):
        xs, ys, means = [], [], []
        for x, key in enumerate(keys):
            found = values.get(key, [])
            centre = x - 0.4 + width * (i + 0.5)
            xs += list(centre + rng.uniform(-width / 4, width / 4, len(found)))
            ys += found
            if found:
                means.append((centre, float(np.mean(found))))
        ax.scatter(xs, ys, s=14, color=colours[i], alpha=0.75, label=job, gid=f"runs-{i}")
        ax.hlines([m for _, m in means], [c - width / 2.5 for c, _ in means], [c + width / 2.5 for c, _ in means],
                  colors=colours[i], linewidth=2, gid=f"means-{i}")
    ax.set_xticks(range(len(keys)), [f"{s}\n{g}" for s, g in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("every run per setting and group, by job (bars: means)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return fig


def compare_html(jobs: Mapping[str, Sequence[dict[str, Any]]]) -> str:
    """The comparison as one self-contained HTML page: the table and the overlaid figure."""
    from trials.figures import figure_svg

    section = compare_section(jobs)
    n_runs = sum(len(v) for rows in jobs.values() for v in _values(rows).values())
    figure = Graphic("compare-runs", "Every run, by job", f"{n_runs} runs of {len(jobs)} jobs; a bar is a "
                     "job's mean in that setting and group.", figure_svg(compare_figure(jobs)))
    return render_html(f"Comparison of {', '.join(jobs)}", [f"{len(jobs)} jobs: {', '.join(jobs)}."],
                       [section], [figure])
