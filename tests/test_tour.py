"""The guided tour cannot rot: every command quoted in docs/tour.md runs on a small run, and writes its figures.

Commands are read from the page and made small (1 epoch on 2,048 images, fewer ascent steps);
otherwise they run exactly as written. The notebook examples/tour.ipynb runs top to bottom too.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import write_idx_folder
from convlens.data import load_dataset
from harness import running_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS))
import tour_runner  # noqa: E402

STEPS = ["Basics", "Build and train", "Learning-rate schedule", 'Feature maps of a "4"', 'Three "4"s',
         "Class patterns", "The role of the MLP part", "OIPs layer by layer", "Class OIPs", "Attributions",
         "Do two trainings learn the same filters", "Fashion-MNIST", "See it all", "Bring the model you trained"]
SMALLER = {"oip": ["--steps", "8"], "explain": ["--steps", "8"], "errors": ["--steps", "8"],
           "compare": ["--test-images", "200"], "train": ["--epochs", "1", "--val-size", "256"]}


@pytest.fixture(scope="module")
def small_fashion(tmp_path_factory) -> str:
    data = load_dataset("fashion-mnist")
    folder = write_idx_folder(tmp_path_factory.mktemp("small-fashion"), data.train_images[:2048].numpy(),
                              data.train_labels[:2048].numpy(), data.test_images[:512].numpy(),
                              data.test_labels[:512].numpy())
    return f"idx:{folder}"


def made_small(argv: list[str], mnist: str, fashion: str) -> list[str]:
    """Return a tour command on the small data sets, with fewer epochs and steps."""
    argv = list(argv)
    if argv[1] == "import":
        argv[argv.index("--dataset") + 1] = mnist
    if argv[1] == "train":
        if "--dataset" in argv:
            i = argv.index("--dataset")
            argv[i + 1] = fashion if argv[i + 1] == "fashion-mnist" else mnist
        else:
            argv += ["--dataset", mnist]
    if argv[1] == "probe":
        argv[argv.index("--train-size") + 1] = "500"
    return argv + SMALLER.get(argv[1], [])


def answers(run_dir: Path) -> None:
    with running_server(run_dir) as url, urllib.request.urlopen(f"{url}/api/runs") as response:
        assert run_dir.name in json.load(response)["runs"]


def test_the_tour_has_every_article_step_with_a_command_and_a_figure():
    text = (DOCS / "tour.md").read_text()
    sections = text.split("\n## ")[1:]
    titles = [s.split("\n")[0] for s in sections]
    assert len(titles) == len(STEPS)
    for number, (title, step) in enumerate(zip(titles, STEPS), start=1):
        assert title.startswith(f"{number}. {step}"), title
    for section in sections:
        assert tour_runner.commands(section) and tour_runner.figures(section), section[:40]
        assert "![" in section
    for _, target in tour_runner.figures(text):
        assert (DOCS / target).is_file(), f"{target} is missing: run make docs"


@pytest.mark.slow
def test_every_tour_command_runs_and_writes_its_figure(small_mnist, small_fashion, tmp_path):
    text = (DOCS / "tour.md").read_text()
    ran = []
    tour_runner.prepare(tmp_path)
    for argv in tour_runner.commands(text):
        tour_runner.run(made_small(argv, small_mnist, small_fashion), tmp_path, serve=answers, in_process=True)
        ran.append(argv[1])
    assert len(ran) >= 20 and {"train", "maps", "patterns", "probe", "oip", "explain", "errors", "compare", "report",
                                "serve", "summary", "import"} <= set(ran)
    for source, _ in tour_runner.figures(text):
        if not source.startswith("live "):
            assert (tmp_path / source).is_file(), source


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(small_mnist, small_fashion, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(DOCS.parent / "examples" / "tour.ipynb", as_version=4)
    # The notebook's first cell reads these: the small data sets, one epoch each.
    monkeypatch.setenv("CONVLENS_TOUR_DATASET", small_mnist)
    monkeypatch.setenv("CONVLENS_TOUR_FASHION", small_fashion)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shows_each_step_as_figures(notebook)


def shows_each_step_as_figures(notebook) -> None:
    """No cell failed, and every step after the layer table (step 1) shows figures: PNG outputs, or PNGs
    inlined in a Result's or a Run's HTML."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    for cell in code[2:]:
        data = [o.get("data", {}) for o in cell.outputs]
        shown = sum("image/png" in d for d in data) + sum(d.get("text/html", "").count("data:image/png") for d in data)
        assert shown >= 1, cell.source


def test_the_notebook_uses_only_the_public_api():
    """It imports convlens's public names, never the drawing, speed or job internals."""
    import nbformat

    notebook = nbformat.read(DOCS.parent / "examples" / "tour.ipynb", as_version=4)
    imports = [line.strip() for cell in notebook.cells if cell.cell_type == "code"
               for line in cell.source.splitlines() if re.match(r"\s*(from|import) convlens", line)]
    assert imports == ["import convlens", "from convlens import RECIPES, Ascent, RunConfig"]


def test_the_committed_notebook_reads_with_its_outputs_on_a_code_host():
    """examples/tour.ipynb is committed executed (on all of MNIST), so it reads without being run."""
    import nbformat

    notebook = nbformat.read(DOCS.parent / "examples" / "tour.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))  # in order, top to bottom
    shows_each_step_as_figures(notebook)


def test_make_docs_writes_each_blocks_times_under_it_and_replaces_the_old_ones():
    page = "## 13\n\n```bash\nconvlens report runs/tour\nconvlens serve runs/tour\n```\n\nnext\n"
    once = tour_runner.stamp_times(page, {"convlens report runs/tour": 6.2})
    assert once == ("## 13\n\n```bash\nconvlens report runs/tour\nconvlens serve runs/tour\n```\n\n"
                    "*On 2 cores: `report` 6 s.*\n\nnext\n")  # serve blocks: it has no time
    again = tour_runner.stamp_times(once, {"convlens report runs/tour": 130.0})
    assert again == once.replace("`report` 6 s", "`report` 2.2 min")
    assert tour_runner.stamp_times(page, {}) == page
