"""Hostile Keras files: real Keras fixtures whose first kernel is swapped for HDF5 that reaches outside the file.

A secret file stands in for /etc/passwd. Each case must end in one line and exit 2, with no run
folder written and the secret's bytes nowhere in what convlens wrote.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
KERNEL = {"h5": "model_weights/conv2d/articles/conv2d/kernel", "keras": "layers/conv2d/vars/0"}
SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 36  # 1,152 bytes: exactly a (3, 3, 1, 32) float32 kernel


def swap_kernel(h5: h5py.File, kind: str, how: str, folder: Path) -> None:
    """Replace the first kernel by `how`: a dataset or link whose values live outside the file."""
    name = KERNEL[kind]
    shape = h5[name].shape
    del h5[name]
    secret = folder / "secret.txt"
    secret.write_bytes(SECRET)
    if how == "external storage":
        h5.create_dataset(name, shape=shape, dtype="f4", external=[(str(secret), 0, len(SECRET))])
    elif how == "relative external storage":
        h5.create_dataset(name, shape=shape, dtype="f4", external=[("../" * 12 + str(secret), 0, len(SECRET))])
    elif how == "external link":
        other = folder / "other.h5"
        with h5py.File(other, "w") as o:
            o.create_dataset("kernel", data=np.frombuffer(SECRET, dtype="f4").reshape(shape))
        h5[name] = h5py.ExternalLink(str(other), "kernel")
    elif how == "soft link":
        h5["stash"] = np.frombuffer(SECRET, dtype="f4").reshape(shape)
        h5[name] = h5py.SoftLink("/stash")
    elif how == "virtual dataset":
        other = folder / "other.h5"
        with h5py.File(other, "w") as o:
            o.create_dataset("kernel", data=np.frombuffer(SECRET, dtype="f4").reshape(shape))
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[...] = h5py.VirtualSource(str(other), "kernel", shape=shape)
        h5.create_virtual_dataset(name, layout)


def hostile_file(kind: str, how: str, folder: Path) -> Path:
    if kind == "h5":
        path = folder / "hostile.h5"
        path.write_bytes((FIXTURES / "articles.h5").read_bytes())
        with h5py.File(path, "r+") as h5:
            swap_kernel(h5, kind, how, folder)
        return path
    with zipfile.ZipFile(FIXTURES / "articles.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = folder / "model.weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as h5:
        swap_kernel(h5, kind, how, folder)
    members["model.weights.h5"] = weights.read_bytes()
    path = folder / "hostile.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


HOW = ["external storage", "relative external storage", "external link", "soft link", "virtual dataset"]


@pytest.mark.parametrize("kind", ["h5", "keras"])
@pytest.mark.parametrize("how", HOW)
def test_a_keras_file_never_reads_outside_itself(kind, how, tmp_path, mnist):
    path = hostile_file(kind, how, tmp_path)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "convlens", "import", str(path), "--dataset", "mnist",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert path.name in lines[0] and "refused" in lines[0], lines[0]
    assert not out.exists()
    assert not any(SECRET[:64] in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "secret.txt"
                   and p.suffix not in (".h5", ".keras"))


def test_the_hostile_files_are_real_hdf5_that_h5py_follows(tmp_path):
    """The cases above are honest: plain h5py reads the secret through each of them."""
    for how in HOW:
        folder = tmp_path / how.replace(" ", "-")
        folder.mkdir()
        with h5py.File(hostile_file("h5", how, folder), "r") as h5:
            assert np.asarray(h5[KERNEL["h5"]]).tobytes() == SECRET, how


def test_onnx_external_data_is_refused_by_the_onnx_package(tmp_path, mnist):
    """An initializer whose bytes live in another file (ONNX external data) never reaches the weights."""
    from onnx import TensorProto, helper

    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[32, 1, 3, 3], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", str(secret)), ("length", str(len(SECRET)))):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 26, 26])], [weight])
    path = tmp_path / "hostile.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    done = subprocess.run([sys.executable, "-m", "convlens", "import", str(path), "--dataset", "mnist",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "run").exists()
    assert "external" in done.stderr.lower(), done.stderr
