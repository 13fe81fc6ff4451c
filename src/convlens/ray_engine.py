"""Sweeps and seed studies on Ray: each run of a sweep, or each share of a study's images, is a Ray task.

Workers need not share a filesystem with the driver. A task trains into a folder of its own; after
every epoch it sends the run folder (checkpoint included) to a store actor beside the driver, and
when it finishes it returns the whole folder, which the driver writes into place at once (staged,
then renamed). A task whose worker dies is retried by Ray; the retry takes the last stored folder
and resumes from its last finished epoch, so a lost node costs at most one epoch per run and never
a finished run, and the result equals an uninterrupted run bit for bit (same thread count and CPU kind).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from .errors import UserError
from .storage import replaced_folder

RETRIES = 3  # times Ray restarts a task whose worker died (its own default for tasks)
# Cores per task: what the local pool gives each run, so a run's weights are the same bit for bit.
THREADS = min(2, os.cpu_count() or 1)
STORE = "convlens-sweep-checkpoints"


def pack(folder: Path) -> bytes:
    """Return a run folder as the bytes of an uncompressed tar (weights do not compress)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Write a packed run folder's files into folder (which must be empty or absent)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")


def start(address: str | None):
    """Connect to Ray (a local instance when address is None); return the ray module."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray engine needs Ray: pip install 'convlens[ray]' (or pip install ray)") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=True)
        except ConnectionError as e:
            raise UserError(f"cannot reach the Ray cluster at {address}: {e}") from None
    return ray


def _room(ray, gpus: float = 0) -> int:
    """Return how many tasks of THREADS cores (and `gpus` GPUs each) the cluster runs at once; at least 1."""
    held = ray.cluster_resources()
    room = max(1, int(held.get("CPU", THREADS) // THREADS))
    return max(1, min(room, int(held.get("GPU", gpus) // gpus))) if gpus else room


def train_on_ray(configs: list[dict], outs: list[Path], gpus: float, address: str | None):
    """Train each config as a Ray task; write each finished run folder to its out; yield (index, metrics) as
    the runs land, in the order they finish."""
    ray = start(address)
    store = _store_class(ray).options(name=STORE, get_if_exists=True).remote()
    task = ray.remote(num_cpus=THREADS, num_gpus=gpus, max_retries=RETRIES)(_train_task)
    # Ray lends a task's cores to the next one while it waits on the store, so a sweep submitted whole
    # ran two 2-thread runs on 2 cores (epochs 55-70 s instead of 12 s): submit only what the cluster holds.
    room = _room(ray, gpus)
    waiting = list(enumerate(zip(configs, outs)))
    pending = {}
    while waiting or pending:
        while waiting and len(pending) < room:
            k, (config, out) = waiting.pop(0)
            pending[task.remote(config, str(out.resolve()), THREADS, store)] = k
        (done,), _ = ray.wait(list(pending), num_returns=1)
        k = pending.pop(done)
        try:
            folder_bytes, metrics = ray.get(done)
        except ray.exceptions.RayError as e:  # the task raised, or its workers died more than RETRIES times
            cause = getattr(e, "cause", None) or e
            reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise UserError(f"the run {outs[k]} failed on Ray: {reason}") from None
        with replaced_folder(outs[k]) as stage:
            unpack(folder_bytes, stage)
        ray.get(store.forget.remote(str(outs[k].resolve())))
        yield k, metrics


def _store_class(ray):
    @ray.remote(num_cpus=0)
    class CheckpointStore:
        """The latest packed folder of each unfinished run, and the process that trains it (for tests)."""

        def __init__(self):
            self.folders: dict[str, bytes] = {}
            self.workers: dict[str, int] = {}

        def put(self, key: str, data: bytes) -> None:
            self.folders[key] = data

        def get(self, key: str) -> bytes | None:
            return self.folders.get(key)

        def started(self, key: str, pid: int) -> None:
            self.workers[key] = pid

        def worker(self, key: str) -> int | None:
            return self.workers.get(key)

        def holds(self, key: str) -> bool:
            return key in self.folders

        def forget(self, key: str) -> None:
            self.folders.pop(key, None)

    return CheckpointStore


def _train_task(config_dict: dict, key: str, threads: int, store) -> tuple[bytes, dict]:
    """Ray task: train one run in a private folder, resuming from the store's copy; return (packed folder, metrics).

    key is the run folder's path on the driver: unique in the cluster, and its last part names the run.
    """
    import ray
    import torch

    from .config import RunConfig
    from .jobs.train import train_run

    torch.set_num_threads(threads)  # the driver's count, the cores Ray reserved, whatever this node has
    store.started.remote(key, os.getpid())
    with tempfile.TemporaryDirectory(prefix="convlens-ray-") as work:
        folder = Path(work) / Path(key).name
        saved = ray.get(store.get.remote(key))
        if saved is not None:
            unpack(saved, folder)
        send_home = lambda run_dir: ray.get(store.put.remote(key, pack(run_dir)))  # noqa: E731
        metrics = train_run(RunConfig.from_dict(config_dict), folder, resume=saved is not None, progress=False,
                            after_epoch=send_home)
        return pack(folder), metrics


def study_on_ray(models: list, images, conv_layers: list[str], cka_layers: list[str], starts: list[int],
                 address: str | None):
    """Return the study's Sums, its batches shared out as Ray tasks (two cores each) and the parts added up.

    The models and images travel once through the object store; each task sends back only its sums.
    """
    ray = start(address)
    room = _room(ray)
    shares = [starts[k::room] for k in range(min(room, len(starts)))]
    models_ref, images_ref = ray.put(models), ray.put(images)
    task = ray.remote(num_cpus=THREADS)(_study_task)
    parts = ray.get([task.remote(models_ref, images_ref, conv_layers, cka_layers, share, THREADS) for share in shares])
    return sum(parts[1:], parts[0])


def _study_task(models, images, conv_layers, cka_layers, starts, threads):
    import torch

    from .compare.study import study_sums

    torch.set_num_threads(threads)
    return study_sums(models, images, conv_layers, cka_layers, starts)
