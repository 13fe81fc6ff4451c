"""Make a run folder from a model trained elsewhere: after it, every command works on it as on a trained run.

The folder is written under a temporary name beside `out` and renamed into place when whole, so a
bad file, a shape that does not fit or a full disk leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from .. import runs
from ..config import RunConfig
from ..data import load_dataset
from ..errors import UserError
from ..importers import import_file, import_module
from ..layers import layer_table
from . import Result
from .train import evaluate_run


def import_model(model: str | Path | nn.Module, dataset: str, out: str | Path, mean: list[float] | None = None,
                 std: list[float] | None = None) -> Result:
    """Import a model as a run folder evaluated on `dataset`'s test set.

    model: a file (Keras .keras or .h5, PyTorch .pt2) or any nn.Module, traced for the data set's images.
    """
    out = Path(out)
    _check_out(out)  # before the import's work, not after it
    data = load_dataset(dataset)
    if isinstance(model, nn.Module):
        imported = import_module(model, data.image_shape, mean, std)
    else:
        imported = import_file(model, mean, std)
    shape = tuple(imported.graph["input_shape"])
    if shape != data.image_shape:
        raise UserError(f"the model takes images of {_shape(shape)} but {dataset} has {_shape(data.image_shape)}; "
                        "import it with a data set of its own image size (an IDX folder)")
    table = layer_table(imported.model)
    if not table.convs:
        raise UserError(f"{imported.source['file']} has no convolution; convlens looks inside convolutional networks")
    classes = table.layers[-1].output_shape
    if classes != (data.num_classes,):
        raise UserError(f"the model ends in {classes[0] if len(classes) == 1 else classes} outputs but {dataset} has "
                        f"{data.num_classes} classes")
    config = RunConfig().replace(data={"dataset": dataset},
                                 model={"model": f"imported {imported.source['file']}", "input_shape": shape})
    _remove_abandoned(out)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".importing", dir=out.parent))
    try:
        runs.write_json(folder / runs.CONFIG, config.to_dict())
        runs.write_json(folder / runs.GRAPH, imported.graph)
        runs.save_weights(folder / runs.WEIGHTS, imported.model, config)
        metrics = evaluate_run(folder, dataset=data)
        os.chmod(folder, 0o755)  # mkdtemp makes folders private; run folders are meant to be shared
        try:
            os.rename(folder, out)  # never replaces a folder with files: a second import that won the race keeps its
        except OSError:
            raise UserError(f"{out} was written by another process during this import; choose another run folder") \
                from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    files = [out / runs.CONFIG, out / runs.GRAPH, out / runs.WEIGHTS, out / runs.METRICS]
    return Result(files, {"source": imported.source, "metrics": metrics})


def _check_out(out: Path) -> None:
    if os.path.lexists(out):
        raise UserError(f"{out} already exists{' (a link)' if out.is_symlink() else ''}; choose another run folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make a run folder at {out}: {e.strerror} ({e.filename}); choose another path") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"cannot write into {out.parent}; choose another run folder")


def _remove_abandoned(out: Path) -> None:
    """Delete the half-written folders of imports to `out` whose process is gone (killed with -9, say)."""
    for folder in out.parent.glob(f".{out.name}.*.importing"):
        pid = folder.name[len(out.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _shape(shape: tuple[int, ...]) -> str:
    c, h, w = shape
    return f"{h}x{w} with {c} channel{'s' if c > 1 else ''}"
