"""Dynamic batching for the live page: analyses that arrive together go through the model as one batch.

Like an inference server's dynamic batcher: a request joins a queue; while the model thread works on one
batch, the requests that arrive meanwhile gather, and go together as the next batch (at most MAX_BATCH).
A lone request waits for nobody: it goes as soon as the model thread is free, so one client alone is
as fast as without batching. Each request's own work (decoding, preprocessing) runs in the batch too,
on the model thread, and its error fails that request alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads MAX_BATCH for its --help without loading torch
    from .live import LiveRun, Prepared

# Images per forward pass. When every image carried its attribution overlay, 16 was best (`simple` on
# one thread, 2-core Xeon with AVX-512: per image 4.4 ms alone, 2.0 ms in 16s, 2.8 ms in 32s, whose
# IG steps left the cache). The page now sends most frames without it: with one frame in five
# carrying it, per image 537-568 us in 16s, 444-459 us in 32s, 350-376 us in 64s (2-core AMD EPYC,
# AVX2), and 50 clients drawing strokes got p95 134-143 ms at 32 against 144-153 ms at 16 and 64.
MAX_BATCH = 32


@dataclass
class _Request:
    live: LiveRun
    prepare: Callable[..., Prepared]  # runs on the model thread; raises UserError for bad input
    args: tuple
    answer: asyncio.Future


class Batcher:
    """Gathers analyse requests and answers them from batched forward passes on the model thread."""

    def __init__(self, in_model_thread: Callable[..., Awaitable], max_batch: int = MAX_BATCH):
        self.in_model_thread = in_model_thread
        self.max_batch = max_batch
        self.queue: list[_Request] = []
        self.draining = False

    async def analyse(self, live: LiveRun, prepare: Callable[..., Prepared], *args) -> dict:
        """Return the analysis of the image `prepare(*args)` makes, computed in a batch with its neighbours."""
        request = _Request(live, prepare, args, asyncio.get_running_loop().create_future())
        self.queue.append(request)
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await request.answer

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
                outcomes = await self.in_model_thread(_run_batch, batch)
                for request, outcome in zip(batch, outcomes):
                    if request.answer.done():  # the client left
                        continue
                    if isinstance(outcome, BaseException):
                        request.answer.set_exception(outcome)
                    else:
                        request.answer.set_result(outcome)
        finally:
            self.draining = False


def _run_batch(batch: list[_Request]) -> list[dict | Exception]:
    """Prepare each request (its failure is its own), then analyse each run's images in one pass."""
    outcomes: list[dict | Exception] = []
    prepared: dict[int, Prepared] = {}
    for i, request in enumerate(batch):
        try:
            prepared[i] = request.prepare(*request.args)
        except Exception as e:  # noqa: BLE001 - handed to that request's handler (UserError -> 400)
            outcomes.append(e)
            continue
        outcomes.append(None)
    for live in {id(r.live): r.live for r in batch}.values():
        indices = [i for i in prepared if batch[i].live is live]
        try:
            results = live.analyse([prepared[i] for i in indices])
        except Exception as e:  # noqa: BLE001 - every request of this run hears why (the app logs it once each)
            results = [e] * len(indices)
        for i, result in zip(indices, results):
            outcomes[i] = result
    return outcomes
