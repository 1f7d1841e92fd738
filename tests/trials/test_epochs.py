"""Per-epoch rows from Tune's result.json files (trials/epochs.py): one per trial-epoch."""

import json

import pyarrow.parquet as pq

from trials.epochs import EPOCH_SCHEMA, epoch_rows, read_epochs, write_epochs
from trials.storage import JobStorage


def _epoch(stage, key, epoch, epochs, phase, **extra):
    return {"phase": phase, "stage": stage, "trial_key": key, "trial_id": f"id-{key}", "epoch": epoch,
            "epochs": epochs, "train_loss": 1.0 / epoch, "val_loss": 2.0 / epoch, "val_top1": 10.0 * epoch,
            "test_top1": None if phase == "search" else 5.0 * epoch, "lr": 0.1, "epoch_seconds": 0.5,
            "timestamp": 1000 + epoch, "done": False, "node_id": "n", **extra}


def _write(directory, results, tail=""):
    directory.mkdir(parents=True)
    (directory / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results) + tail)


def test_every_trial_epoch_once_a_reported_again_epoch_keeps_its_last_report_and_a_cut_line_is_skipped(tmp_path):
    job = tmp_path / "job"
    search = [_epoch("search", "search-a", e, 2, "search", alpha_entropy=1.5, beta_entropy=0.7) for e in (1, 2)]
    evaluation = [_epoch("search", "search-a", e, 3, "evaluation") for e in (1, 2, 3)]
    again = dict(evaluation[1], val_loss=0.123)  # restored from the checkpoint of epoch 1: epoch 2 again
    _write(job / "search-a", [*search, *evaluation[:2], again, evaluation[2]], tail='{"epoch": 4, "trunc')
    _write(job / "baselines-R-r0", [_epoch("baselines", "baselines-R-r0", 1, 1, "train")])
    _write(job / "bohb" / "bohb_x", [_epoch("bohb", "bohb-x", e, 2, "train") for e in (1, 2)])
    (job / "results").mkdir()  # not a trial directory
    rows = epoch_rows(JobStorage.at(job))
    keys = [(r["stage"], r["trial_key"], r["epoch"]) for r in rows]
    assert keys == [("baselines", "baselines-R-r0", 1), ("bohb", "bohb-x", 1), ("bohb", "bohb-x", 2),
                    ("evaluation", "search-a", 1), ("evaluation", "search-a", 2), ("evaluation", "search-a", 3),
                    ("search", "search-a", 1), ("search", "search-a", 2)]
    assert rows[4]["val_loss"] == 0.123 and rows[6]["alpha_entropy"] == 1.5 and rows[3]["alpha_entropy"] is None
    assert set(rows[0]) == set(EPOCH_SCHEMA.names) and {r["job"] for r in rows} == {"job"}

    write_epochs(JobStorage.at(job))
    table = pq.read_table(job / "results" / "epochs.parquet")
    assert table.schema == EPOCH_SCHEMA and table.num_rows == 8
    (job / "search-a" / "result.json").unlink()  # the written table is what a finished job answers with
    assert len(read_epochs(JobStorage.at(job))) == 8
