"""Figures of a training run: curves, confusion matrix and the misclassified gallery.

Each function returns a matplotlib Figure (it renders inline in Jupyter); save() writes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; Jupyter's inline backend still renders returned Figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from ..progress import track  # noqa: E402
from ..runs import atomic_write  # noqa: E402
from ..storage import WriteError  # noqa: E402
from . import SAVE_DPI  # noqa: E402
from .inspect_figures import _show_mosaic, mosaic  # noqa: E402


def save(fig: Figure, path: Path, dpi: int = SAVE_DPI) -> Path:
    """Write a figure as PNG atomically, close it, and return the path.

    A figure laid out by hand (axes placed in inches, none in a grid) is saved as it is; others are
    trimmed to their contents. Big figures (a ResNet layer's maps) are compressed at zlib level 1:
    three times faster to encode than the default 6, for files about a third larger.
    """
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches=None if _hand_placed(fig)
                                                     else "tight", pil_kwargs={"compress_level": _compression(fig, dpi)}))
    plt.close(fig)
    return Path(path)


def save_all(drawings: Iterable[tuple[Callable[[], Figure], Path]], description: str, dpi: int = SAVE_DPI) -> list[Path]:
    """Make and save figures, as save() does, with a bar; return their paths in the order given.

    Two things run beside this thread's drawing. Where there are cores for it (SECOND_DRAWER), a forked
    copy of this process draws every other figure: matplotlib holds the GIL while it draws, so a second
    process is the only way to a second core. And each hand-placed figure's PNG is encoded and written
    in a writer thread while the next figure is made (Pillow's zlib encoding lets go of the GIL). The
    files are those save() writes (test). The first error is raised once every write has ended.
    """
    drawings = list(drawings)
    second = _SecondDrawer(drawings[1::2], dpi) if _second_drawer_pays(drawings) else None
    mine = drawings[::2] if second else drawings
    try:
        _save_with_writer(track(mine, description, total=len(drawings), weight=lambda _: len(drawings) / len(mine)),
                          dpi)
    except BaseException:
        if second:
            second.wait(quietly=True)
        raise
    if second:
        second.wait()
    return [Path(path) for _, path in drawings]


SECOND_DRAWER = 4  # figures from which a forked second process draws half of them, on 2 cores or more


def _second_drawer_pays(drawings: list) -> bool:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return len(drawings) >= SECOND_DRAWER and cores >= 2 and hasattr(os, "fork")


class _SecondDrawer:
    """A forked copy of this process that saves its share of the figures and leaves, saying why if it failed.

    The copy has every figure's data already (copy-on-write), so nothing is pickled. It runs torch on one
    thread (a forked OpenMP pool has no threads behind it) and leaves by os._exit: this process's exit
    handlers and buffered output are not its own.
    """

    def __init__(self, drawings: list, dpi: int):
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read)
            status = 0
            try:
                torch.set_num_threads(1)
                for make, path in drawings:
                    save(make(), path, dpi)
            except BaseException as e:  # noqa: BLE001 - told to the parent, which raises it
                os.write(write, f"{type(e).__name__}\n{e}".encode()[:8192])
                status = 1
            os._exit(status)
        os.close(write)
        self.read = read

    def wait(self, quietly: bool = False) -> None:
        with os.fdopen(self.read, "rb") as pipe:
            told = pipe.read().decode(errors="replace")
        _, status = os.waitpid(self.pid, 0)
        if quietly or status == 0:
            return
        kind, _, message = told.partition("\n")
        if kind == "WriteError":
            raise WriteError(message)
        raise RuntimeError(f"the second drawing process failed: {kind}: {message}" if told else
                           f"the second drawing process ended with status {status}")


def _save_with_writer(drawings: Iterable[tuple[Callable[[], Figure], Path]], dpi: int) -> None:
    pending = []
    with ThreadPoolExecutor(1, thread_name_prefix="png") as writer:
        try:
            for make, path in drawings:
                fig = make()
                if not _hand_placed(fig):  # trimmed to its contents by savefig: saved here, whole
                    save(fig, path, dpi)
                    continue
                fig.set_dpi(dpi)
                fig.canvas.draw()
                pixels = np.array(fig.canvas.buffer_rgba())  # a copy: the figure goes now
                level = _compression(fig, dpi)
                plt.close(fig)
                pending.append(writer.submit(_write_png, pixels, Path(path), dpi, level))
                if len(pending) > 2:
                    pending.pop(0).result()
        finally:
            errors = [f.exception() for f in pending]  # waits for each
        if first := next((e for e in errors if e is not None), None):
            raise first


def _write_png(pixels: np.ndarray, path: Path, dpi: int, level: int) -> None:
    image = Image.fromarray(pixels)
    atomic_write(path, lambda tmp: image.save(tmp, format="png", dpi=(dpi, dpi), compress_level=level))


def _hand_placed(fig: Figure) -> bool:
    return all(ax.get_subplotspec() is None for ax in fig.axes)


def _compression(fig: Figure, dpi: int) -> int:
    return 1 if fig.get_size_inches().prod() * dpi**2 > 1e6 else 6


def curves(runs: dict[str, tuple[list[dict], list[tuple[float, float]] | None]]) -> Figure:
    """Return loss, accuracy and learning rate through training, one colour per run: {name: (history, schedule)}.

    Loss is drawn per step where the history has it (a thin raw line and its running mean), with the
    epoch means as dots; validation is dashed, with squares. `schedule`, (epoch, lr) pairs, draws the
    learning rate as the optimizer saw it each step; without it, the rate at each epoch's end is all there is.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    several = len(runs) > 1
    stepped = False
    for i, (name, (history, schedule)) in enumerate(runs.items()):
        colour, prefix = f"C{i}", f"{name}: " if several else ""
        epochs = [h["epoch"] for h in history]
        steps = _step_losses(history)
        if steps is not None:
            stepped = True
            axes[0].plot(*steps, "-", color=colour, lw=0.6, alpha=0.3)
            axes[0].plot(steps[0], _running_mean(steps[1]), "-", color=colour, lw=1.4, label=f"{prefix}train, per step")
        for ax, key in ((axes[0], "loss"), (axes[1], "accuracy")):
            line = "o" if key == "loss" and steps is not None else "o-"
            ax.plot(epochs, [h[f"train_{key}"] for h in history], line, color=colour,
                    label=None if key == "loss" and steps is not None else f"{prefix}train, per epoch")
            val = [h.get(f"val_{key}") for h in history]
            if any(v is not None for v in val):
                ax.plot(epochs, val, "s--", color=colour, mfc="white", label=f"{prefix}validation")
        if schedule:
            axes[2].plot(*zip(*schedule), "-", color=colour)
        else:
            axes[2].plot(epochs, [h["lr"] for h in history], "o-", color=colour)
    last = max(h["epoch"] for history, _ in runs.values() for h in history)
    first = min(h["epoch"] for history, _ in runs.values() for h in history)
    for ax, title in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        # One epoch without steps is one point: give it room rather than an axis from 0.96 to 1.04.
        ax.set_xlim((0, last) if stepped or (ax is axes[2] and any(s for _, s in runs.values()))
                    else (first - 0.5, last + 0.5))
    if not any(s for _, s in runs.values()):
        axes[2].set_title("learning rate at epoch end")
    # One legend for the three panels, below them so it covers no curve: a column per run.
    entries = {}
    for ax in axes[:2]:
        entries |= {label: handle for handle, label in zip(*ax.get_legend_handles_labels()) if label not in entries}
    kinds = ("train, per step", "train, per epoch", "validation")
    order = sorted(entries, key=lambda label: ([label.startswith(f"{name}: ") for name in runs].index(True) if several
                                               else 0, [label.endswith(kind) for kind in kinds].index(True)))
    columns = len(runs) if several else len(order)
    fig.legend([entries[label] for label in order], order, loc="lower center", ncol=columns, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * -(-len(order) // columns), 1, 1))
    return fig


def _step_losses(history: list[dict]):
    """(x in epochs, loss) of every step, or None where an epoch lacks them; step s of epoch e ends at e-1+(s+1)/n."""
    if not history or any(not h.get("step_loss") for h in history):
        return None
    xs, ys = [], []
    for h in history:
        n = len(h["step_loss"])
        xs += [h["epoch"] - 1 + (s + 1) / n for s in range(n)]
        ys += h["step_loss"]
    return xs, ys


def _running_mean(values: list[float]) -> np.ndarray:
    """The mean of the last ~2% of the steps at each step (the first steps average what there is)."""
    window = max(1, len(values) // 50)
    sums = np.cumsum(np.insert(np.asarray(values, float), 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def confusion(matrix: list[list[int]], class_names: tuple[str, ...]) -> Figure:
    """Return the confusion matrix (rows = true class) with counts; the diagonal is greyed out to show errors."""
    m = np.asarray(matrix)
    errors = m.copy()
    np.fill_diagonal(errors, 0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(errors, cmap="Reds")
    for (t, p), n in np.ndenumerate(m):
        color = "0.5" if t == p else ("white" if errors[t, p] > errors.max() * 0.6 else "black")
        ax.text(p, t, str(n), ha="center", va="center", fontsize=8, color=color)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix ({m.trace()}/{m.sum()} correct)")
    fig.colorbar(im, ax=ax, label="errors")
    fig.tight_layout()
    return fig


def gallery(images: np.ndarray, titles: list[str], columns: int = 10, suptitle: str = "") -> Figure:
    """Return a grid of images (grey or colour) with a title over each.

    One imshow of a mosaic with text above each tile: 50 separate axes spent 2 s of every
    evaluation laying out their titles (profiled on `convlens import`), the mosaic a tenth of that.
    """
    images = torch.as_tensor(np.asarray(images))
    if len(images) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.set_title(suptitle or "nothing to show")
        return fig
    side = images.shape[-1]
    lines = max(title.count("\n") + 1 for title in titles)
    pad = max(8, side // 3) * lines  # room for the title lines above each tile
    columns = min(columns, len(images))
    canvas, corners = mosaic(images.float(), columns, pad=pad)
    rows = -(-len(images) // columns)
    longest = max(len(line) for title in titles for line in title.split("\n"))
    column_inches = max(1.1, 0.062 * longest + 0.15)  # 8-pt titles such as "T-shirt/top (Sneaker)" stay apart
    fig, ax = plt.subplots(figsize=(columns * column_inches, rows * (1.0 + 0.25 * lines) + 0.4))
    _show_mosaic(ax, canvas, "gray_r", 0, 255)
    ax.set_ylim(canvas.shape[0] - 0.5, -pad)
    for (top, left), title in zip(corners, titles):
        ax.text(left + side / 2, top - 1, title, fontsize=8, ha="center", va="bottom")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def misclassified(images_u8, labels, predictions, class_names, limit: int = 50) -> Figure:
    """Return a gallery of misclassified images titled 'pred (true)', as in the articles, over their test index."""
    wrong = np.flatnonzero(np.asarray(predictions) != np.asarray(labels))[:limit]
    titles = [f"#{i}\n{class_names[int(predictions[i])]} ({class_names[int(labels[i])]})" for i in wrong]
    return gallery(np.asarray(images_u8)[wrong], titles,
                   suptitle=f"misclassified: test index, pred (true); the first {len(wrong)}")


def architecture(table, title: str = "") -> Figure:
    """Return parameters per layer (bars) beside the receptive field each layer's units see (line), from a layer table."""
    rows, side = table.layers, table.input_shape[-1]
    names = [r.name for r in rows]
    fig, (ax, rf) = plt.subplots(1, 2, figsize=(12, 3.6))
    ax.bar(names, [r.params for r in rows], color="tab:blue")
    ax.set(title=f"parameters per layer ({sum(r.params for r in rows):,} in all)", yscale="symlog")
    for i, r in enumerate(rows):
        ax.text(i, max(r.params, 1), f"{r.params:,}", ha="center", va="bottom", fontsize=7)
    rf.plot(names, [r.field.size for r in rows], "o-", color="tab:orange")
    rf.axhline(side, color="0.6", ls="--", lw=1)  # the whole image
    rf.set(title="receptive field: input pixels one unit sees (side)", ylim=(0, side + 2))
    for a in (ax, rf):
        a.tick_params(axis="x", rotation=45)
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep(rows: list[dict], settings: list[str]) -> Figure:
    """Return the test error of every run of a sweep as horizontal bars from zero, labelled by its settings.

    Error, not accuracy: bars of 98.9% and 99.0% accuracy drawn from 0 look equal, and an axis cut
    at 98.7% makes a 0.04-point difference look like a doubling. Error bars from zero show the
    ratio truly.
    """
    labels = [", ".join(f"{k}={r[k]}" for k in settings) for r in rows]
    error = [100 * (1 - r["test_accuracy"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.barh(labels, error, color="tab:red", alpha=0.75)
    ax.set(xlim=(0, max(error) * 1.25 or 1), xlabel="test error (%), lower is better; bars start at 0",
           title="one run per setting")
    for y, e in enumerate(error):
        ax.text(e, y, f" {e:.2f}% error ({100 - e:.2f}% accuracy)", va="center", fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
