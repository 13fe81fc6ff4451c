"""Real-size models (issue 29): ResNet50 and MobileNetV2 at 224x224x3, every command's time and peak memory.

usage: python bench/big_models.py [--model resnet50|mobilenetv2] [--test 200] [--oip-steps 96] [--json PATH]
       (--oip-steps 4 measures 4 steps and scales the time to the default 96: a full search takes most of an hour)

The nets are torchvision's, written in tests/importers/nets.py (10 classes: the picture folder's),
saved with torch.export.save as a user would, and imported from that .pt2 with an image folder of
real MNIST digits scaled to 224x224 and tinted (100 training and --test test pictures). Each job
runs in this process, timed on its own; the baseline of each is the plain-PyTorch work it cannot do
without, measured in the same run:
  import        read + convert + verify     baseline: torch.export.load of the same file
  evaluate      the test set's metrics      baseline: the module's forward pass on the same pictures
  maps          every layer, one picture    baseline: one forward pass keeping every layer's output
  oip           64 maps of a middle layer   baseline: that many forward+backward passes of the module
  report        report.html                 (no baseline: it is figures and HTML)
  live page     one uploaded picture        baseline: one forward pass
Targets on 2 cores: import <= 20 s, maps <= 10 s, oip <= 60 s, report <= 60 s, live page <= 1 s;
peak memory under 4 GB (ru_maxrss of this process, which holds all of it).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from convlens.data import load_dataset
from convlens.importers import import_file
from convlens.jobs.import_model import import_model
from convlens.jobs.maps import maps
from convlens.jobs.oip import layer_oip
from convlens.jobs.report import report
from convlens.oip.ascent import Ascent
from convlens.runs import load_run
from convlens.speed import cpu_description, inference_batch
from convlens.web.live import LiveRun

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "importers"))  # the nets live with the tests
from nets import MobileNetV2, resnet50, with_trained_statistics  # noqa: E402

MODELS = {"resnet50": lambda: resnet50(10), "mobilenetv2": lambda: MobileNetV2(10)}
TARGETS = {"import": 20.0, "maps": 10.0, "oip": 60.0, "report": 60.0, "live page": 1.0}
QUIET = {"log": lambda *a: None}


def picture_folder(root: Path, test: int) -> Path:
    """Real digits at 224x224 in colour, one folder per class: 100 training pictures and `test` test pictures."""
    mnist = load_dataset("mnist")
    for split, images, labels, count in (("train", mnist.train_images, mnist.train_labels, 100),
                                         ("test", mnist.test_images, mnist.test_labels, test)):
        for k in range(count):
            folder = root / split / str(int(labels[k]))
            folder.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray(images[k].numpy()).resize((224, 224), Image.Resampling.BILINEAR)
            Image.merge("RGB", (grey, grey.point(lambda v: v * 0.8), grey.point(lambda v: 255 - v))).save(
                folder / f"{k}.png")
    return root


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="resnet50")
    parser.add_argument("--test", type=int, default=200, help="test pictures (default 200)")
    parser.add_argument("--oip-steps", type=int, default=Ascent().steps)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="convlens-big-"))
    build = MODELS[args.model]
    torch.manual_seed(0)
    module = with_trained_statistics(build())
    example = torch.zeros(1, 3, 224, 224)
    path = work / f"{args.model}.pt2"
    torch.export.save(torch.export.export(module, (example,)), path)
    photos = picture_folder(work / "photos", args.test)
    rows = {}

    load_s, _ = timed(lambda: torch.export.load(path))
    convert_s, imported = timed(lambda: import_file(path))
    whole_s, _ = timed(lambda: import_model(path, str(photos), work / "run"))
    run = load_run(work / "run")
    batch = inference_batch(run.test_inputs.shape[1:])
    with torch.no_grad():
        forward_all_s, _ = timed(lambda: [module(x) for x in run.test_inputs.split(batch)])
    rows["import"] = {"seconds": convert_s, "baseline": load_s, "note": "read + convert + verify (the graph runs)"}
    rows["evaluate"] = {"seconds": whole_s - convert_s, "baseline": forward_all_s,
                        "note": f"{args.test} test pictures: metrics, confusion matrix, plots"}

    with torch.no_grad():
        captured = []
        hooks = [m.register_forward_hook(lambda m, i, o: captured.append(o)) for m in module.modules()
                 if not list(m.children())]
        one_s, _ = timed(lambda: module(run.test_inputs[:1]))
        for h in hooks:
            h.remove()
    maps_s, _ = timed(lambda: maps(run, [0], out=work / "maps"))
    rows["maps"] = {"seconds": maps_s, "baseline": one_s, "note": f"{len(run.layers.map_layers)} layers, one picture"}

    convs = run.layers.convs
    middle = convs[len(convs) // 2]  # resnet50: layer3_1_conv1, 256 maps of 14x14 seeing 235 pixels
    ascent = Ascent(steps=args.oip_steps)
    x = torch.rand(8, 3, 224, 224, requires_grad=True)  # 8, times 8: 64 pictures' saved activations take 6 GB
    step_s = timed(lambda: module(x).sum().backward())[0] * 8
    oip_s, _ = timed(lambda: layer_oip(run, [middle], list(range(64)), ascent=ascent, out=work / "oip", **QUIET))
    scale = Ascent().steps / ascent.steps  # --oip-steps fewer than the default: the default's time, extrapolated
    rows["oip"] = {"seconds": oip_s * scale, "baseline": step_s * Ascent().steps,
                   "note": f"64 maps of {middle}, {Ascent().steps} steps" + (f" (measured {ascent.steps}, "
                           f"x{scale:g})" if scale != 1 else "") + "; baseline: as many full forward+backward "
                           "passes of the module on 64 pictures"}

    report_s, _ = timed(lambda: report(run.path, out=work / "report.html", **QUIET))
    rows["report"] = {"seconds": report_s, "baseline": None, "note": "every inspection above, one HTML file"}

    live = LiveRun(run.path)
    png = io.BytesIO()
    Image.open(next((photos / "test").rglob("*.png"))).save(png, format="PNG")
    live.analyse_upload(png.getvalue())  # the first request picks oneDNN's kernels
    live_s, _ = timed(lambda: live.analyse_upload(png.getvalue()))
    rows["live page"] = {"seconds": live_s, "baseline": one_s, "note": "an uploaded 224x224 picture: every map, "
                                                                       "probabilities, integrated gradients"}
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # maps forks a second drawer: its peak resident size counts the pages it shares with this process too
    drawer_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20

    print(f"{args.model} at 224x224x3, {sum(p.numel() for p in module.parameters()):,} parameters, "
          f"{len(run.layers.names())} layers; {cpu_description()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'job':10s} {'seconds':>8s} {'baseline':>9s} {'ratio':>6s} {'target':>7s}  what")
    for job, row in rows.items():
        target = TARGETS.get(job)
        ratio = f"{row['seconds'] / row['baseline']:6.1f}" if row["baseline"] else "     -"
        verdict = "" if target is None else ("met" if row["seconds"] <= target else "NOT met")
        print(f"{job:10s} {row['seconds']:8.2f} {row['baseline'] or 0:9.2f} {ratio} "
              f"{target or '-':>7} {verdict:7s} {row['note']}")
    print(f"peak memory of this process: {peak_gb:.2f} GB (target < 4 GB: {'met' if peak_gb < 4 else 'NOT met'}); "
          f"of the forked drawer: {drawer_gb:.2f} GB, most of it pages shared with this process")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "cpu": cpu_description(), "rows": rows,
                                         "peak_gb": peak_gb, "drawer_peak_gb": drawer_gb}, indent=2))


if __name__ == "__main__":
    main()
