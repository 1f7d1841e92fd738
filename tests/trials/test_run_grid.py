"""A whole job on a real local Ray: every stage's trials, the Parquet tables, BOHB."""

import json

import pyarrow.parquet as pq
import pytest
import ray

from trials.pipeline import ResourceError, run_grid
from trials.results import STAGES
from trials.spec import parse_grid

GRID = """
name: tiny
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all, topk], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 2, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose], [rgb]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{repeats: 1}}
controls: {{enabled: true, genotypes: [all_skip]}}
bohb: {{samples: 3, min_epochs: 1, max_epochs: 3, eta: 3, iterations: 1}}
resources: {{gpus_per_trial: {gpus}, cpus_per_trial: 1, allow_cpu_fallback: true}}
seed: 5
storage: {storage}
"""


def grid(store, storage, gpus=1):
    return parse_grid(GRID.format(store=store.path, storage=storage, gpus=gpus))


def test_a_job_writes_every_stage_table_with_one_row_per_trial(local_ray, store, tmp_path):
    # gpus_per_trial: 1 on a cluster with no GPU runs the trials on CPUs (allow_cpu_fallback).
    outcome = run_grid(grid(store, tmp_path), job_id="job1", show_progress=False)
    tables = {stage: pq.read_table(outcome.tables[stage]).to_pylist() for stage in STAGES}
    assert {s: len(rows) for s, rows in tables.items()} == {
        "baselines": 2, "search": 2, "evaluation": 2, "random": 2, "controls": 2, "bohb": 3, "transfer": 0,
    }
    for stage, rows in tables.items():
        assert all(r["status"] == "succeeded" and r["job"] == "job1" for r in rows), rows
        assert len({r["trial_key"] for r in rows}) == len(rows)
    search = {r["trial_key"]: r for r in tables["search"]}
    for row in tables["evaluation"]:
        assert row["genotype"] == search[row["trial_key"]]["genotype"]
        assert 0 <= row["test_top1"] <= 100 and row["fusion_params"] > 0
    best = min(tables["evaluation"], key=lambda r: (r["val_loss"], -r["test_top1"]))  # bohb.select: val
    for row in tables["bohb"]:
        assert row["genotype"] == best["genotype"]
        sampled = json.loads(row["config"])["evaluation"]
        assert type(sampled["optimizer"]) is str and type(sampled["batch_size"]) is int
    assert (outcome.job_dir / "spec.json").exists() and (outcome.job_dir / "environment.json").exists()
    # Ray Tune's TensorBoard logs stay on: `tensorboard --logdir <job dir>` shows every trial.
    assert len(list(outcome.job_dir.glob("*/events.out.tfevents.*"))) == 2 + 2 + 2 + 2
    summaries = json.loads((outcome.job_dir / "results" / "summary.json").read_text())
    assert summaries == outcome.summaries and len(summaries) == 2  # S2-all and S2-topk
    assert all(set(s["groups"]) == {"searched", "random", "all_skip"} for s in summaries)
    assert all(s["searched_vs_random"]["searched_n"] == 1 for s in summaries)
    controls = tables["controls"]  # the fixed all-skip genotype, once per setting
    assert sorted(r["trial_key"] for r in controls) == ["controls-all_skip-S2-all-I1-C1-r0",
                                                         "controls-all_skip-S2-topk-I1-C1-r0"]
    for row in controls:
        assert {op for cell in json.loads(row["genotype"])["cells"] for node in cell for _, op in node} == {"skip"}

    # What the job writes besides its tables: every trial-epoch, its report, and each row's FLOPs.
    epochs = pq.read_table(outcome.job_dir / "results" / "epochs.parquet").to_pylist()
    per_trial = {(e["stage"], e["trial_key"]) for e in epochs}
    assert per_trial == {(stage, r["trial_key"]) for stage, rows in tables.items() for r in rows}
    assert sum(1 for e in epochs if e["stage"] == "search") == 2 * 2  # 2 searches × 2 epochs, each once
    assert (outcome.job_dir / "report" / "report.html").is_file()
    assert {p.stem for p in (outcome.job_dir / "report" / "figures").glob("*.svg")} >= {
        "fig13-runs-per-discretization", "search-curves", "bohb-top1-vs-budget"}
    assert all(r["fusion_flops"] > 0 for stage in ("evaluation", "random", "baselines") for r in tables[stage])
    # Every row names the node its trial ran on: here the one node of the local Ray.
    assert {r["node_id"] for rows in tables.values() for r in rows} == {ray.get_runtime_context().get_node_id()}
    figures_of_the_finished_job(tables, epochs)
    export_and_reload(outcome, tables, store, tmp_path)


def figures_of_the_finished_job(tables, epochs):
    """The report's figures and diagram, drawn from this job's own rows, hold what the rows say."""
    import xml.etree.ElementTree as ET

    from adf_service.diagram import genotype_svg
    from adf_service.genotype import Genotype
    from trials.figures import job_figures

    rows = [r for stage_rows in tables.values() for r in stage_rows]
    figures = {f.name: f.figure for f in job_figures(rows, epochs)}
    [strip] = figures["fig13-runs-per-discretization"].axes
    points = {c.get_gid(): len(c.get_offsets()) for c in strip.collections}
    assert points == {"points-searched": 2, "points-random": 2, "points-all_skip": 2}
    assert strip.get_ylabel() == "test top-1 (%)"
    curves = figures["search-curves"].axes[0]
    assert len([line for line in curves.lines if line.get_label() in {r["trial_key"] for r in tables["search"]}]) == 2
    assert len(figures["bohb-parallel-coordinates"].axes[0].lines) >= len(tables["bohb"])
    genotype = Genotype.from_json(tables["evaluation"][0]["genotype"])
    ids = {e.get("id") for e in ET.fromstring(genotype_svg(genotype)).iter() if e.get("id")}
    assert {f"c0-node{j}" for j in range(4)} | {"c0-in0", "c0-concat"} <= ids


def export_and_reload(outcome, tables, store, tmp_path):
    """`best --export`: the weights of the best evaluation's best epoch reproduce its test top-1."""
    from typer.testing import CliRunner

    from adf_service.features import ClipSet
    from adf_service.fusion import load_fusion
    from adf_service.train import Runtime
    from adf_service.train.metrics import evaluate
    from api.cli import app
    from trials.export import write_export

    written = write_export(outcome.job_dir, tmp_path / "best")
    assert [p.name for p in written] == ["genotype.json", "model.pt", "metrics.json"]
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    best = max(tables["evaluation"], key=lambda r: (r["test_top1"], -r["val_loss"]))
    assert (metrics["trial_key"], metrics["test_top1"]) == (best["trial_key"], best["test_top1"])
    assert metrics["fusion_flops"] == best["fusion_flops"] and metrics["config"]["trial_key"] == best["trial_key"]
    network = load_fusion(tmp_path / "best" / "model.pt")
    _, top1 = evaluate(network, ClipSet.of(store, "test", "layer3"), Runtime(), 64)
    assert top1 == pytest.approx(best["test_top1"])
    shown = CliRunner().invoke(app, ["evaluate", str(store.path), "--weights", str(tmp_path / "best" / "model.pt")])
    assert shown.exit_code == 0 and f"test top-1 {best['test_top1']:.2f}%" in shown.output, shown.output
    local = CliRunner().invoke(app, ["best", str(outcome.job_dir), "--json"])
    assert local.exit_code == 0 and json.loads(local.output)["trial"]["trial_key"] == best["trial_key"]


def test_resources_no_node_has_fail_at_once(local_ray, store, tmp_path):
    spec = grid(store, tmp_path).model_copy(update={"resources": grid(store, tmp_path).resources.model_copy(update={"cpus_per_trial": 64})})
    with pytest.raises(ResourceError, match="64 CPU"):
        run_grid(spec, job_id="too-big", show_progress=False)


def test_a_trial_failing_on_every_retry_gets_a_failed_row_and_the_job_goes_on(local_ray, store, tmp_path):
    spec = grid(store, tmp_path)
    diverging = spec.baselines.training.model_copy(update={"lr": 1e30})
    spec = spec.model_copy(update={
        "baselines": spec.baselines.model_copy(update={"training": diverging, "combos": [["rgb"]]}),
        "bohb": spec.bohb.model_copy(update={"enabled": False}),
        "random": spec.random.model_copy(update={"enabled": False}),
        "resources": spec.resources.model_copy(update={"max_failures": 1}),
    })
    outcome = run_grid(spec, job_id="failing", show_progress=False)
    (baseline,) = pq.read_table(outcome.tables["baselines"]).to_pylist()
    assert baseline["status"] == "failed" and "not finite at epoch 1" in baseline["error"]
    assert baseline["test_top1"] is None
    evaluation = pq.read_table(outcome.tables["evaluation"]).to_pylist()
    assert [r["status"] for r in evaluation] == ["succeeded", "succeeded"]
    assert pq.read_table(outcome.tables["bohb"]).num_rows == 0


class KillWorkerOnce(ray.tune.Callback):
    """Kills a search trial's worker process (by the pid it reports) after its epoch 2."""

    def __init__(self):
        self.killed = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.killed is None and result.get("phase") == "search" and result.get("epoch") == 2:
            import os
            import signal

            self.killed = (trial.config["trial"]["trial_key"], result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


def test_a_killed_worker_resumes_from_its_checkpoint_and_no_row_is_lost(local_ray, store, tmp_path):
    spec = grid(store, tmp_path)
    longer = spec.search.model_copy(update={"epochs": 4})
    spec = spec.model_copy(update={
        "search": longer,
        "space": spec.space.model_copy(update={"discretizations": ["all"]}),
        "baselines": spec.baselines.model_copy(update={"enabled": False}),
        "random": spec.random.model_copy(update={"enabled": False}),
        "controls": spec.controls.model_copy(update={"enabled": False}),
        "bohb": spec.bohb.model_copy(update={"enabled": False}),
    })
    killer = KillWorkerOnce()
    outcome = run_grid(spec, job_id="killed", show_progress=False, callbacks=[killer])
    assert killer.killed is not None
    key, pid = killer.killed
    (evaluation,) = pq.read_table(outcome.tables["evaluation"]).to_pylist()
    assert evaluation["status"] == "succeeded" and evaluation["trial_key"] == key
    lines = (outcome.job_dir / key / "result.json").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    search_epochs = [r["epoch"] for r in results if r["phase"] == "search"]
    assert search_epochs.count(1) == 1  # resumed from a checkpoint, not from epoch 1
    assert search_epochs[-1] == 4 and len({r["pid"] for r in results}) == 2


DRIVER = """
import sys, ray
from trials.pipeline import run_grid
from trials.spec import parse_grid
ray.init(address=sys.argv[1], log_to_driver=False)
run_grid(parse_grid(open(sys.argv[2]).read()), job_id="resumed", show_progress=False)
"""


class FirstProgress(ray.tune.Callback):
    """What progress.json says when Tune takes its first step."""

    def __init__(self, path):
        self.path, self.stages = path, None

    def on_step_begin(self, iteration, trials, **info):
        if self.stages is None:
            self.stages = json.loads(self.path.read_text())["stages"]


def test_a_job_whose_driver_died_resumes_and_ends_like_a_clean_run(local_ray, store, tmp_path):
    import subprocess
    import sys
    import time

    text = GRID.format(store=store.path, storage=tmp_path, gpus=0).replace(
        "bohb: {samples: 3", "bohb: {enabled: false, samples: 3").replace("random: {repeats: 1}", "random: {enabled: false}"
    ).replace("controls: {enabled: true", "controls: {enabled: false").replace(
        "search: {epochs: 2,", "search: {epochs: 8,").replace("evaluation: {epochs: 2,", "evaluation: {epochs: 6,")
    assert "search: {epochs: 8," in text and "evaluation: {epochs: 6," in text
    # Searches long enough that the driver is still running when a baseline has finished (reused
    # workers start the next trial at once: the short grid could end before the kill).
    (tmp_path / "grid.yaml").write_text(text)
    spec = parse_grid(text)
    clean = run_grid(spec, job_id="clean", show_progress=False)

    address = ray.get_runtime_context().gcs_address
    # Tune snapshots its experiment at most every few seconds ("auto"); with epochs of a few
    # milliseconds a trial can write num_to_keep + 1 checkpoints in between, and the dead driver's
    # last snapshot then names a deleted one (a Ray race, left in the closing note of issue 14):
    # this driver snapshots at every step, so the test is about our resume, not that race.
    import os

    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(tmp_path / "grid.yaml")], env=env)
    job_dir = tmp_path / "resumed"
    deadline = time.time() + 120
    while not list(job_dir.glob("search-*/checkpoint_000001")) and time.time() < deadline:
        time.sleep(0.2)
    while time.time() < deadline and not any(  # the dead driver's snapshot counts a finished trial
            s["succeeded"] for s in json.loads((job_dir / "progress.json").read_text())["stages"].values()):
        time.sleep(0.2)
    driver.kill()  # the driver dies mid-job (by its pid)
    driver.wait()
    assert not (job_dir / "results").exists()
    before = json.loads((job_dir / "progress.json").read_text())["stages"]
    # A driver killed while Tune copies its state to storage leaves it truncated (fresh-clone CI saw
    # the searcher's once; Tune then started an empty experiment): here it always is.
    (searcher,) = job_dir.glob("basic-variant-state-*.json")
    searcher.write_bytes(searcher.read_bytes()[:100])

    first_seen = FirstProgress(job_dir / "progress.json")
    resumed = run_grid(spec, job_id="resumed", resume=True, show_progress=False, callbacks=[first_seen])
    # The resumed driver starts from the counts the dead one wrote, not from zeros (issue 11 item 5),
    # and ends with the counts of its tables.
    for stage, counts in before.items():
        assert first_seen.stages[stage]["succeeded"] >= counts["succeeded"], (stage, first_seen.stages, before)
    assert (job_dir / (searcher.name + ".unreadable")).exists()  # moved aside, kept
    final = json.loads((job_dir / "progress.json").read_text())
    assert final["finished"] and {s: c["succeeded"] for s, c in final["stages"].items()} == {"baselines": 2, "search": 2}
    for stage in ("baselines", "search", "evaluation"):
        a = {r["trial_key"]: r for r in pq.read_table(clean.tables[stage]).to_pylist()}
        b = {r["trial_key"]: r for r in pq.read_table(resumed.tables[stage]).to_pylist()}
        assert a.keys() == b.keys() and all(r["status"] == "succeeded" for r in b.values())
        for key in a:
            assert (a[key]["genotype"], a[key]["test_top1"], a[key]["val_loss"]) == (
                b[key]["genotype"], b[key]["test_top1"], b[key]["val_loss"]
            ), key


def test_a_file_uri_storage_gets_every_table_and_a_finished_progress_snapshot(local_ray, store, tmp_path):
    from trials.storage import JobStorage, read_progress

    spec = grid(store, f"file://{tmp_path}/uri-store").model_copy(update={})
    spec = spec.model_copy(update={
        "space": spec.space.model_copy(update={"discretizations": ["all"]}),
        "random": spec.random.model_copy(update={"enabled": False}),
        "bohb": spec.bohb.model_copy(update={"enabled": False}),
    })
    outcome = run_grid(spec, job_id="uri-job", show_progress=False)
    assert outcome.job_uri == f"file://{tmp_path}/uri-store/uri-job"
    assert outcome.tables["search"].startswith("file://")
    assert pq.read_table(outcome.tables["baselines"]).num_rows == 2
    assert (tmp_path / "uri-store" / "uri-job" / "results" / "evaluation.parquet").exists()
    progress = read_progress(JobStorage.of(f"file://{tmp_path}/uri-store", "uri-job"))
    assert progress["finished"] is True
    assert progress["stages"]["baselines"] == {
        "total": 2, "succeeded": 2, "failed": 0, "running": 0, "pending": 0,
        "best_test_top1": progress["stages"]["baselines"]["best_test_top1"], "unlearned": 0,
    }
    assert progress["stages"]["search"]["succeeded"] == 1 and "bohb" not in progress["stages"]
