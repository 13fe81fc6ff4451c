"""Jobs: one module per feature. Typed arguments in (a Run, lists of ints, names), a `Result` out; files are written here.

The CLI, the Python API and the web page call these and nothing below them, so a feature behaves
the same whichever way it is reached. Nothing here parses command-line text or names a flag.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import SOURCE, Run
from ..storage import folder_lock, replaced_folder, write_json


@dataclass
class Result:
    """What a job wrote and what it found; in Jupyter it shows its figures inline."""

    files: list[Path]  # every file written, figures first
    data: dict = field(default_factory=dict)  # the numbers, as the job's JSON file holds them

    def __repr__(self) -> str:
        names = ", ".join(Path(f).name for f in self.files[:4]) + (", ..." if len(self.files) > 4 else "")
        return f"Result({len(self.files)} files: {names}; data: {', '.join(list(self.data)[:6])})"

    def _repr_html_(self) -> str:
        return figures_html(repr(self), [Path(f) for f in self.files if str(f).endswith(".png")])


def figures_html(line: str, figures: list[Path]) -> str:
    """A notebook's view of a result or a run: a line, then each figure inline (at most INLINE_FIGURES, each at
    most INLINE_BYTES), under its file name."""
    import base64
    import html

    parts = [f"<p>{html.escape(line)}</p>"]
    for png in figures[:INLINE_FIGURES]:
        if png.is_file() and png.stat().st_size <= INLINE_BYTES:
            data = base64.b64encode(png.read_bytes()).decode()
            shown = png.relative_to(Path.cwd()) if png.is_absolute() and png.is_relative_to(Path.cwd()) else png
            parts.append(f"<figure><img src='data:image/png;base64,{data}' style='max-width:100%'>"
                         f"<figcaption>{html.escape(str(shown))}</figcaption></figure>")
    if len(figures) > INLINE_FIGURES:
        folder = html.escape(str(figures[0].parent))
        parts.append(f"<p>{len(figures) - INLINE_FIGURES} more figures in {folder}</p>")
    return "\n".join(parts)


INLINE_FIGURES = 12  # figures a notebook shows of one result; the rest are named
INLINE_BYTES = 16 * 2**20  # a figure larger than this is named, not inlined


def open_run(run: Run | str | Path) -> Run:
    """Return a Run for a Run or a run folder's path."""
    return run if isinstance(run, Run) else Run(run)


def writes_into_run(inspection: str):
    """Make a job that writes RUN/<inspection>/ hold the run's lock and replace that folder whole.

    The job writes into a new folder (earlier results of the same weights linked in), stamped with
    the weights' sha256, which then replaces the old one: a kill never leaves half old, half new
    files. With `out` elsewhere, the job writes there directly and no lock is needed.
    """

    def decorate(job):
        @functools.wraps(job)
        def staged(run, *args, out=None, **kwargs):
            run = open_run(run)
            if out is not None:
                return job(run, *args, out=out, **kwargs)
            final = run.output_folder(inspection)
            with folder_lock(run.path, f"convlens {job.__name__}"), \
                    replaced_folder(final, keep=lambda old: run.inspection_is_current(old)) as folder:
                result = job(run, *args, out=folder, **kwargs)
                write_json(folder / SOURCE, {"weights_sha256": run.weights_sha256})
            # source.json is named too: "wrote 6 files" beside a folder of 7 read as a file lost.
            return Result([final / p.relative_to(folder) if p.is_relative_to(folder) else p
                           for p in [*result.files, folder / SOURCE]], result.data)

        return staged

    return decorate
