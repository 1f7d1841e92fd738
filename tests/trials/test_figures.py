"""A job's figures (issue 13 item 2): each figure draws exactly what the rows and epochs imply.

Rows are built by hand (RESULT_SCHEMA's columns): 2 operator sets × C ∈ {1, 2} × 3 learned
searches' evaluations, random and control runs, 10 BOHB trials, and rows that must never be
drawn (failed trials, the evaluation of a search that did not learn); epochs for 2 search
trials. Figures are checked through their Axes: boxes, bars, points and lines (by gid), labels.
"""

import json
import math
import random
from collections import Counter

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from adf_service.genotype import control_genotype, random_genotype
from adf_service.space import OPERATOR_SETS, SearchSpace
from trials.config import Setting, TrialConfig
from trials.figures import (
    GROUP_COLORS,
    MIN_BOHB_FOR_IMPORTANCE,
    JobFigure,
    bohb_budget_figure,
    bohb_importance_figure,
    bohb_incumbent_figure,
    bohb_parallel_figure,
    fig10_top1_vs_cells,
    fig11_operator_choice,
    fig12_top1_per_inputs,
    fig13_runs_per_discretization,
    figure_svg,
    job_figures,
    save_figure,
    save_figure_bytes,
    search_curves_figure,
)
from trials.results import RESULT_SCHEMA

S1 = [Setting("S1", "all", 1, c) for c in (1, 2)]
S2 = [Setting("S2", "topk", 2, c) for c in (1, 2)]
BOHB_EPOCHS = 9  # config.evaluation.epochs: the budget every BOHB trial is given
BASE_NAMES = ["fig10-top1-vs-cells", "fig11-operator-choice", "fig12-top1-per-inputs-discretization",
              "fig13-runs-per-discretization"]
BOHB_NAMES = ["bohb-top1-vs-budget", "bohb-incumbent", "bohb-parallel-coordinates", "bohb-importance"]


def genotype(setting: Setting, seed: int):
    space = SearchSpace(setting.operators, setting.n_inputs, setting.n_cells, channels=16, partial_k=1)
    return random_genotype(space, setting.discretization, random.Random(seed))


def row(stage: str, key: str, setting: Setting | None, top1: float | None, *, status="succeeded", learned=None,
        genotype=None, control=None, evaluation=None, val_loss=0.5, best_epoch=3, val_top1=50.0) -> dict:
    config = TrialConfig(stage="search" if stage == "evaluation" else stage, trial_key=key, repeat=0, seed=1,
                         store="s", modalities=None, setting=setting, control=control, evaluation=evaluation)
    values = {"job": "job", "stage": stage, "trial_id": key, "trial_key": key,
              **(setting.to_dict() if setting else {}), "repeat": 0, "seed": 1, "best_epoch": best_epoch,
              "val_loss": val_loss, "val_top1": val_top1, "test_top1": top1, "fusion_params": 100,
              "total_params": 1100, "learned": learned, "genotype": genotype.to_json() if genotype else None,
              "config": config.to_json(), "wall_seconds": 1.0, "device": "cpu", "status": status,
              "error": "boom" if status == "failed" else None}
    return {name: values.get(name) for name in RESULT_SCHEMA.names}


def evaluations() -> list[dict]:
    """Learned searches' evaluations: per setting 3 repeats, test top-1 distinct per setting."""
    out = []
    for i, setting in enumerate(S1 + S2):
        for r in range(3):
            key = f"search-{setting.operators}-{setting.discretization}-I{setting.n_inputs}-C{setting.n_cells}-r{r}"
            out.append(row("evaluation", key, setting, 60.0 + 5 * i + 1.5 * r + r * r, learned=True,
                           genotype=genotype(setting, 10 * i + r)))
    return out


def bohb_rows(n: int = 10) -> list[dict]:
    out = []
    for i in range(n):
        hp = {"epochs": BOHB_EPOCHS, "batch_size": (16, 32, 64)[i % 3], "lr": 10 ** (-4 + 0.3 * i),
              "optimizer": ("adamw", "sgd")[i % 2], "weight_decay": 10 ** (-5 + 0.25 * i)}
        out.append(row("bohb", f"bohb-t{i}", S1[0], 70.0 + (i * 7) % 10, evaluation=hp,
                       val_loss=1.0 - 0.05 * ((i * 3) % 10), best_epoch=2))
    return out


def job_rows(bohb: int = 10) -> list[dict]:
    rows = evaluations()
    # never drawn: a search that did not learn (its 99 %, its all-skip genotype), failed trials
    rows += [row("evaluation", "search-unlearned", S1[0], 99.0, learned=False,
                 genotype=control_genotype(SearchSpace("S1", 1, 1, 16, 1), "all", "all_skip")),
             row("evaluation", "search-failed", S1[1], 98.0, status="failed", learned=True, genotype=genotype(S1[1], 99)),
             row("random", "random-failed", S1[0], 97.0, status="failed", genotype=genotype(S1[0], 98)),
             row("bohb", "bohb-failed", S1[0], None, status="failed", val_loss=None,
                 evaluation={"epochs": BOHB_EPOCHS, "batch_size": 16, "lr": 0.1, "optimizer": "sgd",
                             "weight_decay": 0.1})]
    rows += [row("random", f"random-S1-{r}", S1[0], 50.0 + r, genotype=genotype(S1[0], 50 + r)) for r in range(2)]
    rows += [row("random", "random-S2-0", S2[0], 55.0, genotype=genotype(S2[0], 60))]
    rows += [row("controls", f"controls-all_skip-{r}", S1[0], 40.0 + r, control="all_skip") for r in range(2)]
    rows += [row("baselines", "baselines-R-r0", None, 45.0)]
    rows += [row("search", "search-S1-all-I1-C1-r0", S1[0], None, learned=True, best_epoch=3, val_loss=0.61),
             row("search", "search-S1-all-I1-C1-r1", S1[0], None, learned=False, best_epoch=4, val_loss=0.72)]
    return rows + bohb_rows(bohb)


def search_epochs(keys=("search-S1-all-I1-C1-r0", "search-S1-all-I1-C1-r1"), n=5) -> list[dict]:
    out = []
    for t, key in enumerate(keys):
        for e in range(1, n + 1):
            base = {"job": "job", "trial_key": key, "trial_id": key, "epoch": e, "epochs": n, "train_loss": 1.0,
                    "val_top1": 40.0, "test_top1": None, "lr": 0.01, "epoch_seconds": 1.0,
                    "timestamp": 1000.0 + 100 * t + e}
            out.append(dict(base, stage="search", val_loss=1.0 - 0.1 * e + 0.01 * t, alpha_entropy=2.0 - 0.2 * e,
                            beta_entropy=1.0))
            out.append(dict(base, stage="evaluation", val_loss=9.0, alpha_entropy=None, beta_entropy=None,
                            epoch=e + n, timestamp=5000.0 + e))  # an evaluation's epochs: never search curves
    return out


TRAINED = [1, 3, 9, 1, 3, 9, 9, 1, 3, 9]  # the epochs each BOHB trial ran before HyperBand stopped it
FINISHED = [5, 2, 9, 0, 7, 1, 8, 3, 6, 4]  # the order of the time each ended


def bohb_epochs() -> list[dict]:
    return [{"job": "job", "stage": "bohb", "trial_key": f"bohb-t{i}", "trial_id": f"bohb-t{i}", "epoch": e,
             "epochs": BOHB_EPOCHS, "train_loss": 1.0, "val_loss": 1.0, "val_top1": 50.0, "test_top1": 50.0,
             "lr": 0.01, "epoch_seconds": 1.0, "alpha_entropy": None, "beta_entropy": None,
             "timestamp": 10_000.0 + 100 * FINISHED[i] + e}
            for i in range(10) for e in range(1, TRAINED[i] + 1)]


@pytest.fixture(scope="module")
def rows():
    return job_rows()


def gids(ax, prefix: str) -> list:
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]


def top1(rows, stage="evaluation", **match) -> list[float]:
    return [r["test_top1"] for r in rows if r["stage"] == stage and r["status"] == "succeeded"
            and r.get("learned") is not False and all(r[k] == v for k, v in match.items())]


def test_fig10_one_box_per_cells_per_operator_set_from_learned_evaluations_only(rows):
    made = fig10_top1_vs_cells(rows)
    assert isinstance(made, JobFigure) and isinstance(made.figure, Figure) and made.name == "fig10-top1-vs-cells"
    axes = made.figure.axes
    assert [ax.get_title() for ax in axes] == ["operators S1", "operators S2"]
    assert [ax.get_xlabel() for ax in axes] == ["cells C", "cells C"]
    assert axes[0].get_ylabel() == "test top-1 (%)"
    for ax, operators in zip(axes, ("S1", "S2")):
        boxes = gids(ax, "box-")
        assert len(ax.patches) == len(boxes) == 2
        for box, c in zip(boxes, (1, 2)):
            assert box.get_gid() == f"box-{operators}-C{c}"
            values = top1(rows, operators=operators, n_cells=c)
            assert len(values) == 3  # the unlearned (99 %) and the failed (98 %) evaluations are not among them
            low, high = box.get_path().vertices[:, 1].min(), box.get_path().vertices[:, 1].max()
            assert (low, high) == pytest.approx((np.percentile(values, 25), np.percentile(values, 75)))
            assert matplotlib.colors.to_hex(box.get_facecolor()) == GROUP_COLORS["searched"]
    assert "S1: C=1 3, C=2 3; S2: C=1 3, C=2 3" in made.caption


def kept_edges(rows, group_stage: str, operators: str) -> Counter:
    from adf_service.genotype import Genotype

    counts = Counter()
    for r in rows:
        if r["stage"] == group_stage and r["status"] == "succeeded" and r["learned"] is not False \
                and r["operators"] == operators:
            g = Genotype.from_json(r["genotype"])
            counts.update(op for cell in g.cells for node in cell for _, op in node)
    return counts


def test_fig11_bars_are_the_shares_of_kept_edges_with_the_uniform_prior(rows):
    made = fig11_operator_choice(rows)
    assert made.name == "fig11-operator-choice"
    axes = made.figure.axes
    assert axes[0].get_ylabel() == "probability chosen"
    for ax, operators in zip(axes, ("S1", "S2")):
        ops = [op for op in OPERATOR_SETS[operators] if op != "zero"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ops
        for group, stage in (("searched", "evaluation"), ("random", "random")):
            bars = gids(ax, f"bar-{group}-{operators}-")
            assert len(bars) == len(ops)
            counts = kept_edges(rows, stage, operators)  # the unlearned all-skip genotype is not counted
            assert [b.get_height() for b in bars] == pytest.approx([counts[op] / counts.total() for op in ops])
        assert len(ax.patches) == 2 * len(ops)
        [prior] = gids(ax, f"prior-{operators}")
        assert list(prior.get_ydata()) == pytest.approx([1 / len(ops)] * 2)


def test_fig12_searched_and_random_boxes_per_inputs_and_discretization(rows):
    made = fig12_top1_per_inputs(rows)
    axes = made.figure.axes
    assert axes[0].get_ylabel() == "test top-1 (%)"
    assert axes[0].get_xlabel() == "inputs I, discretization"
    assert [gid.get_gid() for gid in gids(axes[0], "box-")] == ["box-searched-S1-I1-all", "box-random-S1-I1-all"]
    assert [gid.get_gid() for gid in gids(axes[1], "box-")] == ["box-searched-S2-I2-topk", "box-random-S2-I2-topk"]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["I=2\ntopk"]
    assert "searched 12, random 3" in made.caption  # failed random and unlearned search left out

    no_random = fig12_top1_per_inputs([r for r in rows if r["stage"] != "random"])
    assert [len(gids(ax, "box-searched")) for ax in no_random.figure.axes] == [1, 1]
    assert not any(gids(ax, "box-random") for ax in no_random.figure.axes)


def test_fig13_every_run_is_a_point_with_seeded_jitter(rows):
    made = fig13_runs_per_discretization(rows)
    [ax] = made.figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("discretization", "test top-1 (%)")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["all", "topk"]
    points = {c.get_gid(): c for c in ax.collections}
    assert {gid: len(c.get_offsets()) for gid, c in points.items()} == \
        {"points-searched": 12, "points-random": 3, "points-all_skip": 2}
    searched = points["points-searched"].get_offsets()
    assert sorted(searched[:, 1]) == sorted(top1(rows))
    assert np.all(np.abs(searched[:, 0] - np.round(searched[:, 0])) < 0.45)  # near its discretization
    again = fig13_runs_per_discretization(rows)
    assert np.array_equal(again.figure.axes[0].collections[0].get_offsets(), searched)
    assert matplotlib.colors.to_hex(points["points-random"].get_facecolor()[0]) == GROUP_COLORS["random"]


def test_search_curves_per_trial_with_the_snapshot_at_best_epoch(rows):
    made = search_curves_figure(rows, search_epochs())
    loss_ax, entropy_ax = made.figure.axes
    assert (loss_ax.get_ylabel(), entropy_ax.get_ylabel(), entropy_ax.get_xlabel()) == \
        ("val loss", "α entropy", "search epoch")
    assert len(gids(loss_ax, "val-loss-")) == len(gids(entropy_ax, "alpha-entropy-")) == 2
    for key, best, t in (("search-S1-all-I1-C1-r0", 3, 0), ("search-S1-all-I1-C1-r1", 4, 1)):
        [line] = gids(loss_ax, f"val-loss-{key}")
        assert list(line.get_xdata()) == [1, 2, 3, 4, 5]  # its search epochs, not its evaluation's
        [marker] = gids(loss_ax, f"snapshot-{key}")
        assert list(marker.get_xdata()) == [best]
        assert list(marker.get_ydata()) == pytest.approx([1.0 - 0.1 * best + 0.01 * t])
        [entropy] = gids(entropy_ax, f"snapshot-entropy-{key}")
        assert list(entropy.get_ydata()) == pytest.approx([2.0 - 0.2 * best])
    assert [line.get_linestyle() for line in gids(loss_ax, "val-loss-")] == ["-", "--"]  # r1 did not learn
    assert "all 2 search trials" in made.caption

    many = search_curves_figure(rows, search_epochs(keys=[f"search-k{i:02d}" for i in range(14)], n=2))
    assert len(gids(many.figure.axes[0], "val-loss-")) == 12
    assert "12 of 14" in many.caption
    assert search_curves_figure(rows, []) is None


def test_bohb_top1_against_the_epochs_each_trial_trained(rows):
    made = bohb_budget_figure(rows, bohb_epochs())
    [ax] = made.figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("budget (epochs)", "test top-1 (%)")
    [points] = ax.collections
    bohb = [r for r in rows if r["stage"] == "bohb" and r["status"] == "succeeded"]
    assert points.get_offsets().tolist() == [[t, r["test_top1"]] for t, r in zip(TRAINED, bohb)]
    assert "1 epochs 3, 3 epochs 3, 9 epochs 4" in made.caption
    fallback = bohb_budget_figure(rows, [])  # no epochs: the budget each was given
    assert set(fallback.figure.axes[0].collections[0].get_offsets()[:, 0]) == {BOHB_EPOCHS}


def test_bohb_incumbent_is_the_running_lowest_val_loss_in_finishing_order(rows):
    bohb = [r for r in rows if r["stage"] == "bohb" and r["status"] == "succeeded"]
    made = bohb_incumbent_figure(rows, bohb_epochs())
    [ax] = made.figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("BOHB trials finished", "best val loss so far")
    [incumbent] = gids(ax, "incumbent")
    ordered = [r["val_loss"] for _, r in sorted(zip(FINISHED, bohb), key=lambda p: p[0])]
    assert list(incumbent.get_ydata()) == pytest.approx(np.minimum.accumulate(ordered))
    assert "time of its last epoch" in made.caption
    by_rows = bohb_incumbent_figure(rows, [])
    [incumbent] = gids(by_rows.figure.axes[0], "incumbent")
    assert list(incumbent.get_ydata()) == pytest.approx(np.minimum.accumulate([r["val_loss"] for r in bohb]))
    assert "row order" in by_rows.caption


def test_bohb_parallel_coordinates_one_line_per_succeeded_trial(rows):
    made = bohb_parallel_figure(rows)
    ax = made.figure.axes[0]  # the second is the colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == \
        ["batch size", "lr", "optimizer", "weight decay", "test top-1 (%)"]
    lines = gids(ax, "trial-")
    assert len(lines) == 10  # the failed BOHB trial has no line
    bohb = {r["trial_key"]: r for r in rows if r["stage"] == "bohb" and r["status"] == "succeeded"}
    lrs = [math.log10(json.loads(r["config"])["evaluation"]["lr"]) for r in bohb.values()]
    for line in lines:
        r = bohb[line.get_gid().removeprefix("trial-")]
        y = line.get_ydata()
        assert all(0 <= v <= 1 for v in y)
        lr = math.log10(json.loads(r["config"])["evaluation"]["lr"])
        assert y[1] == pytest.approx((lr - min(lrs)) / (max(lrs) - min(lrs)))  # lr on a log scale
        assert y[2] == (0.0 if json.loads(r["config"])["evaluation"]["optimizer"] == "adamw" else 1.0)
    labels = {t.get_text() for t in ax.texts}
    assert {"adamw", "sgd", "16", "64"} <= labels


def test_bohb_importance_needs_enough_trials(rows):
    assert bohb_importance_figure(job_rows(bohb=MIN_BOHB_FOR_IMPORTANCE - 1)) is None
    made = bohb_importance_figure(rows)
    [ax] = made.figure.axes
    bars = gids(ax, "importance-")
    assert [b.get_gid() for b in bars] == ["importance-batch_size", "importance-lr", "importance-optimizer",
                                           "importance-weight_decay"]
    assert len(ax.patches) == 4
    assert ax.get_ylabel() == "permutation importance (val loss)"
    assert [b.get_height() for b in bars] == [b.get_height() for b in gids(bohb_importance_figure(rows).figure.axes[0],
                                                                           "importance-")]  # seeded


def test_figure_svg_is_inline_svg_with_text_kept_as_text(rows):
    made = fig10_top1_vs_cells(rows)
    svg = figure_svg(made.figure)
    assert svg.startswith("<svg")
    assert made.title in svg and "cells C" in svg
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the style did not leak out


def test_save_figure_writes_png_and_svg(rows, tmp_path):
    made = fig11_operator_choice(rows)
    png, svg = save_figure(made, tmp_path / "figures")
    assert (png.name, svg.name) == ("fig11-operator-choice.png", "fig11-operator-choice.svg")
    assert png.read_bytes().startswith(b"\x89PNG") and svg.stat().st_size > 0
    assert svg.read_text().startswith("<?xml")  # a whole SVG file, prolog kept
    data = save_figure_bytes(made)
    assert set(data) == {"png", "svg"} and data["png"].startswith(b"\x89PNG") and b"<svg" in data["svg"]


def test_job_figures_lists_the_figures_with_data(rows):
    without = [r for r in rows if r["stage"] != "bohb"]
    assert [f.name for f in job_figures(without, [])] == BASE_NAMES
    every = job_figures(rows, search_epochs() + bohb_epochs())
    assert [f.name for f in every] == [*BASE_NAMES, "search-curves", *BOHB_NAMES]
    assert all(f.caption and f.title for f in every)
    assert job_figures([r for r in rows if r["stage"] == "baselines"], []) == []


def test_failed_and_unlearned_only_draws_nothing():
    rows = [row("evaluation", "e", S1[0], 90.0, learned=False, genotype=genotype(S1[0], 1)),
            row("evaluation", "f", S1[0], 91.0, status="failed", learned=True, genotype=genotype(S1[0], 2)),
            row("bohb", "b", S1[0], None, status="failed", val_loss=None)]
    assert job_figures(rows, []) == []
