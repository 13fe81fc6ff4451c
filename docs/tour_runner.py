"""Run every command of docs/tour.md and redraw its figures (`make docs`); the tests run the same commands small.

usage: python docs/tour_runner.py [--workdir DIR]

The commands are read from the ```bash blocks of tour.md, in order, and run from a fresh working
folder; each `<!-- figure: SOURCE -> TARGET -->` line copies the file a command wrote next to
tour.md. `live RUN` as a source is a screenshot of the live page with a drawn "4". The Keras file
step 14 imports is the articles' net the tests use (tests/fixtures/keras), copied into the folder.
Each command's wall time is printed as it ends and written under its block in tour.md, so the
times the tour quotes are the last `make docs` run's, never guessed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOUR = Path(__file__).resolve().parent / "tour.md"
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
FIGURE = re.compile(r"<!-- figure: (.+?) -> (\S+) -->")
TIMED_BLOCK = re.compile(r"(```bash\n.*?```\n)(\n\*On 2 cores:[^\n]*\*\n)?", re.S)  # a block and its time line
KERAS_MODEL = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras" / "articles.keras"


def prepare(workdir: Path) -> Path:
    """Make the working folder and put the articles' Keras file in it, as a reader of the tour would have it."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(KERAS_MODEL, workdir / KERAS_MODEL.name)
    return workdir


def commands(text: str) -> list[list[str]]:
    """Return the argv of every `convlens ...` line in the bash blocks, in order."""
    return [shlex.split(line) for block in BASH_BLOCK.findall(text) for line in block.splitlines()
            if line.startswith("convlens ")]


def figures(text: str) -> list[tuple[str, str]]:
    """Return (source, target) of every figure line: the file a command wrote and where the docs show it."""
    return FIGURE.findall(text)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def stamp_times(text: str, seconds: dict[str, float]) -> str:
    """Write under each bash block how long its commands took ({command line: seconds}; serve is left out)."""
    def stamped(block: re.Match) -> str:
        argvs = [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("convlens ")]
        timed = [argv for argv in argvs if shlex.join(argv) in seconds]
        if not timed:
            return block.group(0)
        each = ", ".join(f"`{argv[1]}` {duration(seconds[shlex.join(argv)])}" for argv in timed)
        return f"{block.group(1)}\n*On 2 cores: {each}.*\n"
    return TIMED_BLOCK.sub(stamped, text)


def run(argv: list[str], workdir: Path, serve=None, in_process: bool = False) -> None:
    """Run one tour command from workdir; `serve RUN` is handed to serve(run_path) instead of blocking.

    in_process runs it through convlens.cli.main in this interpreter (the tests: no import per command).
    """
    if argv[1] == "serve":
        if serve is not None:
            serve(workdir / argv[2])
        return
    if in_process:
        from convlens.cli import main as convlens_main

        here = os.getcwd()
        os.chdir(workdir)
        try:
            convlens_main(argv[1:])
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"`{shlex.join(argv)}` exited with {e.code}") from None
        finally:
            os.chdir(here)
        return
    done = subprocess.run([sys.executable, "-m", "convlens", *argv[1:]], cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{shlex.join(argv)}` failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def screenshot_live_page(run_dir: Path, target: Path) -> None:
    """Serve a run, draw a 4 on the pad, hover a conv2 map, and save a screenshot of the page."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the browser harness lives with the tests
    from harness import DIGIT_STROKES, chromium_page, draw_with_mouse, running_server, wait_until_idle

    with running_server(run_dir) as url, chromium_page(1500, 1000) as page:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        draw_with_mouse(page, DIGIT_STROKES[4])
        wait_until_idle(page)
        page.hover("canvas[data-layer='conv2']", position={"x": 60, "y": 20})
        page.wait_for_selector("#detail .tops figure")
        page.screenshot(path=str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="run here (default: a fresh temporary folder)")
    args = parser.parse_args()
    workdir = prepare(Path(args.workdir or tempfile.mkdtemp(prefix="convlens-tour-")))
    text = TOUR.read_text()
    seconds = {}
    for argv in commands(text):
        print(f"$ {shlex.join(argv)}", flush=True)
        started = time.perf_counter()
        run(argv, workdir)
        if argv[1] != "serve":  # the runner does not block on it: its time would mean nothing
            line = shlex.join(argv)
            seconds[line] = time.perf_counter() - started
            print(f"  {seconds[line]:.1f} s", flush=True)
    TOUR.write_text(stamp_times(text, seconds))
    for source, target in figures(text):
        destination = TOUR.parent / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("live "):
            screenshot_live_page(workdir / source.split()[1], destination)
        else:
            shutil.copyfile(workdir / source, destination)
        print(f"wrote {destination}")


if __name__ == "__main__":
    main()
