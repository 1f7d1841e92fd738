"""`adf-service report` (issue 13 item 1): the thesis' tables of a finished job from its Parquet results.

A small job is written with trials.results.write_tables; every number of every table is checked
against the rows it comes from, computed here by hand (or with the statistics' own functions).
"""

import csv
import itertools
import json
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from adf_service.genotype import control_genotype, random_genotype
from adf_service.space import SearchSpace
from adf_service.stats import compare
from api.cli import app
from trials.config import Setting, TrialConfig
from trials.job_report import read_job, write_report
from trials.report import searched_vs_random_table
from trials.results import RESULT_SCHEMA, write_tables

SEED = 3  # the job's spec seed: the bootstrap intervals'
S1_C1, S1_C2 = Setting("S1", "all", 1, 1), Setting("S1", "all", 1, 2)
S2_C1 = Setting("S2", "topk", 2, 1)
START = {"epochs": 5, "batch_size": 64, "optimizer": "sgd", "lr": 0.002, "weight_decay": 0.0003}
SAMPLED = {"batch_size": 16, "lr": 0.00123, "optimizer": "adamw", "weight_decay": 0.0001, "epochs": 9}
_keys = itertools.count()


def space(setting: Setting) -> SearchSpace:
    return SearchSpace(setting.operators, setting.n_inputs, setting.n_cells, channels=16, partial_k=1)


def searched_genotype(setting: Setting, name: str):
    return control_genotype(space(setting), setting.discretization, name)


def sampled_genotype(setting: Setting, seed: int):
    return random_genotype(space(setting), setting.discretization, random.Random(seed))


def row(stage: str, top1: float | None, setting: Setting | None = S1_C1, *, status: str = "succeeded",
        learned: bool | None = None, val_loss: float | None = 0.5, genotype=None, control: str | None = None,
        modalities: tuple[str, ...] | None = None, params: int = 1000, evaluation: dict | None = None,
        trial_id: str | None = None, best_epoch: int = 3) -> dict:
    """One row of a result table (RESULT_SCHEMA's columns) with its trial's config."""
    key = f"{stage}-{next(_keys):03d}"
    config = TrialConfig(stage="search" if stage == "evaluation" else stage, trial_key=key, repeat=0, seed=1,
                         store="s", modalities=modalities, setting=setting, control=control,
                         evaluation=evaluation or (START if stage in ("evaluation", "random") else None))
    values = {
        "job": "job", "stage": stage, "trial_id": trial_id or key, "trial_key": key,
        **(setting.to_dict() if setting else {}), "modalities": "+".join(modalities) if modalities else None,
        "repeat": 0, "seed": 1, "best_epoch": best_epoch, "val_loss": val_loss, "val_top1": 50.0,
        "test_top1": top1, "fusion_params": params, "total_params": params + 10**6, "learned": learned,
        "genotype": genotype.to_json() if genotype else None, "config": config.to_json(),
        "status": status, "error": "boom" if status == "failed" else None,
    }
    return {name: values.get(name) for name in RESULT_SCHEMA.names}


def job_rows() -> list[dict]:
    rows = [row("baselines", v, None, modalities=("rgb",), params=p) for v, p in ((60.0, 10), (64.0, 11), (62.0, 12))]
    rows += [row("baselines", 70.0, None, modalities=("rgb", "flow"), params=20),
             row("baselines", 99.0, None, status="failed", modalities=("rgb",))]
    evaluations = [  # (setting, top-1, val loss, genotype): learned searches
        (S1_C1, 70.0, 0.3, searched_genotype(S1_C1, "all_skip")),
        (S1_C1, 72.0, 0.6, searched_genotype(S1_C1, "all_conv_3x3x3")),
        (S1_C2, 80.0, 0.5, searched_genotype(S1_C2, "all_conv_3x3x3")),
        (S1_C2, 76.0, 0.4, sampled_genotype(S1_C2, 1)),
        (S2_C1, 66.0, 0.7, searched_genotype(S2_C1, "all_flat_conv_3x3x3")),
    ]
    rows += [row("evaluation", v, s, learned=True, val_loss=loss, genotype=g, params=int(v) * 100)
             for s, v, loss, g in evaluations]
    # Neither counts: a search that did not learn (its 95 % and its lowest val loss), a failed one.
    rows += [row("evaluation", 95.0, S1_C2, learned=False, val_loss=0.1, genotype=searched_genotype(S1_C2, "all_skip")),
             row("evaluation", 99.0, S1_C2, status="failed", val_loss=None, genotype=searched_genotype(S1_C2, "all_skip")),
             row("search", None, S1_C1, learned=True), row("search", None, S1_C2, status="failed")]
    randoms = [(S1_C1, 50.0, 11), (S1_C1, 60.0, 12), (S1_C2, 65.0, 13), (S2_C1, 40.0, 14)]
    rows += [row("random", v, s, genotype=sampled_genotype(s, seed), params=int(v) * 10) for s, v, seed in randoms]
    rows += [row("random", 98.0, S1_C2, status="failed", val_loss=None, genotype=sampled_genotype(S1_C2, 15))]
    rows += [row("controls", v, S1_C1, control="all_skip") for v in (30.0, 32.0)]
    bohb = dict(START, **SAMPLED)
    rows += [row("bohb", 82.0, S1_C1, val_loss=0.2, evaluation=bohb, trial_id="b1", best_epoch=7),
             row("bohb", 85.0, S1_C1, val_loss=0.6, evaluation=dict(bohb, lr=0.01), trial_id="b2"),
             row("bohb", None, S1_C1, status="failed", val_loss=None, trial_id="b3")]
    return rows


def write_job(tmp_path, rows, name="job") -> str:
    job = tmp_path / name
    write_tables(job, rows)
    (job / "spec.json").write_text(json.dumps({"name": "thesis-mini", "seed": SEED, "bohb": {"select": "val"}}))
    return job


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The job's report: its directory and every CSV table as a list of dicts by column."""
    tmp = tmp_path_factory.mktemp("report")
    rows = job_rows()
    job = write_job(tmp, rows)
    written = [Path(w) for w in write_report(job)]
    tables = {}
    for path in (p for p in written if p.suffix == ".csv"):
        with path.open() as f:
            reader = csv.DictReader(f)
            tables[path.stem] = (reader.fieldnames, list(reader))
    return {"job": job, "rows": rows, "written": written, "tables": tables,
            "markdown": written[0].read_text()}


def by(rows: list[dict], **match) -> dict:
    [found] = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return found


def top1(value: float) -> str:
    return f"{value:.1f}"


def test_the_report_lands_in_the_job_directory_with_a_csv_per_table(report):
    names = [p.name for p in report["written"] if p.parent.name != "figures"]
    assert names == ["report.md", "report.html", "table3_baselines.csv", "table4_searched_vs_random.csv",
                     "table4_per_setting.csv", "table5_bohb.csv", "table6_transfer.csv", "operator_choice.csv",
                     "trial_status.csv"]
    assert all(p.parent == report["job"] / "report" for p in report["written"] if p.parent.name != "figures")
    figures = [p for p in report["written"] if p.parent.name == "figures"]
    assert figures and {p.suffix for p in figures} == {".png", ".svg"} and all(p.stat().st_size for p in figures)
    rows_per_table = {"table3_baselines": 2, "table4_searched_vs_random": 2, "table4_per_setting": 3,
                      "table5_bohb": 2, "table6_transfer": 0, "operator_choice": 6 + 5, "trial_status": 7}
    assert {name: len(rows) for name, (_, rows) in report["tables"].items()} == rows_per_table


def test_the_markdown_names_the_job_its_spec_and_when_its_results_were_written(report):
    job = read_job(report["job"])
    text = report["markdown"]
    assert f"Job `job` (spec `thesis-mini`), results written {job.written_at:%Y-%m-%d %H:%M} UTC." in text
    for title in ("## Table 3: baselines", "## Table 4: searched vs random per (S, disc, I)", "## Table 5: BOHB",
                  "## Operator choice (fig. 11)", "## Trials per stage", "not independent"):
        assert title in text
    assert "| R | rgb | 64.0 | 62.0 ± 2.0 | 3 | 11 | 1,000,011 |" in text
    assert "| R+F | rgb+flow | 70.0 | 70.0 | 1 | 20 | 1,000,020 |" in text  # one run: no ± std


def test_table3_has_best_mean_std_n_and_the_params_of_each_combos_best_run(report):
    header, rows = report["tables"]["table3_baselines"]
    assert header == ["combo", "modalities", "best", "mean", "std", "n", "fusion_params", "total_params"]
    assert rows[0] == {"combo": "R", "modalities": "rgb", "best": "64.0", "mean": "62.0", "std": "2.0", "n": "3",
                       "fusion_params": "11", "total_params": "1000011"}  # the failed 99.0 counts nowhere
    assert rows[1] == {"combo": "R+F", "modalities": "rgb+flow", "best": "70.0", "mean": "70.0", "std": "", "n": "1",
                       "fusion_params": "20", "total_params": "1000020"}


def test_table4_pools_cells_and_repeats_gives_the_best_c_and_compares_with_random(report):
    header, rows = report["tables"]["table4_searched_vs_random"]
    assert header[:3] == ["operators", "discretization", "n_inputs"]
    assert header[-4:] == ["mean_difference", "ci_low", "ci_high", "p_value"] and len(header) == 22
    searched, randoms = [70.0, 72.0, 80.0, 76.0], [50.0, 60.0, 65.0]  # unlearned and failed ones left out
    expected = compare(searched, randoms, seed=SEED)
    s1 = by(rows, operators="S1")
    assert (s1["searched_best"], s1["searched_mean"], s1["searched_std"], s1["searched_n"]) == (
        "80.0", top1(74.5), top1(statistics.stdev(searched)), "4")
    assert (s1["n_unlearned"], s1["searched_n_cells"], s1["searched_fusion_params"]) == ("1", "2", "8000")
    assert (s1["random_best"], s1["random_mean"], s1["random_std"], s1["random_n"]) == (
        "65.0", top1(statistics.mean(randoms)), top1(statistics.stdev(randoms)), "3")
    assert (s1["random_n_cells"], s1["random_fusion_params"]) == ("2", "650")
    assert s1["mean_difference"] == f"{74.5 - statistics.mean(randoms):+.1f}"
    assert (s1["ci_low"], s1["ci_high"]) == (f"{expected.ci_low:+.1f}", f"{expected.ci_high:+.1f}")
    assert s1["p_value"] == f"{expected.p_value:#.3g}"
    s2 = by(rows, operators="S2")  # one run a side: no std, no interval
    assert (s2["searched_best"], s2["searched_std"], s2["random_best"], s2["ci_low"]) == ("66.0", "", "40.0", "")
    assert s2["p_value"] == f"{compare([66.0], [40.0]).p_value:#.3g}" == "0.500"


def test_table4_as_a_function_returns_the_statistics_unrounded(report):
    [s1, _] = searched_vs_random_table(report["rows"], seed=SEED)
    expected = compare([70.0, 72.0, 80.0, 76.0], [50.0, 60.0, 65.0], seed=SEED)
    assert s1["p_value"] == expected.p_value and s1["ci_low"] == expected.ci_low
    assert s1["searched_mean"] == 74.5 and s1["searched_n_cells"] == 2 and s1["n_unlearned"] == 1


def test_table4_per_setting_adds_each_control_genotypes_mean(report):
    header, rows = report["tables"]["table4_per_setting"]
    assert header[:4] == ["operators", "discretization", "n_inputs", "n_cells"] and header[-1] == "control_all_skip"
    c1 = by(rows, operators="S1", n_cells="1")
    assert (c1["searched_mean"], c1["searched_std"], c1["random_mean"], c1["control_all_skip"]) == (
        "71.0", top1(statistics.stdev([70.0, 72.0])), "55.0", "31.0")
    expected = compare([70.0, 72.0], [50.0, 60.0], seed=SEED)
    assert (c1["p_value"], c1["ci_low"]) == (f"{expected.p_value:#.3g}", f"{expected.ci_low:+.1f}")
    assert c1["searched_fusion_params"] == "7200" and c1["n_unlearned"] == "0"
    c2 = by(rows, operators="S1", n_cells="2")
    assert (c2["searched_mean"], c2["searched_n"], c2["n_unlearned"], c2["random_n"]) == ("78.0", "2", "1", "1")
    assert c2["control_all_skip"] == "" and c2["ci_low"] == ""  # no control run there; one random run
    assert c2["p_value"] == f"{compare([80.0, 76.0], [65.0]).p_value:#.3g}"


def test_table5_sets_bohbs_best_configuration_against_the_evaluation_it_started_from(report):
    header, rows = report["tables"]["table5_bohb"]
    assert header == ["run", "trial", "batch_size", "lr", "optimizer", "weight_decay", "epochs", "best_epoch",
                      "val_loss", "test_top1", "gain"]
    start, best = rows
    # bohb.select val: the lowest val loss of a learned search's evaluation (the unlearned 0.1 is not one).
    started = by(report["rows"], stage="evaluation", val_loss=0.3)
    assert start == {"run": "start (bohb.select: val)", "trial": started["trial_key"], "batch_size": "64",
                     "lr": "0.00200", "optimizer": "sgd", "weight_decay": "0.000300", "epochs": "5",
                     "best_epoch": "3", "val_loss": "0.3000", "test_top1": "70.0", "gain": ""}
    assert best == {"run": "BOHB best", "trial": by(report["rows"], trial_id="b1")["trial_key"], "batch_size": "16",
                    "lr": "0.00123", "optimizer": "adamw", "weight_decay": "0.000100", "epochs": "9",
                    "best_epoch": "7", "val_loss": "0.2000", "test_top1": "82.0", "gain": "+12.0"}


def test_the_operator_shares_count_the_kept_edges_of_learned_searches_and_of_random_genotypes(report):
    header, rows = report["tables"]["operator_choice"]
    assert header == ["operators", "op", "searched_count", "searched_edges", "searched_share", "random_count",
                      "random_edges", "random_share", "prior", "p_value"]
    for operators in ("S1", "S2"):
        counts = {"searched": Counter(), "random": Counter()}
        for r in report["rows"]:
            group = {"evaluation": "searched", "random": "random"}.get(r["stage"])
            if group and r["operators"] == operators and r["status"] == "succeeded" and r["learned"] is not False:
                cells = json.loads(r["genotype"])["cells"]
                counts[group].update(op for cell in cells for node in cell for _, op in node)
        ops = [op for op in SearchSpace(operators).op_names if op != "zero"]
        n = {g: sum(c.values()) for g, c in counts.items()}
        for op in ops:
            got = by(rows, operators=operators, op=op)
            assert (got["searched_count"], got["searched_edges"]) == (str(counts["searched"][op]), str(n["searched"]))
            assert got["searched_share"] == f"{counts['searched'][op] / n['searched']:.3f}"
            assert got["random_share"] == f"{counts['random'][op] / n['random']:.3f}"
            assert got["prior"] == f"{1 / len(ops):.3f}"
            p = binomtest(counts["searched"][op], n["searched"], 1 / len(ops), alternative="greater").pvalue
            assert got["p_value"] == f"{p:#.3g}"
    s1 = {r["op"]: r for r in rows if r["operators"] == "S1"}
    assert len(s1) == 6 and "zero" not in s1
    # I = 1, all: 10 edges a cell. all_skip and all_conv_3x3x3 on C1, all_conv_3x3x3 and a random genotype on C2.
    assert int(s1["conv_3x3x3"]["searched_count"]) >= 30 and s1["conv_3x3x3"]["searched_edges"] == "60"
    assert s1["skip"]["random_edges"] == "40"  # the failed random trial's genotype is not counted


def test_failed_trials_are_counted_per_stage_but_give_no_number(report):
    header, rows = report["tables"]["trial_status"]
    assert header == ["stage", "succeeded", "failed"]
    assert {r["stage"]: (r["succeeded"], r["failed"]) for r in rows} == {
        "baselines": ("4", "1"), "search": ("1", "1"), "evaluation": ("6", "1"), "random": ("4", "1"),
        "controls": ("2", "0"), "bohb": ("2", "1"), "transfer": ("0", "0")}
    for value in ("99.0", "98.0"):  # the failed trials' top-1
        assert value not in report["markdown"]


def test_a_job_without_bohb_rows_says_bohb_did_not_run(tmp_path):
    job = write_job(tmp_path, [r for r in job_rows() if r["stage"] != "bohb"])
    [md, *_] = written = [Path(w) for w in write_report(job, tmp_path / "out")]
    assert "_BOHB did not run._" in md.read_text()
    table5 = tmp_path / "out" / "table5_bohb.csv"
    assert table5 in written and table5.read_text().splitlines() == [
        "run,trial,batch_size,lr,optimizer,weight_decay,epochs,best_epoch,val_loss,test_top1,gain"]


runner = CliRunner()


def test_the_report_command_writes_report_md_where_it_is_told(report, tmp_path):
    result = runner.invoke(app, ["report", str(report["job"]), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").read_text() == report["markdown"]
    assert len(list((tmp_path / "out").glob("*.csv"))) == 7


def test_a_directory_without_results_is_a_clear_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert str(tmp_path / "empty") in result.output and "no result tables" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such job directory" in result.output
