"""A finished job's tables as the thesis prints them (tables 3, 4, 5, 6, fig. 11), from its Parquet results.

Each table is a pure function from result rows (RESULT_SCHEMA's dicts, every stage's) to a
list of dicts, one dict a table row, so the service can serve them as they are;
:class:`Section` adds a title, notes and how each column reads, and two small renderers
write Markdown and CSV. :func:`trials.job_report.write_report` does it for a job's directory (`adf-service
report`, trials/cli.py; the columns are in docs/results.md, "Reports").

Numbers come from succeeded trials only (failed ones are counted in the status table), and a
search whose supernet did not learn (``learned`` false) is never a searched result
(trials/summary.py). Statistics are adf_service/stats.py's, grouped by trials/summary.py.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest

from adf_service.genotype import Genotype
from adf_service.modalities import BASELINE_COMBOS, combo_name
from adf_service.space import SearchSpace
from adf_service.stats import summarize
from trials.config import BOHB_HYPERPARAMETERS, STAGES, TrialConfig
from trials.expand import setting_key
from trials.results import TRIAL_STATUSES, best_evaluation, bohb_best
from trials.summary import SETTING_KEYS, group_of, setting_summaries

__all__ = [
    "ARCHITECTURE_KEYS", "NUMERIC_KINDS", "Column", "Section", "baseline_table", "bohb_table", "format_cell", "job_sections",
    "operator_choice_table", "render_csv", "render_markdown", "searched_vs_random_table", "setting_table",
    "status_table", "transfer_table",
]

ARCHITECTURE_KEYS = ("operators", "discretization", "n_inputs")  # table 4's (S, disc, I): the best over C
BOHB_KEYS = (*BOHB_HYPERPARAMETERS, "epochs")


# --- the tables: rows in, rows out ---------------------------------------------------------------


def _succeeded(rows: Iterable[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["stage"] == stage and r["status"] == "succeeded" and r["test_top1"] is not None]


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The best test top-1, ties to the lower val loss (as trials.results.best_evaluation)."""
    return max(rows, key=lambda r: (r["test_top1"], -r["val_loss"]), default=None)


def baseline_table(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 3: per modality combo (the thesis' order), test top-1 n, best, mean, std, and the
    parameters of its best run (fusion: the head's; total: with the backbones')."""
    by_combo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _succeeded(rows, "baselines"):
        by_combo[row["modalities"] or ""].append(row)  # null: every modality of the store
    order = ["+".join(combo) for combo in BASELINE_COMBOS]
    out = []
    for modalities in sorted(by_combo, key=lambda m: (order.index(m) if m in order else len(order), m)):
        group = by_combo[modalities]
        summary = summarize([r["test_top1"] for r in group], where=f"baselines {modalities}")
        best = _best(group)
        out.append({
            "combo": combo_name(modalities.split("+")) if modalities else "all", "modalities": modalities or "all",
            "n": summary.n, "best": summary.best, "mean": summary.mean, "std": summary.std,
            "fusion_params": best["fusion_params"], "total_params": best["total_params"],
        })
    return out


def _versus(summary: dict[str, Any], searched: dict[str, Any] | None, random: dict[str, Any] | None) -> dict:
    """Searched and random columns of one group of settings (a setting_summaries entry)."""
    out: dict[str, Any] = {}
    for name, best in (("searched", searched), ("random", random)):
        group = summary["groups"].get(name) or {}
        out.update({f"{name}_{k}": group.get(k) for k in ("n", "best", "mean", "std")})
        out[f"{name}_n_cells"] = best["n_cells"] if best else None
        out[f"{name}_fusion_params"] = best["fusion_params"] if best else None
        out[f"{name}_total_params"] = best["total_params"] if best else None
    out["n_unlearned"] = summary["n_unlearned"]
    versus = summary["searched_vs_random"] or {}
    out.update({k: versus.get(k) for k in ("mean_difference", "ci_low", "ci_high", "p_value")})
    return out


def _of(rows: Iterable[dict[str, Any]], keys: Sequence[str], summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == summary[k] for k in keys)]


def searched_vs_random_table(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Table 4: per (S, disc, I), searched beside random, pooled over cells C and repeats: n, best,
    mean, std; best C and parameters of each side's best run; unlearned searches; mean(searched) −
    mean(random) with its bootstrap 95 % interval and the one-sided Mann–Whitney p (``seed``: the
    bootstrap's, the job's seed)."""
    pooled = [dict(r, n_cells=None) for r in rows if r["stage"] in ("evaluation", "random")]
    out = []
    for summary in setting_summaries(pooled, seed=seed):
        group = _of(rows, ARCHITECTURE_KEYS, summary)
        searched = best_evaluation(group, by="test")
        out.append({**{k: summary[k] for k in ARCHITECTURE_KEYS},
                    **_versus(summary, searched, _best(_succeeded(group, "random")))})
    return out


def setting_table(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Table 4 per setting (S, disc, I, C): the same columns but C, plus ``control_<name>``, the
    mean test top-1 of each control genotype (stage controls) the setting ran."""
    out = []
    for summary in setting_summaries(rows, seed=seed):
        group = _of(rows, SETTING_KEYS, summary)
        row = {**{k: summary[k] for k in SETTING_KEYS},
               **_versus(summary, best_evaluation(group, by="test"), _best(_succeeded(group, "random")))}
        del row["searched_n_cells"], row["random_n_cells"]
        controls = {name: g for name, g in summary["groups"].items() if name not in ("searched", "random")}
        out.append(row | {f"control_{name}": g["mean"] for name, g in controls.items()})
    return out


def bohb_table(rows: Sequence[dict[str, Any]], *, select: str = "val") -> list[dict[str, Any]]:
    """Table 5: the evaluation BOHB started from (trials.results.best_evaluation by ``select``, the
    spec's bohb.select) and BOHB's best configuration (trials.results.bohb_best): batch size, lr,
    optimizer, weight decay, epochs (BOHB's largest budget), best epoch, val loss, test top-1; no
    rows when no BOHB trial succeeded."""
    best = bohb_best(rows)
    if best is None:
        return []
    out = []
    start = best_evaluation(rows, by=select)
    if start is not None:
        evaluation = TrialConfig.from_json(start["config"]).evaluation or {}
        out.append({"run": f"start (bohb.select: {select})", "trial": start["trial_key"],
                    **{k: evaluation.get(k) for k in BOHB_KEYS}, "best_epoch": start["best_epoch"],
                    "val_loss": start["val_loss"], "test_top1": start["test_top1"], "gain": None})
    bohb = next(r for r in rows if r["stage"] == "bohb" and r["trial_id"] == best["trial_id"])
    out.append({"run": "BOHB best", "trial": bohb["trial_key"], **best["config"], "best_epoch": bohb["best_epoch"],
                "val_loss": best["val_loss"], "test_top1": best["test_top1"],
                "gain": best["test_top1"] - start["test_top1"] if start is not None else None})
    return out


def transfer_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 6: per transferred genotype, in setting order, its source setting and trial and that trial's test
    top-1 in its own job; on this job's store the test top-1 n, best, mean, std over the repeats and the
    parameters of the best run. Then this store's best baseline (table 3's best combo) for reference.
    No rows when no transfer trial succeeded."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sources: dict[str, dict[str, Any]] = {}
    for row in _succeeded(rows, "transfer"):
        source = TrialConfig.from_json(row["config"]).source or {}
        by_source[source.get("trial_key") or row["trial_key"]].append(row)
        sources[source.get("trial_key") or row["trial_key"]] = source
    out = []
    for trial, group in sorted(by_source.items(), key=lambda kv: (tuple(str(kv[1][0][k]) for k in SETTING_KEYS), kv[0])):
        first, best = group[0], _best(group)
        summary = summarize([r["test_top1"] for r in group], where=f"transfer {trial}")
        out.append({"setting": setting_key(*(first[k] for k in SETTING_KEYS)), "source_trial": trial,
                    "source_test_top1": sources[trial].get("test_top1"), "n": summary.n, "best": summary.best,
                    "mean": summary.mean, "std": summary.std, "fusion_params": best["fusion_params"],
                    "total_params": best["total_params"]})
    baselines = baseline_table(rows)
    if out and baselines:
        top = max(baselines, key=lambda b: (b["best"], b["mean"]))
        out.append({"setting": f"baseline {top['combo']}", "source_trial": None, "source_test_top1": None,
                    **{k: top[k] for k in ("n", "best", "mean", "std", "fusion_params", "total_params")}})
    return out


def _genotype_group(row: dict[str, Any]) -> str | None:
    """searched (a learned search's evaluation) or random, as trials.summary.group_of names them."""
    if row["status"] != "succeeded" or not row["genotype"] or row.get("learned") is False:
        return None
    group = group_of(row)
    return group if group in ("searched", "random") else None


def operator_choice_table(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fig. 11 as a table: per operator set and operator (never ``zero``), how many kept edges of the
    searched genotypes (evaluations of learned searches) and of the random ones carry it, their
    share, the uniform prior (1 / the set's operators) and the one-sided binomial p of "searched
    chooses it more often than the prior" (indicative: edges of a genotype are not independent)."""
    counts: dict[str, dict[str, Counter]] = {"searched": defaultdict(Counter), "random": defaultdict(Counter)}
    for row in rows:
        group = _genotype_group(row)
        if group is not None:
            genotype = Genotype.from_json(row["genotype"], where=row["trial_key"])
            counts[group][genotype.operators].update(op for cell in genotype.cells for node in cell for _, op in node)
    out = []
    for operators in sorted(set(counts["searched"]) | set(counts["random"])):
        space = SearchSpace(operators, 1, 1, channels=4, partial_k=1)
        ops = [op for op in space.op_names if op != "zero"]
        prior = 1 / len(ops)
        searched, random = counts["searched"][operators], counts["random"][operators]
        n_searched, n_random = searched.total(), random.total()
        for op in ops:
            out.append({
                "operators": operators, "op": op,
                "searched_count": searched[op], "searched_edges": n_searched,
                "searched_share": searched[op] / n_searched if n_searched else None,
                "random_count": random[op], "random_edges": n_random,
                "random_share": random[op] / n_random if n_random else None,
                "prior": prior,
                "p_value": binomtest(searched[op], n_searched, prior, alternative="greater").pvalue
                if n_searched else None,
            })
    return out


def status_table(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials per stage (every stage, in the order they run) and status."""
    counts = Counter((r["stage"], r["status"]) for r in rows)
    return [{"stage": stage, **{status: counts[stage, status] for status in TRIAL_STATUSES}} for stage in STAGES]


# --- how the tables read --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One Markdown column: ``header`` over the values of ``keys`` written as ``kind`` (see
    :data:`FORMATS`) and joined by ``join``; the CSV file gets one column per key, headed by the key."""

    header: str
    keys: tuple[str, ...]
    kind: str = "text"
    join: str = "{}"  # e.g. "{} ± {}": a missing value after the first is left out with its joint


FORMATS = {
    "text": str,
    "int": lambda v: str(int(v)),
    "top1": lambda v: f"{v:.1f}",  # test top-1 in %
    "delta": lambda v: f"{v:+.1f}",  # a difference of top-1 in points
    "sig3": lambda v: f"{v:#.3g}",  # p-values, learning rates, weight decays: 3 significant digits
    "share": lambda v: f"{v:.3f}",
    "loss": lambda v: f"{v:.4f}",
}
_MARKDOWN = {"int": lambda v: f"{int(v):,}"}  # thousands apart for the eye; the CSV keeps plain integers
NUMERIC_KINDS = {"int", "top1", "delta", "sig3", "share", "loss"}


@dataclass(frozen=True)
class Section:
    """One table of the report: ``name`` is its CSV file's stem; ``empty`` is said when it has no rows."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    notes: tuple[str, ...] = ()
    empty: str = "No rows."


def _c(header: str, *keys: str, kind: str = "text", join: str = "{}") -> Column:
    return Column(header, keys, kind, join)


def _versus_columns(with_c: bool) -> tuple[Column, ...]:
    columns = []
    for name in ("searched", "random"):
        columns += [_c(f"{name} best", f"{name}_best", kind="top1"),
                    _c(f"{name} mean ± std", f"{name}_mean", f"{name}_std", kind="top1", join="{} ± {}"),
                    _c(f"{name} n", f"{name}_n", kind="int")]
        if name == "searched":
            columns.append(_c("unlearned", "n_unlearned", kind="int"))
        if with_c:
            columns.append(_c(f"{name} best C", f"{name}_n_cells", kind="int"))
        columns += [_c(f"{name} params", f"{name}_fusion_params", kind="int"),
                    _c(f"{name} params total", f"{name}_total_params", kind="int")]
    return (*columns, _c("Δ mean", "mean_difference", kind="delta"),
            _c("95 % CI", "ci_low", "ci_high", kind="delta", join="[{}, {}]"), _c("p", "p_value", kind="sig3"))


def job_sections(rows: Sequence[dict[str, Any]], *, seed: int = 0, select: str = "val") -> list[Section]:
    """Every table of a job's report, from all its rows; ``seed`` and ``select`` are its spec's
    ``seed`` (the bootstrap's) and ``bohb.select``."""
    settings = setting_table(rows, seed=seed)
    controls = sorted({k for row in settings for k in row if k.startswith("control_")})
    n_bohb = sum(1 for r in rows if r["stage"] == "bohb")
    n_transfer = sum(1 for r in rows if r["stage"] == "transfer")
    transferred_from = sorted({(TrialConfig.from_json(r["config"]).source or {}).get("job") or "?"
                               for r in rows if r["stage"] == "transfer"})
    setting_columns = (_c("S", "operators"), _c("disc", "discretization"), _c("I", "n_inputs", kind="int"))
    return [
        Section("table3_baselines", "Table 3: baselines (late fusion per modality combo)",
                (_c("combo", "combo"), _c("modalities", "modalities"), _c("best", "best", kind="top1"),
                 _c("mean ± std", "mean", "std", kind="top1", join="{} ± {}"), _c("n", "n", kind="int"),
                 _c("params", "fusion_params", kind="int"), _c("params total", "total_params", kind="int")),
                baseline_table(rows),
                ("Test top-1 (%) over a combo's repeats; parameters of its best run: the head's, and with "
                 "the backbones' where the store records them.",),
                "No baseline trial succeeded."),
        Section("table4_searched_vs_random", "Table 4: searched vs random per (S, disc, I)",
                (*setting_columns, *_versus_columns(with_c=True)),
                searched_vs_random_table(rows, seed=seed),
                ("Pooled over cells C and repeats; best C is the C of each side's best run, whose "
                 "parameters are given. Unlearned searches (their supernet did not learn) are not counted "
                 "as searched. Δ mean: searched − random with a bootstrap 95 % interval; p: one-sided "
                 "Mann–Whitney U, searched > random.",),
                "No evaluation or random trial succeeded."),
        Section("table4_per_setting", "Table 4 per setting (S, disc, I, C), with the control genotypes",
                (*setting_columns, _c("C", "n_cells", kind="int"), *_versus_columns(with_c=False),
                 *(_c(k.removeprefix("control_"), k, kind="top1") for k in controls)),
                settings,
                ("As above, per setting; a control column is that control genotype's mean test top-1.",),
                "No evaluation, random or control trial succeeded."),
        Section("table5_bohb", "Table 5: BOHB",
                (_c("run", "run"), _c("trial", "trial"), _c("batch size", "batch_size", kind="int"),
                 _c("lr", "lr", kind="sig3"), _c("optimizer", "optimizer"),
                 _c("weight decay", "weight_decay", kind="sig3"), _c("epochs", "epochs", kind="int"),
                 _c("best epoch", "best_epoch", kind="int"), _c("val loss", "val_loss", kind="loss"),
                 _c("test top-1", "test_top1", kind="top1"), _c("Δ test top-1", "gain", kind="delta")),
                bohb_table(rows, select=select),
                ("BOHB's best configuration (its lowest val loss) against the evaluation it started from; "
                 "epochs: BOHB's largest budget.",),
                f"BOHB ran {n_bohb} trials and none succeeded." if n_bohb else "BOHB did not run."),
        Section("table6_transfer", "Table 6: transfer (another job's best genotypes on this job's store)",
                (_c("setting", "setting"), _c("source trial", "source_trial"),
                 _c("source test top-1", "source_test_top1", kind="top1"), _c("best", "best", kind="top1"),
                 _c("mean ± std", "mean", "std", kind="top1", join="{} ± {}"), _c("n", "n", kind="int"),
                 _c("params", "fusion_params", kind="int"), _c("params total", "total_params", kind="int")),
                transfer_table(rows),
                (f"Genotypes of job {', '.join(transferred_from) or '–'} (transfer.from_job), each trained from "
                 "scratch on this job's store; source test top-1: the trial's in its own job. Test top-1 (%) over "
                 "the repeats, parameters of the best run; last, this store's best baseline for reference.",),
                f"Transfer ran {n_transfer} trials and none succeeded." if n_transfer else "No transfer evaluation ran."),
        Section("operator_choice", "Operator choice (fig. 11)",
                (_c("S", "operators"), _c("op", "op"), *(column for name in ("searched", "random") for column in (
                    _c(name, f"{name}_count", kind="int"), _c(f"{name} edges", f"{name}_edges", kind="int"),
                    _c(f"{name} share", f"{name}_share", kind="share"))),
                 _c("prior", "prior", kind="share"), _c("p", "p_value", kind="sig3")),
                operator_choice_table(rows),
                ("Kept edges per operator over the genotypes of learned searches' evaluations and of the "
                 "random trials. p: one-sided binomial test of \"searched chooses the operator more often "
                 "than the uniform prior\"; the edges of one genotype are not independent draws, so p is "
                 "indicative only.",),
                "No genotype to count."),
        Section("trial_status", "Trials per stage",
                (_c("stage", "stage"), *(_c(s, s, kind="int") for s in TRIAL_STATUSES)),
                status_table(rows),
                ("Failed trials are counted here only; every number above comes from succeeded trials.",)),
    ]


def format_cell(column: Column, row: dict[str, Any]) -> str:
    values = [row.get(k) for k in column.keys]
    if values[0] is None:
        return "–"
    write = _MARKDOWN.get(column.kind, FORMATS[column.kind])
    if None in values:  # a std of one run, an interval of one run
        return write(values[0])
    return column.join.format(*(write(v) for v in values))


def render_markdown(section: Section) -> str:
    """The section as Markdown: its title (level 2), its notes, its table (or ``empty``)."""
    lines = [f"## {section.title}", "", *section.notes, ""]
    if not section.rows:
        return "\n".join([*lines, f"_{section.empty}_", ""])
    rule = ["---:" if c.kind in NUMERIC_KINDS else "---" for c in section.columns]
    lines += [f"| {' | '.join(c.header for c in section.columns)} |", f"| {' | '.join(rule)} |"]
    lines += [f"| {' | '.join(format_cell(c, row) for c in section.columns)} |" for row in section.rows]
    return "\n".join([*lines, ""])


def render_csv(section: Section) -> str:
    """The section as CSV: a column per key, headed by the key; numbers as in the Markdown."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([k for c in section.columns for k in c.keys])
    for row in section.rows:
        writer.writerow(["" if row.get(k) is None else FORMATS[c.kind](row[k])
                         for c in section.columns for k in c.keys])
    return text.getvalue()
