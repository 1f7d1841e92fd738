"""Hypothesis over the grid parser (issue 16 item 4): whatever it is given, a grid.yaml text, a JSON
body or a parsed document, ``parse_grid``, ``parse_grid_with_lines``, ``parse_grid_json`` and
``validate_grid`` return a GridSpec or raise ``GridSpecError`` with a message, never anything else
(no RecursionError, TypeError, KeyError, UnicodeError, yaml.YAMLError from deep inside).

The texts are built from the tokens that broke readers before (anchors, aliases, tags, flow
brackets, NUL, bidi overrides, lone surrogates, non-finite and huge numbers) and the grid's own
keys, so that a good share of them reach validation rather than stop at the first syntax error.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adf_service.yamldoc import MAX_PROBLEMS
from trials.spec import (
    GridSpec,
    GridSpecError,
    parse_grid,
    parse_grid_json,
    parse_grid_with_lines,
    validate_grid,
)

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

KEYS = sorted({*GridSpec.model_fields, "store", "synthetic", "clips", "modalities", "operators",
               "discretizations", "inputs", "cells", "channels", "partial_k", "epochs", "lr", "batch_size",
               "combos", "enabled", "samples", "min_epochs", "max_epochs", "eta", "iterations", "warm_start",
               "from_job", "gpus_per_trial", "cpus_per_trial"})
ODD = ["\x00", "\u202e", "\u200b", "\ufeff", "\x1b[31m", "\t", "\r", "\\ud800", "\\udc00", "\\u0000", "\\x00"]
NUMBERS = ["0", "-1", "1", "2.5", "1e400", "-1e400", ".inf", "-.inf", ".nan", "NaN", "Infinity", "-Infinity",
           "0x" + "f" * 24, "9" * 30, "1_000", "0o777", "2024-01-01", "~", "null", "true", "no", "S2", "all"]
YAML_TOKENS = [*KEYS, *ODD, *NUMBERS, ": ", ":", "\n", "\n  ", "\n    ", "- ", "-", "[", "]", "{", "}", ", ",
               "? ", "&a ", "*a", "&b ", "*b", "<<: ", "!!python/object/apply:os.system ", "!!binary ",
               "!!set ", "!x ", "|", ">", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x:\n",
               "name: probe\n", "dataset: {store: s}\n"]
JSON_TOKENS = [*(json.dumps(key) for key in KEYS), *ODD, *NUMBERS, '"', "{", "}", "[", "]", ":", ",", " ",
               "\n", '"probe"', '"s"', '"\\ud800"', '"\\u202e"', "false",
               '{"name": "probe", "dataset": {"store": "s"}']

yaml_texts = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)
json_texts = st.lists(st.sampled_from(JSON_TOKENS), max_size=60).map("".join)
any_texts = st.text(max_size=200)
with_surrogates = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63) | st.floats()
           | st.text(max_size=20) | st.sampled_from(ODD)
           | st.sampled_from(["S1", "S2", "all", "topk", "rgb", "probe"]))
keys = st.sampled_from(KEYS) | st.text(max_size=12)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(keys, inner, max_size=6), max_leaves=30)


def _set(document: Any, path: list[str], value: Any) -> Any:
    """``document`` with the value at ``path`` (keys, made where missing) replaced by ``value``."""
    if not path:
        return value
    base = document if isinstance(document, dict) else {}
    return base | {path[0]: _set(base.get(path[0]), path[1:], value)}


VALID = {"name": "probe", "dataset": {"store": "s"}, "repeats": 1, "bohb": {"enabled": False},
         "space": {"operators": ["S2"], "discretizations": ["all"], "inputs": [1], "cells": [1],
                   "channels": 8}}
# A valid grid with one value somewhere in it (at an existing key or a new one) replaced
near_valid = st.builds(_set, st.just(VALID), st.lists(keys, min_size=1, max_size=3), documents)


def refused_or_read(parse, *args) -> None:
    """``parse(*args)`` returns a GridSpec or raises GridSpecError with a message; anything else fails."""
    try:
        result = parse(*args)
    except GridSpecError as exc:
        message = str(exc)
        assert message.strip() and exc.problems, repr(exc)
        assert len(message.splitlines()) <= MAX_PROBLEMS + 1
        return
    spec = result[0] if isinstance(result, tuple) else result
    assert isinstance(spec, GridSpec)


@FUZZ
@given(yaml_texts)
def test_a_yaml_like_text_is_read_or_refused_by_name(text):
    refused_or_read(parse_grid, text, "fuzz.yaml")
    refused_or_read(parse_grid_with_lines, text, "fuzz.yaml")


@FUZZ
@given(json_texts)
def test_a_json_like_text_is_read_or_refused_by_name(text):
    refused_or_read(parse_grid_json, text, "fuzz.json")


@FUZZ
@given(any_texts, with_surrogates)
def test_any_text_at_all_is_read_or_refused_by_name(text, json_text):
    refused_or_read(parse_grid, text, "fuzz.yaml")
    refused_or_read(parse_grid_json, json_text, "fuzz.json")


def test_a_yaml_text_with_a_lone_surrogate_is_refused_by_name():
    refused_or_read(parse_grid, "name: probe\ndataset: {store: s\ud800}\n", "fuzz.yaml")


@FUZZ
@given(st.one_of(documents, near_valid))
def test_a_document_of_any_shape_is_read_or_refused_by_name(document):
    refused_or_read(validate_grid, document, "fuzz")
    refused_or_read(parse_grid_json, json.dumps(document), "fuzz.json")  # NaN and inf as JSON writes them
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:  # a character YAML cannot write (a lone surrogate): the JSON above had it
        return
    refused_or_read(parse_grid, text, "fuzz.yaml")
