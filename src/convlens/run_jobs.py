"""The jobs as a run's methods, for notebooks: `run.maps("4:3")` as a cell's last line draws and shows itself.

Each method calls the job of its name in convlens.jobs with this run first; the job keeps its own
parameters, defaults and checks (passed through as keywords, not repeated here) and returns its
Result, whose figures Jupyter shows inline. Jobs are imported on the call, so opening a run stays cheap.
Test images are indices or CLASS:COUNT text, as the CLI's --images takes them.
"""

from __future__ import annotations

from pathlib import Path


class RunJobs:
    """Mixed into Run: one method per job that reads a run."""

    def maps(self, images: str | int | list[int], layers: list[str] | None = None, **options):
        """Every map of each layer (default: all map layers) for the test images ("4:3,9:1" or indices)."""
        from .jobs.maps import maps

        return maps(self, self.test_indices(images), layers, **options)

    def maps_across(self, images: str | int | list[int], layer: str | None = None, **options):
        """Some maps of one layer across the test images: chosen=[74, 52], or differing=(4, 9) for the most separating."""
        from .jobs.maps import maps_across

        return maps_across(self, self.test_indices(images), layer, **options)

    def kernels(self, layer: str | None = None, **options):
        """The kernels of a conv layer (default: the first), one per input channel."""
        from .jobs.kernels import kernels

        return kernels(self, layer, **options)

    def patterns(self, layer: str | None = None, pair: tuple[str | int, str | int] | None = None, **options):
        """Class-mean maps of a layer (default: the last conv) and, for a pair of classes, the maps that separate them."""
        from .jobs.patterns import patterns

        return patterns(self, layer, pair, **options)

    def top(self, layer: str | None = None, **options):
        """The k test images that drive each map (or just `maps`) of a layer hardest, cropped to its receptive field."""
        from .jobs.top import top

        return top(self, layer, **options)

    def probe(self, layers: list[str] | None = None, **options):
        """How well a linear probe and nearest class means read the class from each layer."""
        from .jobs.probe import probe

        return probe(self, layers, **options)

    def oip(self, layers: list[str] | None = None, maps: list[int] | None = None, **options):
        """The OIPs of maps of conv layers: the inputs, found from noise, that drive each map hardest."""
        from .jobs.oip import layer_oip

        return layer_oip(self, layers, maps, **options)

    def class_oip(self, classes: list[str | int] | None = None, **options):
        """The OIP of each class's logit (default: every class), and what the model calls it."""
        from .jobs.oip import class_oip

        return class_oip(self, classes, **options)

    def explain(self, index: int, methods: list[str] | None = None, **options):
        """Attribution maps of one test image by each method (saliency, IG, Grad-CAM, occlusion, ...)."""
        from .jobs.explain import explain

        return explain(self, index, methods, **options)

    def errors(self, **options):
        """The misclassified test images grouped by (true, predicted) pair, each pair explained."""
        from .jobs.errors import errors

        return errors(self, **options)

    def report(self, **options) -> Path:
        """Write report.html: the run and every inspection it holds, in one offline file; return its path."""
        from .jobs.report import report

        return report(self.path, **options)
