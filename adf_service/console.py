"""Terminal output shared by the CLI commands: epoch progress bars and error lines.

No torch here: every command imports this module when ``adf-service`` starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from adf_service.train.runtime import EpochRecord

__all__ = ["EpochProgress", "console", "err_console", "fail", "progress_bar"]

console = Console()
err_console = Console(stderr=True)


def fail(problem: Exception | str, code: int = 2) -> NoReturn:
    """End the command with ``error: PROBLEM`` on stderr and exit status ``code`` (2: bad input)."""
    # Text, not markup: a path or a server's message may hold brackets.
    err_console.print(Text.assemble(("error: ", "bold red"), str(problem)), soft_wrap=True)
    raise typer.Exit(code)


def progress_bar(disable: bool = False) -> Progress:
    """The layout every long command shares: phase, bar, done/total, elapsed, ETA, status."""
    return Progress(
        TextColumn("[bold]{task.description:<16}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        disable=disable,
    )


class EpochProgress:
    """One bar per phase: epochs done of total, ETA, and the last epoch's losses."""

    def __init__(self, quiet: bool = False):
        self.progress = progress_bar(disable=quiet)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> EpochProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, phase: str, epochs: int) -> None:
        self.tasks[phase] = self.progress.add_task(phase, total=epochs, status="")

    def epoch(self, phase: str, record: EpochRecord | None) -> None:
        """Advance ``phase`` by one step; show the losses of ``record`` if there is one."""
        task = self.tasks[phase]
        if record is None:
            self.progress.advance(task)
            return
        status = (
            f"train {record.train_loss:.3f}  val {record.val_loss:.3f} / {record.val_top1:5.1f}%"
        )
        if record.test_top1 is not None:
            status += f"  test {record.test_top1:5.1f}%"
        self.progress.update(task, advance=1, status=status)

