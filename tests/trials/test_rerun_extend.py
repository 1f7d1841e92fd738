"""Rerun a job's failed trials, extend a finished job with repeats (issue 15, item 4), on a real local Ray."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from tests.trials.test_run_grid import grid
from trials.config import STAGES
from trials.expand import trial_seed
from trials.export import best_export
from trials.extend import ExtendError
from trials.job_report import read_job
from trials.pipeline import run_grid
from trials.results import write_tables
from trials.storage import JobStorage

pytestmark = pytest.mark.ray

ADF = str(Path(sys.executable).with_name("adf-service"))


def small(spec, **update):
    """The tiny grid with one setting, one baseline and no random, control or BOHB trials; then ``update``."""
    return spec.model_copy(update={
        "space": spec.space.model_copy(update={"discretizations": ["all"]}),
        "baselines": spec.baselines.model_copy(update={"combos": [["rgb"]]}),
        "random": spec.random.model_copy(update={"enabled": False}),
        "controls": spec.controls.model_copy(update={"enabled": False}),
        "bohb": spec.bohb.model_copy(update={"enabled": False}),
        **update,
    })


def rows_of(tables):
    """(stage, trial key) → its row, over every table; no (stage, trial key) has two rows."""
    rows = [r for stage in STAGES for r in pq.read_table(tables[stage]).to_pylist()]
    by_key = {(r["stage"], r["trial_key"]): r for r in rows}
    assert len(by_key) == len(rows), "a trial has two rows"
    return by_key


class KillWhileFlagged(ray.tune.Callback):
    """A transient fault: while ``flag`` exists, the worker of each trial in ``keys`` is killed (by its pid) at
    its second result, on every attempt. Remembers the iterations each trial reported, in order."""

    def __init__(self, flag, keys):
        self.flag, self.keys = flag, keys
        self.kills = 0
        self.iterations = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.iterations.setdefault(result["trial_key"], []).append(result["training_iteration"])
        if result["trial_key"] in self.keys and result["training_iteration"] == 2 and self.flag.exists():
            self.kills += 1
            os.kill(result["pid"], signal.SIGKILL)


def test_a_trial_that_spent_its_retries_goes_on_from_its_checkpoint_when_the_job_resumes(local_ray, store, tmp_path):
    """The fault schedule's "ended without a result" (docs/reliability.md): a trial that fails for good while
    its checkpoint is being saved leaves Tune a STOP for that save in the experiment state. The job's next
    attempt resumes the errored trial, and Tune applied that STOP at its first save: the trial ended with
    neither its result nor an error, its rows `failed` by a run that had no fault. The restore now drops
    the dead driver's decisions (trials/tune_state.py), so the trial goes on from its checkpoint."""
    base = grid(store, tmp_path, gpus=0)
    spec = small(base, resources=base.resources.model_copy(update={"max_failures": 1}))
    key = "search-S2-all-I1-C1-r0"
    flag = tmp_path / "worker-fault"
    flag.touch()
    faulty = KillWhileFlagged(flag, {key})
    first = run_grid(spec, job_id="spent", show_progress=False, callbacks=[faulty])
    assert faulty.kills == 2  # the first attempt and its one retry, each killed at its second result
    search = rows_of(first.tables)[("search", key)]
    assert search["status"] == "failed" and search["error"].startswith("ActorDiedError: The actor died")

    flag.unlink()
    again = KillWhileFlagged(flag, set())
    resumed = run_grid(spec, job_id="spent", resume=True, show_progress=False, callbacks=[again])
    rows = rows_of(resumed.tables)
    assert rows[("search", key)]["status"] == rows[("evaluation", key)]["status"] == "succeeded", rows[("search", key)]["error"]
    assert rows[("search", key)]["genotype"] is not None and rows[("evaluation", key)]["test_top1"] is not None
    # From its checkpoint (iteration 1, the last one saved before the kill), not from the start.
    assert again.iterations[key][0] == 2 and again.iterations[key] == list(range(2, len(again.iterations[key]) + 2))


def test_a_rerun_runs_the_failed_trials_from_scratch_and_keeps_every_finished_row(local_ray, store, tmp_path):
    base = grid(store, tmp_path, gpus=0)
    spec = small(base, space=base.space, baselines=base.baselines.model_copy(update={  # S2-all and S2-topk
        "combos": [["rgb"]], "training": base.baselines.training.model_copy(update={"epochs": 3})}))
    spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"max_failures": 1})})
    failing = {"baselines": "baselines-R-r0", "search": "search-S2-topk-I1-C1-r0"}
    flag = tmp_path / "worker-fault"
    flag.touch()
    faulty = KillWhileFlagged(flag, set(failing.values()))
    first = run_grid(spec, job_id="rerun", show_progress=False, callbacks=[faulty])
    assert faulty.kills == 4  # each failing trial's first attempt and its one retry (resources.max_failures 1)
    before = rows_of(first.tables)
    failed = {where for where, row in before.items() if row["status"] == "failed"}
    assert failed == {*failing.items(), ("evaluation", failing["search"])}
    assert first.counts["evaluation"] == {"succeeded": 1, "failed": 1}

    flag.unlink()  # the fault is gone; the spec is the same
    again = KillWhileFlagged(flag, set())
    rerun = run_grid(spec, job_id="rerun", resume=True, rerun_failed=True, show_progress=False, callbacks=[again])
    after = rows_of(rerun.tables)
    # Only the failed trials ran, each from its first epoch (a resume from a checkpoint starts at 2 or 3).
    assert again.iterations == {failing["baselines"]: [1, 2, 3], failing["search"]: [1, 2, 3, 4]}
    assert after.keys() == before.keys() and all(row["status"] == "succeeded" for row in after.values())
    for where, row in before.items():
        if where in failed:
            measured = "genotype" if where[0] == "search" else "test_top1"  # a search row has no test top-1
            assert after[where]["error"] is None and after[where][measured] is not None
            assert after[where]["seed"] == row["seed"] == trial_seed(spec.seed, where[1])  # the same trial
        else:
            assert after[where] == row, where  # every value, its usage too: the trial did not run again

    job = rerun.job_dir
    epochs = pq.read_table(job / "results" / "epochs.parquet").to_pylist()
    for where in failed:  # the failed run's epochs are gone: each epoch once, of the rerun's Tune trial
        ran = [(e["epoch"], e["trial_id"]) for e in epochs if (e["stage"], e["trial_key"]) == where]
        n_epochs = 3 if where[0] == "baselines" else 2
        assert ran == [(epoch, after[where]["trial_id"]) for epoch in range(1, n_epochs + 1)]
    assert json.loads((job / "results" / "summary.json").read_text()) == rerun.summaries
    # The rerun search's weights are exported from its new run's directory (<key>_<4 hex>/).
    results = read_job(job)
    rerun_only = replace(results, rows=[r for r in results.rows if r["trial_key"] == failing["search"]])
    metrics = json.loads(best_export(rerun_only)["metrics.json"])
    assert (metrics["trial_id"], metrics["test_top1"]) == (after[("evaluation", failing["search"])]["trial_id"],
                                                          after[("evaluation", failing["search"])]["test_top1"])


def test_an_extension_runs_only_the_new_repeats_and_keeps_every_row_of_the_job(local_ray, store, tmp_path):
    spec = small(grid(store, tmp_path, gpus=0))
    first = run_grid(spec, job_id="ext", show_progress=False)
    before = rows_of(first.tables)
    assert {key for _, key in before} == {"baselines-R-r0", "search-S2-all-I1-C1-r0"}
    stored = (first.job_dir / "spec.json").read_text()

    extended = spec.model_copy(update={"repeats": 2})
    # The service's driver: `adf-service run-job JOB --attempt N --extend`, the new spec in $ADF_JOB_SPEC.
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "ADF_JOB_SPEC": extended.model_dump_json(), "RAY_ADDRESS": address}
    driver = subprocess.run([ADF, "run-job", "ext", "--attempt", "2", "--extend"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert driver.returncode == 0, driver.stderr[-3000:]
    job = first.job_dir
    after = rows_of({stage: job / "results" / f"{stage}.parquet" for stage in STAGES})
    new = {where: row for where, row in after.items() if where not in before}
    assert {where: row for where, row in after.items() if where in before} == before  # every value as it was
    assert set(new) == {("search", "search-S2-all-I1-C1-r1"), ("evaluation", "search-S2-all-I1-C1-r1")}
    for (stage, key), row in new.items():
        assert row["repeat"] == 1 and row["status"] == "succeeded" and row["job"] == "ext"
        assert row["seed"] == trial_seed(spec.seed, key) != before[(stage, key.replace("-r1", "-r0"))]["seed"]
        assert row["attempts"] == 1 and row["cpu_seconds"] > 0
    progress = json.loads((job / "progress.json").read_text())  # it counts the extension's one trial
    assert progress["finished"] and progress["attempt"] == 2
    assert {stage: (c["total"], c["succeeded"]) for stage, c in progress["stages"].items()} == {"search": (1, 1)}

    assert (job / "extend-2" / "search-S2-all-I1-C1-r1").is_dir() and not (job / "search-S2-all-I1-C1-r1").exists()
    assert json.loads((job / "spec.json").read_text())["repeats"] == 2
    epochs = pq.read_table(job / "results" / "epochs.parquet").to_pylist()
    assert {(e["stage"], e["trial_key"]) for e in epochs} == set(after)
    assert json.loads((job / "results" / "summary.json").read_text())[0]["groups"]["searched"]["n"] == 2
    assert (job / "report" / "report.html").is_file()
    # The best genotype's weights are found in the extension's trial directory too.
    results = read_job(job)
    only_new = replace(results, rows=[r for r in results.rows if r["repeat"] == 1])
    assert json.loads(best_export(only_new)["metrics.json"])["trial_key"] == "search-S2-all-I1-C1-r1"

    # An extension whose driver died after its trials ended, before the job's tables took them: the next
    # extension restores its experiment (nothing runs again) rather than starting extend-3.
    write_tables(JobStorage.at(job), before.values())
    (job / "spec.json").write_text(stored)
    watch = KillWhileFlagged(tmp_path / "no-fault", set())
    resumed = run_grid(extended, job_id="ext", extend=True, attempt=3, show_progress=False, callbacks=[watch])
    assert watch.iterations == {} and not (job / "extend-3").exists()
    assert rows_of(resumed.tables) == after

    untouched = {p: p.stat().st_mtime_ns for p in (job / "results").glob("*.parquet")}
    with pytest.raises(ExtendError, match=r"evaluation\.lr: 0\.1, the job's is 0\.05") as refused:
        run_grid(extended.model_copy(update={
            "repeats": 3, "evaluation": extended.evaluation.model_copy(update={"lr": 0.1})}),
            job_id="ext", extend=True, show_progress=False)
    assert "repeats" not in str(refused.value).split("differs")[1]  # repeats may change
    with pytest.raises(ExtendError, match="repeats: 1, fewer than the job's 2"):
        run_grid(spec, job_id="ext", extend=True, show_progress=False)
    with pytest.raises(ExtendError, match="has every trial of this spec already"):
        run_grid(extended, job_id="ext", extend=True, show_progress=False)
    with pytest.raises(ExtendError, match="no result tables"):
        run_grid(extended, job_id="no-such-job", extend=True, show_progress=False)
    with pytest.raises(ExtendError, match="raises repeats 2 → 3 over the job's spec.json: that is an extension"):
        run_grid(extended.model_copy(update={"repeats": 3}), job_id="ext", resume=True, show_progress=False)
    assert {p: p.stat().st_mtime_ns for p in (job / "results").glob("*.parquet")} == untouched
    assert not (job / "extend-3").exists()
