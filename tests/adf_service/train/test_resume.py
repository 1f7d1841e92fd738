"""A search stopped after epoch 3 and resumed in a new process ends exactly like an uninterrupted one."""

import subprocess
import sys

import torch

SCRIPT = """
import sys, torch
from adf_service.features import ClipSet, FeatureStore
from adf_service.space import SearchSpace
from adf_service.train import SearchConfig, SearchRun, drive

store, checkpoint, stop_after, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
run = SearchRun(
    SearchSpace("S2", 2, 2, 8, 4),
    ClipSet.of(FeatureStore.open(store), "train", "layer3"),
    SearchConfig(epochs=6, warmup_epochs=2, batch_size=16, lr=0.05, arch_lr=3e-3, seed=3),
)
result = drive(
    run,
    checkpoint=None if checkpoint == "-" else checkpoint,
    stop_after=None if stop_after == "-" else int(stop_after),
)
torch.save({
    "epochs": [r.epoch for r in result.history],
    "val_losses": [r.val_loss for r in result.history],
    "genotype": result.genotype.to_json(),
    "alpha": [a.detach().clone() for a in run.model.op_weights],
    "beta": [b.detach().clone() for b in run.model.edge_weights],
}, out)
"""


def run_search(*args):
    subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], check=True, timeout=600)


def test_search_resumed_in_a_new_process_matches_an_uninterrupted_one(tiny_store, tmp_path):
    ckpt = tmp_path / "search.ckpt"
    run_search(tiny_store.path, "-", "-", tmp_path / "straight.pt")
    run_search(tiny_store.path, ckpt, 3, tmp_path / "first-half.pt")
    run_search(tiny_store.path, ckpt, "-", tmp_path / "resumed.pt")

    straight = torch.load(tmp_path / "straight.pt")
    half = torch.load(tmp_path / "first-half.pt")
    resumed = torch.load(tmp_path / "resumed.pt")
    assert half["epochs"] == [1, 2, 3]
    assert resumed["epochs"] == [1, 2, 3, 4, 5, 6]
    assert resumed["val_losses"] == straight["val_losses"]
    assert resumed["genotype"] == straight["genotype"]
    for key in ("alpha", "beta"):
        assert all(torch.equal(a, b) for a, b in zip(resumed[key], straight[key]))
    assert not all(torch.equal(a, b) for a, b in zip(half["alpha"], straight["alpha"]))
