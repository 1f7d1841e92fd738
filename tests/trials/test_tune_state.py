"""The dead driver's Tune state checked before a restore (trials/tune_state.py): a truncated grid
searcher state is moved aside when the experiment state lists every trial; anything else unreadable
is an error naming the file, and nothing is deleted. The end-to-end case (a real dead driver, a
truncated searcher state, the job resumed to the clean run's rows) is in tests/trials/test_run_grid.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle

from trials.tune_state import TuneStateError, check_restorable

SESSION = "2026-12-06_06-01-54"


def write_state(directory: Path, trials: int, *, searcher: bytes | None = None, session: str = SESSION,
                runner: dict | None = None) -> None:
    """An experiment directory's two state files as Tune names them; ``searcher`` replaces the pickle,
    ``runner`` is the controller's state (``runner_data``)."""
    state = {"trial_data": [[f"trial {i}", "{}"] for i in range(trials)], "runner_data": runner or {}}
    (directory / f"experiment_state-{session}.json").write_text(json.dumps(state))
    pickled = cloudpickle.dumps({"_finished": True, "_iterators": []})
    (directory / f"basic-variant-state-{session}.json").write_bytes(pickled if searcher is None else searcher)


def test_readable_state_is_left_as_it_is(tmp_path):
    write_state(tmp_path, 4)
    before = sorted(p.name for p in tmp_path.iterdir())
    check_restorable(tmp_path.as_uri(), 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_dead_drivers_decisions_for_saves_in_flight_are_dropped_and_the_rest_kept(tmp_path):
    # Ray 2.60 keeps them in runner_data; a STOP there ended a resumed trial at its first save.
    runner = {"_cached_trial_decisions": {"t0": "STOP"}, "_queued_trial_decisions": {"t1": "CONTINUE"},
              "_should_stop_experiment": False, "_iteration": 41}
    write_state(tmp_path, 2, runner=runner)
    check_restorable(tmp_path.as_uri(), 2)
    state = json.loads((tmp_path / f"experiment_state-{SESSION}.json").read_text())
    assert state["runner_data"] == runner | {"_cached_trial_decisions": {}, "_queued_trial_decisions": {}}
    assert state["trial_data"] == [["trial 0", "{}"], ["trial 1", "{}"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"basic-variant-state-{SESSION}.json",
                                                          f"experiment_state-{SESSION}.json"]  # no temporary left


def test_a_state_without_decisions_is_not_rewritten(tmp_path):
    write_state(tmp_path, 2, runner={"_cached_trial_decisions": {}, "_iteration": 3})
    path = tmp_path / f"experiment_state-{SESSION}.json"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    check_restorable(tmp_path.as_uri(), 2)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_no_state_at_all_is_left_to_tune(tmp_path):
    check_restorable(tmp_path.as_uri(), 4)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_grid_searcher_with_every_trial_listed_is_moved_aside_with_its_older_versions(tmp_path):
    write_state(tmp_path, 4, session="2026-12-06_05-00-00")  # an earlier driver's: it would create trials again
    good = cloudpickle.dumps({"_finished": True, "_iterators": []})
    write_state(tmp_path, 4, searcher=good[: len(good) // 2])
    check_restorable(tmp_path.as_uri(), 4)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if n.startswith("basic-variant")] == [
        "basic-variant-state-2026-12-06_05-00-00.json.unreadable", f"basic-variant-state-{SESSION}.json.unreadable"]
    assert f"experiment_state-{SESSION}.json" in names  # the trials are restored from it


@pytest.mark.parametrize("listed, grid_trials", [(3, 4), (4, None)], ids=["a trial not yet created", "bohb"])
def test_a_truncated_searcher_that_cannot_be_rebuilt_is_an_error_naming_it(tmp_path, listed, grid_trials):
    write_state(tmp_path, listed, searcher=b"\x80\x05\x95")
    with pytest.raises(TuneStateError, match=rf"basic-variant-state-{SESSION}\.json: the searcher state .* cannot be read"):
        check_restorable(tmp_path.as_uri(), grid_trials)
    assert (tmp_path / f"basic-variant-state-{SESSION}.json").exists()  # nothing moved or deleted


def test_a_truncated_experiment_state_is_an_error_naming_it(tmp_path):
    write_state(tmp_path, 4)
    path = tmp_path / f"experiment_state-{SESSION}.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(TuneStateError, match=rf"experiment_state-{SESSION}\.json: the experiment state .*\(JSONDecodeError"):
        check_restorable(tmp_path.as_uri(), 4)
    assert path.exists()


@pytest.mark.parametrize("text", ['{"runner_data": {}}', "[1, 2]", '{"trial_data": "x"}'])
def test_an_experiment_state_without_its_trials_is_an_error_naming_it(tmp_path, text):
    write_state(tmp_path, 1)
    (tmp_path / f"experiment_state-{SESSION}.json").write_text(text)
    with pytest.raises(TuneStateError, match=r"cannot be read \(ValueError: it has no list of trials"):
        check_restorable(tmp_path.as_uri(), 1)
