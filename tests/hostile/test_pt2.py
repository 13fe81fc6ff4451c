"""Hostile .pt2 archives: each is a real torch.export.save file with one part swapped for a payload.

Every payload writes a marker file if it runs. The import is run in a second interpreter, as a
user would run it, so a payload that runs there cannot touch this test process.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn


class Payload:
    """Pickles to a call that writes `marker`: what a hostile sender hides in a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def saved_program(folder: Path) -> tuple[Path, nn.Module]:
    """Return a real .pt2 of a small conv net with batch norm, and the net."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    path = folder / "model.pt2"
    torch.export.save(torch.export.export(module.eval(), (torch.zeros(1, 1, 28, 28),)), str(path))
    return path, module


def rewritten(source: Path, target: Path, change) -> Path:
    """Copy the archive, with change(name below its top folder, bytes) -> bytes (or None to drop the member)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            top, name = info.filename.split("/", 1)
            data = change(name, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
        for name, data in getattr(change, "added", {}).items():
            new.writestr(name.removeprefix("../") if name.startswith("../") else f"{top}/{name}", data)
    return target


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def pickled_sample_inputs(marker: Path):
    return lambda name, data: torch_saved(Payload(marker)) if name == "data/sample_inputs/model.pt" else data


def pickled_weight(marker: Path):
    def change(name, data):
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["0.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return torch_saved(Payload(marker)) if name == "data/weights/weight_0" else data
    return change


def opaque_constant(marker: Path):
    def change(name, data):
        if name == "data/constants/model_constants_config.json":
            return json.dumps({"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False,
                                                   "use_pickle": True, "tensor_meta": None}}}).encode()
        return data
    change.added = {"data/constants/opaque_obj_0": pickle.dumps(Payload(marker))}
    return change


def program_edit(edit):
    def change(name, data):
        if name == "models/model.json":
            program = json.loads(data)
            edit(program)
            return json.dumps(program).encode()
        return data
    return change


def shape_expression(marker: Path):
    """A symbolic size whose expression is Python: sympy.sympify evaluates it."""
    code = f"__import__('builtins').exec(\"open({str(marker)!r}, 'w').write('ran')\")"

    def edit(program):
        node = program["graph_module"]["graph"]["nodes"][0]
        program["graph_module"]["graph"]["sym_int_values"] = {"s0": {"as_expr": {"expr_str": code, "hint": None}}}
        node["outputs"].append({"as_sym_int": {"as_name": "s0"}})
    return program_edit(edit)


def placeholder_name(marker: Path):
    """An input name that fx would write into the forward() it generates and execs."""
    evil = f"x=exec(\"open({str(marker)!r}, 'w').write('ran')\")"

    def edit(program):
        text = json.dumps(program).replace('"as_tensor": {"name": "input"}', f'"as_tensor": {{"name": {json.dumps(evil)}}}')
        program.clear()
        program.update(json.loads(text))
    return program_edit(edit)


def compiled_code(marker: Path):
    def change(name, data):
        return data
    change.added = {"data/aotinductor/model/model.so": b"\x7fELF" + bytes(64)}
    return change


def legacy_pickle(marker: Path):
    """torch's older .pt2 layout: the program's state dict as a pickle at the archive's root."""
    def change(name, data):
        return None  # the new layout's members go; only the legacy ones below stay
    change.added = {"../version": b"8.0", "../serialized_exported_program.json": b"{}",
                    "../serialized_state_dict.pt": torch_saved(Payload(marker)),
                    "../serialized_constants.pt": torch_saved({}), "../serialized_example_inputs.pt": b""}
    return change


HOSTILE = {
    "pickled sample inputs": (pickled_sample_inputs, "model.pt2"),
    "pickled weight": (pickled_weight, "stored as a pickle or a Python object"),
    "opaque-object constant": (opaque_constant, "stored as a pickle or a Python object"),
    "shape expression": (shape_expression, "not plain arithmetic"),
    "placeholder name": (placeholder_name, "not an identifier"),
    "AOTInductor library": (compiled_code, "AOTInductor-compiled code"),
    "legacy pickled state": (legacy_pickle, "no archive_format 'pt2'"),
}


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return saved_program(tmp_path_factory.mktemp("pt2"))[0]


def convlens_import(path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens", "import", str(path), "--dataset", "mnist",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_pt2_never_runs_its_payload(case, program, tmp_path, mnist):
    make, refusal = HOSTILE[case]
    marker = tmp_path / "payload-ran"
    hostile = rewritten(program, tmp_path / "hostile.pt2", make(marker))
    done = convlens_import(hostile, tmp_path / "run")
    assert not marker.exists(), f"the {case} payload ran"
    if case == "pickled sample inputs":  # never read at all: the program imports, its inputs unopened
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and refusal in lines[0] and "hostile.pt2" in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


def test_a_saved_program_imports_and_gives_the_modules_logits(tmp_path):
    from convlens.importers import import_file

    path, module = saved_program(tmp_path)
    imported = import_file(path)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(imported.model(x), module(x), atol=1e-5)
