"""Jobs: one module per feature. Typed arguments in (a Run, lists of ints, names), a `Result` out; files are written here.

The CLI, the Python API and the web page call these and nothing below them, so a feature behaves
the same whichever way it is reached. Nothing here parses command-line text or names a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..runs import Run


@dataclass
class Result:
    """What a job wrote and what it found."""

    files: list[Path]  # every file written, figures first
    data: dict = field(default_factory=dict)  # the numbers, as the job's JSON file holds them


def open_run(run: Run | str | Path) -> Run:
    """Return a Run for a Run or a run folder's path."""
    return run if isinstance(run, Run) else Run(run)
