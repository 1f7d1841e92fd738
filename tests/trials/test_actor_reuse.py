"""Actor reuse (the grid's TuneConfig: reuse_actors, StageTrainable.reset_config): a worker that takes
another trial runs it exactly as a fresh worker would, and only trials of its own resource shape."""

import json
from dataclasses import replace

from ray import tune

from trials.config import TUNE_KEY
from trials.expand import baseline_trials, search_trials
from trials.spec import parse_grid
from trials.storage import JobStorage
from trials.trainable import StageTrainable
from trials.tuners import TunerRun, grid_tune_config, main_tuner, run_config

GRID = """
name: reuse
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [topk], inputs: [2], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 2, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose], [rgb], [flow]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
max_concurrent_trials: {concurrent}
seed: 11
storage: {storage}
"""


class Finals(tune.Callback):
    """Each trial's results in the order they came, by trial key (on the driver)."""

    def __init__(self):
        self.results: dict[str, list[dict]] = {}
        self.order: list[str] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.order.append(trial.config[TUNE_KEY]["trial_key"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.setdefault(result["trial_key"], []).append(result)


def _spec(store, tmp_path, concurrent=1):
    return parse_grid(GRID.format(store=store.path, storage=tmp_path, concurrent=concurrent))


def _without_clocks(rows: dict) -> dict:
    return {table: {k: v for k, v in row.items() if "seconds" not in k} for table, row in rows.items()}


def test_a_reused_actor_runs_a_search_exactly_as_a_fresh_actor_did(local_ray, store, tmp_path):
    spec = _spec(store, tmp_path)  # max_concurrent_trials: 1 → the trials run one after another, in order
    (search,) = search_trials(spec)
    # In between, a baseline with another seed and the deterministic flags on, which a reused
    # worker must not carry into the next trial.
    between = replace(baseline_trials(spec)[0], deterministic=True, seed=search.seed + 1)
    again = replace(search, trial_key=f"{search.trial_key}-again")
    storage = JobStorage.of(str(tmp_path), "reuse")
    run = TunerRun(spec, storage, {"cpu": 1, "gpu": 0}, resume=False, max_failures=0)
    finals = Finals()
    grid = main_tuner(run, [search, between, again], [finals]).fit()

    assert grid.num_errors == 0
    assert finals.order == [search.trial_key, between.trial_key, again.trial_key]
    pids = {key: {r["pid"] for r in results} for key, results in finals.results.items()}
    assert pids[search.trial_key] == pids[between.trial_key] == pids[again.trial_key]  # one worker ran all three
    first, second = finals.results[search.trial_key], finals.results[again.trial_key]
    assert [r["training_iteration"] for r in second] == [r["training_iteration"] for r in first] == [1, 2, 3, 4]
    per_epoch = ("phase", "epoch", "train_loss", "val_loss", "val_top1", "test_top1", "lr", "genotype")
    assert [{k: r.get(k) for k in per_epoch} for r in second] == [{k: r.get(k) for k in per_epoch} for r in first]
    rows = _without_clocks(json.loads(second[-1]["rows"]))
    assert rows == _without_clocks(json.loads(first[-1]["rows"]))
    assert rows["evaluation"]["test_top1"] is not None
    provenance = json.loads(rows["search"]["genotype"])["provenance"]
    assert provenance["determinism"]["deterministic_algorithms"] is False  # reset after the baseline's


def test_trials_of_two_resource_shapes_never_share_a_worker(local_ray, store, tmp_path):
    spec = _spec(store, tmp_path, concurrent=6)
    trials = [replace(t, trial_key=f"{t.trial_key}-{copy}") for copy in range(2) for t in baseline_trials(spec)]
    shapes = {t.trial_key: {"cpu": 1 + i % 2} for i, t in enumerate(trials)}  # 1 and 2 CPUs, alternating

    def resources(config):
        return tune.PlacementGroupFactory([{"CPU": shapes[config[TUNE_KEY]["trial_key"]]["cpu"]}])

    finals = Finals()
    tuner = tune.Tuner(
        tune.with_resources(StageTrainable, resources),
        param_space={TUNE_KEY: tune.grid_search([t.to_dict() for t in trials])},
        tune_config=grid_tune_config(None),
        run_config=run_config("shapes", str(tmp_path), [finals], 0),
    )
    assert tuner.fit().num_errors == 0

    worker_shapes: dict[int, set[int]] = {}
    for key, results in finals.results.items():
        assert results[-1]["done"]
        for r in results:
            worker_shapes.setdefault(r["pid"], set()).add(shapes[key]["cpu"])
    assert all(len(s) == 1 for s in worker_shapes.values()), worker_shapes
    assert len(worker_shapes) < len(trials)  # workers were reused, within their shape
