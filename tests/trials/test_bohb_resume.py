"""BOHB's save/restore has had bugs (ray#39900, docs/design.md §8): a BOHB stage whose driver dies
mid-stage resumes with ``run_grid(resume=True)`` and ends with every sample's row."""

import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import ray

from tests.helpers.grids import bohb_grid
from trials.expand import stage_counts
from trials.pipeline import run_grid
from trials.spec import parse_grid

DRIVER = """
import sys, ray
from trials.pipeline import run_grid
from trials.spec import parse_grid
ray.init(address=sys.argv[1], log_to_driver=False)
run_grid(parse_grid(open(sys.argv[2]).read()), job_id="bohb-job", show_progress=False)
"""


@pytest.mark.faults
def test_a_bohb_stage_whose_driver_died_resumes_and_ends_with_every_sample(local_ray, store, tmp_path):
    text = bohb_grid(store.path, tmp_path, name="bohb-resume", samples=6)
    (tmp_path / "grid.yaml").write_text(text)
    spec = parse_grid(text)
    samples = stage_counts(spec)["bohb"]

    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(tmp_path / "grid.yaml")])
    bohb_dir = tmp_path / "bohb-job" / "bohb"
    deadline = time.time() + 180
    while not list(bohb_dir.glob("*/checkpoint_000001")) and time.time() < deadline:
        assert driver.poll() is None, "the driver ended before BOHB started"
        time.sleep(0.2)
    driver.kill()  # the driver dies in the middle of the BOHB stage (by its pid)
    driver.wait()
    assert list(bohb_dir.glob("*/checkpoint_000001")), "BOHB never checkpointed"
    assert not (tmp_path / "bohb-job" / "results").exists()
    started_before = {p.name for p in bohb_dir.iterdir() if p.is_dir()}

    outcome = run_grid(spec, job_id="bohb-job", resume=True, show_progress=False)
    rows = pq.read_table(outcome.tables["bohb"]).to_pylist()
    assert len(rows) == samples
    assert all(r["status"] == "succeeded" for r in rows), [r["error"] for r in rows]
    assert len({r["trial_id"] for r in rows}) == samples
    # The stage was restored, not begun again: trials started before the kill are among the
    # final rows. (A trial whose directory was made just before the kill, after Tune's last
    # snapshot, is sampled again; its directory stays behind, empty of results.)
    ids_before = {name.split("_")[1] for name in started_before}
    assert ids_before & {r["trial_id"] for r in rows}
    (evaluation,) = pq.read_table(outcome.tables["evaluation"]).to_pylist()
    assert all(r["genotype"] == evaluation["genotype"] for r in rows)
