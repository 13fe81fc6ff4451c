"""Model files that claim far more than they hold, or describe their model in shapes their format never takes.

Each file is made from a real Keras or ONNX fixture and imported in a second process with a memory
limit well below what the claimed sizes would take. Each must end in one line naming the file, exit 2,
and no run folder.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
MEMORY_LIMIT = 3 * 2**30  # bytes of address space for the import; torch alone maps about 1.5 GB
GIB = 2**30


def keras_members() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURES / "articles.keras") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_keras(path: Path, members: dict[str, bytes], huge: str | None = None, huge_bytes: int = 0) -> Path:
    """Write a .keras zip of `members`; `huge` is a member of `huge_bytes` spaces, deflated to about 1/1000."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            if name != huge:
                archive.writestr(name, data)
        if huge:
            with archive.open(huge, "w", force_zip64=True) as member:
                for _ in range(huge_bytes // 2**24):
                    member.write(b" " * 2**24)
    return path


def keras_with_config(folder: Path, edit) -> Path:
    members = keras_members()
    config = json.loads(members["config.json"])
    members["config.json"] = json.dumps(edit(config)).encode()
    return write_keras(folder / "edited.keras", members)


def declared_kernel(kind: str, shape: tuple[int, ...], folder: Path) -> Path:
    """A Keras file whose first kernel declares `shape` with no chunk written: a few KB that read as zeros."""
    def swap(h5: h5py.File, name: str) -> None:
        del h5[name]
        h5.create_dataset(name, shape=shape, dtype="f4", chunks=(1,) * (len(shape) - 1) + (1024,),
                          compression="gzip")

    if kind == "h5":
        path = folder / "declared.h5"
        path.write_bytes((FIXTURES / "articles.h5").read_bytes())
        with h5py.File(path, "r+") as h5:
            swap(h5, "model_weights/conv2d/articles/conv2d/kernel")
        return path
    members = keras_members()
    weights = folder / "model.weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as h5:
        swap(h5, "layers/conv2d/vars/0")
    members["model.weights.h5"] = weights.read_bytes()
    return write_keras(folder / "declared.keras", members)


def first_conv(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")


def onnx_with_string_initializer(folder: Path) -> Path:
    """A Conv whose weight is an ONNX STRING tensor: valid protobuf, checked by nothing before convlens."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.STRING, [32, 1, 3, 3], [b"x"] * 288)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32, 26, 26])], [weight])
    path = folder / "strings.onnx"
    onnx.save(helper.make_model(graph), path)
    return path


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


CASES = {
    # Issue 28 item 4: sizes checked against a cap before anything is read.
    "a zip bomb of a config.json": (lambda f: write_keras(f / "bomb.keras", keras_members(), "config.json", GIB),
                                    "unpacks to"),
    "a zip bomb of the weights": (lambda f: write_keras(f / "bomb.keras", keras_members(), "model.weights.h5", GIB),
                                  "unpacks to"),
    "an .h5 kernel declared 2 GB": (lambda f: declared_kernel("h5", (3, 3, 1, 2**26), f), "bytes"),
    "a .keras kernel declared 2 GB": (lambda f: declared_kernel("keras", (3, 3, 1, 2**26), f), "bytes"),
    "an .h5 kernel declared 36 TiB": (lambda f: declared_kernel("h5", (3, 3, 1, 2**40), f), "bytes"),
    # Item 11: shapes a Keras or ONNX file never takes.
    "a config.json that is a list": (lambda f: keras_with_config(f, lambda c: [c]), "never take"),
    "layers null": (lambda f: keras_with_config(f, lambda c: c | {"config": c["config"] | {"layers": None}}),
                    "never take"),
    "an activation given as a dict": (lambda f: keras_with_config(
        f, lambda c: first_conv(c)["config"].update(activation={"relu": 1}) or c), "activation dict"),
    "an ONNX STRING initializer": (onnx_with_string_initializer, "'w' holds STRING values"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_model_file_that_claims_too_much_is_one_line(case, tmp_path, mnist):
    make, message = CASES[case]
    path = make(tmp_path)
    assert path.stat().st_size < 10 * 2**20  # each is small on disk: the claim is what must be refused
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "convlens", "import", str(path), "--dataset", "mnist", "--out",
                           str(out)], capture_output=True, text=True, timeout=300, preexec_fn=limited_memory)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert path.name in lines[0] and message in lines[0], lines[0]
    assert not out.exists()


def test_the_declared_kernels_are_real_hdf5_that_h5py_would_allocate(tmp_path):
    """The declared-size cases are honest: h5py reports the full shape, and reading it asks for all of it."""
    with h5py.File(declared_kernel("h5", (3, 3, 1, 2**40), tmp_path), "r") as h5:
        kernel = h5["model_weights/conv2d/articles/conv2d/kernel"]
        assert kernel.shape == (3, 3, 1, 2**40) and kernel.size * 4 > 2**45
        with pytest.raises((MemoryError, ValueError)):
            np.asarray(kernel)
