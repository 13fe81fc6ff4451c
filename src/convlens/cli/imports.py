"""convlens import: a run folder from a model trained elsewhere (Keras .keras or .h5, ONNX, PyTorch .pt2)."""

from __future__ import annotations

from ..errors import UserError
from .flags import console, print_written


def add(sub) -> None:
    imp = sub.add_parser("import", help="make a run folder from a model trained elsewhere (Keras .keras/.h5, ONNX, PyTorch .pt2)",
                         description="Import a model file as a run folder: every command (summary, eval, maps, "
                         "kernels, oip, explain, compare, report, serve, ...) then works on it. Pixels reach the "
                         "model as pixels / 255, the articles' convention, unless --mean/--std or the model's own "
                         "Rescaling layer say otherwise. Example: convlens import articles.keras --dataset mnist "
                         "--out runs/articles-keras")
    imp.add_argument("model", help="the model file: Keras 3 .keras, legacy HDF5 .h5, ONNX .onnx, or a torch.export .pt2 "
                     "(from Python, convlens.import_model(module, ...) takes any nn.Module)")
    imp.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or idx:DIR: the images the model takes "
                     "(default mnist)")
    imp.add_argument("--out", required=True, help="run folder to create, e.g. runs/articles-keras")
    imp.add_argument("--mean", help="subtract this from pixels in [0, 1] first (one value, or one per channel: "
                     "0.485,0.456,0.406)")
    imp.add_argument("--std", help="then divide by this (one value, or one per channel)")
    imp.set_defaults(handler=run_import)


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} '{text}' must be numbers separated by commas, e.g. 0.1307 or 0.485,0.456,0.406") from None


def run_import(args) -> None:
    from ..jobs.import_model import import_model

    result = import_model(args.model, args.dataset, args.out, _floats(args.mean, "--mean"), _floats(args.std, "--std"))
    source, metrics = result.data["source"], result.data["metrics"]
    console.print(f"imported {source['file']} ({source['format']} {source['framework_version']}, sha256 "
                  f"{source['sha256'][:12]}...) into {args.out}")
    console.print(f"test accuracy [bold]{metrics['test_accuracy']:.4f}[/] on {metrics['dataset']}; every command now "
                  f"works on it, e.g. convlens maps {args.out}")
    print_written(result.files)
