"""Storage faults (issue 16 item 2): a full disk under the results, a truncated result table, a
corrupt checkpoint, a feature store whose manifest does not match its files. Each is named where a
user looks (the run's error, the report's, the failed trial's row), and nothing already stored is
lost or overwritten. (The service's side, a job whose tables cannot be read, is in
tests/api/test_storage_faults_service.py.)"""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from adf_service.features import FeatureStoreError
from tests.helpers.jobs import result_row
from trials.extend import ExtendError
from trials.job_report import ReportError, write_report
from trials.pipeline import run_grid
from trials.results import ResultTableError, read_table, write_tables
from trials.spec import parse_grid
from trials.storage import JobStorage
from trials.trainable import CHECKPOINT_FILE

GRID = """
name: tiny
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: {repeats}
search: {{epochs: {epochs}, warmup_epochs: 1, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 2, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb]], repeats: 1, training: {{epochs: 2, batch_size: 16, lr: 0.05}}}}
random: {{enabled: false}}
bohb: {{enabled: false}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
seed: 3
storage: {storage}
"""


def grid(store, storage, *, repeats=1, epochs=2):
    return parse_grid(GRID.format(store=store, storage=storage, repeats=repeats, epochs=epochs))


def digests(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (but Tune's and our temporary ones) by its SHA-256."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith(".tmp")}


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs: a disk that fills up. Needs mount(2) (root, or CAP_SYS_ADMIN in a container)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'}): "
                    "the full-disk test needs one")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> None:
    """Write zeros to ``disk`` until it is full (unbuffered: no write is left to fail at close)."""
    with open(disk / "filler", "wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


@pytest.mark.faults
def test_a_full_disk_fails_the_run_by_name_and_keeps_the_results_already_stored(local_ray, store, small_disk):
    first = run_grid(grid(store.path, small_disk), job_id="job", show_progress=False)
    kept = digests(first.job_dir / "results") | {"spec.json": digests(first.job_dir)["spec.json"]}
    fill(small_disk)
    with pytest.raises(Exception) as failed:  # more repeats: new trials, new checkpoints and new tables
        run_grid(grid(store.path, small_disk, repeats=2), job_id="job", extend=True, show_progress=False)
    assert "No space left on device" in str(failed.value) and str(small_disk / "job") in str(failed.value)
    (small_disk / "filler").unlink()
    assert not list(first.job_dir.rglob(".*.tmp"))  # no half-written file left behind
    now = digests(first.job_dir / "results") | {"spec.json": digests(first.job_dir)["spec.json"]}
    assert now == kept  # no table half-written over, spec.json still the first grid's
    assert len(read_table(first.job_dir, "evaluation")) == 1


def test_a_truncated_result_table_is_named_and_left_as_it_is(tmp_path):
    job = JobStorage.of(str(tmp_path), "job")
    job.create()
    job.write_text("spec.json", "{}")
    write_tables(job, [result_row(0, "search"), result_row(0, "evaluation"), result_row(1, "baselines")])
    table = Path(job.local_dir) / "results" / "evaluation.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    before = digests(Path(job.local_dir))
    with pytest.raises(ResultTableError, match=rf"^{table}: the result table cannot be read \(.*Parquet magic bytes") as read:
        read_table(job, "evaluation")
    assert isinstance(read.value, ValueError)
    with pytest.raises(ReportError, match="evaluation.parquet: the result table cannot be read"):
        write_report(job.local_dir)
    spec = grid(str(tmp_path / "store"), tmp_path)
    with pytest.raises(ExtendError, match="evaluation.parquet: the result table cannot be read"):
        from trials.extend import plan_extension
        plan_extension(job, spec, [], attempt=None, can_restore=lambda uri: False)
    assert digests(Path(job.local_dir)) == before  # nothing rewritten or removed


@pytest.mark.ray
def test_a_store_whose_manifest_does_not_match_its_files_fails_the_run_before_any_trial(local_ray, store, tmp_path):
    copy = Path(shutil.copytree(store.path, tmp_path / "store"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"] += 5  # the manifest counts clips the features file does not hold
    (copy / "manifest.json").write_text(json.dumps(manifest))
    before = digests(copy)
    with pytest.raises(FeatureStoreError, match=str(copy)) as refused:
        run_grid(grid(copy, tmp_path / "runs"), job_id="job", show_progress=False)
    assert "manifest" in str(refused.value) or "rows" in str(refused.value), refused.value
    assert not list((tmp_path / "runs" / "job").glob("*/result.json"))  # no trial ran
    assert digests(copy) == before


class CorruptThenKill(ray.tune.Callback):
    """When ``trial_key`` saves its first checkpoint, cut that checkpoint's file short and kill the
    trial's worker: Tune restores the trial from it."""

    def __init__(self, trial_key: str):
        self.trial_key, self.done, self.corrupted = trial_key, False, None
        self.pids: dict[str, int] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.pids[trial.trial_id] = result["pid"]

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if self.done or not trial.trial_id or self.trial_key not in Path(trial.path).name:
            return
        self.done = True
        state = Path(checkpoint.path) / CHECKPOINT_FILE
        state.write_bytes(state.read_bytes()[:64])
        self.corrupted = state
        os.kill(self.pids[trial.trial_id], signal.SIGKILL)


@pytest.mark.faults
def test_a_corrupt_checkpoint_fails_its_trial_by_name_and_a_rerun_runs_it_again(local_ray, store, tmp_path):
    spec = grid(store.path, tmp_path, epochs=4)
    corrupt = CorruptThenKill("search-")
    first = run_grid(spec, job_id="job", show_progress=False, callbacks=[corrupt])
    assert corrupt.corrupted is not None
    rows = {r["trial_key"]: r for stage in ("baselines", "search") for r in pq.read_table(first.tables[stage]).to_pylist()}
    search = rows["search-S2-all-I1-C1-r0"]
    assert search["status"] == "failed" and "checkpoint is corrupt or truncated" in search["error"], search["error"]
    assert corrupt.corrupted.name in search["error"]
    assert rows["baselines-R-r0"]["status"] == "succeeded"
    kept = rows["baselines-R-r0"]
    again = run_grid(spec, job_id="job", resume=True, rerun_failed=True, show_progress=False)
    rerun = {r["trial_key"]: r for stage in ("baselines", "search") for r in pq.read_table(again.tables[stage]).to_pylist()}
    assert rerun["search-S2-all-I1-C1-r0"]["status"] == "succeeded"
    assert rerun["baselines-R-r0"]["test_top1"] == kept["test_top1"]  # the finished trial kept its row


def test_the_newest_checkpoint_left_is_the_highest_numbered_one_with_its_file(tmp_path):
    import pyarrow.fs as pafs

    from trials.trainable import newest_checkpoint

    for n, with_file in ((1, True), (2, True), (3, False)):  # 3: a directory Tune had not filled yet
        (tmp_path / f"checkpoint_{n:06d}").mkdir()
        if with_file:
            (tmp_path / f"checkpoint_{n:06d}" / CHECKPOINT_FILE).write_bytes(b"x")
    (tmp_path / "checkpoint_tmp").mkdir()
    assert newest_checkpoint(pafs.LocalFileSystem(), str(tmp_path)) == str(tmp_path / "checkpoint_000002")
    assert newest_checkpoint(pafs.LocalFileSystem(), str(tmp_path / "gone")) is None
