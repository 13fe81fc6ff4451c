"""Rich progress bars: training (one bar over all steps, with loss, accuracy and lr) and any long loop (`track`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)


class EpochProgress:
    """Training's progress: one line per epoch, and on a terminal a bar over all steps that goes when done.

    Off a terminal (output redirected to a file) there is no bar, so no frames of one end up in the file;
    the bar's loss and accuracy are the epoch's running means, the numbers its epoch line ends with.
    Disabled, it is a silent no-op (tests, the Python API).
    """

    def __init__(self, epochs: int, steps_per_epoch: int, start_epoch: int = 0, enabled: bool = True, label: str = ""):
        self.enabled, self.epochs = enabled, epochs
        self.label = f"{label}  " if label else ""  # the run's name: several runs in one terminal stay apart
        self.live = enabled and console.is_terminal
        if not self.live:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{self.label}epoch {{task.fields[epoch]}}/{{task.fields[epochs]}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  lr {task.fields[lr]:.2e}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task(
            "train", total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
            epoch=start_epoch + 1, epochs=epochs, loss=float("nan"), acc=0.0, lr=0.0,
        )

    def __enter__(self):
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.progress.stop()

    def step(self, epoch: int, loss_sum, correct, seen: int, lr: float) -> None:
        """Advance one step; loss_sum and correct (this epoch's so far) are tensors, read (a device sync) only when shown."""
        if self.live:
            self.progress.update(self.task, advance=1, epoch=epoch + 1, loss=loss_sum.item() / seen,
                                 acc=correct.item() / seen, lr=lr)

    def end_epoch(self, entry: dict) -> None:
        if not self.enabled:
            return
        val = f"  val_acc {entry['val_accuracy']:.4f}" if entry.get("val_accuracy") is not None else ""
        console.print(
            f"{self.label}epoch {entry['epoch']}/{self.epochs}  train_loss {entry['train_loss']:.4f}  "
            f"train_acc {entry['train_accuracy']:.4f}{val}  lr {entry['lr']:.2e}  {entry['seconds']:.1f}s"
        )


_live: Progress | None = None  # the bar on screen: rich draws one live display at a time, so inner loops join it


def track(items: Iterable, description: str, total: float | None = None, weight=lambda item: 1) -> Iterator:
    """Yield the items while a bar with an ETA shows how far the loop is; nothing is drawn off a terminal.

    `weight(item)` is the share of the work an item is (images in a group, say), so the ETA holds
    when items are of unequal size; it counts once the item's work is done. A loop tracked inside
    another one adds its own line under the outer bar for as long as it runs.
    """
    global _live
    if not console.is_terminal:
        yield from items
        return
    if total is None:  # else the items may come as they are ready (as_completed), not all at once
        items = list(items)
        total = sum(weight(i) for i in items)
    outermost = _live is None
    if outermost:
        _live = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        _live.start()
    bar = _live
    task = bar.add_task(description, total=total)
    try:
        for item in items:
            yield item
            bar.advance(task, weight(item))
    finally:
        if outermost:
            bar.stop()  # its last frame shows the finished count
            _live = None
        else:
            bar.remove_task(task)


@contextmanager
def ticking(description: str | None, total: int) -> Iterator[Callable[[], None]]:
    """Yield a function that moves a bar of `total` steps by one, for work that reports as it goes (an OIP
    search's steps) rather than a loop track() can wrap; no description, no bar."""
    if description is None:
        yield lambda: None
        return
    ticks = track(range(total), description)
    next(ticks, None)  # the bar shows at 0
    try:
        yield lambda: next(ticks, None)
    finally:
        ticks.close()  # ends the bar when the work stops early too
