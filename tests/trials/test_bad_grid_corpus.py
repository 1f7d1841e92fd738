"""The bad-grid corpus (tests/corpus/grid/cases.json): every hostile grid is refused by name, quickly.

Each case goes through the public parser for its kind (``parse_grid`` for YAML,
``parse_grid_json`` for JSON) and must raise ``GridSpecError``, never a ``RecursionError``, a
``yaml.reader.ReaderError`` or a hang, with a message naming the line or the key, within 1 s
of CPU time (the timeout catches a hang).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from adf_service.yamldoc import MAX_PROBLEMS
from trials.spec import GridSpecError, parse_grid, parse_grid_json

CORPUS = Path(__file__).parents[1] / "corpus" / "grid"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))["cases"]
PARSERS = {".yaml": parse_grid, ".json": parse_grid_json}


def case_text(case: dict) -> str:
    """The case's document: its file, or what its recipe makes (files too big to commit)."""
    recipe = case.get("recipe")
    if recipe is None:
        return (CORPUS / case["file"]).read_text(encoding="utf-8")
    units = "".join(recipe["unit"].replace("{i}", str(i)) for i in range(recipe["times"]))
    return recipe["head"] + units + recipe.get("close", "") * recipe["times"] + recipe.get("tail", "")


def test_every_file_in_the_corpus_is_a_case_and_says_what_it_checks():
    files = {path.name for path in CORPUS.iterdir() if path.name != "cases.json"}
    assert files == {case["file"] for case in CASES if "recipe" not in case}
    for case in CASES:
        text = None if "recipe" in case else case_text(case)
        assert "checks" in case or (text and text.startswith("# checks: ")), case["file"]


@pytest.mark.timeout(30)  # a regression hangs: fail it rather than the whole run
@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_a_hostile_grid_is_refused_by_name_within_a_second(case):
    text = case_text(case)
    parse = PARSERS[Path(case["file"]).suffix]
    start = time.process_time()  # CPU time: the parser's work, not how busy the machine is
    with pytest.raises(GridSpecError) as info:
        parse(text, case["file"])
    elapsed = time.process_time() - start
    message = str(info.value)
    assert case["expect"] in message
    assert len(message.splitlines()) <= MAX_PROBLEMS + 1
    assert elapsed < 1.0, f"{case['file']}: refused after {elapsed:.2f} s of CPU time"


def test_an_error_lists_the_first_problems_in_line_order_and_counts_the_rest():
    text = "name: probe\ndataset: {store: s}\n" + "".join(f"key{i}: 1\n" for i in range(MAX_PROBLEMS + 7))
    with pytest.raises(GridSpecError) as info:
        parse_grid(text, "grid.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "grid.yaml line 3: key0: unknown key (allowed: name, dataset, space, repeats, search, " \
        "evaluation, baselines, random, controls, bohb, transfer, resources, max_concurrent_trials, seed, deterministic, storage, max_trials, priority, notify_url, reuse_from)"
    assert lines[MAX_PROBLEMS - 1].startswith(f"grid.yaml line {MAX_PROBLEMS + 2}: key{MAX_PROBLEMS - 1}: ")
    assert lines[-1] == "grid.yaml: … and 7 more problems"
    assert len(info.value.problems) == MAX_PROBLEMS and info.value.more == 7
