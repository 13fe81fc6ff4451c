"""Train and evaluate a run folder: what `convlens train` and `convlens eval` do.

training.py stays free of drawing; this module writes the plots and metrics a run folder holds.
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..config import RunConfig
from ..data import Dataset, load_dataset
from ..distributed import current_world
from ..draw import figures
from ..errors import UserError
from ..storage import folder_lock
from ..schedules import lr_at
from ..training import TrainResult, evaluate, most_confused, train
from . import Result


def train_run(config: RunConfig, out: str | Path, resume: bool = False, progress: bool = True, after_epoch=None) -> dict:
    """Train into a run folder, draw its curves, evaluate it on the test set; return the metrics.

    Under torchrun every rank trains; only rank 0 draws and evaluates (holding the folder's lock
    throughout), the others return {}.
    """
    if not current_world().is_main:
        train(config, out=out, resume=resume, progress=progress)
        return {}
    with folder_lock(Path(out), "convlens train", create=True):
        result: TrainResult = train(config, out=out, resume=resume, progress=progress, after_epoch=after_epoch)
        figures.save(figures.curves({Path(out).name: (result.history, lr_schedule(config.train))}),
                     Path(out) / runs.PLOTS / runs.CURVES)
        return evaluate_run(out, dataset=result.dataset, model=result.model)


def curves(run_dirs: list[str | Path], out: str | Path | None = None) -> Result:
    """Draw the training curves of runs: one run into RUN/plots/curves.png, several overlaid in one figure.

    Several runs go to `out`, default curves-A-vs-B.png beside the first run. Loss is drawn per step
    for runs that recorded it, the learning rate from each run's schedule.
    """
    if not run_dirs:
        raise UserError("curves needs one or more run folders")
    opened = [runs.Run(d) for d in run_dirs]
    names = [r.path.name for r in opened]
    if len(set(names)) < len(names):  # runs/a/s0 and runs/b/s0: tell them apart by their paths
        names = [str(r.path) for r in opened]
    for run in opened:
        if not run.history:
            raise UserError(f"{run.path} has no training history to draw (an imported model, or no epoch finished)")
    drawn = {name: (run.history, lr_schedule(run.config.train)) for name, run in zip(names, opened)}
    if out is None:
        out = (opened[0].path / runs.PLOTS / runs.CURVES if len(opened) == 1
               else opened[0].path.resolve().parent / f"curves-{'-vs-'.join(r.path.name for r in opened)}.png")
    return Result([figures.save(figures.curves(drawn), out)],
                  {name: history[-1] for name, (history, _) in drawn.items()})


def lr_schedule(train_config, points: int = 200) -> list[tuple[float, float]]:
    """Return (epoch, lr) pairs through a training, as the schedule sets the rate each step."""
    epochs = train_config.epochs
    return [(epochs * k / points, lr_at(epochs * k / points, train_config)) for k in range(points + 1)]


def evaluate_run(run_dir: str | Path, dataset: str | Dataset | None = None, model=None) -> dict:
    """Evaluate a run on a test set; write metrics.json, plots/confusion.png and plots/misclassified.png.

    On another data set than the run's own the files are metrics-DATASET.json and so on, beside
    the run's own (runs.evaluation_files). The metrics are stamped with the weights' sha256.
    """
    with folder_lock(Path(run_dir), "convlens eval"):
        return _evaluate(Path(run_dir), dataset, model)


def _evaluate(run_dir: Path, dataset, model) -> dict:
    run = runs.Run(run_dir)
    model = model if model is not None else run.model
    if not isinstance(dataset, Dataset):
        dataset = run.dataset if dataset is None else load_dataset(dataset)
    metrics_name, confusion_name, misclassified_name = runs.evaluation_files(dataset.name, run.config.data.dataset)
    device = next(model.parameters()).device
    result = evaluate(model, dataset.test_images, dataset.test_labels, num_classes=dataset.num_classes, device=device)
    names = dataset.class_names
    metrics = {
        "dataset": dataset.name,
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "per_class_accuracy": dict(zip(names, result["per_class_accuracy"])),
        "confusion_matrix": result["confusion_matrix"],
        "most_confused": most_confused(result["confusion_matrix"], names),
        "weights_sha256": run.weights_sha256,
    }
    runs.write_json(run_dir / metrics_name, metrics)
    plots = run_dir / runs.PLOTS
    figures.save(figures.confusion(result["confusion_matrix"], names), plots / confusion_name)
    figures.save(figures.misclassified(dataset.test_images, dataset.test_labels, result["predictions"], names),
                 plots / misclassified_name)
    return metrics
