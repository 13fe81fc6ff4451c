"""convlens report / serve: everything a run folder holds, as one offline page or a live one."""

from __future__ import annotations

from pathlib import Path

from ..web.batching import MAX_BATCH
from .flags import console


def add(sub) -> None:
    rep = sub.add_parser("report", help="one offline report.html with everything the run folder holds",
                         description="Write RUN/report.html: config, model, curves, test metrics, confusion matrix, "
                         "misclassified gallery, feature maps, kernels, and every inspection already run "
                         "(OIPs, patterns, top inputs, probes, attributions, errors, comparisons). No server needed.")
    rep.add_argument("run", help="run folder")
    rep.add_argument("--out", help="write the page here instead of RUN/report.html")
    rep.set_defaults(handler=run_report)

    serve = sub.add_parser("serve", help="a local web page: draw a digit and watch every map of every layer respond",
                           description="Serve a live page for a run and the other runs in its folder: draw, pick a "
                           "test image or upload a PNG/JPEG; see probabilities, all maps, attributions, OIPs and "
                           "top inputs. Listens on 127.0.0.1 only, unless --host says otherwise.")
    serve.add_argument("run", help="a run folder (its sibling runs can be switched to) or a folder of runs")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the page, which has no login)")
    serve.add_argument("--max-batch", type=int, default=MAX_BATCH,
                       help="analyses gathered into one forward pass when requests arrive together; 1 analyses "
                            f"each alone (default {MAX_BATCH})")
    serve.set_defaults(handler=run_serve)


def run_report(args) -> None:
    from ..jobs.report import report

    path = report(args.run, args.out, log=console.print)
    console.print(f"wrote {path}  (open it in a browser; it works offline)")


def run_serve(args) -> None:
    with console.status(f"starting the live page for {args.run} (loading torch and the web server)"):
        from ..web.app import serve  # the imports are most of a start's seconds; say so at once

    serve(Path(args.run), host=args.host, port=args.port, max_batch=args.max_batch, log=console.print)
