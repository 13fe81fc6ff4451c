"""The run folder: config, history, metrics, weights and checkpoints, all written atomically.

    runs/NAME/
      config.json           the fully resolved RunConfig
      history.json          one entry per finished epoch
      model.safetensors     weights only, with the config in its metadata
      checkpoint.safetensors weights + optimizer state + the epoch it ends, for --resume
      metrics.json          test-set evaluation
      plots/                PNGs

Every file is written to a temporary name in the same folder and renamed into place, so a crash,
a full disk or Ctrl-C never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .config import RunConfig
from .errors import UserError
from .models import build_model
from .speed import for_inference

CONFIG, HISTORY, METRICS = "config.json", "history.json", "metrics.json"
WEIGHTS, CHECKPOINT = "model.safetensors", "checkpoint.safetensors"


class WriteError(UserError):
    """A file could not be written (disk full, permission denied); the previous version is intact."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path over path; on any failure path is left as it was.

    An OSError (full disk, no permission) becomes a WriteError naming the file and the reason.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); run files are meant to be shared
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}; the previous version, if any, is intact") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed process left in a folder (never a finished file); return them."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt: a checkpoint is never cut short.

    Outside the main thread signals cannot be caught, and a process started with SIGINT ignored
    (nohup, a background job) keeps ignoring it: in both cases the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def write_json(path: Path, data) -> None:
    """Write data as indented JSON, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path):
    """Return the JSON a file holds; a missing or corrupt file is a UserError."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; is {path.parent} a convlens run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); restore it or train again") from None


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors stores dense row-major tensors; channels_last weights must be made contiguous.
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write named tensors to a safetensors file, atomically."""
    atomic_write(path, lambda tmp: save_file(_tensors(tensors), str(tmp), metadata=metadata))


def save_weights(path: Path, model: nn.Module, config: RunConfig) -> None:
    """Write the model's weights to a safetensors file with the config in its metadata."""
    save_tensors(path, model.state_dict(), {"config": json.dumps(config.to_dict())})


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors, metadata) of a safetensors file; missing, truncated or corrupt files are a UserError."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; train the run first")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}); train again or restore it") from None


def load_weights_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy tensors into the model; a mismatch with the model's layers is a UserError naming it."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"{source} does not fit the model in config.json ({first})") from None


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, config: RunConfig) -> None:
    """Write weights and optimizer state after `epoch` finished epochs, atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    meta = {"epoch": str(epoch), "config": json.dumps(config.to_dict())}
    save_tensors(run_dir / CHECKPOINT, tensors, meta)


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore weights and optimizer state from the run's checkpoint; return the epochs it had finished."""
    path = run_dir / CHECKPOINT
    tensors, meta = load_tensors(path)
    load_weights_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
    return int(meta.get("epoch", 0))


@dataclass
class Run:
    """A trained run loaded from its folder."""

    path: Path
    config: RunConfig
    model: nn.Module
    history: list[dict]

    @property
    def metrics(self) -> dict | None:
        p = self.path / METRICS
        return read_json(p) if p.exists() else None


def read_config(run_dir: Path) -> RunConfig:
    """Return the RunConfig stored in a run folder."""
    if not Path(run_dir).is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    return RunConfig.from_dict(read_json(Path(run_dir) / CONFIG))


def load_run(run_dir: str | Path, num_classes: int | None = None) -> Run:
    """Return the config, trained model (eval mode, CPU, channels_last) and history of a run folder."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tensors, _ = load_tensors(run_dir / WEIGHTS)
    if num_classes is None:  # the logits' bias has one entry per class
        num_classes = int(tensors["logits.bias"].shape[0]) if "logits.bias" in tensors else 10
    model = build_model(config.model.model, num_classes=num_classes)
    load_weights_into(model, tensors, run_dir / WEIGHTS)
    history_path = run_dir / HISTORY
    history = read_json(history_path) if history_path.exists() else []
    return Run(run_dir, config, for_inference(model), history)
