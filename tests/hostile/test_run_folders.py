"""Run folders someone else made or a crash left behind: links where folders belong, half-written imports, racing imports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import copy_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
STATIC = Path(__file__).resolve().parents[2] / "src" / "convlens" / "web" / "static"


def convlens(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens", *args], capture_output=True, text=True, timeout=timeout)


def test_a_linked_inspection_folder_is_replaced_never_followed(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "runs" / "r1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the run's")
    (run / "maps").symlink_to(outside, target_is_directory=True)
    (run / ".maps.abc123.old").symlink_to(outside, target_is_directory=True)  # what the old code left behind
    for _ in range(2):  # the second write proves nothing was left that breaks the next writer
        done = convlens("maps", str(run), "--index", "0", "--layer", "conv1")
        assert done.returncode == 0, done.stderr
    assert (run / "maps").is_dir() and not (run / "maps").is_symlink() and (run / "maps" / "maps.json").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and os.stat(outside / "keep.txt").st_nlink == 1
    assert not [p for p in run.iterdir() if p.name.startswith(".maps.")]


def test_an_import_killed_midway_leaves_nothing_the_next_import_does_not_clear(tmp_path, mnist):
    out = tmp_path / "runs" / "articles"
    process = subprocess.Popen([sys.executable, "-m", "convlens", "import", str(FIXTURES / "articles.keras"),
                                "--dataset", "mnist", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".articles.*.importing")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(out.parent.glob(".articles.*.importing")), "the import was not caught midway"
    done = convlens("import", str(FIXTURES / "articles.keras"), "--dataset", "mnist", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["articles"]


def test_two_imports_to_one_folder_give_one_run_and_one_clear_line(tmp_path, mnist):
    out = tmp_path / "runs" / "articles"
    command = [sys.executable, "-m", "convlens", "import", str(FIXTURES / "articles.keras"), "--dataset", "mnist",
               "--out", str(out)]
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "12")
    results = sorted([first.communicate(timeout=300) + (first.returncode,),
                      second.communicate(timeout=300) + (second.returncode,)], key=lambda r: r[2])
    assert [r[2] for r in results] == [0, 2], results
    refusal = results[1][1].strip().splitlines()
    assert len(refusal) == 1 and str(out) in refusal[0], refusal
    assert sorted(p.name for p in out.parent.iterdir()) == ["articles"] and (out / "model.safetensors").is_file()


def test_an_out_folder_that_cannot_be_made_is_refused_before_the_import(tmp_path, mnist):
    (tmp_path / "afile").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out, words in ((tmp_path / "afile" / "run", "cannot make a run folder"), (tmp_path / "dangling", "a link")):
        done = convlens("import", str(FIXTURES / "articles.keras"), "--dataset", "mnist", "--out", str(out))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr


def test_the_live_page_never_writes_data_into_markup():
    """Layer names come from graph.json: the page sets them as text; innerHTML takes only fixed strings."""
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"innerHTML\s*[+]?=\s*`[^`]*\$\{", script)
    assert not re.search(r"innerHTML\s*[+]?=[^;]*\+\s*[A-Za-z_]", script)
