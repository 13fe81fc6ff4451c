"""Reading a `.pt2` archive (torch.export.save) without running anything it holds.

`torch.export.load` unpickles parts of the archive (sample inputs, with a fall-back to unsafe
loading; weights and constants marked as pickled; opaque objects), loads compiled AOTInductor
libraries, evaluates symbolic shapes with `sympy.sympify` (which calls `eval`) and writes the
graph's names into Python source that it `exec`s. So convlens reads only the program's JSON and
the raw bytes of its tensors, refuses everything else with one line, checks every string that
reaches sympy or fx's code generator, and hands torch's own deserializer the checked pieces.
The sample inputs are never read: the graph's placeholders already carry the input shape.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

import torch
import torch.utils._sympy.functions as sympy_functions
from torch._export.serde import schema
from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass, deserialize_scalar_type

from ..errors import UserError
from .limits import unpacked_limit

MODEL = "models/model.json"  # torch.export.save writes one program, named "model"
WEIGHTS = ("data/weights/", "data/weights/model_weights_config.json")
CONSTANTS = ("data/constants/", "data/constants/model_constants_config.json")
TENSOR_RECORD = re.compile(r"(weight|tensor)_\d+")  # raw bytes; custom_obj_* and opaque_obj_* are pickles

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
QUALIFIED = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")  # parameter and module paths: features.0.weight
TARGET = re.compile(r"torch\.ops\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.[a-z_]+")
EXPRESSION_TOKEN = re.compile(r"\s+|\d+|\*\*|//|[-+*/%(),<>=!]|[A-Za-z_][A-Za-z0-9_]*")
SYMBOL = re.compile(r"[a-z]+\d+")  # torch's shape symbols: s0, u3
SYMPY_NAMES = {name for name in vars(sympy_functions) if name[:1].isupper()} | {"Max", "Min", "Abs"}
KEPT_METADATA = ("nn_module_stack",)  # what the converter reads; stack traces become code comments


def load(path: Path) -> torch.export.ExportedProgram:
    """Return the program a `.pt2` file holds, read from its JSON and raw tensor bytes alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = _records(archive, path)
            program = _json(archive, records, MODEL, path)
            state_dict = _tensors(archive, records, *WEIGHTS, path)
            constants = _tensors(archive, records, *CONSTANTS, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is a damaged .pt2 archive ({type(e).__name__}); save it again with "
                        "torch.export.save") from None
    _check_program(program, path)
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except Exception as e:  # a program torch cannot rebuild surfaces as many types; none ran user code
        raise UserError(f"{path} is not a readable torch.export program ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''}); save it again with torch.export.save") from None


def _records(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """Return the archive's members by name below its one top folder, after checking its format."""
    infos = archive.infolist()
    marks = [i for i in infos if i.filename.count("/") == 1 and i.filename.endswith("/archive_format")]
    if len(marks) != 1 or archive.read(marks[0]).strip() != b"pt2":
        raise UserError(f"{path} is not a torch.export .pt2 archive (no archive_format 'pt2'); older or other "
                        "layouts are not read, since they are pickles: save it again with torch.export.save")
    top = marks[0].filename.split("/")[0] + "/"
    records = {i.filename.removeprefix(top): i for i in infos if i.filename.startswith(top)}
    if any(name.startswith("data/aotinductor/") for name in records):
        raise UserError(f"{path} holds AOTInductor-compiled code, which convlens never loads; save the program "
                        "alone with torch.export.save")
    if (unpacked := sum(info.file_size for info in infos)) > unpacked_limit(path.stat().st_size):
        raise UserError(f"{path} unpacks to {unpacked:,} bytes, far more than a model of its size (a zip bomb?); "
                        "refused")
    return records


def _json(archive: zipfile.ZipFile, records: dict, name: str, path: Path):
    if name not in records:
        raise UserError(f"{path} has no {name}: not a torch.export program, or saved by an older torch")
    try:
        return json.loads(archive.read(records[name]))
    except ValueError:
        raise UserError(f"{path}: {name} is not valid JSON (the file is damaged)") from None


def _tensors(archive: zipfile.ZipFile, records: dict, folder: str, config_name: str,
             path: Path) -> dict[str, torch.Tensor]:
    """Return the tensors a payload config lists, built from their raw bytes; refuse any pickled payload."""
    config = _json(archive, records, config_name, path)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise UserError(f"{path}: {config_name} is not a payload config")
    tensors, storages = {}, {}
    for fqn, meta in entries.items():
        record = meta.get("path_name") if isinstance(meta, dict) else None
        if meta.get("use_pickle") or not isinstance(record, str) or not TENSOR_RECORD.fullmatch(record):
            raise UserError(f"{path}: '{fqn}' is stored as a pickle or a Python object ({record}), which convlens "
                            "never loads, since unpickling runs code; export plain tensors")
        if record not in storages:
            storages[record] = _storage(archive, records, folder + record, meta, path)
        tensor = _strided(storages[record], meta, fqn, path)
        tensors[fqn] = torch.nn.Parameter(tensor, requires_grad=False) if meta.get("is_param") else tensor
    return tensors


def _storage(archive: zipfile.ZipFile, records: dict, name: str, meta: dict, path: Path) -> torch.Tensor:
    try:
        dtype = deserialize_scalar_type(meta["tensor_meta"]["dtype"])
    except (KeyError, TypeError):
        raise UserError(f"{path}: {name} has no tensor dtype") from None
    if name not in records:
        raise UserError(f"{path} lists {name} but does not hold it")
    data = bytearray(archive.read(records[name]))
    if len(data) % dtype.itemsize:
        raise UserError(f"{path}: {name} holds {len(data)} bytes, not a whole number of {dtype} values")
    return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)


def _strided(storage: torch.Tensor, meta: dict, fqn: str, path: Path) -> torch.Tensor:
    """Return the tensor `meta` describes as a view of `storage`, after checking that it lies inside."""
    tensor_meta = meta["tensor_meta"]
    try:
        sizes = [s["as_int"] for s in tensor_meta["sizes"]]
        strides = [s["as_int"] for s in tensor_meta["strides"]]
        offset = tensor_meta["storage_offset"]["as_int"]
    except (KeyError, TypeError):
        raise UserError(f"{path}: '{fqn}' has a symbolic or missing shape; export with static shapes") from None
    ints = sizes + strides + [offset]
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(sizes) != len(strides):
        raise UserError(f"{path}: '{fqn}' declares an impossible shape {sizes}")
    last = offset + sum((n - 1) * s for n, s in zip(sizes, strides)) if math.prod(sizes) else -1
    if last >= storage.numel():
        raise UserError(f"{path}: '{fqn}' declares shape {sizes}, more than its {storage.numel()} stored values")
    if math.prod(sizes) == 0:
        return torch.empty(sizes, dtype=storage.dtype)
    return torch.as_strided(storage, sizes, strides, offset)


def _check_program(program, path: Path) -> None:
    """Refuse any string that would reach sympy's eval or fx's generated code unchecked; drop unread metadata."""
    if not isinstance(program, dict):
        raise UserError(f"{path}: {MODEL} is not a program")
    program["guards_code"] = []  # guard code is Python source, run only by ExportedProgram.module()

    def walk(value, key: str = ""):
        if isinstance(value, dict):
            for k, v in list(value.items()):
                if k == "metadata" and isinstance(v, dict):
                    value[k] = {m: v[m] for m in KEPT_METADATA if m in v}
                    continue
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            _check_string(key, value, path)

    walk(program)


def _check_string(key: str, value: str, path: Path) -> None:
    if key == "expr_str":
        tokens = EXPRESSION_TOKEN.findall(value)
        names = [t for t in tokens if IDENTIFIER.fullmatch(t)]
        if "".join(tokens) != value or any(not SYMBOL.fullmatch(n) and n not in SYMPY_NAMES for n in names):
            raise UserError(f"{path} holds a shape expression that is not plain arithmetic ({value[:60]!r}); "
                            "refused, since torch would evaluate it as Python")
    elif key == "target":
        if not TARGET.fullmatch(value):
            raise UserError(f"{path} calls {value[:60]!r}, not an operator of torch.ops; refused")
    elif key in ("name", "forward_arg_names"):
        if not IDENTIFIER.fullmatch(value):
            raise UserError(f"{path} names a value {value[:60]!r}, not an identifier; refused, since torch writes "
                            "names into the Python code it runs")
    elif (key.endswith("_name") or key == "fqn") and value and not QUALIFIED.fullmatch(value):
        raise UserError(f"{path} has a {key} {value[:60]!r} that is not a module path; refused")
