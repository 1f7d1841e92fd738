"""The progress snapshot a job's driver writes (trials/progress.py): resumed counts and the final ones."""

import json
from types import SimpleNamespace

from trials.config import TUNE_KEY, TrialConfig
from trials.progress import StageProgress
from trials.storage import JobStorage


def test_a_finished_job_counts_its_rows_and_a_skipped_bohb_has_no_pending_trials(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    progress = StageProgress({"baselines": 2, "search": 2, "bohb": 3}, storage=storage, enabled=False)
    rows = [{"stage": "baselines", "status": "succeeded", "test_top1": 30.0},
            {"stage": "baselines", "status": "failed", "test_top1": None},
            {"stage": "search", "status": "succeeded", "test_top1": None},
            {"stage": "evaluation", "status": "succeeded", "test_top1": 90.0},
            {"stage": "search", "status": "succeeded", "test_top1": None}]
    with progress:
        progress.settle(rows)  # BOHB had no learned search to start from: no bohb rows
    stages = json.loads((tmp_path / "job" / "progress.json").read_text())["stages"]
    assert stages["baselines"] | {"best_test_top1": None} == {
        "total": 2, "succeeded": 1, "failed": 1, "running": 0, "pending": 0, "best_test_top1": None,
        "unlearned": 0}
    assert stages["bohb"]["total"] == 0 and stages["bohb"]["pending"] == 0


def test_a_resumed_job_starts_from_the_counts_the_previous_driver_wrote(tmp_path):
    previous = {"started_at": 1000.0, "stages": {
        "search": {"total": 4, "succeeded": 3, "failed": 1, "running": 2, "pending": 0, "best_test_top1": 80.0}}}
    progress = StageProgress({"search": 4}, enabled=False).resume_from(previous)
    snap = progress.snapshot()
    assert snap["started_at"] == 1000.0
    assert snap["stages"]["search"] == {"total": 4, "succeeded": 3, "failed": 1, "running": 0, "pending": 0,
                                        "best_test_top1": 80.0, "unlearned": 0}


def test_searches_whose_supernet_did_not_learn_are_counted_live_at_the_end_and_after_a_resume(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    progress = StageProgress({"search": 3}, storage=storage, enabled=False)
    config = {TUNE_KEY: TrialConfig(stage="search", trial_key="search-0", repeat=0, seed=0, store="s", modalities=None).to_dict()}

    def final(learned: bool) -> dict:
        return {"done": True, "rows": json.dumps({"search": {"learned": learned}})}

    with progress:
        progress.on_trial_result(1, [], SimpleNamespace(config=config, trial_id="a"), {"done": False})
        progress.on_trial_result(1, [], SimpleNamespace(config=config, trial_id="a"), final(False))
        progress.on_trial_result(1, [], SimpleNamespace(config=config, trial_id="a"), final(False))  # a repeat
        progress.on_trial_result(1, [], SimpleNamespace(config=config, trial_id="b"), final(True))
        live = json.loads((tmp_path / "job" / "progress.json").read_text())["stages"]["search"]
        assert live["unlearned"] == 1
        progress.settle([{"stage": "search", "status": "succeeded", "trial_key": k, "learned": learned}
                         for k, learned in (("s0", False), ("s1", False), ("s2", True))])
    ended = json.loads((tmp_path / "job" / "progress.json").read_text())
    assert ended["stages"]["search"]["unlearned"] == 2
    resumed = StageProgress({"search": 3}, enabled=False).resume_from(ended)
    assert resumed.snapshot()["stages"]["search"]["unlearned"] == 2
