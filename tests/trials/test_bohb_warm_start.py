"""BOHB warm start (trials/warm_start.py): earlier jobs' BOHB trials, read from their result tables and
per-epoch rows, in this job's budget units and space, seed this job's BOHB model (ResumableTuneBOHB)."""

import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api.cli import app
from tests.helpers.grids import bohb_grid
from tests.helpers.jobs import result_row
from trials.bohb import bohb_config_space, bohb_tuner_parts, plain
from trials.config import TrialConfig
from trials.epochs import EPOCH_SCHEMA, EPOCHS_TABLE
from trials.expand import stage_counts
from trials.pipeline import run_grid
from trials.results import write_tables
from trials.spec import GridSpecError, parse_grid
from trials.storage import JobStorage
from trials.warm_start import (
    WARM_START_FILE,
    WarmStart,
    bohb_budgets,
    source_observations,
    warm_start_observations,
    warm_start_problem,
)

IN_SPACE = {"batch_size": 8, "lr": 1e-3, "optimizer": "sgd", "weight_decay": 1e-4}


def grid(bohb: str = "min_epochs: 2, max_epochs: 6, eta: 3", warm: list[str] | None = None):
    warm_start = f", warm_start: {json.dumps(warm)}" if warm is not None else ""
    return parse_grid(f"name: w\ndataset: {{store: s}}\nbohb: {{{bohb}{warm_start}}}\n")


def bohb_config(key: str, sampled: dict) -> str:
    trial = TrialConfig(stage="bohb", trial_key=key, repeat=0, seed=1, store="s", modalities=None,
                        evaluation={"epochs": 6, "momentum": 0.9, **sampled}, min_epochs=1)
    return trial.to_json()


def source_job(root, name: str, trials: dict[str, tuple[dict, list[float]]]) -> str:
    """A finished job's directory: a BOHB row per trial (its sampled values) and its val loss per epoch."""
    storage = JobStorage.at(root / name)
    rows, epochs = [], []
    for i, (key, (sampled, losses)) in enumerate(trials.items()):
        rows.append(result_row(i, "bohb", trial_key=key, config=bohb_config(key, sampled)))
        epochs += [{"job": name, "stage": "bohb", "trial_key": key, "trial_id": key, "epoch": e,
                    "epochs": len(losses), "val_loss": loss} for e, loss in enumerate(losses, start=1)]
    write_tables(storage, [*rows, result_row(99, "evaluation")])
    storage.write_parquet(EPOCHS_TABLE, pa.Table.from_pylist(epochs, schema=EPOCH_SCHEMA))
    return str(root / name)


@pytest.mark.parametrize("bohb", ["min_epochs: 2, max_epochs: 70, eta: 3", "min_epochs: 1, max_epochs: 9, eta: 3",
                                  "min_epochs: 1, max_epochs: 3, eta: 3", "min_epochs: 3, max_epochs: 100, eta: 2"])
def test_budgets_are_the_rungs_of_every_bracket_rays_hyperband_makes(bohb):
    spec = grid(bohb)
    _, scheduler = bohb_tuner_parts(spec, seed=0)
    rungs = set()
    for s in range(scheduler._s_max_1):
        if scheduler._get_r0(s) == 0:
            continue
        bracket = scheduler._create_bracket(s)
        rungs.add(bracket._cumul_r)
        for _ in range(s):
            bracket.successive_halving("val_loss", -1.0)
            rungs.add(bracket._cumul_r)
    assert bohb_budgets(spec.bohb) == sorted(rungs)


def test_a_sources_epochs_become_this_jobs_budgets_and_other_epochs_are_left_out(tmp_path):
    losses = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # epochs 1..6
    job = source_job(tmp_path, "a", {"bohb-x": (IN_SPACE, losses)})
    spec = grid("min_epochs: 2, max_epochs: 6, eta: 3")  # units of 2 epochs; brackets stop at 1 and 3
    assert bohb_budgets(spec.bohb) == [1, 3]
    found, summary = source_observations(job, spec.bohb)
    # epoch 2 is budget 1, epoch 6 budget 3; epoch 4 (budget 2) is no rung, odd epochs no whole budget
    assert [(o.budget, o.loss) for o in found] == [(1, 0.8), (3, 0.4)]
    assert all(o.config == IN_SPACE for o in found)
    assert (summary.configs, summary.observations, summary.outside_space, summary.no_budget) == (1, 2, 0, 0)


def test_configurations_outside_this_grids_space_are_skipped_and_counted(tmp_path):
    outside = [dict(IN_SPACE, batch_size=64), dict(IN_SPACE, optimizer="adamw"), dict(IN_SPACE, lr=0.5),
               dict(IN_SPACE, weight_decay=0.5)]
    trials = {f"bohb-out{i}": (config, [1.0, 0.9]) for i, config in enumerate(outside)}
    trials["bohb-in"] = (IN_SPACE, [1.0, 0.9])
    trials["bohb-short"] = (IN_SPACE, [1.0])  # stopped before this job's first budget (2 epochs)
    job = source_job(tmp_path, "a", trials)
    spec = grid("min_epochs: 2, max_epochs: 6, eta: 3, batch_sizes: [4, 8], optimizers: [sgd, adam]")
    found, summary = source_observations(job, spec.bohb)
    assert [(o.budget, o.loss) for o in found] == [(1, 0.9)]
    assert (summary.configs, summary.outside_space, summary.no_budget) == (1, 4, 1)


def test_every_sources_observations_smallest_budget_first_and_what_each_gave(tmp_path):
    a = source_job(tmp_path, "a", {"bohb-a": (IN_SPACE, [0.9] * 6)})
    b = source_job(tmp_path, "b", {"bohb-b": (dict(IN_SPACE, lr=2e-3), [0.7] * 6),
                                   "bohb-c": (dict(IN_SPACE, batch_size=1000), [0.7] * 6)})
    warm = warm_start_observations(grid(warm=[a, b]))
    assert [o.budget for o in warm.observations] == [1, 1, 3, 3]
    assert [(s.job, s.observations, s.outside_space) for s in warm.sources] == [(a, 2, 0), (b, 2, 1)]
    record = json.loads(warm.to_json())
    assert record["observations"] == 4 and record["skipped"] == 1 and record["sources"][1]["job"] == b


def test_warm_start_gives_bohbs_model_the_observations_and_enough_of_them_build_its_kde(tmp_path):
    spec = grid("min_epochs: 1, max_epochs: 3, eta: 3")  # budgets 1 and 3
    sampler = bohb_config_space(spec, seed=3)
    trials = {}
    for i in range(12):
        sampled = {k: plain(v) for k, v in dict(sampler.sample_configuration()).items()}
        trials[f"bohb-{i:02d}"] = (sampled, [2.0 - i / 10] if i % 4 else [2.0 - i / 10, 1.9, 1.5 - i / 10])
    job = source_job(tmp_path, "a", trials)
    warm = warm_start_observations(grid("min_epochs: 1, max_epochs: 3, eta: 3", warm=[job]))
    search, _ = bohb_tuner_parts(spec, seed=0)
    assert search.warm_start(warm.observations) == 15
    generator = search.bohber
    assert {b: len(generator.configs[b]) for b in generator.configs} == {1: 12, 3: 3}
    assert sorted(generator.losses[1]) == sorted(2.0 - i / 10 for i in range(12))
    # 12 points on budget 1 hold a "good" and a "bad" set of more points than the space has dimensions
    # (hpbandster's KDE needs both); 3 on budget 3 do not
    assert set(generator.kde_models) == {1}
    suggested = search.suggest("t0")
    assert spec.bohb.lr[0] <= suggested["lr"] <= spec.bohb.lr[1]
    assert suggested["batch_size"] in spec.bohb.batch_sizes


def test_a_fresh_searcher_without_warm_start_has_no_model():
    search, _ = bohb_tuner_parts(grid(), seed=0)
    assert search.warm_start(WarmStart().observations) == 0
    assert search.bohber.configs == {} and search.bohber.kde_models == {}


def test_warm_start_problem_names_the_entry_that_holds_no_bohb_results(tmp_path):
    good = source_job(tmp_path, "a", {"bohb-x": (IN_SPACE, [1.0, 0.9])})
    assert warm_start_problem(grid(warm=[good])) is None
    assert warm_start_problem(grid(warm=[])) is None
    gone = str(tmp_path / "gone")
    assert warm_start_problem(grid(warm=[good, gone])) == f"bohb.warm_start[1]: {gone!r}: no such job directory"
    (tmp_path / "bare").mkdir()
    assert "has no BOHB results (results/bohb.parquet)" in warm_start_problem(grid(warm=[str(tmp_path / "bare")]))
    write_tables(JobStorage.at(tmp_path / "off"), [result_row(0, "evaluation")])  # bohb was off: an empty table
    assert "its BOHB stage has no trial" in warm_start_problem(grid(warm=[str(tmp_path / "off")]))
    off = parse_grid(f"name: w\ndataset: {{store: s}}\nbohb: {{enabled: false, warm_start: ['{gone}']}}\n")
    assert warm_start_problem(off) is None
    (tmp_path / "grid.yaml").write_text(f"name: w\ndataset: {{store: s}}\nbohb: {{warm_start: ['{gone}']}}\n")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "grid.yaml")])
    assert result.exit_code == 2 and "bohb.warm_start[0]" in result.output and "no such job directory" in result.output


def test_the_grid_key_takes_at_most_16_distinct_jobs():
    assert grid().bohb.warm_start == []
    with pytest.raises(GridSpecError, match=r"bohb.warm_start\[1\]: 'a' is listed twice"):
        grid(warm=["a", "a"])
    with pytest.raises(GridSpecError, match="bohb.warm_start: .*at most 16"):
        grid(warm=[f"j{i}" for i in range(17)])
    with pytest.raises(GridSpecError, match=r"bohb.warm_start\[0\]"):
        grid(warm=[""])


@pytest.mark.ray
def test_a_job_warm_started_from_an_earlier_one_ends_with_every_bohb_sample_and_records_the_warm_start(
        local_ray, store, tmp_path):
    earlier = run_grid(parse_grid(bohb_grid(store.path, tmp_path, name="warm", samples=3)),
                       job_id="earlier", show_progress=False)
    assert not (earlier.job_dir / WARM_START_FILE).exists()
    source = str(earlier.job_dir)
    spec = parse_grid(bohb_grid(store.path, tmp_path, name="warm", samples=3, warm=json.dumps([source])))
    expected, _ = source_observations(source, spec.bohb)
    assert expected  # the earlier job's trials reached this job's budgets (1 and 3 epochs)

    outcome = run_grid(spec, job_id="warm", show_progress=False)
    rows = pq.read_table(outcome.tables["bohb"]).to_pylist()
    assert len(rows) == stage_counts(spec)["bohb"]
    assert all(r["status"] == "succeeded" for r in rows), [r["error"] for r in rows]
    record = json.loads((outcome.job_dir / WARM_START_FILE).read_text())
    assert (record["observations"], record["skipped"]) == (len(expected), 0)
    assert record["sources"][0]["job"] == source
    assert json.loads((outcome.job_dir / "spec.json").read_text())["bohb"]["warm_start"] == [source]
    report = (outcome.job_dir / "report" / "report.md").read_text()  # the report says where BOHB began
    assert f"BOHB warm-started with {len(expected)} evaluations of 1 earlier job(s)" in report
    # Tune's snapshot of the searcher it ran: BOHB's model holds the earlier points beside this job's own
    (state_file,) = (outcome.job_dir / "bohb").glob("searcher-state-*.pkl")
    generator = pickle.loads(state_file.read_bytes())["bohber"]
    assert sum(map(len, generator.configs.values())) >= len(expected) + 1
