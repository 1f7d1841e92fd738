"""Checks before launch at submit (issue 15 item 6): a grid that validates but cannot run on this
service's store or cluster is refused with a 422 whose ``errors`` name the key and its grid.yaml line,
before any job is stored; one that can run is accepted.

The service runs over a real local Ray head with one (fake) GPU and its dashboard, which the service
reads for the nodes' resources (api/cluster.py).
"""

import json

import pytest

from adf_service.features.manifest import FEATURES_FILE
from tests.adf_service.features.conftest import SHAPES, raw_manifest, write_raw_store
from tests.helpers.dashboard import dashboard_head

GRID = """\
name: launch
dataset:
  store: {store}
  modalities: {modalities}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 1, warmup_epochs: 0, batch_size: 16}}
evaluation: {{epochs: 1, batch_size: 16}}
baselines: {{combos: [[rgb]], repeats: 1}}
random: {{enabled: false}}
bohb: {{min_epochs: {min_epochs}, max_epochs: {max_epochs}, eta: 3, samples: 2}}
resources:
  gpus_per_trial: {gpus}
"""
MODALITIES_LINE, BOHB_LINE, GPUS_LINE = 4, 11, 13
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def ray_dashboard():
    """tests/api/conftest.py's ``ray_dashboard`` with one GPU: the ``live`` service runs over it."""
    with dashboard_head(num_cpus=2, num_gpus=1) as url:
        yield url


@pytest.fixture(scope="module")
def alice(live):
    with live.client(live.token("alice")) as client:
        yield client


def grid(store, modalities="null", min_epochs=1, max_epochs=3, gpus=1) -> str:
    return GRID.format(store=store, modalities=modalities, min_epochs=min_epochs, max_epochs=max_epochs,
                       gpus=gpus)


def refused(client, body: str, headers=YAML) -> list[dict]:
    """The ``errors`` of a 422 answer to submitting ``body``; no job was stored."""
    before = client.get("/v1/jobs").json()["total"]
    answer = client.post("/v1/jobs", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/jobs").json()["total"] == before
    return answer.json()["errors"]


def test_a_trial_asking_more_gpus_than_any_node_has_is_refused_with_its_line(alice, store):
    [error] = refused(alice, grid(store.path, gpus=4))
    assert (error["path"], error["line"]) == ("resources.gpus_per_trial", GPUS_LINE)
    assert "asks for 1 CPU and 4 GPU on one node" in error["message"]
    assert "the cluster has 1 node of 2 CPU / 1 GPU" in error["message"]


def test_bohb_budgets_without_a_full_bracket_are_refused_with_their_line(alice, store):
    [error] = refused(alice, grid(store.path, min_epochs=2, max_epochs=5))
    assert (error["path"], error["line"]) == ("bohb.max_epochs", BOHB_LINE)
    assert "no full bracket" in error["message"]
    # the same grid as JSON: no lines to give
    body = json.dumps({"name": "launch", "dataset": {"store": str(store.path)},
                       "bohb": {"min_epochs": 2, "max_epochs": 5}})
    [error] = refused(alice, body, headers={"Content-Type": "application/json"})
    assert (error["path"], error["line"]) == ("bohb.max_epochs", None)


def test_a_store_without_a_modality_the_grid_fuses_is_refused_with_its_line(alice, tmp_path):
    store = tmp_path / "rgb-flow"
    manifest = raw_manifest(modalities=["rgb", "flow"], shapes={m: SHAPES[m] for m in ("rgb", "flow")},
                            splits={"train": 8, "test": 2}, n_train_views=1)
    write_raw_store(store, manifest, [(f"c{i}", i % 3, "train" if i < 8 else "test", 0) for i in range(10)])
    [error] = refused(alice, grid(store, modalities="[rgb, pose]"))
    assert (error["path"], error["line"]) == ("dataset.modalities", MODALITIES_LINE)
    assert "['pose'] not in the store" in error["message"] and "it has rgb, flow" in error["message"]


def test_a_grid_its_store_and_cluster_can_run_is_accepted(alice, tmp_path):
    store = tmp_path / "no-features"  # passes every check (they read the manifest); its driver fails at once
    write_raw_store(store, raw_manifest(splits={"train": 8, "test": 2}, n_train_views=1),
                    [(f"c{i}", i % 3, "train" if i < 8 else "test", 0) for i in range(10)])
    (store / FEATURES_FILE).unlink()
    answer = alice.post("/v1/jobs", content=grid(store, gpus=1), headers=YAML)
    assert answer.status_code == 202, answer.text
