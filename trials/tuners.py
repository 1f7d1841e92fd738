"""The Tuners of a job: the main grid's (every stage but BOHB, one experiment) and BOHB's, new or restored.

:func:`main_tuner` builds the grid's Tuner (or restores it: :func:`restored_tuner`), :func:`run_bohb`
builds and runs BOHB's on the best evaluated genotype. Both take a :class:`TunerRun`, what every Tuner of
one run of a job is made from; trials/pipeline.py drives them and writes the tables.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from pyarrow.fs import FileType
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from trials.bohb import bohb_sample_trial, bohb_trial, bohb_tuner_parts, with_base
from trials.config import TUNE_KEY, TrialConfig
from trials.expand import stage_counts
from trials.results import best_evaluation, error_text, trial_rows
from trials.spec import GridSpec
from trials.storage import JobStorage
from trials.trainable import StageTrainable
from trials.tune_state import TuneStateError, check_restorable
from trials.warm_start import WARM_START_FILE, warm_start_observations

__all__ = [
    "BOHB_BASE_FILE", "NewestPendingFirst", "TunerRun", "grid_tune_config", "main_tuner", "restored_tuner",
    "run_bohb", "run_config",
]

BOHB_BASE_FILE = "bohb_base.json"  # the trial BOHB tunes (its genotype and setting), for a resume to keep


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TunerRun:
    """What every Tuner of one run of a job is made from."""

    spec: GridSpec  # with an absolute store path
    storage: JobStorage
    resources: dict[str, float]  # per trial, as trials.pipeline's _trial_resources checked them
    resume: bool
    max_failures: int
    rerun_failed: bool = False  # restored trials that failed start again from scratch (restart_errored)
    experiment: str | None = None  # the main Tuner's experiment: None, the job directory; else an extension's


def trial_key_of(trial: Trial) -> str:
    config = TrialConfig.of_tune(trial.config)
    if config is None:  # Tune restored nothing and began an empty experiment (see trials/tune_state.py)
        raise TuneStateError(f"Tune trial {trial.trial_id} has no trial config: Tune could not restore the "
                             f"job's experiment state (its log says why: 'Failed to restore the run state')")
    return config.trial_key


class NewestPendingFirst(FIFOScheduler):
    """FIFO, but once trials run, the pending trial Tune starts next is the newest, so that a reused
    actor never takes the trial whose own actor is still starting on another node.

    With ``reuse_actors`` a finished trial's actor goes to the trial this scheduler picks, and that
    trial's own actor, requested earlier, is removed, even when it was already placed and starting
    (ray-project/ray#42951). FIFO picks the oldest pending trial, which is the one whose actor is
    starting on a node that has none yet: when trials are shorter than a worker's start, that node's
    actor is removed again and again and the node never runs a trial (docs/benchmarks.md,
    Orchestration). Tune requests actors in its queue's order and Ray places them in that order, so
    the newest pending trial's request is the last to be placed: handing it the reused actor cancels
    a request that only waits. Before any trial runs the pick is FIFO's, so that the first request
    is the oldest trial's too. A retried trial goes to the end of Tune's list, so it resumes first.
    The price: after the first wave the trials Tune queued last (up to 200 ahead) run before older ones.
    """

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trials = tune_controller.get_trials()
        started = any(t.status != Trial.PENDING for t in trials)
        for trial in reversed(trials) if started else trials:
            if trial.status == Trial.PENDING:
                return trial
        return next((t for t in trials if t.status == Trial.PAUSED), None)


def grid_tune_config(max_concurrent_trials: int | None, *, reuse_actors: bool = True) -> TuneConfig:
    """The main grid's TuneConfig: a trial's actor takes the next trial (StageTrainable.reset_config)
    rather than a new worker starting for each (5 s a trial on a 2-core VM, docs/benchmarks.md)."""
    return TuneConfig(
        max_concurrent_trials=max_concurrent_trials,
        trial_name_creator=trial_key_of,
        trial_dirname_creator=trial_key_of,
        reuse_actors=reuse_actors,
        scheduler=NewestPendingFirst() if reuse_actors else None,
    )


def main_tuner(
    run: TunerRun,
    trials: list[TrialConfig],
    callbacks: list[tune.Callback],
    trainable: type[StageTrainable] = StageTrainable,
    *,
    reuse_actors: bool = True,
) -> tune.Tuner:
    """Baselines, searches (with their evaluations), random, control and transfer trials: one grid of trials.

    ``trainable`` and ``reuse_actors=False`` are for bench/orchestration.py, which runs this Tuner
    with a trainable that sleeps, with actor reuse and without.
    """
    trainable = tune.with_resources(trainable, run.resources)
    storage = run.storage
    # The job's own experiment is the job directory; an extension's is a directory in it.
    name, parent = (run.experiment, storage.uri) if run.experiment else (storage.job_id, storage.root_uri)
    if run.resume:
        uri = storage.child_uri(run.experiment) if run.experiment else storage.uri
        return restored_tuner(uri, trainable, callbacks, restart_errored=run.rerun_failed, grid_trials=len(trials))
    return tune.Tuner(
        trainable,
        # Tune keeps and hands back plain dicts: the records go in as their JSON-able form.
        param_space={TUNE_KEY: tune.grid_search([t.to_dict() for t in trials])},
        tune_config=grid_tune_config(run.spec.max_concurrent_trials, reuse_actors=reuse_actors),
        run_config=run_config(name, parent, callbacks, run.max_failures),
    )


def restored_tuner(
    uri: str, trainable: Any, callbacks: list[tune.Callback], *, restart_errored: bool = False,
    grid_trials: int | None = None,
) -> tune.Tuner:
    """``Tuner.restore`` with this driver's callbacks. Restore brings back the run config the
    first driver pickled, callbacks included: left so, the dead driver's progress callback
    (its attempt, its counts) would count the resumed trials while this driver's saw none.
    Ray has no public way to set them (ray-project/ray#41364 names this one). Errored trials
    resume from their last checkpoints, or with ``restart_errored`` start from scratch (a new
    Tune trial of the same config, the failed run's files deleted: :func:`clear_errored`);
    unfinished trials go on from theirs, finished ones are kept. The dead driver's state files are
    checked first (:func:`trials.tune_state.check_restorable`; ``grid_trials``: the grid's trial count,
    None for BOHB)."""
    check_restorable(uri, grid_trials)
    if restart_errored:
        clear_errored(uri)
    tuner = tune.Tuner.restore(uri, trainable, resume_errored=not restart_errored,
                               restart_errored=restart_errored)
    tuner._local_tuner.get_run_config().callbacks = callbacks
    return tuner


def clear_errored(uri: str) -> None:
    """Delete the directories of the errored trials of the experiment at ``uri``, to run from scratch.

    Their checkpoints and epochs are of the failed run (usage.json keeps its attempts): left there (in
    the storage, or in the driver's staging copy, which a driver on the same Ray session still has),
    they would be read as the new run's. Tune's restore makes an empty ``<trial key>/`` again and puts
    the new run beside it, in ``<trial key>_<4 hex>/`` (:func:`trials.extend.trial_dir` finds it).
    """
    for trial in tune.ExperimentAnalysis(uri).trials:
        if trial.status != Trial.ERROR:
            continue
        fs = trial.storage.storage_filesystem
        if fs.get_file_info(trial.path).type != FileType.NotFound:
            fs.delete_dir(trial.path)
        shutil.rmtree(trial.local_path, ignore_errors=True)  # gone already on another session's driver


def run_config(name: str, storage: str, callbacks: list, max_failures: int) -> RunConfig:
    return RunConfig(
        name=name,
        storage_path=storage,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(checkpoint_frequency=1, num_to_keep=2),
        callbacks=callbacks,
        verbose=0,
    )


def run_bohb(
    run: TunerRun, rows: list[dict[str, Any]], backbone: int | None, callbacks: list[tune.Callback]
) -> list[dict[str, Any]]:
    """BOHB on the best evaluated genotype: by val loss, or by test top-1 (the thesis'; bohb.select).

    A restored BOHB goes on with the genotype it began with (:data:`BOHB_BASE_FILE`), even when trials
    rerun since (``rerun_failed``) now beat it: its finished trials tuned that one."""
    spec, storage = run.spec, run.storage
    bohb_uri = storage.child_uri("bohb")
    restore = run.resume and tune.Tuner.can_restore(bohb_uri)
    if restore and storage.exists(BOHB_BASE_FILE):
        where = f"{storage.uri}/{BOHB_BASE_FILE}"
        base = TrialConfig.from_json(storage.read_text(BOHB_BASE_FILE), where=where)
    else:
        best = best_evaluation(rows, by=spec.bohb.select)
        if best is None:
            _say("BOHB skipped: no search learned (every supernet stayed below chance + "
                 "search.learned_margin), so there is no searched genotype to tune")
            return []
        base = bohb_trial(spec, TrialConfig.from_json(best["config"]), best["genotype"])
        storage.write_text(BOHB_BASE_FILE, base.to_json())
    trainable = tune.with_resources(with_base(base), run.resources)
    if restore:
        tuner = restored_tuner(bohb_uri, trainable, callbacks, restart_errored=run.rerun_failed)
    else:
        search, scheduler = bohb_tuner_parts(spec, base.seed)
        if spec.bohb.warm_start:  # a restored searcher holds them already
            warm = warm_start_observations(spec)
            search.warm_start(warm.observations)
            storage.write_text(WARM_START_FILE, warm.to_json())
            _say(f"BOHB warm-started with {len(warm.observations)} evaluations of "
                 f"{len(warm.sources)} earlier job(s) ({WARM_START_FILE})")
        tuner = tune.Tuner(
            trainable,
            tune_config=TuneConfig(
                search_alg=search,
                scheduler=scheduler,
                num_samples=stage_counts(spec)["bohb"],
                max_concurrent_trials=spec.max_concurrent_trials,
            ),
            run_config=run_config("bohb", storage.uri, callbacks, run.max_failures),
        )
    out = []
    for result in tuner.fit():
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id", "?")
        trial = bohb_sample_trial(base, trial_id, json.loads(metrics.get("sampled", "{}")))
        final = dict(metrics, done=True) if "rows" in metrics else None
        error = error_text(result.error) if result.error else None
        out.append(trial_rows(storage.job_id, trial_id, trial, final, error, backbone)["bohb"])
    return out
