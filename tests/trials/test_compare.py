"""Jobs side by side (trials/compare.py, `adf-service compare`): every number against the rows."""

import statistics
from pathlib import Path

from test_report import job_rows, write_job
from typer.testing import CliRunner

from api.cli import app
from trials.compare import compare_figure, compare_html, compare_rows

runner = CliRunner()


def _jobs():
    first = job_rows()
    second = [dict(r, test_top1=None if r["test_top1"] is None else r["test_top1"] - 10.0)
              for r in first if r["stage"] != "random"]  # no random trials in the second job
    return {"first": first, "second": second}


def test_each_setting_and_group_gets_each_jobs_n_mean_std_and_best():
    jobs = _jobs()
    rows = compare_rows(jobs)
    keys = [(r["setting"], r["group"]) for r in rows]
    assert keys == [("S1-all-1-1", "searched"), ("S1-all-1-1", "random"), ("S1-all-1-1", "all_skip"),
                    ("S1-all-1-2", "searched"), ("S1-all-1-2", "random"), ("S2-topk-2-1", "searched"),
                    ("S2-topk-2-1", "random"), ("baselines", "rgb"), ("baselines", "rgb+flow")]
    s1c2 = rows[3]  # 80 and 76 learned; the unlearned 95 and the failed 99 are not counted
    assert (s1c2["n_0"], s1c2["mean_0"], s1c2["best_0"]) == (2, 78.0, 80.0)
    assert s1c2["std_0"] == statistics.stdev([80.0, 76.0])
    assert (s1c2["n_1"], s1c2["mean_1"], s1c2["best_1"]) == (2, 68.0, 70.0)
    random = rows[1]
    assert (random["n_0"], random["mean_0"]) == (2, 55.0) and random["n_1"] is None and random["mean_1"] is None
    rgb = rows[7]
    assert (rgb["n_0"], rgb["mean_0"], rgb["best_0"]) == (3, 62.0, 64.0)


def test_the_overlaid_figure_has_every_run_of_every_job_and_the_page_holds_it():
    jobs = _jobs()
    values = {name: sum(r["n_" + str(i)] or 0 for r in compare_rows(jobs)) for i, name in enumerate(jobs)}
    figure = compare_figure(jobs)
    [ax] = figure.axes
    points = {c.get_gid(): len(c.get_offsets()) for c in ax.collections if str(c.get_gid()).startswith("runs-")}
    assert points == {"runs-0": values["first"], "runs-1": values["second"]}
    assert ax.get_ylabel() == "test top-1 (%)" and len(ax.get_xticks()) == 9
    page = compare_html(jobs)
    assert page.startswith("<!doctype html>") and "<svg" in page and 'id="table-compare"' in page
    assert "first mean ± std" in page and "second best" in page


def test_the_compare_command_prints_the_table_and_writes_the_page(tmp_path):
    jobs = _jobs()
    dirs = [write_job(tmp_path, rows, name=name) for name, rows in jobs.items()]
    result = runner.invoke(app, ["compare", *map(str, dirs), "-o", str(tmp_path / "out")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "first mean ± std" in result.output and "78.0 ± 2.8" in result.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"compare.md", "compare.csv", "compare.html"}
    csv_head = (tmp_path / "out" / "compare.csv").read_text().splitlines()[0]
    assert csv_head == "setting,group,mean_0,std_0,n_0,best_0,mean_1,std_1,n_1,best_1"
    mixed = runner.invoke(app, ["compare", str(dirs[0]), "some-job-id"])
    assert mixed.exit_code != 0 and "not both" in mixed.output
    Path(tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["compare", str(dirs[0]), str(tmp_path / "empty")])
    assert empty.exit_code != 0 and "no result tables" in empty.output
