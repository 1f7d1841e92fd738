"""A job's report as one self-contained HTML page: tables, figures and genotype diagrams inline.

No external asset (no script, no stylesheet or image by URL): the page reads offline, from a
disk, an e-mail or ``GET /v1/jobs/{id}/report``. Figures and diagrams are inline SVG (text
stays text, so the page is searchable); the same tables as report.md (trials/report.py).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trials.report import NUMERIC_KINDS, Column, Section, format_cell

__all__ = ["Graphic", "render_html"]

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
p.meta { color: #57606a; margin-top: 0; } p.note { color: #57606a; font-size: .9rem; }
nav ol { columns: 2; font-size: .9rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .6rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; white-space: nowrap; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.2rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: .9rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }
"""


@dataclass(frozen=True)
class Graphic:
    """A figure or diagram of the report: ``name`` is its anchor, ``svg`` the inline SVG text."""

    name: str
    title: str
    caption: str
    svg: str


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(section: Section) -> str:
    if not section.rows:
        # The contents link to table-<name>: an empty table's sentence is what they land on.
        return f'<p class="empty" id="table-{_escape(section.name)}"><em>{_escape(section.empty)}</em></p>'

    def cls(column: Column) -> str:
        return ' class="num"' if column.kind in NUMERIC_KINDS else ""

    head = "".join(f"<th>{_escape(c.header)}</th>" for c in section.columns)
    body = "".join(
        "<tr>" + "".join(f"<td{cls(c)}>{_escape(format_cell(c, row))}</td>" for c in section.columns) + "</tr>"
        for row in section.rows
    )
    return f'<table id="table-{_escape(section.name)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _graphic(graphic: Graphic) -> str:
    return (f'<figure id="{_escape(graphic.name)}">{graphic.svg}'
            f"<figcaption><strong>{_escape(graphic.title)}.</strong> {_escape(graphic.caption)}</figcaption>"
            "</figure>")


def render_html(
    title: str,
    meta: Sequence[str],
    sections: Sequence[Section],
    figures: Sequence[Graphic] = (),
    diagrams: Sequence[Graphic] = (),
) -> str:
    """The whole page: ``title``, lines of ``meta`` (job, spec, when), a table of contents, every
    section's table with its notes, then the figures and the genotype diagrams."""
    toc = [(f"table-{s.name}", s.title) for s in sections]
    toc += [(g.name, g.title) for g in (*figures, *diagrams)]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_escape(title)}</h1>",
        *(f'<p class="meta">{_escape(line)}</p>' for line in meta),
        "<nav><ol>" + "".join(f'<li><a href="#{_escape(a)}">{_escape(t)}</a></li>' for a, t in toc) + "</ol></nav>",
    ]
    for section in sections:
        parts.append(f'<section><h2 id="section-{_escape(section.name)}">{_escape(section.title)}</h2>')
        parts += [f'<p class="note">{_escape(note)}</p>' for note in section.notes]
        parts += [_table(section), "</section>"]
    if figures:
        parts += ['<section id="figures"><h2>Figures</h2><div class="grid">',
                  *(_graphic(g) for g in figures), "</div></section>"]
    if diagrams:
        parts += ['<section id="genotypes"><h2>Genotypes</h2>', *(_graphic(g) for g in diagrams), "</section>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
