"""Training across processes with PyTorch's own engine: torchrun starts them, DDP averages the gradients.

convlens adds only what its device-resident data needs: each rank takes its share of the epoch's
shuffled order exactly as torch.utils.data.DistributedSampler would (pad by wrapping to a multiple
of the world size, then every world-size-th index from the rank), and the global batch is split
evenly, so rank r's k-th batch holds the images of the single-process k-th batch that fall to it.
Averaging the ranks' gradients then gives the single-process gradient up to float summation order.
Only rank 0 writes the run folder.
"""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """Return this process's place, read from the variables torchrun sets (one process when absent)."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", 1))
    return World(int(env.get("RANK", 0)), size, int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", size)))


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPU, NCCL on CUDA) and return this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        # Ranks on one machine share its cores; oversubscribing threads made every rank slower.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    """Leave the process group once every rank has arrived, and free it.

    Without the barrier a rank that finished first tore its group down while another still talked
    to it; with DDP's reducer still holding the group, gloo's threads outlived destroy_process_group
    and the interpreter's exit aborted ("terminate called without an active exception").
    """
    if dist.is_initialized():
        dist.barrier()
        gc.collect()  # the reducer of a DDP wrapper just dropped releases its hold on the group here
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> None:
    """End a torchrun worker at once, streams flushed: no C++ destructor of a torch thread runs at exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rank_batch(global_batch: int, world: World) -> int:
    """Return each rank's share of the global batch; it must divide evenly for the equivalence to hold."""
    if global_batch % world.size:
        raise UserError(f"batch_size {global_batch} must be a multiple of the {world.size} processes")
    return global_batch // world.size


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """Return this rank's part of an epoch's order, as DistributedSampler(drop_last=False) takes it."""
    if not world.distributed:
        return order
    total = -(-len(order) // world.size) * world.size
    padded = torch.cat([order, order[: total - len(order)]])
    return padded[world.rank : total : world.size]


def wrap(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """Return the model under DistributedDataParallel (the model itself when there is one process)."""
    if not world.distributed:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    """Return the sum of a tensor over all ranks."""
    if world.distributed:
        value = value.clone()
        dist.all_reduce(value)
    return value


def replicas_identical(model: nn.Module, world: World) -> bool:
    """Return whether every rank holds bit-identical weights (compared through a checksum of the raw bytes)."""
    if not world.distributed:
        return True
    flat = torch.cat([p.detach().float().flatten().cpu() for p in model.state_dict().values()])
    digest = torch.tensor([int.from_bytes(hashlib.sha256(flat.numpy().tobytes()).digest()[:7], "big")])
    gathered = [torch.zeros_like(digest) for _ in range(world.size)]
    dist.all_gather(gathered, digest)
    return all(int(g) == int(digest) for g in gathered)


def launch(nproc: int, argv: list[str], nnodes: int = 1, endpoint: str | None = None) -> int:
    """Run `convlens ARGV` in nproc processes on this machine through torchrun; return its exit code.

    With nnodes > 1 every machine runs the same launch; they meet at the endpoint through torchrun's
    c10d rendezvous, which numbers the ranks (the machine that hosts the endpoint need not be rank 0).
    """
    where = ["--standalone"] if nnodes == 1 else [
        f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=convlens"]
    command = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nproc}",
               "-m", "convlens", *argv]
    return subprocess.call(command)
