"""A dead driver's Tune state, checked before Tune restores it.

Tune writes its experiment state and its searcher's state in the driver's staging directory and
copies them to the job's storage in the background, file by file, not atomically. A driver killed
during that copy leaves a truncated file there, and a restore that cannot read it does not fail:
Tune logs "Failed to restore the run state" and starts a new, empty experiment (its trials have
no config; fresh-clone CI saw it once). :func:`check_restorable` reads the newest state files first:

- the grid's searcher state unreadable while the experiment state lists every trial of the grid:
  the searcher had nothing left to create (a grid of up to Tune's 200 pending trials creates them
  all at its first step), so the searcher files are moved aside (``<name>.unreadable``) and Tune
  restores the trials with a searcher that creates none;
- anything else unreadable: :class:`TuneStateError`, naming the file and what is wrong, so that the
  job fails by name instead of running an empty experiment; nothing is deleted;
- decisions the dead driver held for saves still in flight (its runner state's cached and queued
  trial decisions) are dropped: Tune restores them, and a STOP left by a trial that failed for good
  while saving ends that trial, resumed by the next attempt, at its first save, with neither its
  result nor an error (the fault schedule's "ended without a result", docs/reliability.md).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import posixpath

import pyarrow.fs as pafs
import ray.cloudpickle as cloudpickle

__all__ = ["EXPERIMENT_STATE", "GRID_SEARCHER_STATE", "TuneStateError", "check_restorable"]

logger = logging.getLogger(__name__)

EXPERIMENT_STATE = "experiment_state-*.json"  # TuneController.CKPT_FILE_TMPL
GRID_SEARCHER_STATE = "basic-variant-state-*.json"  # BasicVariantGenerator.CKPT_FILE_TMPL
SEARCHER_STATES = (GRID_SEARCHER_STATE, "search_gen_state-*.json", "searcher-state-*.pkl")  # BOHB: the last two
# TuneController's runner state: what to do with a trial once its save in flight returns. A restored
# driver has no save in flight; a STOP kept there ends a resumed trial at its first save.
STALE_DECISIONS = ("_cached_trial_decisions", "_queued_trial_decisions")
UNREADABLE_SUFFIX = ".unreadable"  # a state file moved aside: Tune's patterns no longer match it


class TuneStateError(RuntimeError):
    """The Tune state a dead driver left cannot be restored: which file, and why."""


def check_restorable(uri: str, grid_trials: int | None) -> None:
    """Check (and where it can, repair) the Tune state of the experiment at ``uri`` before a restore.

    ``grid_trials`` is the number of trials of a grid experiment; None for a searcher that cannot be
    rebuilt from its trials (BOHB's model). Raises :class:`TuneStateError` for state Tune could not
    restore; an experiment with no state file at all is left to Tune, which says so itself.
    """
    fs, path = pafs.FileSystem.from_uri(uri)
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(path))
             if info.type == pafs.FileType.File]
    experiment = _newest(names, EXPERIMENT_STATE)
    if experiment is None:
        return
    state = _read_state(fs, path, experiment, uri)
    listed = len(state["trial_data"])
    _drop_stale_decisions(fs, posixpath.join(path, experiment), state)
    for pattern in SEARCHER_STATES:
        searcher = _newest(names, pattern)
        if searcher is None:
            continue
        problem = _unpickle_problem(fs, posixpath.join(path, searcher))
        if problem is None:
            continue
        where = f"{uri}/{searcher}"
        if pattern != GRID_SEARCHER_STATE or grid_trials is None or listed != grid_trials:
            raise TuneStateError(f"{where}: the searcher state the dead driver left cannot be read ({problem}), "
                                 f"and the trials it had yet to create cannot be told: submit its grid again as a new job")
        for name in fnmatch.filter(names, pattern):  # an older one would create the grid's trials again
            fs.move(posixpath.join(path, name), posixpath.join(path, name + UNREADABLE_SUFFIX))
        logger.warning("%s: unreadable (%s); every one of the grid's %d trials is in %s, so the job resumes "
                       "with a searcher that creates none (the searcher files are kept as *%s)",
                       where, problem, grid_trials, experiment, UNREADABLE_SUFFIX)


def _newest(names: list[str], pattern: str) -> str | None:
    """The newest of a Tune state file's versions: Tune names them by the driver's start time."""
    matching = fnmatch.filter(names, pattern)
    return max(matching) if matching else None


def _read_state(fs: pafs.FileSystem, path: str, name: str, uri: str) -> dict:
    """The experiment state ``name``; :class:`TuneStateError` when it cannot be read."""
    try:
        with fs.open_input_stream(posixpath.join(path, name)) as stream:
            state = json.loads(stream.readall())
        if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
            raise ValueError("it has no list of trials (trial_data)")
        return state
    except (OSError, ValueError) as exc:
        raise TuneStateError(f"{uri}/{name}: the experiment state the dead driver left cannot be read "
                             f"({type(exc).__name__}: {exc}): submit its grid again as a new job") from exc


def _drop_stale_decisions(fs: pafs.FileSystem, path: str, state: dict) -> None:
    """Clear the dead driver's pending trial decisions in its experiment state at ``path`` (Ray 2.60's
    runner_data keys; a state without them is left as it is). The file is replaced by a rename, so
    that a driver killed meanwhile leaves the old one whole."""
    runner = state.get("runner_data")
    if not isinstance(runner, dict):
        return
    stale = {key: runner[key] for key in STALE_DECISIONS if runner.get(key)}
    if not stale:
        return
    logger.warning("%s: dropping the dead driver's decisions for saves in flight %s", path, stale)
    for key in stale:
        runner[key] = {}
    with fs.open_output_stream(path + ".tmp") as stream:
        stream.write(json.dumps(state).encode())
    fs.move(path + ".tmp", path)


def _unpickle_problem(fs: pafs.FileSystem, path: str) -> str | None:
    """Why the pickled state at ``path`` cannot be loaded; None when it can."""
    try:
        with fs.open_input_stream(path) as stream:
            cloudpickle.loads(stream.readall())
    except Exception as exc:  # noqa: BLE001 - a truncated pickle raises whatever its last opcode meets
        return f"{type(exc).__name__}: {exc}"
    return None
