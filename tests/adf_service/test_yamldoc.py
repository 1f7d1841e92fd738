"""The one reader of spec documents: lines for every key, and refusals that name the line.

Every YAML test runs with libyaml's parser (when PyYAML has it) and with the pure Python one
PyYAML falls back to, so both refuse the same documents in the same words.
"""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adf_service import yamldoc
from adf_service.yamldoc import (
    MAX_DEPTH,
    MAX_PROBLEMS,
    DocumentError,
    DocumentProblem,
    compose,
    explain,
    load_json,
)

LOADERS = {yamldoc._PyLoader, yamldoc._LOADER}


@pytest.fixture(params=sorted(LOADERS, key=lambda c: c.__name__), ids=lambda c: c.__name__, autouse=True)
def loader(request, monkeypatch):
    monkeypatch.setattr(yamldoc, "_LOADER", request.param)
    return request.param


def refusal(text: str) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        compose(text, "doc.yaml")
    assert info.value.unreadable
    return info.value


def test_compose_gives_the_data_and_the_line_of_every_key_and_item():
    data, lines = compose("a: 1\nb:\n  - x\n  - {c: 2e-3}\n", "doc.yaml")
    assert data == {"a": 1, "b": ["x", {"c": 0.002}]}
    assert lines == {(): 1, ("a",): 1, ("b",): 2, ("b", 0): 3, ("b", 1): 4, ("b", 1, "c"): 4}


def test_a_key_given_twice_names_both_lines():
    assert str(refusal("a:\n  b: 1\n  b: 2\n")) == (
        "doc.yaml line 3: a.b: given twice (first on line 2); YAML would keep only the last")


def test_an_alias_is_refused_on_its_line():
    assert str(refusal("a: &x [1, 2]\nb: *x\n")) == (
        "doc.yaml line 2: YAML alias *x is not allowed: write the value out "
        "(aliases let a few bytes expand to gigabytes)")


@pytest.mark.parametrize("text", [
    "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "a: " + "{b: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "a:\n" + "- " * 10_000 + "1\n",
    "a:\n" + "".join(" " * n + f"k{n}:\n" for n in range(1, 200)),
])
def test_nesting_deeper_than_the_limit_is_refused_before_recursing(text):
    assert f"nested deeper than {MAX_DEPTH} levels" in str(refusal(text))


def test_nesting_up_to_the_limit_is_read():
    data, _ = compose("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "doc.yaml")
    assert data["a"] is not None


def test_an_unreadable_character_is_refused_with_its_line_and_column():
    assert str(refusal("a: 1\nb: é2\x00\n")) == (
        "doc.yaml line 2: character '\\x00' (U+0000) at column 6 cannot appear in a YAML document")


def test_a_syntax_error_names_its_line():
    assert str(refusal("a: [1, 2\n")).startswith("doc.yaml line 2: YAML syntax error: ")


@pytest.mark.parametrize(("text", "line"), [("a: 1\nb: " + "9" * 5000 + "\n", 2), ("a: 2024-13-45\n", 1)])
def test_a_value_python_cannot_read_is_refused_on_its_line(text, line):
    error = refusal(text)
    assert error.problems[0].line == line and "cannot read the value" in str(error)


def test_a_document_over_the_size_limit_is_refused_before_reading():
    with pytest.raises(DocumentError, match="the document has 11 characters, more than the limit of 10"):
        compose("a: 1234567\n", "doc.yaml", max_chars=10)


def test_the_caller_chooses_the_error_type():
    class ConfigError(DocumentError):
        pass

    with pytest.raises(ConfigError):
        compose("a: *x\n", "doc.yaml", error=ConfigError)


def test_json_is_read_with_the_same_limits():
    assert load_json('{"a": [1, {"b": 2}]}', "<json>") == {"a": [1, {"b": 2}]}
    with pytest.raises(DocumentError) as info:
        load_json('{"a": {"b": 1, "b": 2}, "c": [{"d": 1, "d": 1}]}', "<json>")
    assert str(info.value).splitlines() == [
        "<json>: a.b: given twice in one object; JSON would keep only the last",
        "<json>: c[0].d: given twice in one object; JSON would keep only the last",
    ]
    for text, says in [
        ('{"a":\n' + "[" * 10_000 + "]" * 10_000 + "}", "<json> line 2: nested deeper than 64"),
        ('{"a": "[[[[' + "[" * 100 + '"}', None),  # brackets inside a string do not nest
        ('{"a": 1,}', "<json> line 1: JSON syntax error: "),
        ('{"a":\n' + "9" * 5000 + "}", "<json> line 2: cannot read the document"),
    ]:
        if says is None:
            assert load_json(text, "<json>")["a"].startswith("[[[")
            continue
        with pytest.raises(DocumentError, match=says.replace("[", r"\[")):
            load_json(text, "<json>")


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    epochs: int = Field(1, ge=1, le=10)
    lr: float = 0.1


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    inner: Inner = Inner()


def problems_of(text: str) -> list[str]:
    data, lines = compose(text, "doc.yaml")
    with pytest.raises(ValidationError) as info:
        Outer.model_validate(data)
    return str(DocumentError("doc.yaml", explain(info.value, Outer, lines))).splitlines()


def test_explain_words_each_problem_on_its_line_with_a_suggestion():
    assert problems_of("name: x\ninner:\n  epochs: 11\n  epoch: 3\n  lr: .inf\n") == [
        "doc.yaml line 3: inner.epochs: should be less than or equal to 10, got 11",
        "doc.yaml line 4: inner.epoch: unknown key (did you mean 'epochs'?)",
        "doc.yaml line 5: inner.lr: expected a finite number, got inf",
    ]
    assert problems_of("inner: {}\n") == ["doc.yaml line 1: name: required key missing"]


def test_explain_shows_huge_and_deep_values_briefly():
    data = {"name": "x", "inner": {"epochs": 10**5000, "lr": [[[[[[1]]]]]]}}
    with pytest.raises(ValidationError) as info:
        Outer.model_validate(data)
    words = "\n".join(p.message for p in explain(info.value, Outer, {}))
    assert "got an integer of about 5,000 digits" in words and "[[[[...]]]]" in words


def test_an_error_lists_the_first_problems_and_counts_the_rest():
    error = DocumentError("doc.yaml", [DocumentProblem(f"k{i}", "bad", i + 1) for i in range(MAX_PROBLEMS + 3)])
    lines = str(error).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == "doc.yaml: … and 3 more problems"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.more == 3 and not copy.unreadable


def test_only_safe_tags_are_read():
    with pytest.raises(DocumentError, match="line 1: YAML syntax error: could not determine a constructor"):
        compose("a: !!python/object/apply:os.system [echo]\n", "doc.yaml")
