"""train() and evaluate(): one readable training recipe, its checkpoints, and test-set metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed, runs, storage
from .augment import augment, cutout
from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import UserError
from .models import build_model
from .progress import EpochProgress
from .schedules import lr_at
from .speed import (inference_batch, autocast, cpu_has_fast_bf16, images_to_device, maybe_compile, memory_format,
                    resolve_device, resolve_precision, retain_freed_memory)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    model: nn.Module  # trained, in eval mode, on the training device
    history: list[dict]  # one entry per epoch
    run_dir: Path | None
    dataset: Dataset


def make_optimizer(model: nn.Module, c) -> torch.optim.Optimizer:
    """Return the optimizer the config names; its lr is set every step by the schedule."""
    params = list(model.parameters())
    # fused: one kernel for all parameters instead of a few ops per tensor. On the 2-core AVX2 EPYC, a step
    # of fast-mlp's Adam took 1.1-1.3 ms for-loop, 0.52 ms foreach, 0.18 ms fused; `fast`'s epoch, 8
    # alternating rounds: median 3.74 s against 4.15 s. simple's SGD step: 0.21-0.25 ms, 0.10 ms fused.
    # Fused steps read their moments' memory as laid out as the parameter: see runs.load_checkpoint.
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0, fused=True)
    if c.optimizer == "adam":
        return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), fused=True)
    # Keras' RMSprop defaults: rho 0.9, eps 1e-7.
    return torch.optim.RMSprop(params, lr=c.lr, alpha=0.9, eps=1e-7, momentum=c.momentum)


def l2_penalty(model: nn.Module, l2: float) -> torch.Tensor:
    """Return Keras' kernel_regularizer=l2(l2) term: l2 * sum(w**2) over conv and dense kernels, not biases."""
    kernels = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return l2 * sum(w.pow(2).sum() for w in kernels)


# Names the parts of a step for torch.profiler (bench/epoch_profile.py); about 1 us each when no profiler runs.
phase = torch.profiler.record_function


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed dropout for an epoch and return its shuffling generator: any epoch replays from (seed, epoch) alone."""
    torch.manual_seed(seed * 1_000_003 + epoch)
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train(config: RunConfig, out: str | Path | None = None, resume: bool = False, progress: bool = False,
          after_epoch=None) -> TrainResult:
    """Train a model as the config says; with `out`, write the run folder (and resume from it if asked).

    The writing process holds the folder's lock all the while: a second writer is refused.
    after_epoch(run folder) is called once each epoch's checkpoint is written (a Ray task sends it home).
    """
    if out is None or not distributed.current_world().is_main:
        return _train(config, out, resume, progress, after_epoch)
    with storage.folder_lock(Path(out), "convlens train", create=True):
        return _train(config, out, resume, progress, after_epoch)


def _train(config: RunConfig, out: str | Path | None, resume: bool, progress: bool, after_epoch) -> TrainResult:
    config = config.validated()
    c = config.train
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and not resume and any((run_dir / name).exists() for name in (runs.CONFIG, runs.WEIGHTS)):
        raise UserError(f"{run_dir} already holds a run; continue it with `convlens train --resume {run_dir}`, "
                        "or choose another run folder")
    world = distributed.current_world()
    batch_size = distributed.rank_batch(c.batch_size, world)  # this process's share of the global batch
    device = resolve_device(c.device)
    if world.distributed:
        device = distributed.start(world, device)
    precision = resolve_precision(c.precision, device)
    fmt = memory_format(c.channels_last)
    if c.retain_memory:
        retain_freed_memory()
    dataset = load_dataset(config.data.dataset)
    config = config.replace(model={"input_shape": dataset.image_shape})  # the model is built for the data's images
    if c.cutout > min(dataset.image_shape[1:]):
        raise UserError(f"cutout {c.cutout} is larger than the {dataset.name} images ({dataset.image_shape[-1]} px)")
    (train_x, train_y), (val_x, val_y) = dataset.split(config.data.val_size)
    x, y = images_to_device(train_x, device), train_y.to(device)

    torch.manual_seed(c.seed)
    model = build_model(config.model.model, dataset.num_classes, dataset.image_shape).to(device, memory_format=fmt)
    optimizer = make_optimizer(model, c)
    history: list[dict] = []
    start_epoch = 0
    if run_dir is not None:
        start_epoch, history = _prepare_run_dir(run_dir, config, model, optimizer, resume, world.is_main)
    forward = distributed.wrap(maybe_compile(model, c.compile), device, world)
    steps_per_epoch = -(-len(y) // c.batch_size)  # of the global batch, as in one process

    bar = EpochProgress(c.epochs, steps_per_epoch, start_epoch, enabled=progress and world.is_main,
                        label=run_dir.name if run_dir is not None else "")
    with bar:
        for epoch in range(start_epoch, c.epochs):
            started = time.perf_counter()
            gen = seed_epoch(c.seed, epoch)
            order = distributed.shard(torch.randperm(len(y), generator=gen), world).to(device)
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            step_loss = torch.zeros(steps_per_epoch, device=device)  # filled on the device: no sync per step
            for step in range(steps_per_epoch):
                lr = lr_at(epoch + step / steps_per_epoch, c)
                with phase("data"):
                    idx = order[step * batch_size : (step + 1) * batch_size]
                    xb = cutout(augment(x[idx], c.augment, gen), c.cutout, gen)
                    xb, yb = xb.contiguous(memory_format=fmt), y[idx]
                with phase("forward"):
                    with autocast(precision, device):
                        logits = forward(xb)
                        loss = F.cross_entropy(logits.float(), yb, label_smoothing=c.label_smoothing)
                    if c.l2:
                        loss = loss + l2_penalty(model, c.l2)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(_diverged_message(epoch, step, run_dir, history))
                with phase("backward"):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                with phase("optimizer"):
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    if c.weight_decay:  # decoupled: shrink weights directly instead of adding to the gradient
                        with torch.no_grad():
                            torch._foreach_mul_(list(model.parameters()), 1.0 - lr * c.weight_decay)
                    optimizer.step()
                loss_sum += loss.detach() * len(yb)
                step_loss[step] = loss.detach()
                correct += (logits.argmax(1) == yb).sum()
                bar.step(epoch, loss_sum, correct, min((step + 1) * batch_size, len(order)), lr)
            loss_sum, correct = distributed.all_sum(loss_sum, world), distributed.all_sum(correct, world)
            step_loss = distributed.all_sum(step_loss, world) / world.size
            entry = {
                "epoch": epoch + 1,
                "train_loss": loss_sum.item() / (len(order) * world.size),  # len(y), plus DDP's wrap-around padding
                "train_accuracy": correct.item() / (len(order) * world.size),
                "lr": lr_at(epoch + 1, c),
                "step_loss": [float(f"{v:.4g}") for v in step_loss.tolist()],  # 4 digits: history.json stays small
                "seconds": time.perf_counter() - started,
                # What "the same seed gives the same weights" also depends on, as this epoch ran.
                "precision": precision, "threads": torch.get_num_threads(), "device": str(device),
                "cpu_bf16_units": cpu_has_fast_bf16(),
            }
            if len(val_y):
                v = evaluate(model, val_x, val_y, device=device, precision=precision, channels_last=c.channels_last)
                entry |= {"val_loss": v["loss"], "val_accuracy": v["accuracy"]}
            else:
                entry |= {"val_loss": None, "val_accuracy": None}
            history.append(entry)
            bar.end_epoch(entry)
            if run_dir is not None and world.is_main:
                _write_epoch(run_dir, model, optimizer, config, history)
                if after_epoch is not None:
                    after_epoch(run_dir)
        if run_dir is not None and world.is_main and history and start_epoch == c.epochs:
            # Resumed after the last epoch: the weights and history may be missing (a full disk cut
            # their writing short after the checkpoint); rebuild them from the checkpoint.
            _write_epoch(run_dir, model, optimizer, config, history, checkpoint=False)

    if world.distributed:
        identical = distributed.replicas_identical(model, world)
        del forward  # DDP's reducer holds the process group: it must go before the group does (see stop)
        distributed.stop()
        if not identical:
            raise RuntimeError("the ranks' weights differ after training; DDP kept them in step until now")
    model.eval()
    return TrainResult(model, history, run_dir, dataset)


def _prepare_run_dir(run_dir: Path, config: RunConfig, model, optimizer, resume: bool,
                     writer: bool = True) -> tuple[int, list[dict]]:
    """Create a new run folder (the writing rank only), or restore a resumed one; return (finished epochs, history)."""
    if not resume and not writer:
        return 0, []
    if not resume:
        try:
            runs.write_json(run_dir / runs.CONFIG, config.to_dict())
        except runs.WriteError as e:
            raise UserError(f"{e}; choose another run folder") from None
        return 0, []
    if not (run_dir / runs.CHECKPOINT).exists():
        return 0, []  # stopped before the first epoch ended: start again from the stored config
    history = runs.load_checkpoint(run_dir, model, optimizer)
    return len(history), history


def _write_epoch(run_dir: Path, model, optimizer, config: RunConfig, history: list[dict],
                 checkpoint: bool = True) -> None:
    # The checkpoint is the source of truth for --resume: it carries the history, so a failure after
    # it (a full disk) is repaired by resuming. Ctrl-C waits for all three writes.
    try:
        with storage.interrupts_deferred():
            if checkpoint:
                runs.save_checkpoint(run_dir, model, optimizer, history, config)
            runs.save_weights(run_dir / runs.WEIGHTS, model, config)
            runs.write_json(run_dir / runs.HISTORY, history)
    except runs.WriteError as e:
        raise UserError(f"{e}. Free space or fix permissions, then `convlens train --resume {run_dir}`") from None


def _diverged_message(epoch: int, step: int, run_dir: Path | None, history: list[dict]) -> str:
    where = f"loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}"
    kept = f"; the checkpoint after epoch {len(history)} in {run_dir} is kept" if run_dir and history else ""
    return f"{where}{kept}. Lower lr or l2, or train in fp32 (precision fp32)"


@torch.no_grad()
def predict(model: nn.Module, images_u8: torch.Tensor, device: torch.device | str = "cpu", precision: str = "fp32",
            channels_last: bool = False, batch_size: int | None = None) -> torch.Tensor:
    """Return the logits (N, classes) of a model for uint8 images (N, [C,] H, W), in fp32 on the CPU."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    fmt = memory_format(channels_last)
    batch_size = batch_size or inference_batch(images_u8.shape[1:])
    out = []
    for i in range(0, len(images_u8), batch_size):
        xb = images_to_device(images_u8[i : i + batch_size], device).contiguous(memory_format=fmt)
        with autocast(precision, device):
            out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None,
             **predict_kwargs) -> dict:
    """Return accuracy, loss, per-class accuracy and the confusion matrix (rows = true class)."""
    logits = predict(model, images_u8, **predict_kwargs)
    labels = labels.cpu()
    num_classes = num_classes or logits.shape[1]
    pred = logits.argmax(1)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1)).tolist()
    return {
        "accuracy": (pred == labels).float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "predictions": pred,
    }


def most_confused(confusion: list[list[int]], class_names, k: int = 10) -> list[dict]:
    """Return the k most frequent (true, predicted) error pairs, most frequent first."""
    pairs = [
        {"true": class_names[t], "pred": class_names[p], "count": n}
        for t, row in enumerate(confusion)
        for p, n in enumerate(row)
        if t != p and n > 0
    ]
    return sorted(pairs, key=lambda d: -d["count"])[:k]
