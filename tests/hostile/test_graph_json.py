"""A tampered graph.json in an imported run: refused with one line before any module is built.

Each case edits the graph of a real import (the articles' Keras net) and opens the run in a
second process with a memory limit well below what the claimed layers would take.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys

import pytest

MEMORY_LIMIT = 3 * 2**30  # bytes of address space for the second process; torch alone maps about 1.5 GB


def node(graph: dict, name: str) -> dict:
    return next(n for n in graph["nodes"] if n["name"] == name)


def rename(graph: dict, old: str, new: str) -> None:
    for n in graph["nodes"]:
        n["name"] = new if n["name"] == old else n["name"]
        n["inputs"] = [new if i == old else i for i in n["inputs"]]


TAMPERED = {  # what is done to the graph, and what the one line must say
    "10^8 channels": (lambda g: node(g, "conv2d").update(out=10**8), "less than or equal to 65536"),
    "10^9 channels": (lambda g: node(g, "conv2d_1").update({"in": 10**9}), "less than or equal to 65536"),
    "channels the weights lack": (lambda g: node(g, "conv2d").update(out=64), "needs conv2d.conv.weight of shape"),
    "string channel count": (lambda g: node(g, "conv2d").update(out="32x"), "valid integer"),
    "a cycle": (lambda g: node(g, "conv2d").update(inputs=["dense"]), "which no earlier layer makes"),
    "a self-loop": (lambda g: node(g, "conv2d_1").update(inputs=["conv2d_1"]), "which no earlier layer makes"),
    "an unknown input": (lambda g: node(g, "conv2d_1").update(inputs=["nowhere"]), "which no earlier layer makes"),
    "a missing op": (lambda g: node(g, "conv2d").pop("op"), "nodes[0].op"),
    "an unknown op": (lambda g: node(g, "conv2d").update(op="lambda"), "nodes[0].op"),
    "a dotted name": (lambda g: rename(g, "conv2d_1", "a.b"), "string should match pattern"),
    "the name forward": (lambda g: rename(g, "conv2d_1", "forward"), "layer name 'forward' is taken"),
    "a repeated name": (lambda g: rename(g, "conv2d_1", "conv2d"), "layer name 'conv2d' is taken"),
    "a list": (lambda g: (g.clear(), None), "the top level"),
    "a huge image": (lambda g: g.update(input_shape=[1, 10**6, 10**6]), "input_shape"),
}


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_graph_is_one_line_before_anything_is_built(case, keras_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(keras_run, run)
    graph = json.loads((run / "graph.json").read_text())
    edit, message = TAMPERED[case]
    edit(graph)
    (run / "graph.json").write_text(json.dumps([] if case == "a list" else graph))
    done = subprocess.run([sys.executable, "-m", "convlens", "summary", str(run)], capture_output=True, text=True,
                          timeout=300, preexec_fn=limited_memory)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "graph.json" in lines[0] and message in lines[0], lines[0]


def test_the_untouched_graph_opens(keras_run):
    done = subprocess.run([sys.executable, "-m", "convlens", "summary", str(keras_run)], capture_output=True,
                          text=True, timeout=300, preexec_fn=limited_memory)
    assert done.returncode == 0 and "conv2d_2" in done.stdout, done.stderr
