"""Jobs: one module per feature. Typed arguments in (a Run, lists of ints, names), a `Result` out; files are written here.

The CLI, the Python API and the web page call these and nothing below them, so a feature behaves
the same whichever way it is reached. Nothing here parses command-line text or names a flag.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import Run
from ..storage import folder_lock


@dataclass
class Result:
    """What a job wrote and what it found."""

    files: list[Path]  # every file written, figures first
    data: dict = field(default_factory=dict)  # the numbers, as the job's JSON file holds them


def open_run(run: Run | str | Path) -> Run:
    """Return a Run for a Run or a run folder's path."""
    return run if isinstance(run, Run) else Run(run)


def writes_into_run(job):
    """Hold the run folder's lock while the job writes into it; with `out` elsewhere, no lock is needed."""

    @functools.wraps(job)
    def locked(run, *args, **kwargs):
        run = open_run(run)
        if kwargs.get("out") is not None:
            return job(run, *args, **kwargs)
        with folder_lock(run.path, f"convlens {job.__name__}"):
            return job(run, *args, **kwargs)

    return locked
