"""Rich progress bars for long loops (to stderr, so piped stdout stays clean)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "",
                 enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(amount=1, **fields)``; ``fields`` (e.g. loss=) are shown after the bar."""
    if not enabled:
        yield lambda amount=1, **fields: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(amount: float = 1, **fields) -> None:
            info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in fields.items())
            progress.update(task, advance=amount, **({"info": info} if fields else {}))

        yield advance
