"""The test images that drive each map hardest, searched in the background while the page is in use.

Searching them when a map was first hovered took ~7 s per layer with nothing on the page to say so.
Now one search covers every map layer (one forward pass per batch captures them all), starts when
the page opens the run, and takes the model lock one batch at a time, so a stroke on the pad waits
for one batch at most; a hover before the end gets how far the search is, and the page shows it.
"""

from __future__ import annotations

import atexit
import threading
import weakref

import torch

from ..errors import UserError
from ..inspection.maps import RunningTop, TopActivations, feature_maps
from ..speed import inference_batch


_searches: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_searches() -> None:
    # A thread still inside torch when the interpreter ends aborts it ("terminate called without an
    # active exception"): stop every search at its next batch and wait for it.
    for search in list(_searches):
        search.stop()


class TopInputSearch:
    """One background pass over the images that keeps each map layer's k strongest."""

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, layers: list[str], k: int, lock: threading.Lock):
        self.model, self.images, self.layers, self.lock = model, images, layers, lock
        self.total, self.done = len(images), 0
        self._running = {layer: RunningTop(layer, min(k, len(images))) for layer in layers}
        self._failure: str | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._stopping = threading.Event()
        _searches.add(self)

    def start(self) -> None:
        """Begin the search once; later calls do nothing."""
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._search, name="top-inputs", daemon=True)
                self._thread.start()

    @property
    def finished(self) -> bool:
        return self.done == self.total

    def of(self, layer: str) -> TopActivations | None:
        """Return the layer's top images, or None while the search is still going (it is started if it was not)."""
        self.start()
        if self._failure:
            raise UserError(f"the search for the top test images failed: {self._failure}")
        return self._running[layer].result() if self.finished else None

    def join(self, timeout: float | None = None) -> None:
        self.start()
        self._thread.join(timeout)

    def stop(self) -> None:
        """End the search after the batch it is in (a stopped search never finishes)."""
        self._stopping.set()
        with self._starting:
            if self._thread is not None:
                self._thread.join()

    def _search(self) -> None:
        size = inference_batch(self.images.shape[1:])
        try:
            for start in range(0, self.total, size):
                if self._stopping.is_set():
                    return
                with self.lock:  # the model's hooks belong to one request at a time
                    maps = feature_maps(self.model, self.images[start : start + size], self.layers)
                for layer, layer_maps in maps.items():
                    self._running[layer].add(start, layer_maps)
                self.done = min(self.total, start + size)  # written last: a reader never sees a half-added batch
        except Exception as e:  # noqa: BLE001 - reported on the next request instead of dying unseen in a thread
            self._failure = f"{type(e).__name__}: {e}"
