"""``reuse_from``: a job takes the succeeded trials of earlier jobs whose spec and feature store are the
same (trials/reuse.py) instead of running them, on a real local Ray; what differs runs."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from trials.config import TrialConfig
from trials.pipeline import run_grid
from trials.reuse import content_hash, read_reuse, reuse_problem
from trials.spec import parse_grid
from trials.storage import JobStorage

GRID = """
name: tiny
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: {discretizations}, inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 2, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
seed: {seed}
storage: {storage}
reuse_from: {reuse}
"""


def grid(store, storage, *, discretizations="[all]", seed=5, reuse=()):
    return parse_grid(GRID.format(store=store.path, storage=storage, discretizations=discretizations, seed=seed,
                                  reuse=json.dumps([str(r) for r in reuse])))


def tables(outcome):
    return {stage: {r["trial_key"]: r for r in pq.read_table(path).to_pylist()} for stage, path in outcome.tables.items()}


@pytest.mark.ray
def test_a_job_takes_the_same_trials_of_an_earlier_job_and_runs_only_what_differs(local_ray, store, tmp_path):
    first = run_grid(grid(store, tmp_path), job_id="first", show_progress=False)
    second = run_grid(grid(store, tmp_path, discretizations="[all, topk]", reuse=[first.job_dir]),
                      job_id="second", show_progress=False)
    old, new = tables(first), tables(second)
    same = {"baselines": "baselines-R-r0", "search": "search-S2-all-I1-C1-r0", "evaluation": "search-S2-all-I1-C1-r0"}
    for stage, key in same.items():
        was, now = old[stage][key], new[stage][key]
        assert now["reused_from"] == f"{first.job_dir}#{was['trial_id']}" and now["job"] == "second"
        assert (now["genotype"], now["val_loss"], now["test_top1"], now["seed"]) == (
            was["genotype"], was["val_loss"], was["test_top1"], was["seed"])
        assert (now["attempts"], now["gpu_seconds"], now["cpu_seconds"]) == (0, 0.0, 0.0)  # nothing spent here
    ran = new["search"]["search-S2-topk-I1-C1-r0"]
    assert ran["reused_from"] is None and ran["status"] == "succeeded" and ran["attempts"] == 1
    # Tune ran only the new trial; the reused ones' epochs came along, as this job's
    assert not (second.job_dir / "search-S2-all-I1-C1-r0").exists() and (second.job_dir / "search-S2-topk-I1-C1-r0").is_dir()
    epochs = pq.read_table(second.job_dir / "results" / "epochs.parquet").to_pylist()
    assert {(e["job"], e["stage"]) for e in epochs if e["trial_key"] == "search-S2-all-I1-C1-r0"} == {
        ("second", "search"), ("second", "evaluation")}
    report = (second.job_dir / "report" / "report.md").read_text()
    assert f"2 trials taken from earlier jobs instead of run (reuse_from: {first.job_dir})." in report
    # What was reused is kept for a resumed driver, which runs only the rest
    plan = read_reuse(JobStorage.at(second.job_dir), [TrialConfig.from_json(r["config"]) for r in new["search"].values()])
    assert [t.trial_key for t in plan.trials] == ["search-S2-topk-I1-C1-r0"] and plan.sources == [str(first.job_dir)]

    other_seed = run_grid(grid(store, tmp_path, seed=6, reuse=[first.job_dir]), job_id="seed6", show_progress=False)
    assert all(r["reused_from"] is None for rows in tables(other_seed).values() for r in rows.values())


def test_the_content_hash_is_the_trials_spec_and_the_stores_manifest_not_its_path(store, tmp_path):
    row = {"stage": "search", "trial_key": "search-S2-all-I1-C1-r0", "repeat": 0, "seed": 7, "store": str(store.path),
           "modalities": None, "setting": {"operators": "S2", "discretization": "all", "n_inputs": 1, "n_cells": 1},
           "channels": 8, "partial_k": 4, "search": {"epochs": 2}, "evaluation": {"epochs": 2}}
    trial = TrialConfig.from_dict(row)
    copy = shutil.copytree(store.path, tmp_path / "copy")
    assert content_hash(TrialConfig.from_dict({**row, "store": str(copy)})) == content_hash(trial)
    assert content_hash(TrialConfig.from_dict({**row, "seed": 8})) != content_hash(trial)
    assert content_hash(TrialConfig.from_dict({**row, "search": {"epochs": 3}})) != content_hash(trial)
    other = shutil.copytree(store.path, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["provenance"] = {**manifest.get("provenance", {}), "note": "extracted again"}
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert content_hash(TrialConfig.from_dict({**row, "store": str(other)})) != content_hash(trial)


def test_a_reuse_source_without_result_tables_is_named(tmp_path):
    (tmp_path / "unfinished").mkdir()
    assert reuse_problem([str(tmp_path / "gone")]) == f"reuse_from[0]: {str(tmp_path / 'gone')!r}: no such job directory"
    assert "reuse_from[0]" in reuse_problem([str(tmp_path / "unfinished")]) and "no result tables" in reuse_problem(
        [str(tmp_path / "unfinished")])
