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
    """What a job wrote and what it found."""

    files: list[Path]  # every file written, figures first
    data: dict = field(default_factory=dict)  # the numbers, as the job's JSON file holds them


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
            return Result([final / p.relative_to(folder) if p.is_relative_to(folder) else p for p in result.files],
                          result.data)

        return staged

    return decorate
