"""Pages of a job's trial rows, answered from the job's rows held in memory.

A job's rows change only when results are imported, and that sets the job's
``results_at`` in the same transaction (api/jobstore.replace_trials). So a job's rows are
kept as serialized ``TrialOut`` JSON under (job id, results_at), and a page is a slice of
them. An entry is checked against the store at most every ``revalidate`` seconds: a page
can be that much older than an import, never older.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from api.jobstore import get_job, list_trials
from api.models import TrialRow
from api.schemas import TrialOut

__all__ = ["FILTERS", "TrialPages", "page_json"]

FILTERS = ("stage", "operators", "discretization", "n_inputs", "n_cells", "status")  # list_trials' filters
_MAX_SELECTIONS = 64  # filter combinations remembered per job
_STUCK = 30.0  # seconds after which a revalidation that never came back is tried again


class ViewerLike(Protocol):  # api.deps.Viewer, api.models.User
    id: int
    is_admin: bool


def page_json(items: Sequence[bytes], total: int, limit: int, offset: int) -> bytes:
    """A ``TrialPage`` as JSON, from its items' JSON."""
    return b'{"items":[%s],"total":%d,"limit":%d,"offset":%d}' % (b",".join(items), total, limit, offset)


def _row_json(row: TrialRow) -> bytes:
    return TrialOut.of(row).model_dump_json().encode()


@dataclass
class _Rows:
    """A job's rows in (stage, trial_id) order, as JSON, with their filter values."""

    owner_id: int
    results_at: datetime | None
    items: list[bytes]
    keys: list[tuple[Any, ...]]  # FILTERS' values of each row
    checked: float  # when the store last confirmed results_at (monotonic clock)
    revalidating: bool = False  # one request is asking the store; the others are answered meanwhile
    selections: dict[tuple[Any, ...], list[bytes]] = field(default_factory=dict)

    def select(self, wanted: tuple[Any, ...]) -> list[bytes]:
        if all(v is None for v in wanted):
            return self.items
        hit = self.selections.get(wanted)
        if hit is None:
            hit = [item for item, key in zip(self.items, self.keys, strict=True)
                   if all(w is None or w == k for w, k in zip(wanted, key, strict=True))]
            if len(self.selections) < _MAX_SELECTIONS:
                self.selections[wanted] = hit
        return hit

    def page(self, wanted: tuple[Any, ...], limit: int, offset: int) -> bytes:
        rows = self.select(wanted)
        return page_json(rows[offset:offset + limit], len(rows), limit, offset)


class TrialPages:
    """``GET /v1/jobs/{id}/trials`` pages; jobs' rows stay in memory (LRU, ``max_rows`` in all)."""

    def __init__(self, *, max_rows: int = 200_000, revalidate: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rows = max_rows
        self.revalidate = revalidate
        self._clock = clock
        self._jobs: OrderedDict[str, _Rows] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, job_id: str, viewer: ViewerLike, filters: dict[str, Any], limit: int, offset: int) -> bytes | None:
        """The page from memory if the job's rows are there and ``viewer``'s to see; else None.

        Rows older than ``revalidate`` seconds send one request (the None answer) to the store
        through :meth:`load`; until it is back the others are answered from memory, for at
        most ``_STUCK`` seconds.
        """
        with self._lock:
            rows = self._jobs.get(job_id)
            if rows is None or not (viewer.is_admin or viewer.id == rows.owner_id):
                return None  # the store answers, a 404 included
            age = self._clock() - rows.checked
            if age > self.revalidate and (not rows.revalidating or age > self.revalidate + _STUCK):
                rows.revalidating = True
                return None
            self._jobs.move_to_end(job_id)
        return rows.page(_wanted(filters), limit, offset)

    def load(self, session: Session, job_id: str, viewer: ViewerLike, filters: dict[str, Any],
             limit: int, offset: int) -> bytes:
        """The page from the store (JobNotFound unless ``viewer`` may see the job); the job's rows are kept."""
        try:
            job = get_job(session, job_id, viewer=viewer)
            with self._lock:
                rows = self._jobs.get(job_id)
                if rows is not None and rows.results_at == job.results_at:
                    rows.checked = self._clock()
                    self._jobs.move_to_end(job_id)
                    return rows.page(_wanted(filters), limit, offset)
            every, _ = list_trials(session, job, limit=None)
            rows = _Rows(job.owner_id, job.results_at, [_row_json(r) for r in every],
                         [tuple(getattr(r, name) for name in FILTERS) for r in every], self._clock())
            self._keep(job_id, rows)
            return rows.page(_wanted(filters), limit, offset)
        finally:
            with self._lock:
                if (held := self._jobs.get(job_id)) is not None:
                    held.revalidating = False

    def _keep(self, job_id: str, rows: _Rows) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            if len(rows.items) > self.max_rows:
                return
            self._jobs[job_id] = rows
            while sum(len(r.items) for r in self._jobs.values()) > self.max_rows:
                self._jobs.popitem(last=False)


def _wanted(filters: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(filters.get(name) for name in FILTERS)
