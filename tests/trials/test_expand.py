"""Grid → trial configs: counts per stage, stable seeds, unique keys, JSON-able configs."""

import json
import zlib
from pathlib import Path

import pytest

from adf_service.train import SearchConfig, TrainConfig
from trials.expand import (
    baseline_trials,
    bohb_samples,
    hyperband_s_max,
    random_trials,
    search_trials,
    setting_key,
    stage_counts,
    trial_seed,
)
from trials.spec import load_grid, parse_grid

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def thesis():
    return load_grid(EXAMPLES / "grid-thesis.yaml")


def all_trials(spec):
    return [*baseline_trials(spec), *search_trials(spec), *random_trials(spec)]


def test_thesis_grid_makes_288_searches_and_evaluations_42_baselines_288_random(thesis):
    counts = {"baselines": 42, "search": 288, "evaluation": 288, "random": 288, "controls": 0, "bohb": 137, "transfer": 0}
    assert stage_counts(thesis) == counts
    assert len(baseline_trials(thesis)) == 42
    assert len(search_trials(thesis)) == len(random_trials(thesis)) == 288


def test_smoke_grid_counts():
    smoke = load_grid(EXAMPLES / "grid-smoke.yaml")
    assert stage_counts(smoke) == {"baselines": 2, "search": 4, "evaluation": 4, "random": 4, "controls": 0, "bohb": 3, "transfer": 0}


def test_bohb_samples_follow_the_hyperband_bracket_formula():
    # 2..70 epochs, eta 3: s_max = 3; brackets s = 3, 2, 1, 0 sample 27, 12, 6, 4 configurations.
    assert [bohb_samples(2, 70, 3, i) for i in (1, 2, 3, 4)] == [27, 39, 45, 49]
    assert bohb_samples(2, 70, 3, 10) == 2 * 49 + 27 + 12
    assert bohb_samples(1, 3, 3, 1) == 3  # s_max = 1: one bracket of ceil(2/2 · 3)
    assert bohb_samples(1, 27, 3, 1) == 27  # budgets exactly a power of eta: s_max = 3


def test_hyperband_s_max_is_the_floor_of_the_logarithm():
    # floor(log_3(70/2)) = 3; a budget ratio exactly a power of eta counts that power; Ray's rounding
    # of log_3(50) = 3.56 would make it 4.
    assert [hyperband_s_max(2, 70, 3), hyperband_s_max(1, 27, 3), hyperband_s_max(1, 26, 3)] == [3, 3, 2]
    assert [hyperband_s_max(1, 50, 3), hyperband_s_max(5, 5, 3), hyperband_s_max(1, 3, 4)] == [3, 0, 0]


def test_bohb_samples_is_closed_form_for_any_number_of_iterations():
    def by_iteration(lo: int, hi: int, eta: int, iterations: int) -> int:  # HyperBand's loop, spelt out
        s_max = 0
        while lo * eta ** (s_max + 1) <= hi:
            s_max += 1
        return sum(-(-(s_max + 1) * eta ** (s_max - i % (s_max + 1)) // (s_max - i % (s_max + 1) + 1))
                   for i in range(iterations))

    for lo, hi, eta, iterations in [(2, 70, 3, 17), (1, 81, 3, 23), (1, 100, 2, 40), (5, 5, 3, 7), (1, 3, 4, 9)]:
        assert bohb_samples(lo, hi, eta, iterations) == by_iteration(lo, hi, eta, iterations)
    # 10**18 iterations (an outside probe's grid hung the server expanding them one by one): 49 per cycle of 4.
    assert bohb_samples(2, 70, 3, 10**18) == 10**18 // 4 * 49


def test_samples_overrides_and_disabled_stages_count_zero():
    spec = parse_grid(
        "name: x\ndataset: {store: s}\n"
        "bohb: {samples: 5}\nrandom: {enabled: false}\nbaselines: {enabled: false}\n"
    )
    assert stage_counts(spec) == {"baselines": 0, "search": 288, "evaluation": 288, "random": 0, "controls": 0, "bohb": 5, "transfer": 0}
    assert baseline_trials(spec) == [] and random_trials(spec) == []
    assert stage_counts(parse_grid("name: x\ndataset: {store: s}\nbohb: {enabled: false}\n"))["bohb"] == 0


def test_expansion_is_deterministic_and_keys_are_unique(thesis):
    trials = all_trials(thesis)
    assert trials == all_trials(load_grid(EXAMPLES / "grid-thesis.yaml"))
    assert len({t.trial_key for t in trials}) == len(trials) == 42 + 288 + 288


def test_trial_seed_is_crc32_of_grid_seed_and_trial_key(thesis):
    first = search_trials(thesis)[0]
    assert first.trial_key == "search-S1-all-I1-C1-r0"
    assert first.seed == zlib.crc32(b"0/search-S1-all-I1-C1-r0") & 0x7FFFFFFF == 2_036_333_066
    assert trial_seed(0, "search-S1-all-I1-C1-r0") == first.seed
    assert all(0 <= t.seed < 2**31 for t in all_trials(thesis))


def test_seeds_differ_between_repeats_and_trials_and_follow_the_grid_seed(thesis):
    trials = all_trials(thesis)
    assert len({t.seed for t in trials}) == len(trials)
    by_key = {t.trial_key: t.seed for t in trials}
    assert by_key["search-S2-all-I2-C2-r0"] != by_key["search-S2-all-I2-C2-r1"]
    reseeded = thesis.model_copy(update={"seed": 1})
    assert search_trials(reseeded)[0].seed != search_trials(thesis)[0].seed


def test_a_trials_seed_does_not_depend_on_the_rest_of_the_grid(thesis):
    narrow = parse_grid(
        "name: y\ndataset: {store: t}\nspace: {operators: [S2], inputs: [2], cells: [2]}\nrepeats: 2\n"
    )
    wide = {t.trial_key: t.seed for t in search_trials(thesis)}
    assert all(wide[t.trial_key] == t.seed for t in search_trials(narrow))


def test_trials_run_repeat_by_repeat_so_the_first_pass_covers_every_setting(thesis):
    first_pass = search_trials(thesis)[:48]
    assert {t.repeat for t in first_pass} == {0}
    assert len({setting_key(**t.setting.to_dict()) for t in first_pass}) == 48


def test_search_trial_shape(thesis):
    trial = next(t for t in search_trials(thesis) if t.trial_key == "search-S2-all-I2-C2-r3").to_dict()
    assert trial["setting"] == {"operators": "S2", "discretization": "all", "n_inputs": 2, "n_cells": 2}
    assert (trial["stage"], trial["repeat"], trial["store"], trial["modalities"]) == (
        "search", 3, "features/hmdb51-split1", None,
    )
    assert (trial["channels"], trial["partial_k"]) == (512, 4)
    assert trial["search"] == thesis.search.model_dump(exclude={"enabled"})
    assert trial["evaluation"] == thesis.evaluation.model_dump()


def test_random_trials_have_the_search_trials_shape(thesis):
    for searched, drawn in zip(search_trials(thesis), random_trials(thesis)):
        searched, drawn = searched.to_dict(), drawn.to_dict()
        assert drawn["stage"] == "random" and drawn["trial_key"] == "random" + searched["trial_key"][6:]
        assert set(drawn) == set(searched) and drawn["setting"] == searched["setting"]
        assert drawn["seed"] != searched["seed"]


def test_baseline_trials_name_their_combo(thesis):
    trial = next(t for t in baseline_trials(thesis) if t.trial_key == "baselines-R+F-r0").to_dict()
    assert (trial["stage"], trial["modalities"], trial["combo"], trial["repeat"]) == (
        "baselines", ["rgb", "flow"], "R+F", 0,
    )
    assert trial["training"] == thesis.baselines.training.model_dump()


def test_configs_are_plain_json_and_fit_the_library_configs(thesis):
    smoke = load_grid(EXAMPLES / "grid-smoke.yaml")
    for spec in (thesis, smoke):
        trials = [t.to_dict() for t in all_trials(spec)]  # what Ray Tune gets
        assert json.loads(json.dumps(trials)) == trials  # no tuples, numpy scalars or other non-JSON types
        for t in trials:
            if t["stage"] == "baselines":
                TrainConfig(**t["training"], seed=t["seed"])
                continue
            SearchConfig(**t["search"], seed=t["seed"], discretization=t["setting"]["discretization"])
            TrainConfig(**t["evaluation"], seed=t["seed"])


def test_deterministic_reaches_every_trial_and_the_runtime_it_builds(tmp_path):
    from trials.expand import control_trials
    from trials.jobs import make_trial_job

    text = (EXAMPLES / "grid-smoke.yaml").read_text()
    off = parse_grid(text, "grid.yaml")
    on = parse_grid(text + "\ndeterministic: true\n", "grid.yaml")
    trials = [*all_trials(on), *control_trials(on)]
    assert trials and all(t.deterministic is True for t in trials)
    assert all(t.deterministic is None and "deterministic" not in t.to_dict() for t in all_trials(off))
    from adf_service.features import generate_synthetic_store
    store = generate_synthetic_store(tmp_path / "s", n_train=16, n_test=8, spatial=(2, 3, 3))
    baseline = next(t for t in trials if t.stage == "baselines")
    job = make_trial_job(baseline.to_dict() | {"store": str(store.path)})
    assert job.run.runtime.deterministic is True


@pytest.mark.parametrize(("min_epochs", "max_epochs", "eta"), [(2, 70, 3), (1, 50, 3), (1, 8, 2), (3, 26, 3), (1, 3, 4)])
def test_the_bohb_scheduler_makes_the_brackets_bohb_samples_counts(min_epochs, max_epochs, eta):
    """The scheduler Tune runs fills exactly the brackets the grid's sample count is made of (Ray's
    own HyperBand rounds log_eta(max_t): for 1..50 at eta 3 it made a bracket of 81 never filled)."""
    from trials.bohb import ResumableHyperBandForBOHB

    scheduler = ResumableHyperBandForBOHB(time_attr="budget", max_t=max_epochs // min_epochs, reduction_factor=eta,
                                          metric="val_loss", mode="min")
    brackets = [scheduler._get_n0(s) for s in range(scheduler._s_max_1 - 1, -1, -1)]
    for iterations in (1, len(brackets), 2 * len(brackets) + 1):
        cycles, rest = divmod(iterations, len(brackets))
        assert cycles * sum(brackets) + sum(brackets[:rest]) == bohb_samples(min_epochs, max_epochs, eta, iterations)
