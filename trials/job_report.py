"""A job's report, assembled from its directory: report.md, report.html, a CSV per table, the figures.

:func:`read_job` reads a job's result tables and spec (a local path or a URI);
:func:`build_report` makes every file of its report in memory; :func:`write_report` writes them
to a directory, or into the job's own storage under ``report/`` (what a job does at its end,
so that ``GET /v1/jobs/{id}/report`` can serve ``report/report.html``).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trials.config import STAGES
from trials.epochs import read_epochs
from trials.report import job_sections, render_csv, render_markdown
from trials.report_html import Graphic, render_html
from trials.results import ResultTableError, best_evaluation, read_table
from trials.storage import JobStorage
from trials.summary import SETTING_KEYS

__all__ = ["REPORT_DIR", "REPORT_HTML", "JobResults", "ReportError", "build_report", "read_job", "write_report"]

REPORT_DIR = "report"  # <job>/report/: where a job writes its own report
REPORT_HTML = "report.html"
MAX_DIAGRAMS = 8  # the best genotype, then each setting's best, up to this many


class ReportError(ValueError):
    """A job directory with nothing to report."""


@dataclass(frozen=True)
class JobResults:
    """A job's rows, every stage's, with what its report says of it."""

    job: str
    spec_name: str | None  # None: the job directory has no spec.json
    seed: int  # the spec's seed: the bootstrap intervals'
    select: str  # the spec's bohb.select
    written_at: datetime  # when the last result table was written
    rows: list[dict[str, Any]]
    storage: JobStorage


def _storage(job_dir: str | Path | JobStorage) -> JobStorage:
    if isinstance(job_dir, JobStorage):
        return job_dir
    text = str(job_dir)
    return JobStorage.at(text if "://" in text else Path(text).resolve())


def _earlier_jobs(job: JobResults) -> list[str]:
    """What the job took from earlier jobs: reused trials (``reuse_from``) and BOHB's warm start."""
    from trials.warm_start import WARM_START_FILE

    notes = []
    reused = {row["trial_key"]: row["reused_from"].rsplit("#", 1)[0] for row in job.rows if row.get("reused_from")}
    if reused:
        sources = ", ".join(sorted(set(reused.values())))
        notes.append(f"{len(reused)} trials taken from earlier jobs instead of run (reuse_from: {sources}).")
    if job.storage.exists(WARM_START_FILE):
        warm = json.loads(job.storage.read_text(WARM_START_FILE))
        notes.append(f"BOHB warm-started with {warm['observations']} evaluations of {len(warm['sources'])} "
                     f"earlier job(s) ({WARM_START_FILE}).")
    return notes


def read_job(job_dir: str | Path | JobStorage) -> JobResults:
    """A job's result tables and spec; :class:`ReportError` when it has no result table."""
    storage = _storage(job_dir)
    if not storage.exists():
        raise ReportError(f"{job_dir}: no such job directory")
    present = [s for s in STAGES if storage.exists("results", f"{s}.parquet")]
    if not present:
        raise ReportError(f"{job_dir}: no result tables (results/<stage>.parquet); "
                          "a job writes them when its stages have ended")
    try:
        rows = [row for stage in present for row in read_table(storage, stage).to_pylist()]
    except ResultTableError as exc:
        raise ReportError(str(exc)) from None
    times = [storage.filesystem.get_file_info(posixpath.join(storage.path, "results", f"{s}.parquet")).mtime
             for s in present]
    spec = json.loads(storage.read_text("spec.json")) if storage.exists("spec.json") else {}
    return JobResults(storage.job_id, spec.get("name"), spec.get("seed", 0),
                      spec.get("bohb", {}).get("select", "val"), max(times).astimezone(timezone.utc), rows,
                      storage)


def _diagrams(rows: list[dict[str, Any]], select: str) -> list[Graphic]:
    """The job's best searched genotype (by ``select``), then each setting's best, as cell diagrams."""
    from adf_service.diagram import genotype_svg
    from adf_service.genotype import Genotype

    chosen: list[tuple[str, dict[str, Any]]] = []
    best = best_evaluation(rows, by=select)
    if best is not None:
        chosen.append((f"best searched genotype (by {select})", best))
    settings = sorted({tuple(r[k] for k in SETTING_KEYS) for r in rows if r["stage"] == "evaluation"})
    for setting in settings:
        found = best_evaluation([r for r in rows if tuple(r[k] for k in SETTING_KEYS) == setting], by=select)
        if found is not None and found is not best:
            chosen.append(("best of " + "-".join(str(v) for v in setting), found))
    graphics = []
    for i, (title, row) in enumerate(chosen[:MAX_DIAGRAMS]):
        genotype = Genotype.from_json(row["genotype"], where=row["trial_key"])
        caption = (f"Trial {row['trial_key']}: test top-1 {row['test_top1']:.1f} %, val loss {row['val_loss']:.4f}, "
                   f"{row['fusion_params']:,} fusion parameters.")
        graphics.append(Graphic(f"genotype-{i}", title, caption, genotype_svg(genotype, title=title)))
    return graphics


def build_report(job: JobResults) -> dict[str, bytes]:
    """Every file of the job's report by its relative path: report.md, report.html, the CSV tables,
    ``figures/<name>.png|svg``."""
    from trials.figures import figure_svg, job_figures, save_figure_bytes
    from trials.usage import rows_summary

    sections = job_sections(job.rows, seed=job.seed, select=job.select)
    spec = f"spec `{job.spec_name}`" if job.spec_name else "no spec.json"
    when = f"results written {job.written_at:%Y-%m-%d %H:%M} UTC"
    usage = rows_summary(job.rows)
    spent = [f"This job: {usage}."] if usage else []  # its GPU-hours (trials/usage.py)
    spent += _earlier_jobs(job)
    head = [f"# Report of job `{job.job}`", "", f"Job `{job.job}` ({spec}), {when}.", *spent, ""]
    figures = job_figures(job.rows, read_epochs(job.storage))
    files = {"report.md": "\n".join(head + [render_markdown(s) for s in sections]).encode()}
    graphics = [Graphic(f.name, f.title, f.caption, figure_svg(f.figure)) for f in figures]
    meta = [f"Job {job.job} ({spec.replace('`', '')}), {when}.", *spent,
            f"{len(job.rows)} result rows; every number from succeeded trials (the last table counts the rest)."]
    files[REPORT_HTML] = render_html(f"Report of job {job.job}", meta, sections, graphics,
                                     _diagrams(job.rows, job.select)).encode()
    for section in sections:
        files[f"{section.name}.csv"] = render_csv(section).encode()
    for figure in figures:
        for suffix, data in save_figure_bytes(figure).items():
            files[f"figures/{figure.name}.{suffix}"] = data
    return files


def write_report(job_dir: str | Path | JobStorage, out_dir: Path | None = None) -> list[str]:
    """Write the job's report into ``out_dir``, or into the job's storage under ``report/``; the
    paths (or URIs) written, report.md first, then report.html and the CSV tables."""
    job = read_job(job_dir)
    files = build_report(job)
    written = []
    for name, data in files.items():
        if out_dir is not None:
            path = out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(str(path))
        else:
            written.append(job.storage.write_bytes(posixpath.join(REPORT_DIR, name), data))
    return written
