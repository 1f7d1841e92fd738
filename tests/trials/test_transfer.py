"""Transfer evaluation (thesis §5.3.2, table 6): the best genotypes of a finished job, each trained from
scratch on another feature store (UCF101 after HMDB51), with a table of its own and a report section.

The finished job is written by hand with trials.results.write_tables: its evaluation rows carry their
genotypes and configs as a real job's do, so no search has to run first.
"""

import json
import random
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from adf_service.features import generate_synthetic_store
from adf_service.genotype import Genotype, random_genotype
from adf_service.space import SearchSpace
from api.cli import app
from trials.config import Setting, TrialConfig
from trials.expand import TransferError, stage_counts, transfer_trials, trial_seed
from trials.grid_sections import TrainHyper
from trials.jobs import make_trial_job
from trials.report import job_sections, render_markdown, transfer_table
from trials.results import RESULT_SCHEMA, trial_rows, write_tables
from trials.spec import GridSpecError, parse_grid, transfer_source_problem

EXAMPLES = Path(__file__).parents[2] / "examples"
CHANNELS = 8  # the fusion cells' C in the source job
S2_ALL_1, S2_ALL_2, S2_TOPK_1 = Setting("S2", "all", 1, 1), Setting("S2", "all", 2, 1), Setting("S2", "topk", 1, 1)

GRID = """name: ucf
dataset: {{store: {store}}}
search: {{enabled: false}}
evaluation: {{epochs: 1, batch_size: 16, lr: 0.05}}
baselines: {{combos: [[rgb, flow, pose]], repeats: 1, training: {{epochs: 1, batch_size: 16, lr: 0.05}}}}
transfer:
  enabled: true
  from_job: {source}
  genotypes: {genotypes}
  repeats: {repeats}
{extra}"""


def grid(store, source, genotypes=2, repeats=2, extra="", name="grid.yaml"):
    return parse_grid(GRID.format(store=store, source=source, genotypes=genotypes, repeats=repeats, extra=extra),
                      name)


def error_of(text: str) -> str:
    with pytest.raises(GridSpecError) as info:
        parse_grid(text, "grid.yaml")
    return str(info.value)


def genotype_of(setting: Setting, seed: int) -> Genotype:
    space = SearchSpace(setting.operators, setting.n_inputs, setting.n_cells, channels=CHANNELS, partial_k=1)
    return random_genotype(space, setting.discretization, random.Random(seed))


def evaluation_row(key: str, setting: Setting, top1: float, val_loss: float, genotype: Genotype, store: str, *,
                   learned: bool = True, status: str = "succeeded", modalities=None) -> dict:
    """An evaluation row of the source job, its config the search trial's, as trials.results.trial_rows writes it."""
    config = TrialConfig(stage="search", trial_key=key, setting=setting, repeat=0, seed=7, store=store,
                         modalities=modalities, channels=CHANNELS, partial_k=1,
                         evaluation={"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.05,
                                     "momentum": 0.9, "weight_decay": 3e-4})
    values = {"job": "hmdb", "stage": "evaluation", "trial_id": key, "trial_key": key, **setting.to_dict(),
              "repeat": 0, "seed": 7, "best_epoch": 2, "val_loss": val_loss, "val_top1": 50.0, "test_top1": top1,
              "fusion_params": 1234, "learned": learned, "genotype": genotype.to_json(), "config": config.to_json(),
              "status": status}
    return {name: values.get(name) for name in RESULT_SCHEMA.names}


def source_rows(store: str, modalities=None) -> list[dict]:
    return [
        # S2-all-I1: its best by val loss is r1 (0.30), by test top-1 r0 (90.0)
        evaluation_row("search-S2-all-I1-C1-r0", S2_ALL_1, 90.0, 0.40, genotype_of(S2_ALL_1, 1), store),
        evaluation_row("search-S2-all-I1-C1-r1", S2_ALL_1, 80.0, 0.30, genotype_of(S2_ALL_1, 2), store,
                       modalities=modalities),
        evaluation_row("search-S2-all-I2-C1-r0", S2_ALL_2, 85.0, 0.35, genotype_of(S2_ALL_2, 3), store),
        evaluation_row("search-S2-topk-I1-C1-r0", S2_TOPK_1, 70.0, 0.50, genotype_of(S2_TOPK_1, 4), store),
        # never a source: an unlearned search (with the lowest val loss) and a failed evaluation
        evaluation_row("search-S2-topk-I1-C1-r1", S2_TOPK_1, 99.0, 0.01, genotype_of(S2_TOPK_1, 5), store,
                       learned=False),
        evaluation_row("search-S2-all-I2-C1-r1", S2_ALL_2, 99.0, 0.02, genotype_of(S2_ALL_2, 6), store,
                       status="failed"),
    ]


def write_source(directory, rows, select="val"):
    write_tables(directory, rows)
    (directory / "spec.json").write_text(json.dumps({"name": "hmdb", "seed": 0, "bohb": {"select": select}}))
    return directory


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    """The second store: other clips and classes, the features of the same backbones (the same channels)."""
    return generate_synthetic_store(tmp_path_factory.mktemp("transfer") / "ucf", n_train=48, n_test=24, n_classes=4,
                                    seed=9, channels=(8, 8, 4), spatial=(2, 4, 4))


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory, store):
    """The finished source job: evaluations of three settings on the session's store (tests/conftest.py)."""
    return write_source(tmp_path_factory.mktemp("runs") / "hmdb", source_rows(str(store.path)))


# --- grid.yaml ----------------------------------------------------------------------------------------------


def test_a_transfer_only_grid_validates_and_counts_at_most_genotypes_times_repeats(ucf, hmdb):
    spec = grid(ucf.path, hmdb, genotypes=2, repeats=3)
    assert not spec.search.enabled and not spec.random.enabled and not spec.bohb.enabled  # off with the search
    assert spec.transfer.training is None and spec.transfer.from_job == str(hmdb)
    assert stage_counts(spec) == {"baselines": 1, "search": 0, "evaluation": 0, "random": 0, "controls": 0,
                                  "bohb": 0, "transfer": 6}
    defaults = parse_grid(f"name: x\ndataset: {{store: s}}\ntransfer: {{enabled: true, from_job: {hmdb}}}\n")
    assert stage_counts(defaults)["transfer"] == 1 * 3 and stage_counts(defaults)["search"] == 288  # with a search
    random_on = grid(ucf.path, hmdb, extra="random: {enabled: true, repeats: 1}\n")
    assert random_on.random.enabled and stage_counts(random_on)["random"] == 48  # random may still run alone


def test_transfer_needs_a_from_job_when_enabled():
    message = error_of("name: x\ndataset: {store: s}\ntransfer:\n  enabled: true\n  repeats: 2\n")
    assert message == ("grid.yaml line 3: transfer.from_job: required when transfer is enabled: the directory of "
                       "a finished job (<storage>/<job id>), a path or a URI")
    assert parse_grid("name: x\ndataset: {store: s}\ntransfer: {repeats: 2}\n").transfer.from_job is None  # off


def test_an_unknown_transfer_key_is_refused_with_its_line(hmdb):
    message = error_of(f"name: x\ndataset: {{store: s}}\ntransfer:\n  enabled: true\n  from_job: {hmdb}\n"
                       "  genotype: 2\n")
    assert message.startswith("grid.yaml line 6: transfer.genotype: unknown key (did you mean 'genotypes'?)")
    assert "transfer.genotypes: should be less than or equal to 48" in error_of(
        f"name: x\ndataset: {{store: s}}\ntransfer: {{enabled: true, from_job: {hmdb}, genotypes: 49}}\n")


def test_a_from_job_without_result_tables_is_refused_naming_it_by_validate_not_by_parsing(tmp_path):
    (tmp_path / "empty").mkdir()
    empty = parse_grid(f"name: x\ndataset: {{store: s}}\ntransfer: {{enabled: true, from_job: {tmp_path}/empty}}\n")
    assert transfer_source_problem(empty) == (
        f"transfer.from_job: '{tmp_path}/empty' has no result tables (results/evaluation.parquet): name the "
        "directory of a finished job, <storage>/<job id>")
    gone = parse_grid(f"name: x\ndataset: {{store: s}}\ntransfer: {{enabled: true, from_job: {tmp_path}/gone}}\n")
    assert transfer_source_problem(gone) == f"transfer.from_job: '{tmp_path}/gone': no such job directory"
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: x\ndataset: {{store: s}}\ntransfer: {{enabled: true, from_job: {tmp_path}/gone}}\n")
    result = CliRunner().invoke(app, ["validate", str(grid)])
    assert result.exit_code == 2 and "no such job directory" in result.output


def test_without_a_search_bohb_is_refused_and_a_grid_must_run_something():
    message = error_of("name: x\ndataset: {store: s}\nsearch: {enabled: false}\nbohb: {enabled: true}\n")
    assert message.startswith("grid.yaml line 4: bohb.enabled: BOHB tunes the best searched genotype, and "
                              "search.enabled is false")
    message = error_of("name: x\ndataset: {store: s}\nsearch: {enabled: false}\nbaselines: {enabled: false}\n")
    assert message.startswith("grid.yaml line 3: search.enabled: the grid runs no trial")


# --- the trials ---------------------------------------------------------------------------------------------


def test_the_best_evaluation_of_each_setting_is_transferred_ranked_by_the_sources_select(ucf, hmdb, store):
    spec = grid(ucf.path, hmdb, genotypes=2, repeats=2, extra="seed: 11\n")
    trials = transfer_trials(spec)
    # by val loss: S2-all-I1's best is r1 (0.30), then S2-all-I2 (0.35); the unlearned 0.01 and failed 0.02 never
    sources = ["search-S2-all-I1-C1-r1", "search-S2-all-I2-C1-r0"]
    assert [t.trial_key for t in trials] == [f"transfer-{s}-r{r}" for r in (0, 1) for s in sources]
    rows = {r["trial_key"]: r for r in source_rows(str(store.path))}
    for trial in trials:
        source = rows[trial.source["trial_key"]]
        assert trial.seed == trial_seed(11, trial.trial_key) and trial.stage == "transfer"
        assert trial.source == {"job": "hmdb", "trial_key": source["trial_key"], "store": str(store.path),
                                "test_top1": source["test_top1"]}
        assert trial.genotype == source["genotype"] and trial.setting == TrialConfig.from_json(source["config"]).setting
        assert (trial.store, trial.channels) == (str(ucf.path), CHANNELS)
        assert trial.modalities == ("rgb", "flow", "pose")  # the source fused all of its store's
        assert trial.evaluation == spec.evaluation.model_dump()  # transfer.training left out: the grid's evaluation
        assert TrialConfig.from_json(trial.to_json()) == trial
    assert len({t.seed for t in trials}) == 4


def test_select_test_ranks_by_test_top1_and_training_replaces_the_evaluation(ucf, tmp_path, store):
    job = write_source(tmp_path / "by-test", source_rows(str(store.path)), select="test")
    spec = grid(ucf.path, job, genotypes=3, repeats=1, extra="  training: {epochs: 2, lr: 0.01}\n")
    trials = transfer_trials(spec)
    assert [t.source["trial_key"] for t in trials] == [
        "search-S2-all-I1-C1-r0", "search-S2-all-I2-C1-r0", "search-S2-topk-I1-C1-r0"]  # 90, 85, 70
    assert trials[0].evaluation == TrainHyper(epochs=2, lr=0.01).model_dump()  # its own keys, the thesis' defaults
    assert [t.trial_key for t in transfer_trials(grid(ucf.path, job, genotypes=5, repeats=1))] == [
        f"transfer-{t.source['trial_key']}-r0" for t in trials]  # only three settings have one


def test_a_store_without_what_a_genotype_fuses_is_a_clear_error(ucf, tmp_path, store):
    depth = write_source(tmp_path / "depth", source_rows(str(store.path), modalities=("rgb", "depth")))
    with pytest.raises(TransferError, match=r"search-S2-all-I1-C1-r1 fuses rgb\+depth; the store .* has no depth "
                                            r"\(it has rgb, flow, pose\)"):
        transfer_trials(grid(ucf.path, depth))
    thin = generate_synthetic_store(tmp_path / "thin", n_train=8, n_test=4, n_classes=2, channels=(6, 8, 4),
                                    spatial=(2, 4, 4))
    hmdb = write_source(tmp_path / "hmdb", source_rows(str(store.path)))
    with pytest.raises(TransferError, match=r"fused rgb layer3 features of 8 channels .* has 6: the genotype's "
                                            r"network needs the same features"):
        transfer_trials(grid(thin.path, hmdb))
    only = parse_grid(GRID.format(store=ucf.path, source=hmdb, genotypes=1, repeats=1, extra="").replace(
        "dataset: {", "dataset: {modalities: [rgb, flow], ").replace("[[rgb, flow, pose]]", "[[rgb, flow]]"))
    with pytest.raises(TransferError, match=r"fuses rgb\+flow\+pose, more than dataset.modalities \{rgb, flow\}"):
        transfer_trials(only)


def test_a_source_job_without_a_learned_evaluation_is_a_clear_error(ucf, tmp_path, store):
    rows = [r for r in source_rows(str(store.path)) if r["learned"] is False or r["status"] == "failed"]
    job = write_source(tmp_path / "unlearned", rows)
    with pytest.raises(TransferError, match="no evaluation of a learned search to transfer"):
        transfer_trials(grid(ucf.path, job))


def test_a_transfer_trial_trains_the_source_genotype_on_the_new_store(ucf, hmdb):
    trial = transfer_trials(grid(ucf.path, hmdb, genotypes=1, repeats=1))[0]
    job = make_trial_job(trial)
    source = Genotype.from_json(trial.genotype)
    assert job.genotype == source
    while not job.done:
        job.step()
    produced = job.rows()
    row = trial_rows("ucf-job", "t0", trial, {"done": True, "rows": json.dumps(produced)}, None, None)["transfer"]
    assert row["status"] == "succeeded" and 0 <= row["test_top1"] <= 100 and row["fusion_params"] > 0
    assert Genotype.from_json(row["genotype"]) == source  # the genotype trained is the source's
    assert (row["operators"], row["discretization"], row["n_inputs"]) == ("S2", "all", 1)
    assert TrialConfig.from_json(row["config"]).source["trial_key"] == "search-S2-all-I1-C1-r1"


# --- Table 6 ------------------------------------------------------------------------------------------------


def transfer_row(source_key: str, setting: Setting, top1: float | None, params: int, source_top1: float,
                 status: str = "succeeded", repeat: int = 0) -> dict:
    key = f"transfer-{source_key}-r{repeat}"
    config = TrialConfig(stage="transfer", trial_key=key, setting=setting, repeat=repeat, seed=1, store="ucf",
                         modalities=None, channels=CHANNELS, genotype="{}", evaluation={"epochs": 1},
                         source={"job": "hmdb", "trial_key": source_key, "store": "hmdb-store",
                                 "test_top1": source_top1})
    values = {"job": "ucf", "stage": "transfer", "trial_id": key, "trial_key": key, **setting.to_dict(),
              "repeat": repeat, "best_epoch": 1, "val_loss": 0.5, "test_top1": top1, "fusion_params": params,
              "total_params": params + 100, "config": config.to_json(), "status": status}
    return {name: values.get(name) for name in RESULT_SCHEMA.names}


def baseline_row(modalities: str, top1: float, params: int) -> dict:
    config = TrialConfig(stage="baselines", trial_key=f"baselines-{modalities}", repeat=0, seed=1, store="ucf",
                         modalities=tuple(modalities.split("+")), combo="x")
    values = {"job": "ucf", "stage": "baselines", "trial_id": modalities, "trial_key": f"baselines-{modalities}",
              "modalities": modalities, "val_loss": 0.5, "test_top1": top1, "fusion_params": params,
              "total_params": params, "config": config.to_json(), "status": "succeeded"}
    return {name: values.get(name) for name in RESULT_SCHEMA.names}


def table6_rows() -> list[dict]:
    a, b = "search-S2-all-I2-C1-r0", "search-S1-topk-I1-C3-r4"
    return [transfer_row(a, S2_ALL_2, v, p, 75.7, repeat=i) for i, (v, p) in enumerate([(94.0, 10), (94.4, 11),
                                                                                          (93.6, 12)])] + [
        transfer_row(a, S2_ALL_2, None, 0, 75.7, status="failed", repeat=3),
        transfer_row(b, Setting("S1", "topk", 1, 3), 93.5, 20, 71.0),
        baseline_row("rgb", 89.9, 46), baseline_row("rgb", 90.1, 46), baseline_row("rgb+flow+pose", 92.8, 127)]


def test_table6_gives_each_transferred_genotype_and_the_stores_best_baseline():
    rows = transfer_table(table6_rows())
    assert [r["setting"] for r in rows] == ["S1-topk-I1-C3", "S2-all-I2-C1", "baseline R+F+P"]
    s1, s2, baseline = rows
    assert s1 == {"setting": "S1-topk-I1-C3", "source_trial": "search-S1-topk-I1-C3-r4", "source_test_top1": 71.0,
                  "n": 1, "best": 93.5, "mean": 93.5, "std": None, "fusion_params": 20, "total_params": 120}
    assert (s2["source_trial"], s2["source_test_top1"], s2["n"], s2["best"]) == (
        "search-S2-all-I2-C1-r0", 75.7, 3, 94.4)  # the failed repeat counts nowhere
    assert s2["mean"] == pytest.approx(statistics.mean([94.0, 94.4, 93.6]))
    assert s2["std"] == pytest.approx(statistics.stdev([94.0, 94.4, 93.6]))
    assert (s2["fusion_params"], s2["total_params"]) == (11, 111)  # of the best run
    assert (baseline["source_trial"], baseline["n"], baseline["best"], baseline["fusion_params"]) == (
        None, 1, 92.8, 127)


def test_the_report_has_table6_and_says_when_no_transfer_ran():
    [section] = [s for s in job_sections(table6_rows()) if s.name == "table6_transfer"]
    text = render_markdown(section)
    assert "| S2-all-I2-C1 | search-S2-all-I2-C1-r0 | 75.7 | 94.4 | 94.0 ± 0.4 | 3 | 11 | 111 |" in text
    assert "| baseline R+F+P | – | – | 92.8 | 92.8 | 1 | 127 | 127 |" in text and "Genotypes of job hmdb" in text
    [none] = [s for s in job_sections(table6_rows()[5:]) if s.name == "table6_transfer"]
    assert none.rows == [] and "_No transfer evaluation ran._" in render_markdown(none)
    [failed] = [s for s in job_sections(table6_rows()[3:4]) if s.name == "table6_transfer"]
    assert "_Transfer ran 1 trials and none succeeded._" in render_markdown(failed)


# --- a whole transfer-only job on Ray -----------------------------------------------------------------------


def test_a_transfer_only_job_trains_the_source_genotypes_on_its_store(local_ray, ucf, hmdb, tmp_path):
    from trials.pipeline import run_grid

    spec = grid(ucf.path, hmdb, genotypes=2, repeats=1,
                extra="resources: {gpus_per_trial: 0, cpus_per_trial: 1}\nmax_concurrent_trials: 2\n"
                      f"storage: {tmp_path}\n")
    outcome = run_grid(spec, job_id="ucf-job", show_progress=False)
    assert outcome.counts == {"baselines": {"succeeded": 1, "failed": 0}, "transfer": {"succeeded": 2, "failed": 0}}
    rows = pq.read_table(outcome.job_dir / "results" / "transfer.parquet").to_pylist()
    sources = {r["trial_key"]: r for r in source_rows("")}
    assert [r["trial_key"] for r in rows] == ["transfer-search-S2-all-I1-C1-r1-r0", "transfer-search-S2-all-I2-C1-r0-r0"]
    for row in rows:
        source = TrialConfig.from_json(row["config"]).source
        assert row["status"] == "succeeded" and row["job"] == "ucf-job" and 0 <= row["test_top1"] <= 100
        assert Genotype.from_json(row["genotype"]) == Genotype.from_json(sources[source["trial_key"]]["genotype"])
        assert source["test_top1"] == sources[source["trial_key"]]["test_top1"]
    assert pq.read_table(outcome.job_dir / "results" / "evaluation.parquet").num_rows == 0  # no search ran
    assert json.loads((outcome.job_dir / "spec.json").read_text())["transfer"]["from_job"] == str(hmdb)
    table6 = (outcome.job_dir / "report" / "table6_transfer.csv").read_text().splitlines()
    assert len(table6) == 1 + 2 + 1 and table6[-1].startswith("baseline R+F+P,")


def test_the_example_transfer_grid_is_transfer_only_once_its_source_job_exists(hmdb):
    text = (EXAMPLES / "grid-transfer.yaml").read_text()
    assert "from_job: runs/smoke " in text
    spec = parse_grid(text.replace("from_job: runs/smoke ", f"from_job: {hmdb} "), "grid-transfer.yaml")
    assert stage_counts(spec) == {"baselines": 2, "search": 0, "evaluation": 0, "random": 0, "controls": 0,
                                  "bohb": 0, "transfer": 4}
