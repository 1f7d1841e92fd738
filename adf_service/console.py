"""Terminal output shared by the CLI commands: epoch progress bars and error lines."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adf_service.train.runtime import EpochRecord

__all__ = ["EpochProgress", "console", "err_console"]

console = Console()
err_console = Console(stderr=True)


class EpochProgress:
    """One bar per phase: epochs done of total, ETA, and the last epoch's losses."""

    def __init__(self, quiet: bool = False):
        self.progress = Progress(
            TextColumn("[bold]{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
            disable=quiet,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> EpochProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, phase: str, epochs: int) -> None:
        self.tasks[phase] = self.progress.add_task(phase, total=epochs, status="")

    def epoch(self, phase: str, record: EpochRecord) -> None:
        status = (
            f"train {record.train_loss:.3f}  val {record.val_loss:.3f} / {record.val_top1:5.1f}%"
        )
        if record.test_top1 is not None:
            status += f"  test {record.test_top1:5.1f}%"
        self.progress.update(self.tasks[phase], completed=record.epoch, status=status)

    def done(self, phase: str) -> None:
        task = self.tasks[phase]
        self.progress.update(task, completed=self.progress.tasks[task].total)
