"""Control genotypes in a grid (issue 12 item 2): fixed genotypes per setting, beside searched and
random ones, answer "does operator choice matter on this data at all?"."""

import pytest

from adf_service.genotype import Genotype, control_genotype
from adf_service.space import SearchSpace
from trials.config import TrialConfig
from trials.expand import all_control_names, control_trials, stage_counts
from trials.jobs import make_trial_job
from trials.spec import GridSpecError, parse_grid

GRID = """name: ctl
dataset: {{store: {store}}}
space: {{operators: [S1, S2], discretizations: [all, topk], inputs: [1], cells: [1], channels: 8, partial_k: 1}}
repeats: 1
evaluation: {{epochs: 1, batch_size: 16, lr: 0.05}}
controls: {{enabled: true, genotypes: {names}, repeats: 2}}
"""


def grid(names: str, store: str = "s"):
    return parse_grid(GRID.format(store=store, names=names))


def test_each_setting_runs_the_named_controls_its_operator_set_has():
    spec = grid("[all_skip, all_dil_conv_3x3x3]")  # dil_conv_3x3x3 is an S1 operator only
    trials = control_trials(spec)
    keys = [t.trial_key for t in trials]
    assert keys[:6] == ["controls-all_skip-S1-all-I1-C1-r0", "controls-all_dil_conv_3x3x3-S1-all-I1-C1-r0",
                        "controls-all_skip-S1-topk-I1-C1-r0", "controls-all_dil_conv_3x3x3-S1-topk-I1-C1-r0",
                        "controls-all_skip-S2-all-I1-C1-r0", "controls-all_skip-S2-topk-I1-C1-r0"]
    assert len(trials) == 2 * 6 == stage_counts(spec)["controls"]  # two repeats
    assert {t.control for t in trials} == {"all_skip", "all_dil_conv_3x3x3"}
    assert len({t.seed for t in trials}) == len(trials)
    assert TrialConfig.from_dict(trials[0].to_dict()) == trials[0]


def test_every_runs_all_of_each_settings_controls_and_disabled_runs_none():
    spec = grid("[every]")
    per_set = {"S1": 6, "S2": 5}  # every op of the set but zero
    assert stage_counts(spec)["controls"] == 2 * 2 * sum(per_set.values())
    off = parse_grid("name: x\ndataset: {store: s}\n")
    assert control_trials(off) == [] and stage_counts(off)["controls"] == 0


@pytest.mark.parametrize(("names", "says"), [
    ("[all_skipp]", "controls.genotypes[0]: 'all_skipp' is no control genotype: {every, all_skip"),
    ("[all_skip, all_skip]", "controls.genotypes[1]"),
    ("[every, all_skip]", "'every' already names every control"),
    ("[]", "controls.genotypes"),
])
def test_unknown_or_repeated_control_names_are_refused_by_key(names, says):
    with pytest.raises(GridSpecError) as info:
        grid(names)
    assert says in str(info.value)


def test_the_names_cover_both_operator_sets():
    names = all_control_names()
    assert names[:2] == ("all_skip", "all_conv_1x1x1")
    assert {"all_dil_conv_3x3x3", "all_flat_conv_3x3x3"} <= set(names) and "all_zero" not in names


def test_a_control_trial_trains_its_fixed_genotype(store):
    trial = control_trials(grid("[all_conv_1x1x1]", store=store.path))[0]
    job = make_trial_job(trial)
    setting = trial.setting
    expected = control_genotype(SearchSpace(setting.operators, setting.n_inputs, setting.n_cells, channels=8,
                                            partial_k=1), setting.discretization, "all_conv_1x1x1")
    assert job.genotype == expected
    while not job.done:
        job.step()
    row = job.rows()["controls"]
    assert 0 <= row["test_top1"] <= 100 and row["fusion_params"] > 0
    recorded = Genotype.from_json(row["genotype"])
    assert recorded == expected
    assert recorded.provenance["seed"] == trial.seed and trial.trial_key in recorded.provenance["made_by"]
