"""Extending a finished job with more repeats (issue 15, item 4): which trials run, which rows stay (no Ray).

An extension gets the job's spec with larger repeats (:data:`REPEATS_FIELDS`); anything else that
changes a trial is refused (:func:`spec_differences`). Its trials are the spec's trials whose key no
result row of the job has; since a trial's seed depends only on the grid's seed and its key
(:func:`trials.expand.trial_seed`), the new repeats get new seeds and the job's trials keep theirs.
They run in a Tune experiment of their own under the job directory, ``extend-<attempt or n>/``
(:data:`EXTEND_PREFIX`), so the job's own experiment state stays as it was; :func:`experiment_dirs`
lists every directory that holds a job's trial directories, and :func:`trial_dir` finds one trial's.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from trials.config import STAGES, TrialConfig
from trials.results import ResultTableError, read_table
from trials.storage import JobStorage

if TYPE_CHECKING:
    from trials.spec import GridSpec

__all__ = [
    "EXTEND_PREFIX", "REPEATS_FIELDS", "REUSED_DIR", "RUN_FIELDS", "ExtendError", "Extension", "experiment_dirs",
    "merge_rows", "plan_extension", "refuse_plain_resume", "spec_differences", "trial_dir",
]

EXTEND_PREFIX = "extend-"  # an extension's Tune experiment: <job>/extend-<attempt or n>/
BOHB_DIR = "bohb"  # the BOHB stage's Tune experiment: <job>/bohb/
REUSED_DIR = "reused"  # trials taken from earlier jobs (trials/reuse.py): <job>/reused/<trial key>/result.json
# What an extension may raise: the repeats of every stage that has them (BOHB is not rerun)
REPEATS_FIELDS = ("repeats", "baselines.repeats", "random.repeats", "controls.repeats", "transfer.repeats")
# What an extension may change besides: the service's handling of the job, no trial's result
RUN_FIELDS = ("priority", "notify_url", "max_trials")
_EXTENSION = re.compile(rf"{re.escape(EXTEND_PREFIX)}(\d+)$")


class ExtendError(ValueError):
    """A job that cannot be extended with this spec: no result tables, another grid, nothing to add."""


@dataclass(frozen=True)
class Extension:
    """What extending a finished job runs: the trials its tables lack, in a Tune experiment of their own."""

    rows: list[dict[str, Any]]  # the job's result rows as its tables hold them: kept as they are
    trials: list[TrialConfig]  # the spec's trials whose key no row has, in the spec's order
    experiment: str  # extend-<n>: the Tune experiment's directory under the job directory
    restore: bool  # an earlier extension's experiment whose driver died: Tune restores it


def _extensions(storage: JobStorage) -> list[str]:
    """The names of the job's extension experiments, oldest first."""
    fs = storage.filesystem
    if fs.get_file_info(storage.path).type != pafs.FileType.Directory:
        return []
    found = [(int(m.group(1)), info.base_name) for info in fs.get_file_info(pafs.FileSelector(storage.path))
             if info.type == pafs.FileType.Directory and (m := _EXTENSION.match(info.base_name))]
    return [name for _, name in sorted(found)]


def experiment_dirs(storage: JobStorage) -> list[str]:
    """Every directory (a filesystem path) whose subdirectories are the job's Tune trial directories: the job
    directory (its main experiment), ``bohb/`` and each extension's ``extend-<n>/``, those that exist."""
    fs = storage.filesystem
    candidates = [storage.path, posixpath.join(storage.path, BOHB_DIR), posixpath.join(storage.path, REUSED_DIR),
                  *(posixpath.join(storage.path, name) for name in _extensions(storage))]
    return [path for path in candidates if fs.get_file_info(path).type == pafs.FileType.Directory]


def trial_dir(storage: JobStorage, trial_key: str) -> str | None:
    """The directory (a filesystem path) of the last run of trial ``trial_key``, with its ``result.json``;
    None when it has none. It is ``<experiment>/<trial key>/``, or ``<trial key>_<4 hex>/`` when a rerun
    started the trial from scratch (``rerun_failed``: Tune names the new run's directory so, beside the
    old one)."""
    fs = storage.filesystem
    named = re.compile(rf"{re.escape(trial_key)}(_[0-9a-f]{{4}})?$")
    runs = []
    for parent in experiment_dirs(storage):
        for info in fs.get_file_info(pafs.FileSelector(parent)):
            result = fs.get_file_info(posixpath.join(info.path, "result.json"))
            if named.match(info.base_name) and result.type == pafs.FileType.File:
                runs.append((result.mtime, info.path))
    return max(runs)[1] if runs else None


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def spec_differences(stored: GridSpec, given: GridSpec) -> list[str]:
    """What in ``given`` an extension of a job run with ``stored`` cannot take, one line per key path: any
    difference but :data:`REPEATS_FIELDS` and :data:`RUN_FIELDS`, and repeats fewer than the job's."""
    old, new = _flat(stored.model_dump(mode="json")), _flat(given.model_dump(mode="json"))
    problems = []
    for key in sorted(old.keys() | new.keys()):
        if key in RUN_FIELDS or old.get(key) == new.get(key):
            continue
        if key not in REPEATS_FIELDS:
            problems.append(f"{key}: {json.dumps(new.get(key))}, the job's is {json.dumps(old.get(key))}")
        elif new[key] < old[key]:
            problems.append(f"{key}: {new[key]}, fewer than the job's {old[key]} (an extension adds repeats)")
    return problems


def _stored_spec(storage: JobStorage) -> GridSpec:
    # The grid spec loads torch: imported here, not by the service's readers of experiment_dirs.
    from trials.spec import validate_grid

    if not storage.exists("spec.json"):
        raise ExtendError(f"{storage.uri}: no spec.json, so nothing says which grid the job ran")
    return validate_grid(json.loads(storage.read_text("spec.json")), source=f"{storage.uri}/spec.json")


def _rows(storage: JobStorage) -> list[dict[str, Any]]:
    present = [stage for stage in STAGES if storage.exists("results", f"{stage}.parquet")]
    if not present:
        raise ExtendError(f"{storage.uri}: no result tables (results/<stage>.parquet): only a finished job "
                          "can be extended (resume one that did not finish)")
    try:
        return [row for stage in present for row in read_table(storage, stage).to_pylist()]
    except ResultTableError as exc:
        raise ExtendError(f"{exc}: the job cannot be extended") from None


def _unfinished(storage: JobStorage, trials: list[TrialConfig],
                can_restore: Callable[[str], bool]) -> str | None:
    """The newest extension experiment that Tune can restore and that holds one of ``trials``: an extension
    whose driver died before the job's tables took its rows."""
    keys = {t.trial_key for t in trials}
    for name in reversed(_extensions(storage)):
        held = any(storage.exists(name, key) for key in keys)
        if held and can_restore(storage.child_uri(name)):
            return name
    return None


def plan_extension(storage: JobStorage, spec: GridSpec, trials: list[TrialConfig], *, attempt: int | None,
                   can_restore: Callable[[str], bool]) -> Extension:
    """The extension of the finished job in ``storage`` to ``spec``, whose trials are ``trials``.

    Raises ExtendError when the job has no result tables, when ``spec`` differs from the job's
    ``spec.json`` in anything but its repeats (:func:`spec_differences`, every key path named), and when
    the job has every trial of ``spec`` already. An earlier extension of the job whose driver died is
    picked up (``restore``; ``can_restore`` is ``ray.tune.Tuner.can_restore``); else the experiment is
    ``extend-<attempt>``, or ``extend-<n>`` after the newest extension's n when no attempt is counted.
    """
    rows = _rows(storage)
    if problems := spec_differences(_stored_spec(storage), spec):
        raise ExtendError(f"{storage.uri}: an extension changes only repeats ({', '.join(REPEATS_FIELDS)}); "
                          "this spec differs from the job's spec.json in " + "; ".join(problems))
    have = {row["trial_key"] for row in rows}
    new = [t for t in trials if t.trial_key not in have]
    if not new:
        values = _flat(spec.model_dump(mode="json"))
        repeats = ", ".join(f"{key} {values[key]}" for key in REPEATS_FIELDS)
        raise ExtendError(f"{storage.uri}: the job has every trial of this spec already ({repeats}): "
                          "raise a repeats to extend it")
    earlier = _unfinished(storage, new, can_restore)
    if earlier is not None:
        return Extension(rows, new, earlier, restore=True)
    if attempt is None:
        attempt = 1 + max((int(name.removeprefix(EXTEND_PREFIX)) for name in _extensions(storage)), default=0)
    name = f"{EXTEND_PREFIX}{attempt}"
    if storage.exists(name):
        raise ExtendError(f"{storage.child_uri(name)} exists already: attempt {attempt} of the job ran it")
    return Extension(rows, new, name, restore=False)


def refuse_plain_resume(storage: JobStorage, spec: GridSpec) -> None:
    """Raise ExtendError when ``spec`` has more repeats than the finished job's spec.json: an extension whose
    driver died, which a plain resume would end with none of the new trials (its own experiment is not the
    job's); ``extend`` picks it up."""
    if not storage.exists("spec.json") or not any(storage.exists("results", f"{s}.parquet") for s in STAGES):
        return
    old, new = _flat(_stored_spec(storage).model_dump(mode="json")), _flat(spec.model_dump(mode="json"))
    if grown := [f"{key} {old[key]} → {new[key]}" for key in REPEATS_FIELDS if new[key] > old[key]]:
        raise ExtendError(f"{storage.uri}: the spec raises {', '.join(grown)} over the job's spec.json: "
                          "that is an extension, which a resume does not run; extend the job (run-job "
                          "--extend) instead")


def merge_rows(kept: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``kept`` as they are, then each row of ``new`` whose (stage, trial key) none of them has."""
    rows = list(kept)
    seen = {(row["stage"], row["trial_key"]) for row in rows}
    return rows + [row for row in new if (row["stage"], row["trial_key"]) not in seen]
