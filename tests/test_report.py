"""convlens report: the sections a run folder earns, self-containment, escaping, and the command's errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from conftest import copy_run
from harness import chromium_available, chromium_page

from convlens.jobs.compare import compare
from convlens.jobs.probe import probe
from convlens.oip import Ascent
from convlens.jobs.oip import layer_oip
from convlens.jobs.report import report

QUIET = {"log": lambda *a: None}


def sections(page: str) -> list[str]:
    return re.findall(r"<details id=\"[^\"]+\"(?: open)?><summary><h2>([^<]+)</h2>", page)


@pytest.fixture
def run(trained_run, tmp_path):
    return copy_run(trained_run, tmp_path / "runs" / "r1")


def test_a_bare_run_is_evaluated_and_gets_the_standard_sections(run):
    (run / "metrics.json").unlink(missing_ok=True)
    shutil.rmtree(run / "plots", ignore_errors=True)
    page = report(run).read_text()
    assert (run / "metrics.json").is_file() and (run / "plots" / "confusion.png").is_file()
    assert sections(page) == ["Training", "Test set", "Feature maps", "First-layer kernels", "Model", "Configuration"]
    # Self-contained: every image inlined, nothing fetched, no scripts.
    assert page.count("src=\"data:image/png;base64,") == page.count("<img")
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page) and "<script" not in page


def test_inspections_and_comparisons_add_their_sections(run, tmp_path):
    before = report(run).read_text().count("<img")
    layer_oip(run, layers=["conv1"], maps=[0, 1, 2, 3], ascent=Ascent(steps=4), **QUIET)
    probe(run, layers=["conv1", "flatten"], train_size=256, **QUIET)
    twin = run.parent / "r2"
    shutil.copytree(run, twin)
    compare([str(run), str(twin)], images=64, **QUIET)
    page = report(run).read_text()
    names = sections(page)
    assert {"OIPs", "What each layer knows", "Comparison: compare-r1-vs-r2"} <= set(names)
    assert names.index("What each layer knows") < names.index("OIPs")  # the articles' order
    assert page.count("<img") >= before + 3
    assert ">r1 vs r2<" in page and ">1.00 / 100% / yes<" in page  # a run against its copy matches itself
    # The OIPs' numbers as a table, and the compare figures captioned by what they show.
    assert "<th>beat the best test image</th>" in page and re.search(r"<td>conv1</td><td class=num>4</td>", page)
    assert "linear CKA between every pair of layers: r1 vs r2" in page


def test_the_report_holds_every_figure_lazily_and_enlarges_one_on_a_click(run):
    from convlens.jobs.top import top

    top(run, "conv2", k=2)  # 64 maps: 8 pages and an overview
    page = report(run).read_text()
    start = page.index('<details id="top"')
    assert page[start: page.index("</details>", start)].count("<img") == 9  # all of them, not the first 12 of 16
    assert page.count("<img loading=lazy") == page.count("<img")
    assert page.count("<label class=zoom><input type=checkbox><img") == page.count("<img")


@pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is not installed (make test installs it)")
def test_a_click_shows_a_figure_at_full_size_in_chromium_and_another_closes_it(run):
    path = report(run)
    with chromium_page(width=900, height=700) as page:
        page.goto(path.as_uri())
        figure = page.locator("#test figure.wide img").first  # the misclassified gallery, wider than the page
        natural = figure.evaluate("img => img.naturalWidth")
        assert figure.bounding_box()["width"] < natural
        figure.click()
        assert figure.evaluate("img => getComputedStyle(img.parentElement).position") == "fixed"
        assert figure.bounding_box()["width"] == natural + 2  # full size and its 1-px border; the overlay scrolls
        figure.click(position={"x": 5, "y": 5})
        assert figure.evaluate("img => getComputedStyle(img.parentElement).position") == "static"
        assert page.errors == []


def test_names_are_escaped(trained_run, tmp_path):
    folder = tmp_path / "<b>bold</b>"
    shutil.copytree(trained_run, folder)
    page = report(folder).read_text()
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


@pytest.mark.parametrize("args, message", [
    (["report", "no/such/run"], "run folder no/such/run does not exist"),
    (["serve", "no/such/run"], "neither a run folder nor a folder of runs"),
])
def test_bad_folders_are_one_clear_error(args, message):
    done = subprocess.run([sys.executable, "-m", "convlens", *args], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_a_bad_port(run):
    done = subprocess.run([sys.executable, "-m", "convlens", "serve", str(run), "--port", "70000"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "port 70000 must be between 1 and 65535" in done.stderr


def test_the_errors_section_shows_the_most_frequent_pairs_first_with_readable_captions(run):
    from convlens.jobs.errors import errors

    written = errors(run, steps=4, log=lambda *a: None).data["pairs"]
    page = report(run).read_text()
    start = page.index('<details id="errors"')
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page[start: page.index("</details>", start)])
    expected = ["every (true, predicted) pair at a glance: its surest mistake"] + [
        f"true {p['true_name']}, predicted {p['predicted_name']}: {p['count']} images" for p in written]
    assert captions == expected  # every pair, the overview first
    counts = [p["count"] for p in written]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]  # not in file-name order
