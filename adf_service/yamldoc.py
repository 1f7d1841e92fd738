"""Reading a spec document (grid.yaml, extract.yaml, a JSON body) with errors that name the line.

:func:`compose` loads a YAML document and records, for every mapping key and sequence item,
the line it is on (``{("space", "operators", 1): 12}``); :func:`load_json` reads a JSON
document the same way, without lines. Both refuse a key given twice and anything that could
make reading slow or crash: a document over :data:`MAX_CHARS` characters, nesting deeper than
:data:`MAX_DEPTH`, YAML aliases (a 374-byte "billion laughs" expands to gigabytes), and
characters YAML cannot hold. :func:`explain` turns a pydantic :class:`ValidationError` into
:class:`DocumentProblem`\\ s whose path finds its line (or its nearest enclosing key's, for a
key the file leaves out). Validators that check several fields raise :class:`Problems` to
point below the model they check. Every message reads
``<source> line <n>: <key path>: <problem>``; an error lists at most :data:`MAX_PROBLEMS`.
"""

from __future__ import annotations

import difflib
import json
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_PROBLEMS",
    "DocumentError",
    "DocumentProblem",
    "Loc",
    "Problems",
    "compose",
    "dotted",
    "explain",
    "load_json",
]

Loc = tuple[str | int, ...]

MAX_CHARS = 64 * 1024  # a grid is a few kB: the thesis grid with every key explained is 5 kB
MAX_DEPTH = 64  # nested mappings and lists; a grid needs 4 (baselines.combos[i][j])
MAX_PROBLEMS = 50  # an error lists the first 50 and says how many more there are

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
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
    """``("space", "operators", 1)`` → ``space.operators[1]``; a key with a character that does not
    print as itself (a bidi override, a zero-width space, NUL) is written escaped, as Python's repr."""
    out = ""
    for part in loc:
        name = str(part) if isinstance(part, int) or str(part).isprintable() else repr(str(part))
        out += f"[{part}]" if isinstance(part, int) else f".{name}" if out else name
    return out


@dataclass(frozen=True)
class DocumentProblem:
    """One problem: its key path (``""`` for the document as a whole), what is wrong, its line."""

    path: str
    message: str
    line: int | None = None

    def describe(self, source: str) -> str:
        where = f"{source} line {self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DocumentError(ValueError):
    """A document that does not describe a valid spec: one line per problem, at most MAX_PROBLEMS.

    ``problems`` holds the first :data:`MAX_PROBLEMS` in line order, ``more`` counts the rest.
    ``unreadable``: the reader refused the text (:func:`compose`, :func:`load_json`: syntax, a
    key given twice, an alias, nesting, size), so it is no document at all, rather than one
    that does not validate.
    """

    def __init__(self, source: str, problems: Sequence[DocumentProblem], more: int = 0,
                 unreadable: bool = False):
        problems = tuple(problems)
        self.source, self.problems, self.unreadable = source, problems[:MAX_PROBLEMS], unreadable
        self.more = more + len(problems) - len(self.problems)
        # args that rebuild it: picklable across Ray
        super().__init__(source, self.problems, self.more, unreadable)

    def __str__(self) -> str:
        lines = [problem.describe(self.source) for problem in self.problems]
        if self.more:
            lines.append(f"{self.source}: … and {self.more:,} more problem{'s' * (self.more != 1)}")
        return "\n".join(lines)


class Problems(ValueError):
    """Raised by a validator: problems each at a location below the model or field it checks."""

    def __init__(self, *problems: tuple[Loc, str]):
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(f"{dotted(loc)}: {message}" for loc, message in self.problems)


class _Refused(Exception):
    """Raised inside the loader: a document it will not read further, at ``line``."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message, line)
        self.message, self.line = message, line


class _Checks:
    """What the loaders add to PyYAML's: no aliases, no nesting past MAX_DEPTH (checked before
    the composer recurses), and a value that cannot be read is refused on its line."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"YAML alias *{event.anchor} is not allowed: write the value out "
                           "(aliases let a few bytes expand to gigabytes)", line)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) and self.depth >= MAX_DEPTH:
            raise _Refused(_TOO_DEEP, line)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # int("9" * 5000), a timestamp 2024-13-45
            reason = str(exc).split(";")[0]
            raise _Refused(f"cannot read the value {_show(node.value)}: {reason}", node.start_mark.line + 1) from None


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of mappings and lists"


class _PyLoader(_Checks, yaml.SafeLoader):
    """Pure Python: where PyYAML was built without libyaml."""

    offsets_in_bytes = False

    def fetch_flow_collection_start(self, TokenClass: type) -> None:
        # The scanner looks up to 1024 characters ahead for a flow key: refuse before that gets slow.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(_TOO_DEEP, self.line + 1)
        super().fetch_flow_collection_start(TokenClass)


_LOADER: type = _PyLoader
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _CLoader(_Checks, Composer, CParser, SafeConstructor, Resolver):
        """libyaml's parser under PyYAML's composer (so the checks above apply): 3× faster."""

        offsets_in_bytes = True  # libyaml reads UTF-8: a ReaderError's position counts bytes

        def __init__(self, text: str):
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

    _LOADER = _CLoader

for _loader in {_PyLoader, _LOADER}:  # ``2e-3`` is a number, as in YAML 1.2 and JSON (YAML 1.1: a string)
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )


def _too_big(text: str, source: str, error: type[DocumentError], max_chars: int) -> None:
    if len(text) > max_chars:
        message = f"the document has {len(text):,} characters, more than the limit of {max_chars:,}"
        raise error(source, [DocumentProblem("", message)], unreadable=True)


def compose(text: str, source: str, *, error: type[DocumentError] = DocumentError,
            max_chars: int = MAX_CHARS) -> tuple[Any, dict[Loc, int]]:
    """The YAML document in ``text`` (safe tags only) and the 1-based line of every key path.

    Raises ``error`` (a :class:`DocumentError`) naming the line for a syntax error, a key given
    twice, an alias, nesting deeper than :data:`MAX_DEPTH`, a character YAML cannot hold or a
    value that cannot be read; and for a document over ``max_chars`` characters.
    """
    _too_big(text, source, error, max_chars)
    try:
        node, data = _read_yaml(text)
    except _Refused as exc:
        raise error(source, [DocumentProblem("", exc.message, exc.line)], unreadable=True) from None
    lines: dict[Loc, int] = {}
    twice: list[DocumentProblem] = []
    if node is not None:
        _record_lines(node, (), lines, twice)
    if twice:
        raise error(source, twice, unreadable=True)
    return data, lines


def _read_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and data; every problem as :class:`_Refused` with its line."""
    loader = None
    try:
        text.encode()  # a lone surrogate is no character: LibYAML's reader would raise UnicodeEncodeError
    except UnicodeEncodeError as exc:
        before = text[:exc.start]
        raise _Refused(f"U+{ord(text[exc.start]):04X} at column {len(before) - before.rfind(chr(10))} is a lone "
                       "surrogate, not a character: it cannot appear in a YAML document", before.count("\n") + 1) from None
    try:
        loader = _LOADER(text)  # the pure Python reader checks every character here
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        before = text.encode()[:exc.position].decode(errors="ignore") if _LOADER.offsets_in_bytes \
            else text[:exc.position]
        column = len(before) - before.rfind("\n")
        message = (f"character {chr(exc.character)!r} (U+{exc.character:04X}) at column {column} "
                   "cannot appear in a YAML document")
        raise _Refused(message, before.count("\n") + 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit, past ours while it looks ahead
            raise _Refused(_TOO_DEEP, line) from None
        context = f" ({exc.context} on line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise _Refused(f"YAML syntax error: {exc.problem}{context}", line) from None
    except yaml.YAMLError as exc:
        raise _Refused(f"YAML error: {exc}", None) from None
    finally:
        if loader is not None:
            loader.dispose()


def _record_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int], twice: list[DocumentProblem]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = path + (key_node.value,)
            if key in lines:
                message = f"given twice (first on line {lines[key]}); YAML would keep only the last"
                twice.append(DocumentProblem(dotted(key), message, key_node.start_mark.line + 1))
            _record_lines(value, key, lines, twice)
            lines[key] = key_node.start_mark.line + 1  # a key's line, not its block value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), lines, twice)


class _Pairs(dict):
    """A JSON object as read, with the keys it gave more than once."""

    twice: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = _Pairs(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj.twice = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def load_json(text: str, source: str, *, error: type[DocumentError] = DocumentError,
              max_chars: int = MAX_CHARS) -> Any:
    """The JSON document in ``text``, with :func:`compose`'s limits (no lines for key paths).

    Raises ``error`` for a syntax error (with its line), nesting deeper than :data:`MAX_DEPTH`
    (checked before parsing), a key given twice in one object, or a document over ``max_chars``.
    ``NaN``, ``Infinity`` and ``1e400`` are read as floats: the spec refuses them by key.
    """
    _too_big(text, source, error, max_chars)
    depth = 0
    for match in _JSON_TOKEN.finditer(text):  # json.loads recurses: 10,000 '[' is a RecursionError
        token = match.group()
        depth += 1 if token in "[{" else -1 if token in "]}" else 0
        if depth > MAX_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            message = f"nested deeper than {MAX_DEPTH} levels of objects and arrays"
            raise error(source, [DocumentProblem("", message, line)], unreadable=True)
    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        message = f"JSON syntax error: {exc.msg} (column {exc.colno})"
        raise error(source, [DocumentProblem("", message, exc.lineno)], unreadable=True) from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits
        digits = re.search(r"[0-9]{4300}", text)
        line = text.count("\n", 0, digits.start()) + 1 if digits else None
        message = f"cannot read the document: {str(exc).split(';')[0]}"
        raise error(source, [DocumentProblem("", message, line)], unreadable=True) from None
    twice = list(_repeated_keys(data, ()))
    if twice:
        raise error(source, twice, unreadable=True)
    return data


def _repeated_keys(data: Any, path: Loc):
    if isinstance(data, dict):
        for key in getattr(data, "twice", ()):
            yield DocumentProblem(dotted(path + (key,)), "given twice in one object; JSON would keep only the last")
        for key, value in data.items():
            yield from _repeated_keys(value, path + (key,))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _repeated_keys(item, path + (i,))


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc`` or, for a key the file leaves out, of its nearest enclosing key.

    A problem with the document as a whole (``loc == ()``) has no line.
    """
    if not loc:
        return None
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


_REPR = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 60, 60


def _show(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and value.bit_length() > 200:
        if value.bit_length() < 14_000:
            return f"an integer of {len(str(abs(value))):,} digits"
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"  # str() stops at 4300
    try:
        text = _REPR.repr(value)  # bounded in depth and length, whatever the value
    except ValueError:  # an integer of more than 4300 digits inside a list
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _messages(error: dict[str, Any], model: type[BaseModel], listed: dict[Loc, Loc]) -> list[tuple[Loc, str]]:
    """``listed``: per mapping, the unknown key whose message listed the allowed keys (once per mapping,
    so that a file of many unknown keys gets a bounded answer)."""
    # Pydantic names the validator of a union member in its path ("function-after[...]"): not a key.
    loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    kind, ctx = error["type"], error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, Problems):
        return [(loc + below, message) for below, message in cause.problems]
    if isinstance(cause, Exception):
        return [(loc, str(cause))]
    if kind == "extra_forbidden":
        allowed = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            return [(loc, f"unknown key (did you mean {close[0]!r}?)")]
        first = listed.setdefault(loc[:-1], loc)
        if first != loc:
            return [(loc, f"unknown key (allowed: as for {dotted(first)})")]
        return [(loc, f"unknown key (allowed: {', '.join(allowed)})")]
    if kind == "literal_error":  # ctx["expected"] reads "'S1' or 'S2'"
        allowed = ctx["expected"].replace(" or ", ", ").replace("'", "")
        return [(loc, f"{_show(error['input'])} not in {{{allowed}}}")]
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


def explain(exc: ValidationError, model: type[BaseModel], lines: dict[Loc, int]) -> list[DocumentProblem]:
    """One :class:`DocumentProblem` per problem in ``exc`` (raised validating ``model``), by line.

    Only the first :data:`MAX_PROBLEMS` by line are worded; the rest keep a short message, as
    :class:`DocumentError` lists the first ones and counts the others.
    """
    errors = exc.errors(include_url=False)
    by_line = sorted(errors, key=lambda error: _line(lines, tuple(error["loc"])) or 0)
    worded: list[DocumentProblem] = []
    listed: dict[Loc, Loc] = {}
    for n, error in enumerate(by_line):
        if len(worded) >= MAX_PROBLEMS:  # the rest are only counted: wording 28,000 unknown keys takes seconds
            rest = [DocumentProblem(dotted(tuple(e["loc"])), e["type"]) for e in by_line[n:]]
            return sorted(worded, key=lambda p: p.line or 0) + rest
        worded += [DocumentProblem(dotted(loc), message, _line(lines, loc)) for loc, message in _messages(error, model, listed)]
    return sorted(worded, key=lambda p: p.line or 0)
