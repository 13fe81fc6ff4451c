"""The fast path: every speed trick is one named, switchable function with its reason and effect.

Measured on the 2-core AMD EPYC (AVX2, no bf16 units) these machines have, `simple`, one epoch:
    batch 64 fp32 NCHW        ~44 s   (a plain PyTorch loop)
    batch 256 channels_last   ~22 s   (channels_last alone: 1.2-1.9x, largest at big batches)
    bf16 autocast             ~200 s  (emulated bf16 is 7x *slower* without AMX/AVX512-BF16)
so bf16 is chosen automatically only where the hardware has it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import platform
import re
from pathlib import Path

import torch
from torch import nn

from .errors import UserError


def resolve_device(device: str = "auto") -> torch.device:
    """Return the torch device for auto|cpu|cuda; cuda when asked for but absent is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is available; use the cpu device")
    return torch.device(device)


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""  # not Linux: no flags known, so no bf16 units assumed


@functools.cache
def _cpu_flags() -> set[str]:
    found = re.search(r"flags\s*:\s*(.+)", _cpuinfo())
    return set(found[1].split()) if found else set()


def cpu_has_fast_bf16() -> bool:
    """Return whether this CPU has bf16 matrix units (AMX or AVX512-BF16), read from /proc/cpuinfo."""
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def cpu_description() -> str:
    """Return the CPU's model name, thread count and the vector/matrix flags that decide its speed, for speed figures."""
    name = re.search(r"model name\s*:\s*(.+)", _cpuinfo())
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in _cpu_flags()]
    return f"{name[1] if name else platform.processor()}, {torch.get_num_threads()} threads, flags: {' '.join(shown)}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """Return fp32 or bf16: auto picks bf16 only where it was measured faster, on CPUs with bf16 units.

    On an H100, bf16 autocast made one epoch of `simple` 2x *slower* (2.4 s against 1.2 s): nets this
    small are bound by kernel launches, and autocast adds casts around every conv.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: torch.device):
    """Return the autocast context for a precision; bf16 keeps weights fp32 and runs matmuls/convs in bf16."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def retain_freed_memory() -> bool:
    """Keep memory the process frees for its next allocation (glibc); return whether it could be set.

    glibc hands blocks over 128 KB back to the kernel on free, so each step's activations come back
    as fresh pages, and every first touch of a page is a fault: a memset of one 3 MB activation took
    0.8 ms. Keeping them made a step of `fast` 1.2-1.55x faster (epoch 3.8-4.3 s -> 2.8-3.2 s, batch
    256, 2-core Xeon with AVX-512, interleaved runs) at the cost of the process holding its peak.
    PyTorch's CPU tuning guide gets the same from jemalloc or tcmalloc; this needs no preload.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False  # not glibc (macOS, musl): their allocators keep freed memory by themselves
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, (1 << 31) - 1))


def memory_format(channels_last: bool) -> torch.memory_format:
    """Return the layout for images and conv weights.

    channels_last (NHWC) lets oneDNN/cuDNN pick their fastest conv kernels without reordering on
    every call; measured 1.2x at batch 64 and 1.9x at batch 256 for `simple` on an AVX2 CPU.
    """
    return torch.channels_last if channels_last else torch.contiguous_format


def images_to_device(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return uint8 images (N, H, W) or (N, C, H, W) as float (N, C, H, W) in [0, 1] on the device.

    Converted once for the whole set, so a batch is a slice and not a per-sample transform: this
    is what takes the DataLoader (about a fifth of a plain loop's time on MNIST) off the hot path.
    """
    images = images_u8.to(device)
    return (images.unsqueeze(1) if images.dim() == 3 else images).float().div_(255.0)  # (N, C, H, W)


# Inference batch: 256 images keep a layer's activations in cache. Measured for `simple` with
# channels_last weights: 11.4k img/s at 256 against 4.4k at 1000 (and 2.9k NCHW at 1000).
INFERENCE_BATCH = 256


def inference_batch(image_shape) -> int:
    """Return how many images of (C, H, W) or (H, W) go through a model at once: INFERENCE_BATCH MNIST digits'
    worth of pixels. 256 pictures of 224x224 through ResNet50 held gigabytes of activations; 4 hold 60 MB."""
    pixels = math.prod(image_shape[-2:])
    return max(1, min(INFERENCE_BATCH, INFERENCE_BATCH * 28 * 28 // pixels))


def for_inference(model: nn.Module) -> nn.Module:
    """Return the model in eval mode with channels_last weights: 2-4x faster forward passes on CPU."""
    return model.to(memory_format=torch.channels_last).eval()


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """Return the model compiled with torch.compile when enabled.

    Compilation took about half a minute on a 2-core CPU for one epoch of `simple`, so it is off by default and
    only worth it for long runs.
    """
    return torch.compile(model) if enabled else model
