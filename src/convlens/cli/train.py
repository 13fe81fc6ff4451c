"""convlens train / eval / bench: training runs (one, a sweep of seeds and settings, or DDP), evaluation, speed."""

from __future__ import annotations

import re
from pathlib import Path

from rich.table import Table

from ..config import CHOICES, RECIPES, DataConfig, ModelConfig, RunConfig, TrainConfig
from ..errors import UserError
from .flags import Parser, add_dataclass_flags, console, given, print_written

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def add(sub) -> None:
    train = sub.add_parser("train", help="train a model into a run folder",
                           description="Train a model. A recipe sets the training defaults; flags override it.")
    train.add_argument("--recipe", choices=list(RECIPES), default="default",
                       help="default: Nesterov SGD + OneCycle for any model; seed: the articles' recipe (fp32, "
                            "batch 64, SGD, step lr, L2); fast: 99%% in one epoch (fast-mlp, Adam); best-mnist, best-fashion: "
                            "the most accurate presets (about 12 minutes each on 2 cores)")
    train.add_argument("--out", help="run folder to create (default: runs/MODEL-DATASET, numbered if taken)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last finished epoch; "
                       "on the same machine kind and thread count the result equals an uninterrupted run bit for bit")
    train.add_argument("--seeds", help="train one run per seed, e.g. 0,1,2, into OUT-s0, OUT-s1, ... "
                       "(in parallel processes when there are enough cores)")
    train.add_argument("--grid", action="append", metavar="SETTING=V1,V2",
                       help="one run per value, e.g. --grid lr=0.05,0.1 --grid batch-size=64,128 (repeatable; "
                            "combines with --seeds); the results come as one table")
    train.add_argument("--jobs", type=int, help="runs of a sweep trained at once, in separate processes "
                       "(default: one per two cores)")
    train.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="where a sweep's runs train: local processes, or Ray tasks (pip install 'convlens[ray]'); "
                            "Ray retries a run whose worker died from its last finished epoch (default local)")
    train.add_argument("--address", help="the Ray cluster to use: auto (the one this machine belongs to) or "
                       "ray://HOST:10001 (default: a local Ray instance)")
    train.add_argument("--nproc", type=int, default=1,
                       help="train one run in N processes with DDP (torchrun, gloo on CPU, NCCL on CUDA); "
                            "--batch-size stays the global batch (default 1)")
    train.add_argument("--nnodes", type=int, default=1,
                       help="machines taking part: run the same command on each, with --rdzv-endpoint (default 1)")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="where the machines meet (torchrun's c10d rendezvous), e.g. node0.local:29400; "
                            "one machine hosts it, any free port")
    for section, cls in SECTIONS.items():
        add_dataclass_flags(train.add_argument_group(f"{section} options"), cls, f"{section}.", CHOICES)
    train.set_defaults(handler=run_train)

    ev = sub.add_parser("eval", help="evaluate a run on a test set: metrics.json, confusion matrix, misclassified gallery")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--dataset", help="evaluate on another data set (default: the run's own)")
    ev.set_defaults(handler=run_eval)

    cv = sub.add_parser("curves", help="training curves of one run, or of several overlaid: loss per step, "
                        "accuracy per epoch, the learning rate", description="Draw the training curves of runs: "
                        "one run redraws RUN/plots/curves.png; several share one figure, a colour each, so recipes, "
                        "seeds or settings compare at a glance.")
    cv.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    cv.add_argument("--out", metavar="PNG", help="where the figure goes (default: RUN/plots/curves.png for one run, "
                    "curves-A-vs-B.png beside the first run for several)")
    cv.set_defaults(handler=run_curves)

    bench = sub.add_parser("bench", help="measure speed: recipes against a plain PyTorch loop")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=Parser)
    bt = bench_sub.add_parser("train", help="train each recipe on several seeds and a plain DataLoader loop; "
                              "print training time, images/s, test accuracy and time-to-99%% ratios")
    bt.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bt.add_argument("--seeds", type=int, default=3, help="seeds per recipe; the table gives medians (default 3)")
    bt.add_argument("--recipes", default="default,fast", help="comma-separated recipes (default: default,fast)")
    bt.add_argument("--best", action="store_true", help="also best-mnist and best-fashion (about 12 minutes each on 2 cores)")
    bt.add_argument("--json", default="bench/train_speed.json", help="write the rows here (default bench/train_speed.json)")
    bt.set_defaults(handler=run_bench)


def config_from_args(args) -> tuple[RunConfig, list[str]]:
    """Return the RunConfig of defaults, then the recipe, then the flags given; and the flags given."""
    sections: dict[str, dict] = {name: dict(fields) for name, fields in RECIPES[args.recipe].items()}
    flags = []
    for section, cls in SECTIONS.items():
        for name, value in given(args, cls, f"{section}.").items():
            sections.setdefault(section, {})[name] = value
            flags.append(f"{section}.{name}")
    return RunConfig().replace(**sections), sorted(flags)


def run_train(args) -> None:
    from ..data import load_dataset
    from ..jobs.train import train_run
    from ..runs import GRAPH, read_config

    if args.nproc != 1 or args.nnodes != 1 or args.rdzv_endpoint:
        from ..distributed import launch

        if args.seeds or args.grid:
            raise UserError("--nproc trains one run in several processes; give --seeds/--grid or --nproc, not both")
        if not (2 <= args.nproc <= 256 or (args.nproc == 1 and args.nnodes > 1)):
            raise UserError(f"--nproc {args.nproc} must be between 2 and 256 (1 is a plain run)")
        if not 1 <= args.nnodes <= 1024 or (args.nnodes > 1) != bool(args.rdzv_endpoint):
            raise UserError("several machines need --nnodes N (2 to 1024) and --rdzv-endpoint HOST:PORT together")
        out = args.out or args.resume or str(_default_out(config_from_args(args)[0]))
        rest = args.argv
        for flag in ("--nproc", "--nnodes", "--rdzv-endpoint"):
            rest = _without_flag(rest, flag)
        rest += [] if args.out or args.resume else ["--out", out]
        raise SystemExit(launch(args.nproc, rest, args.nnodes, args.rdzv_endpoint))
    if args.seeds is not None or args.grid:
        _sweep(args)
        return
    if args.resume:
        config, flags = read_config(Path(args.resume)), config_from_args(args)[1]
        if (Path(args.resume) / GRAPH).is_file():
            raise UserError(f"{args.resume} holds an imported model; convlens trains its own nets, and every other "
                            "command works on this run as it is")
        if flags or args.out:
            raise UserError("--resume continues a run with its stored config; give no other training flags")
        out = Path(args.resume)
    else:
        config, _ = config_from_args(args)
        out = Path(args.out) if args.out else _default_out(config)
    # A missing data set or a mistyped model is the first thing said, not after "training ... into", and
    # leaves no run folder behind.
    data = load_dataset(config.data.dataset)
    if not args.resume:
        from ..models import plan_spec, resolve_spec

        plan_spec(resolve_spec(config.model.model), data.num_classes, data.image_shape)
    console.print(f"training [bold]{config.model.model}[/] on {config.data.dataset} into {out}")
    try:
        metrics = train_run(config, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        console.print(f"\ninterrupted; the last finished epoch is saved. Continue with: convlens train --resume {out}")
        raise SystemExit(130) from None
    if metrics:  # under torchrun only rank 0 evaluates
        from ..runs import Run

        _print_metrics(metrics, Run(out), trained=True)


def run_curves(args) -> None:
    from ..jobs.train import curves

    result = curves(args.runs, args.out)
    for name, last in result.data.items():
        val = f", validation accuracy {last['val_accuracy']:.2%}" if last.get("val_accuracy") is not None else ""
        console.print(f"{name}: {last['epoch']} epochs, last train loss {last['train_loss']:.4f}{val}")
    print_written(result.files)


def parse_grid(items: list[str]) -> dict[str, list]:
    """Return {field: values} from ['lr=0.05,0.1', 'batch-size=64,128'], each value of the field's type."""
    from ..jobs.sweep import settable_fields

    fields, grid = settable_fields(), {}
    for item in items:
        m = re.fullmatch(r"([a-z_-]+)=([^=]+)", item.strip())
        if not m:
            raise UserError(f"--grid '{item}' must be SETTING=V1,V2,..., e.g. lr=0.05,0.1")
        name = m[1].replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(n.replace("_", "-") for n in fields))
            raise UserError(f"--grid: unknown setting '{m[1]}' (seeds go in --seeds); settings are: {known}")
        grid[name] = [_value(v.strip(), fields[name][1], m[1]) for v in m[2].split(",")]
    return grid


def _value(text: str, kind: str, name: str):
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError):
        raise UserError(f"--grid {name}: '{text}' is not a valid {kind}") from None
    return text


def _sweep(args) -> None:
    from ..jobs.sweep import sweep

    if args.resume:
        raise UserError("--seeds and --grid start new runs; resume each run on its own")
    seeds = None
    if args.seeds is not None:
        if not re.fullmatch(r"\d+(,\d+)*", args.seeds) or len(set(args.seeds.split(","))) != len(args.seeds.split(",")):
            raise UserError(f"--seeds '{args.seeds}' must be distinct comma-separated integers, e.g. 0,1,2")
        seeds = [int(s) for s in args.seeds.split(",")]
    config, _ = config_from_args(args)
    base = Path(args.out) if args.out else _default_out(config)
    if args.engine == "ray" and args.jobs:
        raise UserError("--jobs sizes the local pool; on Ray each run asks for two cores and Ray places them")
    result = sweep(config, base, seeds, parse_grid(args.grid or []), args.jobs, args.engine, args.address,
                   log=console.print)
    names, rows = result.data["settings"], result.data["rows"]
    table = Table(title=f"{config.model.model} on {config.data.dataset}: {len(rows)} runs")
    for col in names + ["run folder", "test accuracy", "test loss"]:
        table.add_column(col, justify="left" if col == "run folder" else "right")
    for row in rows:
        table.add_row(*[str(row[n]) for n in names], row["run"], f"{row['test_accuracy']:.4f}", f"{row['test_loss']:.4f}")
    console.print(table)
    console.print(f"wrote {result.files[0]} and {result.files[1]}")
    if seeds is not None and len(seeds) > 1 and not args.grid:
        console.print(f"compare them with: convlens compare {' '.join(row['run'] for row in rows)}")


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
    from ..config import PRESETS

    name = config.model.model if config.model.model in PRESETS else "custom"
    base = f"runs/{name}-{config.data.dataset.replace('idx:', '').strip('/').replace('/', '_')}"
    out, n = Path(base), 1
    while out.exists():
        n += 1
        out = Path(f"{base}-{n}")
    return out


def run_eval(args) -> None:
    from ..jobs.train import evaluate_run
    from ..runs import Run

    metrics = evaluate_run(args.run, dataset=args.dataset)
    run = Run(args.run)
    _print_metrics(metrics, run)
    if note := run.unfinished:
        console.print(f"[yellow]{note}[/]")


def _print_metrics(metrics: dict, run, trained: bool = False) -> None:
    from .. import runs

    pairs = ", ".join(f"{p['true']}→{p['pred']} ({p['count']})" for p in metrics["most_confused"][:5])
    console.print(f"test accuracy [bold]{metrics['test_accuracy']:.4f}[/], loss {metrics['test_loss']:.4f} on {metrics['dataset']}")
    console.print(f"most confused (true→pred): {pairs}")
    written = runs.evaluation_files(metrics["dataset"], run.config.data.dataset)
    plots = [f"{runs.PLOTS}/{name}" for name in ([runs.CURVES] if trained else []) + list(written[1:])]
    console.print(f"run folder: {run.path}  ({', '.join([written[0], *plots])})")


def run_bench(args) -> None:
    import torch

    from .. import bench
    from ..runs import write_json

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
