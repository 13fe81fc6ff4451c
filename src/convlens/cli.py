"""The convlens command line: parses flags, calls the public functions, prints results.

Training flags are generated from the config dataclasses, with the help text taken from each
field's comment, so a new config field is a new flag without touching this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import CHOICES, RECIPES, DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import UserError
from .oip.ascent import Ascent

console = Console(soft_wrap=True)  # long paths stay on one line, copyable
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def field_help(cls) -> dict[str, str]:
    """Return each dataclass field's trailing comment, used as its --help text."""
    source = inspect.getsource(cls)
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, re.M))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        helps = field_help(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            text = helps.get(f.name, '').replace('%', '%%')  # argparse formats help with %
            kw = dict(dest=f"{section}.{f.name}", default=None, help=f"{text} (default: {f.default})")
            if f.type in ("bool", bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            else:
                kind = {"int": int, "float": float}.get(str(f.type), str)
                group.add_argument(flag, type=kind, choices=CHOICES.get(f.name),
                                   metavar=None if f.name in CHOICES else f.name.upper(), **kw)


def config_from_args(args) -> tuple[RunConfig, list[str]]:
    """Return the RunConfig of defaults, then the recipe, then the flags given; and the flags given."""
    given = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    sections: dict[str, dict] = {name: dict(fields) for name, fields in RECIPES[args.recipe].items()}
    for key, value in given.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return RunConfig().replace(**sections), sorted(given)


def build_parser() -> Parser:
    p = Parser(prog="convlens", description="Train small CNNs on MNIST-like data fast, then look inside them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    data = sub.add_parser("data", help="fetch data sets and describe them")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    fetch = data_sub.add_parser("fetch", help="install data sets into $CONVLENS_DATA (default ~/.cache/convlens)")
    fetch.add_argument("name", choices=["mnist", "fashion-mnist", "all"])
    info = data_sub.add_parser("info", help="counts, shape, class balance and class names of a data set")
    info.add_argument("dataset", help="mnist, fashion-mnist or idx:DIR")

    summary = sub.add_parser("summary", help="layers, output shapes, parameters and receptive fields of a model")
    summary.add_argument("--model", default="simple", help=f"a preset ({', '.join(_presets())}) or a layer spec")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--plot", metavar="PNG", help="also draw parameters and receptive fields per layer here")

    train = sub.add_parser("train", help="train a model into a run folder",
                           description="Train a model. A recipe sets the training defaults; flags override it.")
    train.add_argument("--recipe", choices=list(RECIPES), default="default",
                       help="default: Nesterov SGD + OneCycle for any model; seed: the articles' recipe (fp32, "
                            "batch 64, SGD, step lr, L2); fast: the fast net, 2 epochs; best-mnist, best-fashion: "
                            "the most accurate presets (about 12 minutes each on 2 cores)")
    train.add_argument("--out", help="run folder to create (default: runs/MODEL-DATASET, numbered if taken)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last finished epoch")
    train.add_argument("--seeds", help="train one run per seed, e.g. 0,1,2, into OUT-s0, OUT-s1, ... "
                       "(in parallel processes when there are enough cores)")
    train.add_argument("--grid", action="append", metavar="SETTING=V1,V2",
                       help="one run per value, e.g. --grid lr=0.05,0.1 --grid batch-size=64,128 (repeatable; "
                            "combines with --seeds); the results come as one table")
    train.add_argument("--jobs", type=int, help="runs of a sweep trained at once, in separate processes "
                       "(default: one per two cores)")
    train.add_argument("--nproc", type=int, default=1,
                       help="train one run in N processes with DDP (torchrun, gloo on CPU, NCCL on CUDA); "
                            "--batch-size stays the global batch (default 1)")
    add_config_flags(train)

    ev = sub.add_parser("eval", help="evaluate a run on a test set: metrics.json, confusion matrix, misclassified gallery")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--dataset", help="evaluate on another data set (default: the run's own)")
    add_inspect_commands(sub)

    cmp = sub.add_parser("compare", help="do two trainings learn the same filters? match maps, CKA, agreement",
                         description="Compare runs of the same architecture: maps matched one to one by activation "
                         "correlation (Hungarian), conv1 kernels by signed cosine, linear CKA between all layers, "
                         "prediction agreement; with an untrained network and the run itself as baselines.")
    cmp.add_argument("runs", nargs="+", help="two or more run folders")
    cmp.add_argument("--images", type=int, default=2000, help="test images the maps are compared on (default 2000)")
    cmp.add_argument("--oips", metavar="LAYER", help="also draw the OIPs of matched maps of this conv layer")
    cmp.add_argument("--out", help="output folder (default: compare-A-vs-B beside the first run)")

    rep = sub.add_parser("report", help="one offline report.html with everything the run folder holds",
                         description="Write RUN/report.html: config, model, curves, test metrics, confusion matrix, "
                         "misclassified gallery, feature maps, kernels, and every inspection already run "
                         "(OIPs, patterns, top inputs, probes, attributions, errors, comparisons). No server needed.")
    rep.add_argument("run", help="run folder")
    rep.add_argument("--out", help="write the page here instead of RUN/report.html")

    serve = sub.add_parser("serve", help="a local web page: draw a digit and watch every map of every layer respond",
                           description="Serve a live page for a run and the other runs in its folder: draw, pick a "
                           "test image or upload a PNG/JPEG; see probabilities, all maps, attributions, OIPs and "
                           "top inputs. Listens on 127.0.0.1 only, unless --host says otherwise.")
    serve.add_argument("run", help="a run folder (its sibling runs can be switched to) or a folder of runs")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the page, which has no login)")

    bench = sub.add_parser("bench", help="measure speed: recipes against a plain PyTorch loop")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=Parser)
    bt = bench_sub.add_parser("train", help="train each recipe on several seeds and a plain DataLoader loop; "
                              "print training time, images/s, test accuracy and time-to-99%% ratios")
    bt.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bt.add_argument("--seeds", type=int, default=3, help="seeds per recipe; the table gives medians (default 3)")
    bt.add_argument("--recipes", default="default,fast", help="comma-separated recipes (default: default,fast)")
    bt.add_argument("--best", action="store_true", help="also best-mnist and best-fashion (about 12 minutes each on 2 cores)")
    bt.add_argument("--json", default="bench/train_speed.json", help="write the rows here (default bench/train_speed.json)")
    return p


def add_inspect_commands(sub) -> None:
    def command(name, help_text):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("run", help="run folder")
        c.add_argument("--out", help="output folder (default: a sub-folder of the run)")
        return c

    m = command("maps", "every feature map of every layer for chosen test images, side by side")
    m.add_argument("--images", help="CLASS:COUNT list, e.g. 4:3,9:1 = the first three 4s and the first 9 (default 4:1)")
    m.add_argument("--index", help="test-set indices instead, e.g. 0,17,42")
    m.add_argument("--layer", action="append", help="limit to this layer (repeatable; default: all map layers)")
    m.add_argument("--cmap", default="gray", choices=["gray", "jet", "viridis"], help="colour map (jet as in the articles)")
    m.add_argument("--scale", default="layer", choices=["layer", "map"],
                   help="layer: one colour range per layer, strengths compare; map: each map stretched alone")
    k = command("kernels", "a conv layer's learned kernels as images (deeper layers: norms and strongest slices)")
    k.add_argument("--layer", help="conv layer (default: the first)")
    pt = command("patterns", "class patterns: mean map activity per class, never-firing maps, maps separating two classes")
    pt.add_argument("--layer", help="layer (default: the last conv layer)")
    pt.add_argument("--classes", help="two classes to compare, e.g. 4,9")
    t = command("top", "for every map, the k test images that drive it hardest, cropped to the receptive field")
    t.add_argument("--layer", help="layer (default: the first conv layer)")
    t.add_argument("--k", type=int, default=9, help="images per map (default 9)")
    pr = command("probe", "how well the class can be read off each layer: linear probe and nearest centroid")
    pr.add_argument("--layer", action="append", help="probe this layer (repeatable; default: every layer)")
    pr.add_argument("--train-size", type=int, default=10000, help="training images the probes are fitted on (default 10000)")
    o = command("oip", "OIPs: the input that drives each map (or class logit) hardest, by gradient ascent from noise")
    o.add_argument("--layer", action="append", help="conv layer (repeatable; default: every conv layer)")
    o.add_argument("--maps", help="maps to search, e.g. 0-127 or 0-7,12 (default: all)")
    o.add_argument("--logits", action="store_true", help="class OIPs: the input that maximises each class logit")
    o.add_argument("--classes", help="with --logits: classes to search, e.g. 4,9 (default: all)")
    o.add_argument("--objective", default="mean", choices=["mean", "center", "max"],
                   help="what to maximise over a map: its mean, its centre unit or its peak (default mean)")
    o.add_argument("--starts", type=int, default=1, help="OIPs per map from different noise starts, with their similarity")
    o.add_argument("--seed", type=int, default=0, help="seed of the noise starts; the same seed gives the same OIPs")
    o.add_argument("--manifold", type=float, default=0.0,
                   help="with --logits: pull each OIP towards its class's mean test image with this weight")
    for f in dataclasses.fields(Ascent):
        if f.name != "seed":
            o.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                           help=f"{field_help(Ascent).get(f.name, '')} (default: {f.default})".replace("%", "%%"))
    ex = command("explain", "why this answer: attribution maps of one test image by several methods (Captum)")
    ex.add_argument("--index", type=int, required=True, help="test-set index of the image")
    ex.add_argument("--methods", help=f"comma-separated, from {','.join(_methods())} (default: all)")
    ex.add_argument("--target", help="also explain towards this class (number or name)")
    ex.add_argument("--layer", help="Grad-CAM layer (default: the last conv layer)")
    ex.add_argument("--patch", type=int, default=4, help="occlusion patch side in pixels (default 4)")
    ex.add_argument("--stride", type=int, default=2, help="occlusion stride in pixels (default 2)")
    ex.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    ex.add_argument("--sanity", action="store_true",
                    help="randomise the weights layer by layer from the top and measure how much each map changes")
    er = command("errors", "every misclassified test image, grouped by (true, predicted), explained towards both")
    er.add_argument("--method", default="ig", help=f"one of {','.join(_methods())} (default ig)")
    er.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    f = command("filters-demo", "classic hand-set kernels (Sobel, blur, ...) beside the learned conv1 kernels on one image")
    f.add_argument("--image", type=int, default=0, help="test-set index (default 0)")


def _methods() -> tuple[str, ...]:
    from .explain.methods import METHODS

    return METHODS


def _presets() -> list[str]:
    from .models import PRESETS

    return list(PRESETS)


def cmd_data(args) -> None:
    if args.data_command == "fetch":
        from .fetch import fetch

        for name in ("mnist", "fashion-mnist") if args.name == "all" else (args.name,):
            fetch(name, log=console.print)
        return
    from .data import class_balance, load_dataset

    ds = load_dataset(args.dataset)
    console.print(f"{ds.name}: train {len(ds.train_labels)}, test {len(ds.test_labels)}, images 28x28 uint8, "
                  f"{ds.num_classes} classes")
    table = Table()
    for col in ("class", "name", "train", "test"):
        table.add_column(col, justify="right" if col in ("class", "train", "test") else "left")
    train_n, test_n = class_balance(ds.train_labels, ds.num_classes), class_balance(ds.test_labels, ds.num_classes)
    for c, name in enumerate(ds.class_names):
        table.add_row(str(c), name, str(train_n[c]), str(test_n[c]))
    console.print(table)


def cmd_summary(args) -> None:
    from .models import build_model, resolve_spec, summary

    rows = summary(build_model(args.model))
    total = sum(r.params for r in rows)
    if args.json:
        print(json.dumps({"spec": resolve_spec(args.model), "layers": [dataclasses.asdict(r) for r in rows],
                          "total_params": total}, indent=2))
        return
    table = Table(title=resolve_spec(args.model), caption="receptive field: the input square one unit sees; "
                  "jump: input pixels between neighbouring units")
    for col in ("layer", "type", "output shape", "params", "receptive field", "jump"):
        table.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for r in rows:
        table.add_row(r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}",
                      f"{r.receptive_field}x{r.receptive_field}", str(r.jump) if r.jump else "-")
    table.add_row("total", "", "", f"{total:,}", "", "", style="bold")
    console.print(table)
    if args.plot:
        from .report import figures

        console.print(f"wrote {figures.save(figures.architecture(rows, resolve_spec(args.model)), Path(args.plot))}")


def cmd_train(args) -> None:
    from .runs import read_config
    from .workflows import train_run

    if args.nproc != 1:
        from .distributed import launch

        if args.seeds or args.grid:
            raise UserError("--nproc trains one run in several processes; give --seeds/--grid or --nproc, not both")
        out = args.out or args.resume or str(_default_out(config_from_args(args)[0]))
        rest = _without_flag(args.argv, "--nproc") + ([] if args.out or args.resume else ["--out", out])
        raise SystemExit(launch(args.nproc, rest))
    if args.seeds is not None or args.grid:
        _sweep(args)
        return
    if args.resume:
        config, given = read_config(Path(args.resume)), config_from_args(args)[1]
        if given or args.out:
            raise UserError("--resume continues a run with its stored config; give no other training flags")
        out = Path(args.resume)
    else:
        config, _ = config_from_args(args)
        out = Path(args.out) if args.out else _default_out(config)
    console.print(f"training [bold]{config.model.model}[/] on {config.data.dataset} into {out}")
    try:
        metrics = train_run(config, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        console.print(f"\ninterrupted; the last finished epoch is saved. Continue with: convlens train --resume {out}")
        raise SystemExit(130) from None
    if metrics:  # under torchrun only rank 0 evaluates
        _print_metrics(metrics, out)


def _sweep(args) -> None:
    from .report import figures
    from .runs import write_json
    from .sweep import default_jobs, parse_grid, points, run_points

    if args.resume:
        raise UserError("--seeds and --grid start new runs; resume each run on its own")
    seeds = None
    if args.seeds is not None:
        if not re.fullmatch(r"\d+(,\d+)*", args.seeds) or len(set(args.seeds.split(","))) != len(args.seeds.split(",")):
            raise UserError(f"--seeds '{args.seeds}' must be distinct comma-separated integers, e.g. 0,1,2")
        seeds = [int(s) for s in args.seeds.split(",")]
    config, _ = config_from_args(args)
    base = Path(args.out) if args.out else _default_out(config)
    sweep = points(config, base, seeds, parse_grid(args.grid or []))
    results = run_points(sweep, args.jobs or default_jobs(config, len(sweep)), log=console.print)
    names = list(sweep[0].settings)
    table = Table(title=f"{config.model.model} on {config.data.dataset}: {len(sweep)} runs")
    for col in names + ["run folder", "test accuracy", "test loss"]:
        table.add_column(col, justify="left" if col == "run folder" else "right")
    for point, metrics in results:
        table.add_row(*[str(point.settings[n]) for n in names], str(point.out), f"{metrics['test_accuracy']:.4f}",
                      f"{metrics['test_loss']:.4f}")
    console.print(table)
    rows = [point.settings | {"run": str(point.out), "test_accuracy": metrics["test_accuracy"],
                              "test_loss": metrics["test_loss"]} for point, metrics in results]
    write_json(Path(f"{base}-sweep.json"), rows)
    console.print(f"wrote {Path(f'{base}-sweep.json')} and {figures.save(figures.sweep(rows, names), Path(f'{base}-sweep.png'))}")
    if seeds is not None and len(seeds) > 1 and not args.grid:
        console.print(f"compare them with: convlens compare {' '.join(str(p.out) for p in sweep)}")


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """Return argv without `flag VALUE` or `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def _default_out(config: RunConfig) -> Path:
    name = config.model.model if config.model.model in _presets() else "custom"
    base = f"runs/{name}-{config.data.dataset.replace('idx:', '').strip('/').replace('/', '_')}"
    out, n = Path(base), 1
    while out.exists():
        n += 1
        out = Path(f"{base}-{n}")
    return out


def cmd_eval(args) -> None:
    from .workflows import evaluate_run

    _print_metrics(evaluate_run(args.run, dataset=args.dataset), Path(args.run))


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    pairs = ", ".join(f"{p['true']}→{p['pred']} ({p['count']})" for p in metrics["most_confused"][:5])
    console.print(f"test accuracy [bold]{metrics['test_accuracy']:.4f}[/], loss {metrics['test_loss']:.4f} on {metrics['dataset']}")
    console.print(f"most confused (true→pred): {pairs}")
    console.print(f"run folder: {run_dir}  (metrics.json, plots/curves.png, plots/confusion.png, plots/misclassified.png)")


def cmd_compare(args) -> None:
    from .compare_jobs import compare_job

    paths, report = compare_job(args.runs, args.images, args.out, args.oips, log=console.print)
    table = Table(title="matched maps: mean correlation, share >= 0.9, same order?")
    table.add_column("pair")
    layers = list(next(iter(report["pairs"].values()))["layers"])
    for layer in layers:
        table.add_column(layer, justify="right")
    table.add_column("agreement", justify="right")
    rows = list(report["pairs"].items()) + [(f"baseline: {k}", v) for k, v in report["baselines"].items()]
    for name, pair in rows:
        cells = [f"{s['mean_matched_correlation']:.2f} / {s['share_at_least_0.9']:.0%} / "
                 f"{'yes' if s['same_order'] else 'no'}" for s in pair["layers"].values()]
        table.add_row(name, *cells, f"{pair['prediction_agreement']:.2%}")
    console.print(table)
    for path in paths + [Path(paths[0]).parent / "compare.json"]:
        console.print(f"wrote {path}")


def cmd_report(args) -> None:
    from .report_job import report_job

    path = report_job(args.run, args.out, log=console.print)
    console.print(f"wrote {path}  (open it in a browser; it works offline)")


def cmd_serve(args) -> None:
    from .web.app import serve

    serve(Path(args.run), host=args.host, port=args.port, log=console.print)


def cmd_bench(args) -> None:
    import torch

    from . import bench
    from .runs import write_json

    recipes = [r for r in args.recipes.split(",") if r] + (["best-mnist", "best-fashion"] if args.best else [])
    if unknown := [r for r in recipes if r not in RECIPES]:
        raise UserError(f"unknown recipe {', '.join(unknown)}; recipes are {', '.join(RECIPES)}")
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    console.print(f"bench train on {bench.device_name(args.device)}, torch {torch.__version__}")
    baseline = bench.plain_loop(device=args.device, log=console.print)
    rows = [baseline] + [bench.recipe_rows(r, 1 if r.startswith("best") else args.seeds, args.device, log=console.print)
                         for r in recipes]
    print(bench.format_table(rows, baseline))
    write_json(Path(args.json), {"device": bench.device_name(args.device), "rows": rows})
    console.print(f"wrote {args.json}")


def cmd_inspect(args) -> None:
    from . import inspect_jobs as jobs

    common = {"out": args.out}
    if args.command == "maps":
        paths = jobs.maps_job(args.run, args.images, args.index, args.layer, args.cmap, args.scale, **common)
    elif args.command == "kernels":
        paths = jobs.kernels_job(args.run, args.layer, **common)
    elif args.command == "patterns":
        paths = jobs.patterns_job(args.run, args.layer, args.classes, **common)
    elif args.command == "top":
        paths = jobs.top_job(args.run, args.layer, args.k, **common)
    elif args.command == "probe":
        paths, result = jobs.probe_job(args.run, args.layer, args.train_size, **common)
        table = Table(title="probe accuracy on the test set")
        for col in ("layer", "features", "linear probe", "nearest centroid"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        for name, r in result.items():
            table.add_row(name, f"{r['features']:,}", f"{r['linear']:.4f}", f"{r['centroid']:.4f}")
        console.print(table)
    elif args.command == "oip":
        paths = _oip(args, common)
    elif args.command == "explain":
        from .explain_jobs import explain_job

        if args.steps < 1:
            raise UserError("--steps must be at least 1")
        paths, report = explain_job(args.run, args.index, args.methods, args.target, args.layer, args.patch,
                                    args.stride, args.steps, args.sanity, log=console.print, **common)
        console.print(f"image {args.index}: true {report['label']}, predicted {report['predicted']} "
                      f"(p = {max(report['probabilities']):.3f})")
        for method, verdict in report.get("sanity", {}).get("verdicts", {}).items():
            console.print(f"sanity {method}: {verdict}")
    elif args.command == "errors":
        from .explain_jobs import errors_job

        paths, report = errors_job(args.run, args.method, args.steps, log=console.print, **common)
        pairs = ", ".join(f"{p['true_name']}→{p['predicted_name']} ({p['count']})" for p in report["pairs"][:8])
        console.print(f"most frequent (true→predicted): {pairs}")
    else:
        paths = jobs.filters_demo_job(args.run, args.image, **common)
    for path in paths:
        console.print(f"wrote {path}")


def _oip(args, common) -> list:
    from .oip_jobs import oip_job

    ascent = Ascent(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Ascent) if f.name != "seed"},
                    seed=args.seed)
    if args.starts < 1 or ascent.steps < 1:
        raise UserError("--starts and --steps must be at least 1")
    paths, summaries = oip_job(args.run, args.layer, args.maps, args.logits, args.classes, args.objective, args.starts,
                            args.seed, args.manifold, ascent, log=console.print, **common)
    table = Table(title="OIPs: how many beat the best of the test images")
    for col in ("layer", "maps", "seconds", "ratio >= 1", "fired from start", "never fired"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer, s in summaries.items():
        table.add_row(layer, str(s["maps"]), f"{s['seconds']:.2f}", f"{s['share_beating_test']:.1%}",
                      str(s["fired_from_start"]), str(len(s["never_fired"])))
    console.print(table)
    for layer, s in summaries.items():
        for dead in s["never_fired"]:
            console.print(f"[yellow]{layer} map {dead['map']} never fired[/]: {dead['reason']}")
    return paths


COMMANDS = {"bench": cmd_bench, "compare": cmd_compare, "data": cmd_data, "eval": cmd_eval, "report": cmd_report,
            "serve": cmd_serve, "summary": cmd_summary, "train": cmd_train,
            **{name: cmd_inspect for name in ("maps", "kernels", "patterns", "top", "probe", "oip", "explain", "errors",
                                           "filters-demo")}}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # --nproc hands the same command line to torchrun
    try:
        COMMANDS[args.command](args)
    except UserError as e:
        print(f"convlens {args.command}: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
