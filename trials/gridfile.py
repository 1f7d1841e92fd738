"""Where a grid file went wrong: YAML with line numbers, pydantic errors as located messages.

:func:`compose` loads a YAML document and records, for every mapping key and sequence
item, the line it is on (``{("space", "operators", 1): 12}``); :func:`explain` turns a
pydantic :class:`ValidationError` into :class:`GridProblem`\\ s whose path finds its line
there (or its nearest enclosing key's, for a key the file leaves out). Validators that
check several fields raise :class:`Problems` to point below the model they check.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["GridProblem", "GridSpecError", "Loc", "Problems", "compose", "dotted", "explain"]

Loc = tuple[str | int, ...]

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}


def dotted(loc: Loc) -> str:
    """``("space", "operators", 1)`` → ``space.operators[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class GridProblem:
    """One problem: its key path (``""`` for the grid as a whole), what is wrong, its line."""

    path: str
    message: str
    line: int | None = None

    def describe(self, source: str) -> str:
        where = f"{source} line {self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class GridSpecError(ValueError):
    """A grid (YAML file or JSON body) that does not describe a valid job; one line per problem."""

    def __init__(self, source: str, problems: Sequence[GridProblem]):
        super().__init__(source, tuple(problems))  # args that rebuild it: picklable across Ray
        self.source, self.problems = source, tuple(problems)

    def __str__(self) -> str:
        return "\n".join(problem.describe(self.source) for problem in self.problems)


class Problems(ValueError):
    """Raised by a validator: problems each at a location below the model or field it checks."""

    def __init__(self, *problems: tuple[Loc, str]):
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(f"{dotted(loc)}: {message}" for loc, message in self.problems)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``2e-3`` as a number, as YAML 1.2 and JSON do (YAML 1.1 wants ``2.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def compose(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """The YAML document in ``text`` (safe tags only) and the 1-based line of every key path.

    Raises GridSpecError on a syntax error (with its line) or a key given twice.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark, context = exc.problem_mark or exc.context_mark, ""
        if exc.context and exc.context_mark:
            context = f" ({exc.context} on line {exc.context_mark.line + 1})"
        problem = f"YAML syntax error: {exc.problem}{context}"
        raise GridSpecError(source, [GridProblem("", problem, mark.line + 1 if mark else None)]) from None
    except yaml.YAMLError as exc:
        raise GridSpecError(source, [GridProblem("", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    twice: list[GridProblem] = []
    if node is not None:
        _record_lines(node, (), lines, twice)
    if twice:
        raise GridSpecError(source, twice)
    return data, lines


def _record_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int], twice: list[GridProblem]) -> None:
    lines[path] = node.start_mark.line + 1
    if len(path) > 32:  # a recursive alias; nothing in a grid nests this deep
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = path + (key_node.value,)
            if key in lines:
                message = f"given twice (first on line {lines[key]}); YAML would keep only the last"
                twice.append(GridProblem(dotted(key), message, key_node.start_mark.line + 1))
            _record_lines(value, key, lines, twice)
            lines[key] = key_node.start_mark.line + 1  # a key's line, not its block value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), lines, twice)


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc`` or, for a key the file leaves out, of its nearest enclosing key."""
    return next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)


def _keys_at(model: type[BaseModel] | None, loc: Loc) -> list[str]:
    """The keys the model at ``loc`` (a path of field names and list indices) accepts."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return []
        candidates = (field.annotation, *get_args(field.annotation))
        model = next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return list(model.model_fields) if model else []


def _show(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _messages(error: dict[str, Any], model: type[BaseModel]) -> list[tuple[Loc, str]]:
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, Problems):
        return [(loc + below, message) for below, message in cause.problems]
    if isinstance(cause, Exception):
        return [(loc, str(cause))]
    if kind == "extra_forbidden":
        allowed = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        return [(loc, f"unknown key ({hint})")]
    if kind == "literal_error":  # ctx["expected"] reads "'S1' or 'S2'"
        allowed = ctx["expected"].replace(" or ", ", ").replace("'", "")
        return [(loc, f"{error['input']!r} not in {{{allowed}}}")]
    if kind == "missing":
        return [(loc, "required key missing")]
    if kind in _EXPECTED:
        return [(loc, f"expected {_EXPECTED[kind]}, got {_show(error['input'])}")]
    if kind in ("too_short", "too_long") and "actual_length" in ctx:
        want = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return [(loc, f"needs {bound} {want} value{'s' * (want != 1)}, got {ctx['actual_length']}")]
    message = error["msg"].removeprefix("Input ").removeprefix("Value error, ")
    return [(loc, f"{message[0].lower()}{message[1:]}, got {_show(error['input'])}")]


def explain(exc: ValidationError, model: type[BaseModel], lines: dict[Loc, int]) -> list[GridProblem]:
    """One :class:`GridProblem` per problem in ``exc`` (raised validating ``model``), by line."""
    problems = [
        GridProblem(dotted(loc), message, _line(lines, loc))
        for error in exc.errors()
        for loc, message in _messages(error, model)
    ]
    return sorted(problems, key=lambda p: p.line or 0)
