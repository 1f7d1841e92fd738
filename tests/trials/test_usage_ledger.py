"""GPU-hour accounting on the driver (trials/usage.py): every trial attempt timed, lost work counted apart,
usage.json carried over a dead driver; and a whole grid on a real local Ray whose worker is killed once."""

import pyarrow.parquet as pq
import pytest
from ray.tune.experiment import Trial

from trials.config import TUNE_KEY
from trials.storage import Fenced, JobStorage, claim_lease
from trials.usage import USAGE_COLUMNS, UsageLedger, read_usage, usage_summary


class Clock:
    """The ledger's wall clock, moved by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def grid_trial(key: str, cpus: float = 4, gpus: float = 1) -> Trial:
    """A Tune trial of the main grid, as Tune holds it: its TrialConfig's dict under config["trial"]."""
    trial = Trial("stub", stub=True, config={TUNE_KEY: {"trial_key": key, "stage": "search"}},
                  placement_group_factory={"CPU": cpus, "GPU": gpus})
    trial.create_placement_group_factory()
    return trial


def bohb_trial(trial_id: str) -> Trial:
    """A BOHB trial: its config is BOHB's sample, no TrialConfig."""
    trial = Trial("stub", stub=True, trial_id=trial_id, config={"lr": 0.01, "batch_size": 16},
                  placement_group_factory={"CPU": 2, "GPU": 0.5})
    trial.create_placement_group_factory()
    return trial


def epoch(ledger: UsageLedger, clock: Clock, trial: Trial, at: float, *, checkpoint: bool = True) -> None:
    """The trial reports an epoch at ``at`` and (unless its worker dies first) checkpoints it."""
    clock.now = at
    ledger.on_trial_result(0, [], trial, {"node_id": "ab12cd34ef56" + "0" * 44})
    if checkpoint:
        ledger.on_checkpoint(0, [], trial, None)


def test_a_retried_attempt_loses_its_seconds_after_its_last_checkpoint_and_the_retry_counts_as_an_attempt():
    clock = Clock(0.0)
    ledger = UsageLedger(clock=clock)
    killed, steady = grid_trial("search-S1-all-I1-C1-r0"), grid_trial("baselines-R-r0", cpus=2, gpus=0)
    ledger.on_trial_start(0, [], killed)
    ledger.on_trial_start(0, [], steady)
    epoch(ledger, clock, killed, 10.0)
    epoch(ledger, clock, killed, 20.0, checkpoint=False)  # its worker died before epoch 2's checkpoint
    clock.now = 25.0
    ledger.on_trial_recover(0, [], killed)
    clock.now = 30.0
    ledger.on_trial_start(0, [], killed)  # the retry, from epoch 1's checkpoint
    epoch(ledger, clock, killed, 45.0)
    clock.now = 60.0
    ledger.on_trial_complete(0, [], killed)
    ledger.on_trial_complete(0, [], steady)

    rows = ledger.per_trial()
    assert rows["search-S1-all-I1-C1-r0"] == {
        "gpus": 1.0, "cpus": 4.0, "attempts": 2,
        "gpu_seconds": 25.0 + 30.0, "cpu_seconds": 4 * 55.0,  # held: both attempts
        "lost_gpu_seconds": 15.0, "lost_cpu_seconds": 4 * 15.0,  # 25 − 10: the work after the last checkpoint
    }
    assert rows["baselines-R-r0"] == {"gpus": 0.0, "cpus": 2.0, "attempts": 1, "gpu_seconds": 0.0,
                                      "cpu_seconds": 120.0, "lost_gpu_seconds": 0.0, "lost_cpu_seconds": 0.0}
    totals = ledger.totals()
    for column in ("gpu_seconds", "cpu_seconds", "lost_gpu_seconds", "lost_cpu_seconds"):
        assert totals[column] == sum(r[column] for r in rows.values())
    assert totals["gpu_hours"] == pytest.approx(55.0 / 3600)
    assert ledger.running() == {}


def test_a_running_trial_shows_its_last_progress_and_its_seconds_so_far():
    clock = Clock(100.0)
    ledger = UsageLedger(clock=clock)
    trial = grid_trial("random-S2-all-I1-C1-r3")
    ledger.on_trial_start(0, [], trial)
    assert ledger.running() == {
        "random-S2-all-I1-C1-r3": {"last_progress_at": 100.0, "node_id": None, "attempt": 1}}
    epoch(ledger, clock, trial, 130.0)
    clock.now = 190.0
    running = ledger.running()["random-S2-all-I1-C1-r3"]
    assert running["last_progress_at"] == 130.0 and running["node_id"].startswith("ab12cd34")
    snapshot = ledger.progress()
    assert snapshot["usage"]["gpu_seconds"] == 90.0 and snapshot["usage"]["cpu_seconds"] == 360.0
    assert snapshot["usage"]["summary"] == "0.025 GPU-hours, none lost to restarts"
    assert snapshot["running"] == ledger.running()


def test_a_bohb_trial_paused_at_a_rung_holds_nothing_while_paused_and_stays_one_attempt():
    clock = Clock(0.0)
    ledger = UsageLedger(clock=clock)
    trial = bohb_trial("a1b2c3_00002")
    ledger.on_trial_start(0, [], trial)
    epoch(ledger, clock, trial, 8.0)
    trial.set_status(Trial.PAUSED)  # HyperBand paused it at its rung: no callback says so, the step does
    ledger.on_step_end(1, [trial])
    clock.now = 100.0
    trial.set_status(Trial.RUNNING)
    ledger.on_trial_start(2, [trial], trial)
    epoch(ledger, clock, trial, 110.0)
    ledger.on_trial_complete(2, [trial], trial)

    usage = ledger.per_trial()["a1b2c3_00002"]  # keyed by its Tune trial id
    assert usage["attempts"] == 1 and usage["lost_gpu_seconds"] == 0.0
    assert usage["gpu_seconds"] == 0.5 * (8.0 + 10.0) and usage["cpu_seconds"] == 2 * 18.0
    assert [a.ended for a in ledger.attempts] == ["paused", "completed"]


def test_a_trial_that_failed_for_good_and_was_run_again_after_a_resume_lost_that_attempt():
    clock = Clock(0.0)
    ledger = UsageLedger(clock=clock)
    trial = grid_trial("controls-all_skip-S2-all-I1-C1-r0")
    ledger.on_trial_start(0, [], trial)
    epoch(ledger, clock, trial, 5.0)
    clock.now = 9.0
    ledger.on_trial_error(0, [], trial)
    # Failed for good, no retry (its row says failed): nothing lost
    assert ledger.per_trial()["controls-all_skip-S2-all-I1-C1-r0"]["lost_gpu_seconds"] == 0.0
    clock.now = 50.0
    ledger.on_trial_start(0, [], trial)  # Tuner.restore(resume_errored=True) runs it again
    clock.now = 70.0
    ledger.on_trial_complete(0, [], trial)
    usage = ledger.per_trial()["controls-all_skip-S2-all-I1-C1-r0"]
    assert usage["attempts"] == 2 and usage["lost_gpu_seconds"] == 4.0 and usage["gpu_seconds"] == 29.0


def test_a_new_driver_ends_the_dead_drivers_attempts_at_their_last_save_as_lost_and_goes_on(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    clock = Clock(0.0)
    dead = UsageLedger(storage, clock=clock)
    done, cut = grid_trial("baselines-R+F-r0", gpus=0.25), grid_trial("search-S2-topk-I1-C1-r0")
    dead.on_trial_start(0, [], done)
    dead.on_trial_start(0, [], cut)
    epoch(dead, clock, cut, 10.0)
    clock.now = 12.0
    dead.on_trial_complete(0, [], done)  # saved at 12
    epoch(dead, clock, cut, 12.5)  # within a second of the last save: not saved
    clock.now = 40.0  # the driver dies here, unsaved
    assert read_usage(storage)["saved_at"] == 12.0

    clock.now = 100.0
    resumed = UsageLedger(storage, clock=clock).resume_from(read_usage(storage))
    resumed.setup()
    assert read_usage(storage)["attempts"][1]["ended"] == "driver_died"
    assert resumed.running() == {}
    resumed.on_trial_start(0, [], cut)
    clock.now = 130.0
    resumed.on_trial_complete(0, [], cut)

    usage = resumed.per_trial()
    done_usage = usage["baselines-R+F-r0"]
    assert (done_usage["gpu_seconds"], done_usage["attempts"]) == (0.25 * 12.0, 1)
    # 12 s until the last save (2 of them lost: after epoch 1's checkpoint), then 30
    assert usage["search-S2-topk-I1-C1-r0"] == {
        "gpus": 1.0, "cpus": 4.0, "attempts": 2, "gpu_seconds": 42.0, "cpu_seconds": 168.0,
        "lost_gpu_seconds": 2.0, "lost_cpu_seconds": 8.0}
    saved = read_usage(storage)
    assert saved["saved_at"] == 130.0 and [a["n"] for a in saved["attempts"]] == [1, 1, 2]


def test_a_driver_whose_job_a_newer_attempt_took_over_stops_writing_usage(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    ledger = UsageLedger(storage, attempt=1)
    claim_lease(storage, 2)
    with pytest.raises(Fenced, match="attempt 2"):
        ledger.on_trial_start(0, [], grid_trial("baselines-R-r0"))
    assert ledger.fenced and read_usage(storage) is None


def test_rows_get_their_trials_usage_a_search_and_its_evaluation_alike_and_a_trial_never_started_none():
    clock = Clock(0.0)
    ledger = UsageLedger(clock=clock)
    search, bohb = grid_trial("search-S1-topk-I2-C1-r1"), bohb_trial("f00d_00000")
    for trial in (search, bohb):
        ledger.on_trial_start(0, [], trial)
    clock.now = 36.0
    for trial in (search, bohb):
        ledger.on_trial_complete(0, [], trial)
    rows = [{"stage": "search", "trial_key": "search-S1-topk-I2-C1-r1", "trial_id": "x"},
            {"stage": "evaluation", "trial_key": "search-S1-topk-I2-C1-r1", "trial_id": "x"},
            {"stage": "bohb", "trial_key": "bohb-f00d_00000", "trial_id": "f00d_00000"},
            {"stage": "random", "trial_key": "random-S1-all-I1-C1-r0", "trial_id": "never-started"}]
    ledger.fill(rows)
    assert {c: rows[0][c] for c in USAGE_COLUMNS} == {c: rows[1][c] for c in USAGE_COLUMNS}
    assert rows[0]["gpu_seconds"] == 36.0 and rows[2]["gpu_seconds"] == 18.0 and rows[2]["cpus"] == 2.0
    assert rows[3]["attempts"] == 0 and rows[3]["gpu_seconds"] == 0.0 and rows[3]["gpus"] is None


def test_the_summary_speaks_of_gpu_hours_or_of_cpu_hours_when_the_job_held_no_gpu():
    gpu = {"gpu_seconds": 14.2 * 3600, "lost_gpu_seconds": 3.1 * 3600, "cpu_seconds": 9e5}
    assert usage_summary(gpu) == "14.2 GPU-hours, 3.1 of them lost to restarts"
    assert usage_summary({"gpu_seconds": 0.0, "cpu_seconds": 2.5 * 3600, "lost_cpu_seconds": 0.0}) == (
        "2.5 CPU-hours, none lost to restarts")
    assert usage_summary({"gpu_seconds": 0.0, "cpu_seconds": 90.0, "lost_cpu_seconds": 9.0}) == (
        "0.025 CPU-hours, 0.0025 of them lost to restarts")


# --- a real grid on a real local Ray ---------------------------------------------------------------------


@pytest.mark.ray
def test_a_grid_whose_worker_is_killed_once_records_two_attempts_and_lost_seconds_for_that_trial_only(
        local_ray, store, tmp_path):
    from tests.trials.test_run_grid import KillWorkerOnce, grid
    from trials.pipeline import run_grid
    from trials.results import STAGES
    from trials.storage import read_progress

    spec = grid(store, tmp_path, gpus=0)
    spec = spec.model_copy(update={
        "search": spec.search.model_copy(update={"epochs": 4}),
        "space": spec.space.model_copy(update={"discretizations": ["all"]}),
        "baselines": spec.baselines.model_copy(update={"combos": [["rgb"]]}),
        "random": spec.random.model_copy(update={"enabled": False}),
        "controls": spec.controls.model_copy(update={"enabled": False}),
        "bohb": spec.bohb.model_copy(update={"enabled": False}),
    })
    killer = KillWorkerOnce()
    outcome = run_grid(spec, job_id="usage", show_progress=False, callbacks=[killer])
    assert killer.killed is not None
    key, _ = killer.killed

    rows = [r for stage in STAGES for r in pq.read_table(outcome.tables[stage]).to_pylist()]
    assert sorted((r["stage"], r["trial_key"]) for r in rows) == [
        ("baselines", "baselines-R-r0"), ("evaluation", key), ("search", key)]
    for row in rows:
        assert row["gpus"] == 0.0 and row["cpus"] == 1.0, row  # gpus_per_trial 0: CPUs only
        assert row["gpu_seconds"] == 0.0 and row["cpu_seconds"] > 0 and row["attempts"] >= 1
    killed = [r for r in rows if r["trial_key"] == key]
    assert all(r["attempts"] == 2 and 0 < r["lost_cpu_seconds"] < r["cpu_seconds"] for r in killed), killed
    [baseline] = [r for r in rows if r["stage"] == "baselines"]
    assert baseline["attempts"] == 1 and baseline["lost_cpu_seconds"] == 0.0

    # The job's totals (usage.json, progress.json) are the sum over its trials: a search's evaluation
    # row repeats its search row, so the search table counts that trial once.
    per_trial = [r for r in rows if r["stage"] != "evaluation"]
    storage = JobStorage.at(outcome.job_dir)
    saved, progress = read_usage(storage), read_progress(storage)
    assert progress["finished"] and progress["running"] == {}
    for column in ("cpu_seconds", "lost_cpu_seconds", "gpu_seconds"):
        assert progress["usage"][column] == pytest.approx(sum(r[column] for r in per_trial))
    summary = progress["usage"]["summary"]
    assert summary.endswith("of them lost to restarts") and "CPU-hours" in summary
    assert [(a["trial_key"], a["ended"]) for a in saved["attempts"] if a["trial_key"] == key] == [
        (key, "retried"), (key, "completed")]
    report = (outcome.job_dir / "report" / "report.md").read_text()
    assert f"This job: {summary}." in report
